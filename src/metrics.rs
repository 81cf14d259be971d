//! OoD detection metrics: FPR at 95% TPR, AUROC, AUPR, accuracy.
//!
//! Conventions follow the original TOE/MCM evaluation: in-distribution (ID)
//! samples are the positive class and a *higher* score means *more ID* (the
//! original passes the negated energy). Given that, the numbers are:
//!
//! * FPR95 exactly as the original's `fpr_and_fdr_at_recall`: the ROC points
//!   at the distinct score values (descending), truncated at the first point
//!   that reaches full recall; the point whose recall is closest to 0.95 is
//!   chosen, and among equally close points the one with the *lowest*
//!   threshold (the original takes `argmin` over the reversed curve), i.e.
//!   the most false positives. The result is its false positives / #OoD.
//! * AUROC as scikit-learn's `roc_auc_score` (trapezoids over the same
//!   points: ties count one half), computed here exactly in integers.
//! * AUPR as scikit-learn's `average_precision_score`:
//!   sum over distinct thresholds of (recall step) x (precision there).
//!
//! All three come from one pass over the two score sets sorted separately
//! (O(n log n), in parallel), grouping equal scores, so ties are exact.

use anyhow::{bail, Result};
use rayon::prelude::*;
use serde::Serialize;

/// OoD metrics of one ID set against one OoD set, as fractions (not percent).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct OodMetrics {
    /// False positive rate on OoD at the threshold where 95% of ID is kept.
    pub fpr95: f64,
    pub auroc: f64,
    /// Average precision with ID as the positive class.
    pub aupr: f64,
}

/// Score types accepted by the metrics (f32 and f64).
pub trait Score: Copy + Send + Sync {
    fn to_f64(self) -> f64;
}
impl Score for f32 {
    fn to_f64(self) -> f64 {
        self as f64
    }
}
impl Score for f64 {
    fn to_f64(self) -> f64 {
        self
    }
}

/// FPR95, AUROC and AUPR of `id_scores` (positives) against `ood_scores`;
/// higher scores mean more in-distribution.
pub fn ood_metrics<S: Score>(id_scores: &[S], ood_scores: &[S]) -> Result<OodMetrics> {
    let c = Curve::new(id_scores, ood_scores, 0.95)?;
    Ok(OodMetrics { fpr95: c.fpr_at_recall, auroc: c.auroc, aupr: c.aupr })
}

/// The original's `fpr_and_fdr_at_recall` at any recall level in (0, 1].
pub fn fpr_at_recall<S: Score>(id_scores: &[S], ood_scores: &[S], recall_level: f64) -> Result<f64> {
    Ok(Curve::new(id_scores, ood_scores, recall_level)?.fpr_at_recall)
}

/// Top-1 accuracy: the fraction of `predictions` equal to `labels`.
pub fn accuracy(predictions: &[i64], labels: &[i64]) -> Result<f64> {
    if predictions.len() != labels.len() {
        bail!("accuracy: {} predictions but {} labels", predictions.len(), labels.len());
    }
    if labels.is_empty() {
        bail!("accuracy of an empty set is undefined");
    }
    let correct = predictions.par_iter().zip(labels).filter(|(p, l)| p == l).count();
    Ok(correct as f64 / labels.len() as f64)
}

/// Maps a finite float to an unsigned key with the same order; equal values
/// (including -0.0 and +0.0) get equal keys.
fn order_key(x: f64) -> u64 {
    let bits = (x + 0.0).to_bits(); // -0.0 + 0.0 == +0.0
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

/// Sorted order keys of a score set; non-finite scores are an error (as in
/// scikit-learn, whose input checks refuse NaN and infinity).
fn sorted_keys<S: Score>(scores: &[S], what: &str) -> Result<Vec<u64>> {
    if let Some(i) = scores.par_iter().position_any(|s| !s.to_f64().is_finite()) {
        bail!("{what} score {i} is {}, metrics need finite scores", scores[i].to_f64());
    }
    let mut keys: Vec<u64> = scores.par_iter().map(|s| order_key(s.to_f64())).collect();
    keys.par_sort_unstable();
    Ok(keys)
}

struct Curve {
    fpr_at_recall: f64,
    auroc: f64,
    aupr: f64,
}

impl Curve {
    fn new<S: Score>(id: &[S], ood: &[S], recall_level: f64) -> Result<Curve> {
        if id.is_empty() || ood.is_empty() {
            bail!("OoD metrics need ID and OoD scores (got {} ID, {} OoD)", id.len(), ood.len());
        }
        if !(recall_level > 0.0 && recall_level <= 1.0) {
            bail!("recall level {recall_level} is not in (0, 1]");
        }
        let (id, ood) = rayon::join(|| sorted_keys(id, "ID"), || sorted_keys(ood, "OoD"));
        let (id, ood) = (id?, ood?);
        let (p, n) = (id.len() as u64, ood.len() as u64);

        // Walk the distinct scores from the highest down. After each group,
        // `tp` ID and `fp` OoD scores are >= the group's score.
        let (mut i, mut j) = (id.len(), ood.len());
        let (mut tp, mut fp) = (0u64, 0u64);
        let mut auc2: u128 = 0; // 2 x (pairs ranked right + half the ties)
        let mut ap = Neumaier::default();
        let (mut best_dist, mut best_fp) = (f64::INFINITY, 0u64);
        let mut full_recall_seen = false;
        while i > 0 || j > 0 {
            let top = match (i > 0, j > 0) {
                (true, true) => id[i - 1].max(ood[j - 1]),
                (true, false) => id[i - 1],
                _ => ood[j - 1],
            };
            let i0 = i;
            while i > 0 && id[i - 1] == top {
                i -= 1;
            }
            let j0 = j;
            while j > 0 && ood[j - 1] == top {
                j -= 1;
            }
            let (dt, df) = ((i0 - i) as u64, (j0 - j) as u64);
            auc2 += df as u128 * (2 * tp + dt) as u128;
            tp += dt;
            fp += df;
            if dt > 0 {
                ap.add(dt as f64 / p as f64 * (tp as f64 / (tp + fp) as f64));
            }
            // The original considers the points up to the first with full
            // recall; `<=` keeps the last of equally close points.
            if !full_recall_seen {
                let recall = tp as f64 / p as f64;
                let dist = (recall - recall_level).abs();
                if dist <= best_dist {
                    best_dist = dist;
                    best_fp = fp;
                }
                full_recall_seen = tp == p;
            }
        }
        Ok(Curve {
            fpr_at_recall: best_fp as f64 / n as f64,
            auroc: auc2 as f64 / (2.0 * p as f64 * n as f64),
            aupr: ap.sum().max(0.0),
        })
    }
}

/// Compensated summation, so that millions of small terms add up exactly
/// enough to match scikit-learn's pairwise sum to ~1e-15.
#[derive(Default)]
struct Neumaier {
    sum: f64,
    compensation: f64,
}

impl Neumaier {
    fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.compensation += (self.sum - t) + x;
        } else {
            self.compensation += (x - t) + self.sum;
        }
        self.sum = t;
    }
    fn sum(&self) -> f64 {
        self.sum + self.compensation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_key_orders_and_merges_zeros() {
        let xs = [-1e300, -2.5, -1e-300, -0.0, 0.0, 1e-300, 3.0, 1e300];
        for w in xs.windows(2) {
            assert!(order_key(w[0]) <= order_key(w[1]), "{w:?}");
        }
        assert_eq!(order_key(-0.0), order_key(0.0));
    }

    #[test]
    fn perfect_and_reversed_separation() {
        let m = ood_metrics(&[3.0, 4.0], &[1.0, 2.0]).unwrap();
        assert_eq!((m.fpr95, m.auroc, m.aupr), (0.0, 1.0, 1.0));
        let m = ood_metrics(&[1.0, 2.0], &[3.0, 4.0]).unwrap();
        assert_eq!((m.fpr95, m.auroc), (1.0, 0.0));
        // Precision 1/3 at recall 1/2, then 2/4 at recall 1.
        assert!((m.aupr - 5.0 / 12.0).abs() < 1e-15, "{}", m.aupr);
    }

    #[test]
    fn all_equal_scores() {
        // One point (recall 1, all OoD accepted); AUROC 1/2; AP = #ID / #all.
        let m = ood_metrics(&[0.5f32; 3], &[0.5f32; 7]).unwrap();
        assert_eq!((m.fpr95, m.auroc), (1.0, 0.5));
        assert!((m.aupr - 0.3).abs() < 1e-15);
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(ood_metrics::<f64>(&[], &[1.0]).is_err());
        assert!(ood_metrics(&[f64::NAN], &[1.0]).is_err());
        assert!(ood_metrics(&[1.0], &[f64::INFINITY]).is_err());
        assert!(fpr_at_recall(&[1.0], &[0.0], 0.0).is_err());
        assert!(accuracy(&[1, 2], &[1]).is_err());
        assert_eq!(accuracy(&[1, 2, 3, 4], &[1, 0, 3, 0]).unwrap(), 0.5);
    }
}
