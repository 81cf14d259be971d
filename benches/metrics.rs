//! OoD metrics on 10M scores: toe-pipe against the original Python
//! evaluation (scikit-learn's roc_auc_score and average_precision_score plus
//! the original FPR95 function), on the same data and machine, in one run.
//!
//!     cargo bench --bench metrics
//!
//! Prints each side's time, the ratio, and checks the numbers agree.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use ndarray::Array1;
use toe_pipe::formats::write_npy;
use toe_pipe::metrics::{ood_metrics, OodMetrics};

const PYTHON_SIDE: &str = r#"
import sys, time, numpy as np
import sklearn.metrics as sk

def original_fpr(y_true, y_score, recall_level=0.95):
    y_true = y_true == 1
    order = np.argsort(y_score, kind="mergesort")[::-1]
    y_score, y_true = y_score[order], y_true[order]
    idx = np.r_[np.where(np.diff(y_score))[0], y_true.size - 1]
    tps = np.cumsum(y_true, dtype=np.float64)[idx]
    fps = 1 + idx - tps
    recall = tps / tps[-1]
    last = tps.searchsorted(tps[-1])
    recall, fps = np.r_[recall[last::-1], 1], np.r_[fps[last::-1], 0]
    return fps[np.argmin(np.abs(recall - recall_level))] / np.sum(np.logical_not(y_true))

def measures(pos, neg):
    # As the original get_measures: stack, label ID 1, three metrics.
    examples = np.squeeze(np.vstack((pos.reshape(-1, 1), neg.reshape(-1, 1))))
    labels = np.zeros(len(examples), dtype=np.int32)
    labels[:len(pos)] += 1
    return original_fpr(labels, examples), sk.roc_auc_score(labels, examples), sk.average_precision_score(labels, examples)

pos, neg, reps = np.load(sys.argv[1]), np.load(sys.argv[2]), int(sys.argv[3])
best = float("inf")
for _ in range(reps):
    t = time.perf_counter()
    m = measures(pos, neg)
    best = min(best, time.perf_counter() - t)
print(best, *[repr(float(x)) for x in m])
"#;

/// splitmix64 + Box-Muller: reproducible scores without extra crates.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }
    fn normal(&mut self) -> f64 {
        let u = ((self.next() >> 11) as f64 / (1u64 << 53) as f64).max(1e-300);
        let v = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

fn best_of<T>(reps: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::INFINITY;
    let mut out = None;
    for _ in 0..reps {
        let t = Instant::now();
        let r = f();
        best = best.min(t.elapsed().as_secs_f64());
        out = Some(r);
    }
    (best, out.expect("reps > 0"))
}

fn run(label: &str, id: Vec<f64>, ood: Vec<f64>, dir: &std::path::Path) {
    let (id_path, ood_path) = (dir.join("id.npy"), dir.join("ood.npy"));
    write_npy(&id_path, &Array1::from(id.clone())).expect("write id scores");
    write_npy(&ood_path, &Array1::from(ood.clone())).expect("write ood scores");

    let reps = 3;
    let (rust_s, m): (f64, OodMetrics) = best_of(reps, || ood_metrics(&id, &ood).expect("metrics"));
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
    let (rust_1t, _) = best_of(reps, || one.install(|| ood_metrics(&id, &ood).expect("metrics")));

    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let out = Command::new(&python)
        .args(["-c", PYTHON_SIDE])
        .arg(&id_path)
        .arg(&ood_path)
        .arg(reps.to_string())
        .output()
        .expect("run the venv's Python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let fields: Vec<f64> =
        String::from_utf8_lossy(&out.stdout).split_whitespace().map(|x| x.parse().expect("a number")).collect();
    let (py_s, py_fpr, py_auroc, py_aupr) = (fields[0], fields[1], fields[2], fields[3]);
    assert_eq!(m.fpr95, py_fpr, "FPR95 differs");
    assert!((m.auroc - py_auroc).abs() < 1e-12 && (m.aupr - py_aupr).abs() < 1e-12, "AUROC/AUPR differ");

    println!("{label}: {} ID + {} OoD scores (f64), best of {reps}", id.len(), ood.len());
    println!("  python (sklearn + original FPR95): {py_s:8.3} s");
    println!(
        "  toe-pipe, {} rayon threads:        {rust_s:8.3} s   ratio {:6.1}x",
        rayon::current_num_threads(),
        py_s / rust_s
    );
    println!("  toe-pipe, 1 thread:                {rust_1t:8.3} s   ratio {:6.1}x", py_s / rust_1t);
    println!("  FPR95 {:.6}  AUROC {:.6}  AUPR {:.6} (equal on both sides)", m.fpr95, m.auroc, m.aupr);
}

fn main() {
    // `cargo bench` passes --bench; a filter argument is not supported.
    let n = 5_000_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rng = Rng(1);
    let id: Vec<f64> = (0..n).map(|_| 1.0 + rng.normal()).collect();
    let ood: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
    run("continuous scores", id.clone(), ood.clone(), dir.path());
    let grid = |xs: Vec<f64>| xs.into_iter().map(|x| (x * 100.0).round() / 100.0).collect::<Vec<_>>();
    run("heavy ties (0.01 grid)", grid(id), grid(ood), dir.path());
}
