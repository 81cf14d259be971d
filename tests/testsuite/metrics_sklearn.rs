//! The metrics against scikit-learn (AUROC, AUPR) and a Python port of the
//! original TOE/MCM `fpr_and_fdr_at_recall` (FPR95), on random inputs with
//! and without heavy ties, and on edge cases.

use crate::formats_util;

use ndarray::{Array1, Array2};
use toe_pipe::formats::{read_npy, write_npy};
use toe_pipe::metrics::{fpr_at_recall, ood_metrics};

use formats_util::{run_python, scratch};

/// The original evaluation, restated: ID scores are the positives (label
/// 1); FPR from the recall curve over distinct scores, sklearn for the rest.
const REFERENCE: &str = r#"
import sys, numpy as np
from sklearn.metrics import roc_auc_score, average_precision_score

def original_fpr(y_true, y_score, recall_level=0.95):
    # Same steps as the original fpr_and_fdr_at_recall (pos_label 1).
    y_true = y_true == 1
    order = np.argsort(y_score, kind="mergesort")[::-1]
    y_score, y_true = y_score[order], y_true[order]
    distinct = np.where(np.diff(y_score))[0]
    idx = np.r_[distinct, y_true.size - 1]
    tps = np.cumsum(y_true, dtype=np.float64)[idx]
    fps = 1 + idx - tps
    recall = tps / tps[-1]
    last = tps.searchsorted(tps[-1])
    recall = np.r_[recall[last::-1], 1]
    fps = np.r_[fps[last::-1], 0]
    cutoff = np.argmin(np.abs(recall - recall_level))
    return fps[cutoff] / np.sum(np.logical_not(y_true))

d = sys.argv[1]
out = []
for name in ("f64", "f32"):
    scores = np.load(f"{d}/scores_{name}.npy")
    layout = np.load(f"{d}/layout_{name}.npy")
    at = 0
    for n_id, n_ood in layout:
        pos, neg = scores[at:at + n_id], scores[at + n_id:at + n_id + n_ood]
        at += n_id + n_ood
        examples = np.concatenate([pos, neg])
        labels = np.zeros(len(examples), dtype=np.int32)
        labels[:len(pos)] += 1
        out.append([original_fpr(labels, examples), original_fpr(labels, examples, 0.8),
                    roc_auc_score(labels, examples), average_precision_score(labels, examples)])
# npy, not JSON: serde_json's float parsing may be off by one ulp.
np.save(f"{d}/expected.npy", np.array(out, dtype=np.float64))
"#;

/// splitmix64: a small deterministic generator, enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform().max(1e-300), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Case {
    name: String,
    id: Vec<f64>,
    ood: Vec<f64>,
}

fn cases() -> Vec<Case> {
    let mut rng = Rng(42);
    let mut cases = Vec::new();
    let mut add = |name: &str, id: Vec<f64>, ood: Vec<f64>| cases.push(Case { name: name.into(), id, ood });
    let normal = |rng: &mut Rng, n: usize, mean: f64| (0..n).map(|_| mean + rng.normal()).collect::<Vec<_>>();

    add("continuous", normal(&mut rng, 5000, 1.0), normal(&mut rng, 7000, 0.0));
    add("unbalanced few ID", normal(&mut rng, 20, 0.5), normal(&mut rng, 5000, 0.0));
    add("unbalanced few OoD", normal(&mut rng, 5000, 0.5), normal(&mut rng, 3, 0.0));
    let round = |xs: Vec<f64>, step: f64| xs.into_iter().map(|x| (x / step).round() * step).collect::<Vec<_>>();
    add("ties on a 0.1 grid", round(normal(&mut rng, 4000, 0.7), 0.1), round(normal(&mut rng, 6000, 0.0), 0.1));
    add("ties on a 0.5 grid", round(normal(&mut rng, 3000, 0.3), 0.5), round(normal(&mut rng, 3000, 0.0), 0.5));
    let ints = |rng: &mut Rng, n: usize, k: u64| (0..n).map(|_| rng.below(k) as f64).collect::<Vec<_>>();
    add("binary scores", ints(&mut rng, 1000, 2), ints(&mut rng, 1500, 2));
    add("all equal", vec![0.25; 100], vec![0.25; 300]);
    add("separated", normal(&mut rng, 50, 10.0), normal(&mut rng, 50, 0.0));
    add("reversed", normal(&mut rng, 50, -10.0), normal(&mut rng, 50, 0.0));
    add("one each, equal", vec![1.0], vec![1.0]);
    add("one each, ID above", vec![2.0], vec![1.0]);
    add("one each, ID below", vec![0.0], vec![1.0]);
    add("signed zeros", vec![0.0, -0.0, 1.0], vec![-0.0, 0.0, -1.0]);
    add("exactly 95% reachable", (0..20).map(|i| i as f64).collect(), (0..20).map(|i| i as f64 + 0.5).collect());
    // Many tiny cases with few distinct values: every tie-breaking path.
    for i in 0..400 {
        let (n_id, n_ood, k) = (1 + rng.below(12) as usize, 1 + rng.below(12) as usize, 1 + rng.below(5));
        add(&format!("tiny {i}"), ints(&mut rng, n_id, k), ints(&mut rng, n_ood, k));
    }
    cases
}

fn write_cases(d: &std::path::Path, name: &str, cases: &[Case], to_f32: bool) {
    let all: Vec<f64> = cases.iter().flat_map(|c| c.id.iter().chain(&c.ood).copied()).collect();
    let layout: Vec<i64> = cases.iter().flat_map(|c| [c.id.len() as i64, c.ood.len() as i64]).collect();
    let layout = Array2::from_shape_vec((cases.len(), 2), layout).unwrap();
    write_npy(&d.join(format!("layout_{name}.npy")), &layout).unwrap();
    let path = d.join(format!("scores_{name}.npy"));
    if to_f32 {
        write_npy(&path, &Array1::from_iter(all.iter().map(|&x| x as f32))).unwrap();
    } else {
        write_npy(&path, &Array1::from(all)).unwrap();
    }
}

#[test]
fn matches_sklearn_and_the_original_fpr() {
    let dir = scratch();
    let d = dir.path();
    let f64_cases = cases();
    // f32 inputs: the metrics see the same values numpy does.
    let mut rng = Rng(7);
    let f32_cases: Vec<Case> = (0..3)
        .map(|i| Case {
            name: format!("f32 {i}"),
            id: (0..2000).map(|_| (((rng.normal() + 0.5) * 100.0).round() / 100.0) as f32 as f64).collect(),
            ood: (0..2500).map(|_| ((rng.normal() * 100.0).round() / 100.0) as f32 as f64).collect(),
        })
        .collect();
    write_cases(d, "f64", &f64_cases, false);
    write_cases(d, "f32", &f32_cases, true);
    run_python(REFERENCE, &[d]);
    let expected = read_npy::<f64>(&d.join("expected.npy")).unwrap();
    let expected: Vec<Vec<f64>> = expected.outer_iter().map(|row| row.iter().copied().collect()).collect();
    assert_eq!(expected.len(), f64_cases.len() + f32_cases.len());

    let mut checked = 0;
    for (case, exp) in f64_cases.iter().chain(&f32_cases).zip(&expected) {
        let got = if case.name.starts_with("f32") {
            let id: Vec<f32> = case.id.iter().map(|&x| x as f32).collect();
            let ood: Vec<f32> = case.ood.iter().map(|&x| x as f32).collect();
            let m = ood_metrics(&id, &ood).unwrap();
            [m.fpr95, fpr_at_recall(&id, &ood, 0.8).unwrap(), m.auroc, m.aupr]
        } else {
            let m = ood_metrics(&case.id, &case.ood).unwrap();
            [m.fpr95, fpr_at_recall(&case.id, &case.ood, 0.8).unwrap(), m.auroc, m.aupr]
        };
        // FPR is a ratio of counts: it must be identical.
        assert_eq!(got[0], exp[0], "{}: FPR95", case.name);
        assert_eq!(got[1], exp[1], "{}: FPR at 80%", case.name);
        assert!((got[2] - exp[2]).abs() <= 1e-12, "{}: AUROC {} vs sklearn {}", case.name, got[2], exp[2]);
        assert!((got[3] - exp[3]).abs() <= 1e-12, "{}: AUPR {} vs sklearn {}", case.name, got[3], exp[3]);
        checked += 1;
    }
    assert_eq!(checked, expected.len());
}
