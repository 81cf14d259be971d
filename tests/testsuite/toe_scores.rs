//! Each OoD score of `toe::scores` against a direct PyTorch computation of
//! its formula (the venv's torch, in float64) on fixed random inputs.

use std::path::{Path, PathBuf};
use std::process::Command;

use ndarray::{Array1, Array2};
use ndarray_npy::{read_npy, write_npy};
use tch::{Device, Kind, Tensor};
use toe_pipe::toe::scores;

fn python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")
}

/// Run `script` after a prelude that loads the inputs as float64 tensors
/// and defines `unit` (row-wise L2 normalisation) and `save(name, values)`.
fn run_python(script: &str, dir: &Path) {
    let prelude = r#"
import numpy as np, torch
import torch.nn.functional as F
load = lambda name: torch.from_numpy(np.load(name + '.npy')).double()
unit = lambda x: F.normalize(x, dim=1)
save = lambda name, v: np.save(name + '_ref.npy', np.asarray(v, dtype=np.float64))
logits, image, text, words, train = load('logits'), load('image'), load('text'), load('words'), load('train')
means, precision = load('means'), load('precision')
"#;
    let out = Command::new(python())
        .arg("-c")
        .arg(format!("{prelude}{script}"))
        .current_dir(dir)
        .output()
        .expect("venv python runs");
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn to_array2(t: &Tensor) -> Array2<f32> {
    let (r, c) = t.size2().unwrap();
    let v = Vec::<f32>::try_from(&t.to_kind(Kind::Float).contiguous().view(-1)).unwrap();
    Array2::from_shape_vec((r as usize, c as usize), v).unwrap()
}

/// Fixed inputs: 40 images of 8-d features, 4 classes, 30 words, 50 train
/// features, logits of a 4-class head, class statistics.
struct Inputs {
    dir: tempfile::TempDir,
    logits: Tensor,
    image: Tensor,
    text: Tensor,
    words: Tensor,
    train: Tensor,
    means: Tensor,
    precision: Tensor,
}

fn inputs() -> Inputs {
    let _rng = crate::rng_lock();
    tch::manual_seed(14);
    let randn = |shape: &[i64]| Tensor::randn(shape, (Kind::Float, Device::Cpu));
    let text = randn(&[4, 8]);
    // Images near the class prompts and far from them, so scores spread out.
    let image = Tensor::cat(&[text.repeat([5, 1]) + randn(&[20, 8]) * 0.5, randn(&[20, 8]) * 2.0], 0);
    let logits = randn(&[40, 4]) * 3.0;
    let words = randn(&[30, 8]);
    let train = randn(&[50, 8]);
    let means = randn(&[4, 8]);
    let a = randn(&[8, 8]);
    let precision = a.matmul(&a.transpose(0, 1)) + Tensor::eye(8, (Kind::Float, Device::Cpu));
    let dir = tempfile::tempdir().unwrap();
    for (name, t) in [
        ("logits", &logits),
        ("image", &image),
        ("text", &text),
        ("words", &words),
        ("train", &train),
        ("means", &means),
        ("precision", &precision),
    ] {
        write_npy(dir.path().join(format!("{name}.npy")), &to_array2(t)).unwrap();
    }
    Inputs { dir, logits, image, text, words, train, means, precision }
}

/// Our values against `name`_ref.npy, relative to the largest reference value.
fn assert_close(dir: &Path, name: &str, ours: &[f32], tolerance: f64) {
    let reference: Array1<f64> = read_npy(dir.join(format!("{name}_ref.npy"))).unwrap();
    assert_eq!(ours.len(), reference.len(), "{name}: length");
    let scale = reference.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-12);
    for (i, (a, b)) in ours.iter().zip(reference.iter()).enumerate() {
        assert!(((*a as f64) - b).abs() / scale < tolerance, "{name}[{i}]: ours {a}, torch {b}");
    }
    // The scores are not all alike (a constant would pass a loose check).
    let spread = reference.iter().fold(f64::MIN, |m, v| m.max(*v)) - reference.iter().fold(f64::MAX, |m, v| m.min(*v));
    assert!(spread > 1e-3 * scale, "{name}: the reference scores hardly vary ({spread})");
}

#[test]
fn head_scores_match_torch() {
    let x = inputs();
    run_python(
        r#"
save('energy', 2.0 * torch.logsumexp(logits / 2.0, 1))
save('msp', torch.softmax(logits, 1).max(1).values)
save('maxlogit', logits.max(1).values)
"#,
        x.dir.path(),
    );
    assert_close(x.dir.path(), "energy", &scores::energy(&x.logits, 2.0).unwrap(), 1e-5);
    assert_close(x.dir.path(), "msp", &scores::msp(&x.logits).unwrap(), 1e-5);
    assert_close(x.dir.path(), "maxlogit", &scores::max_logit(&x.logits).unwrap(), 1e-6);
}

#[test]
fn mcm_and_zero_shot_predictions_match_torch() {
    let x = inputs();
    run_python(
        r#"
s = unit(image) @ unit(text).T
save('mcm', torch.softmax(s / 1.0, 1).max(1).values)
save('mcm_sharp', torch.softmax(s / 0.1, 1).max(1).values)
save('predictions', s.argmax(1))
"#,
        x.dir.path(),
    );
    assert_close(x.dir.path(), "mcm", &scores::mcm(&x.image, &x.text, 1.0).unwrap(), 1e-5);
    assert_close(x.dir.path(), "mcm_sharp", &scores::mcm(&x.image, &x.text, 0.1).unwrap(), 1e-5);
    let predictions: Vec<f32> =
        scores::zero_shot_predictions(&x.image, &x.text).unwrap().into_iter().map(|p| p as f32).collect();
    assert_close(x.dir.path(), "predictions", &predictions, 1e-9);
}

#[test]
fn neglabel_mining_and_score_match_torch() {
    let x = inputs();
    // Mining: d_i = the 0.3-quantile (linear) of -cos(word_i, class_k) over
    // k; the 12 largest, ties by index. The score with 3 fixed groups
    // (negative j in group j mod 3), straight from the formula in float64.
    run_python(
        r#"
d = torch.quantile(-(unit(words) @ unit(text).T), 0.3, dim=1)
mined = np.argsort(-d.numpy(), kind='stable')[:12]
save('mined', mined)
def neglabel(tau, groups):
    pos = torch.exp(unit(image) @ unit(text).T / tau).sum(1)
    out = torch.zeros(len(image), dtype=torch.float64)
    for g in range(groups):
        neg = torch.exp(unit(image) @ unit(words[mined[g::groups]]).T / tau).sum(1)
        out += pos / (pos + neg)
    return out / groups
save('neglabel', neglabel(0.01, 1))
save('neglabel_groups', neglabel(0.05, 3))
"#,
        x.dir.path(),
    );
    let mined = scores::neglabel_mine(&x.text, &x.words, 12, 0.3).unwrap();
    let as_f32: Vec<f32> = mined.iter().map(|&i| i as f32).collect();
    assert_close(x.dir.path(), "mined", &as_f32, 1e-9);
    let negatives = x.words.index_select(0, &Tensor::from_slice(&mined));
    assert_close(x.dir.path(), "neglabel", &scores::neglabel(&x.image, &x.text, &negatives, 0.01, 1).unwrap(), 1e-4);
    assert_close(
        x.dir.path(),
        "neglabel_groups",
        &scores::neglabel(&x.image, &x.text, &negatives, 0.05, 3).unwrap(),
        1e-4,
    );
    let err = scores::neglabel(&x.image, &x.text, &negatives, 0.01, 13).unwrap_err().to_string();
    assert!(err.contains("13 groups for 12 negative labels"), "{err}");
}

#[test]
fn mahalanobis_and_knn_match_torch() {
    let x = inputs();
    run_python(
        r#"
z = unit(image)
d2 = torch.stack([((z - m) @ precision * (z - m)).sum(1) for m in means], 1)
save('mahalanobis', -d2.min(1).values)
save('knn', -torch.cdist(z, unit(train)).kthvalue(5, dim=1).values)
save('knn1', -torch.cdist(z, unit(train)).kthvalue(1, dim=1).values)
"#,
        x.dir.path(),
    );
    assert_close(x.dir.path(), "mahalanobis", &scores::mahalanobis(&x.image, &x.means, &x.precision).unwrap(), 1e-4);
    assert_close(x.dir.path(), "knn", &scores::knn(&x.image, &x.train, 5).unwrap(), 1e-4);
    assert_close(x.dir.path(), "knn1", &scores::knn(&x.image, &x.train, 1).unwrap(), 1e-4);
    let err = scores::knn(&x.image, &x.train, 51).unwrap_err().to_string();
    assert!(err.contains("k = 51") && err.contains("there are 50"), "{err}");
    let err = scores::mcm(&x.image, &x.train.narrow(1, 0, 4), 1.0).unwrap_err().to_string();
    assert!(err.contains("image features are 8-d but the class text features are 4-d"), "{err}");
}
