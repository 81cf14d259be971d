//! The TOE numerical core against the same computation in PyTorch (the
//! venv's torch), on random inputs.

use std::path::{Path, PathBuf};
use std::process::Command;

use ndarray::{Array1, Array2};
use ndarray_npy::{read_npy, write_npy};
use tch::{Kind, Tensor};
use toe_pipe::toe::class_stats::class_stats;
use toe_pipe::toe::mahalanobis::{lowest_fraction, mahalanobis_scores};
use toe_pipe::toe::train_head::{inject_noise, oe_loss, train_head, train_head_with, Backend, EpochKind, HeadConfig};

fn python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")
}

fn run_python(script: &str, dir: &Path) {
    let out = Command::new(python()).arg("-c").arg(script).current_dir(dir).output().expect("venv python runs");
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn to_array2(t: &Tensor) -> Array2<f32> {
    let (r, c) = t.size2().unwrap();
    let v = Vec::<f32>::try_from(&t.to_kind(Kind::Float).contiguous().view(-1)).unwrap();
    Array2::from_shape_vec((r as usize, c as usize), v).unwrap()
}

fn max_abs_diff(a: &Array2<f32>, b: &Array2<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.iter().zip(b.iter()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn class_stats_and_mahalanobis_match_torch() {
    let _rng = crate::rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    tch::manual_seed(0);
    let (n, d, c) = (300i64, 16i64, 4i64);
    // Class-dependent offsets so the means differ; labels interleaved.
    let labels: Vec<i64> = (0..n).map(|i| (i * 7 + i / 5) % c).collect();
    let offsets = Tensor::randn([c, d], (Kind::Float, tch::Device::Cpu)) * 2.0;
    let feats =
        Tensor::randn([n, d], (Kind::Float, tch::Device::Cpu)) + offsets.index_select(0, &Tensor::from_slice(&labels));
    let text = Tensor::randn([50, d], (Kind::Float, tch::Device::Cpu));
    write_npy(tmp.path().join("x.npy"), &to_array2(&feats)).unwrap();
    write_npy(tmp.path().join("t.npy"), &to_array2(&text)).unwrap();
    write_npy(tmp.path().join("y.npy"), &Array1::from(labels.clone())).unwrap();

    let max_count = 60;
    let stats = class_stats(&feats, &labels, c as usize, max_count, true).unwrap();
    let scores = mahalanobis_scores(&text, &stats.means, &stats.precision).unwrap();

    // The reference: the first max_count of each class, normalised, class
    // means re-normalised, torch.cov of all selected features in float64.
    run_python(
        r#"
import numpy as np, torch
x = torch.from_numpy(np.load('x.npy')); y = np.load('y.npy'); t = torch.from_numpy(np.load('t.npy'))
count = {}; keep = []
for i, l in enumerate(y):
    if count.get(int(l), 0) < 60:
        count[int(l)] = count.get(int(l), 0) + 1; keep.append(i)
f = x[keep]; f = f / f.norm(dim=-1, keepdim=True); yk = torch.from_numpy(y[keep])
means = torch.stack([f[yk == k].mean(0) for k in range(4)]); means = means / means.norm(dim=-1, keepdim=True)
prec = torch.linalg.inv(torch.cov(f.T.double())).float()
t = t / t.norm(dim=-1, keepdim=True)
s = torch.stack([-0.5 * ((t - m) @ prec @ (t - m).T).diag() for m in means], 1).max(1).values
np.save('means.npy', means.numpy()); np.save('prec.npy', prec.numpy()); np.save('scores.npy', s.numpy().reshape(1, -1))
"#,
        tmp.path(),
    );
    let means: Array2<f32> = read_npy(tmp.path().join("means.npy")).unwrap();
    let prec: Array2<f32> = read_npy(tmp.path().join("prec.npy")).unwrap();
    let ref_scores: Array2<f32> = read_npy(tmp.path().join("scores.npy")).unwrap();
    assert!(max_abs_diff(&to_array2(&stats.means), &means) < 1e-5);
    let scale = prec.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(max_abs_diff(&to_array2(&stats.precision), &prec) / scale < 1e-4);
    let ours = Array2::from_shape_vec((1, scores.len()), scores.clone()).unwrap();
    let score_scale = ref_scores.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(max_abs_diff(&ours, &ref_scores) / score_scale < 1e-4);

    // The selection keeps the int(n * 0.15) lowest, in ascending order.
    let picked = lowest_fraction(&scores, 0.15).unwrap();
    assert_eq!(picked.len(), 7);
    for w in picked.windows(2) {
        assert!(scores[w[0] as usize] <= scores[w[1] as usize]);
    }
    let worst_kept = scores[*picked.last().unwrap() as usize];
    let dropped_min =
        (0..scores.len()).filter(|i| !picked.contains(&(*i as i64))).map(|i| scores[i]).fold(f32::MAX, f32::min);
    assert!(worst_kept <= dropped_min);
}

#[test]
fn class_stats_rejects_bad_labels_and_singular_covariance() {
    let _rng = crate::rng_draws();
    let feats = Tensor::randn([10, 16], (Kind::Float, tch::Device::Cpu));
    let labels: Vec<i64> = (0..10).map(|i| i % 2).collect();
    let err = class_stats(&feats, &labels, 2, 250, true).err().unwrap().to_string();
    assert!(err.contains("singular"), "{err}");
    let err = class_stats(&feats, &labels, 1, 250, true).err().unwrap().to_string();
    assert!(err.contains("outside"), "{err}");
}

#[test]
fn noise_keeps_unit_norm_and_oe_loss_is_zero_for_uniform_logits() {
    let _rng = crate::rng_lock();
    tch::manual_seed(1);
    let x = Tensor::randn([64, 32], (Kind::Float, tch::Device::Cpu)) * 3.0;
    let noisy = inject_noise(&x, 0.016);
    let norms = noisy.norm_scalaropt_dim(2, [1i64].as_slice(), false);
    assert!((norms - 1.0).abs().max().double_value(&[]) < 1e-5);
    let uniform = Tensor::ones([5, 7], (Kind::Float, tch::Device::Cpu));
    // Cross-entropy to uniform is smallest, ln C, for uniform logits.
    assert!((oe_loss(&uniform).double_value(&[]) - 7f64.ln()).abs() < 1e-5);
    let peaked = Tensor::from_slice(&[10.0f32, 0.0, 0.0]).view([1, 3]);
    assert!(oe_loss(&peaked).double_value(&[]) > 5.0 + 3f64.ln());
}

#[test]
fn exposure_lowers_confidence_on_outliers_without_hurting_accuracy() {
    let _rng = crate::rng_lock();
    tch::manual_seed(3);
    let (n, d, c) = (400i64, 8i64, 3i64);
    let labels = Tensor::arange(n, (Kind::Int64, tch::Device::Cpu)).remainder(c);
    let centres = Tensor::eye(d, (Kind::Float, tch::Device::Cpu)).narrow(0, 0, c) * 4.0;
    let feats = centres.index_select(0, &labels) + Tensor::randn([n, d], (Kind::Float, tch::Device::Cpu)) * 0.5;
    // Outliers live along dimensions no ID class uses.
    let outliers = Tensor::randn([200, d], (Kind::Float, tch::Device::Cpu))
        * Tensor::from_slice(&[0.0f32, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
    let cfg = HeadConfig { epochs: 15, lr: 1e-2, ..Default::default() };
    let base = train_head(&feats, &labels, None, c, &cfg).unwrap();
    let oe = train_head(&feats, &labels, Some(&outliers), c, &cfg).unwrap();
    assert!(base.log.last().unwrap().train_accuracy > 0.95);
    assert!(oe.log.last().unwrap().train_accuracy > 0.95);
    assert!(oe.log.last().unwrap().oe < oe.log[0].oe);
    // Mean max-softmax on the normalised outliers is lower after exposure.
    let probe = inject_noise(&outliers, 0.0);
    let conf = |w: &Tensor, b: &Tensor| {
        probe
            .linear(w, Some(b))
            .softmax(1, Kind::Float)
            .amax([1i64].as_slice(), false)
            .mean(Kind::Float)
            .double_value(&[])
    };
    assert!(conf(&oe.weight, &oe.bias) < conf(&base.weight, &base.bias));
    // Same seed, same head.
    let again = train_head(&feats, &labels, Some(&outliers), c, &cfg).unwrap();
    assert!(again.weight.equal(&oe.weight));
}

/// The plain-Rust CPU steps and the tch steps (the CUDA path) draw the same
/// shuffles and noise and do the same maths, so they train the same head up
/// to float rounding: with outliers (more than a batch, and fewer, which
/// reshuffles every step when cycling), without, with a last partial ID
/// batch, and with both kinds of epoch (zip ends with a partial outlier
/// batch here).
#[test]
fn plain_and_tensor_backends_train_the_same_head() {
    let _rng = crate::rng_lock();
    tch::manual_seed(5);
    let (n, d, c) = (203i64, 24i64, 6i64);
    let labels = Tensor::randint(c, [n], (Kind::Int64, tch::Device::Cpu));
    let feats = Tensor::randn([n, d], (Kind::Float, tch::Device::Cpu)) + labels.unsqueeze(1).to_kind(Kind::Float) * 0.3;
    let many = Tensor::randn([70, d], (Kind::Float, tch::Device::Cpu)) * 2.0;
    let few = Tensor::randn([9, d], (Kind::Float, tch::Device::Cpu));
    for epoch in [EpochKind::Zip, EpochKind::Cycle] {
        let cfg = HeadConfig { epochs: 8, lr: 1e-2, epoch, ..Default::default() };
        for (name, outliers) in [("70 outliers", Some(&many)), ("9 outliers", Some(&few)), ("no outliers", None)] {
            let name = format!("{epoch:?}, {name}");
            let plain = train_head_with(Backend::Plain, &feats, &labels, outliers, c, &cfg).unwrap();
            let tensor = train_head_with(Backend::Tensor, &feats, &labels, outliers, c, &cfg).unwrap();
            let dw = (&plain.weight - &tensor.weight).abs().max().double_value(&[]);
            let db = (&plain.bias - &tensor.bias).abs().max().double_value(&[]);
            assert!(dw < 1e-4 && db < 1e-4, "{name}: weights differ by {dw}, bias by {db}");
            // and the heads did move: the comparison is not between two initialisations
            assert!(plain.log.last().unwrap().loss < plain.log[0].loss, "{name}: loss did not fall");
            assert_eq!(plain.log.len(), tensor.log.len());
            let batches = |rows: i64| ((rows + 31) / 32) as usize;
            let expected_steps = match (epoch, outliers.map(|o| o.size()[0])) {
                (EpochKind::Zip, Some(m)) => batches(n).min(batches(m)),
                _ => batches(n),
            };
            for (p, t) in plain.log.iter().zip(&tensor.log) {
                assert_eq!((p.steps, t.steps), (expected_steps, expected_steps), "{name} epoch {}", p.epoch);
                assert!(
                    (p.ce - t.ce).abs() < 1e-5 && (p.oe - t.oe).abs() < 1e-5,
                    "{name} epoch {}: {p:?} vs {t:?}",
                    p.epoch
                );
                assert!(
                    (p.train_accuracy - t.train_accuracy).abs() <= 1.0 / n as f64,
                    "{name} epoch {}: {p:?} vs {t:?}",
                    p.epoch
                );
            }
        }
    }
}

#[test]
fn labels_outside_the_classes_are_an_error() {
    let _rng = crate::rng_draws();
    let feats = Tensor::randn([4, 3], (Kind::Float, tch::Device::Cpu));
    let labels = Tensor::from_slice(&[0i64, 1, 2, 1]);
    for backend in [Backend::Plain, Backend::Tensor] {
        let err = train_head_with(backend, &feats, &labels, None, 2, &HeadConfig { epochs: 1, ..Default::default() })
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("label 2 at row 2") && err.contains("num_classes"), "{err}");
    }
}
