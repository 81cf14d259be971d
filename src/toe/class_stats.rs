//! Class-wise means and the shared precision matrix of ID image features,
//! as the original TOE code's `get_mean_prec` is meant to compute them.

use anyhow::{bail, Result};
use tch::{Kind, Tensor};

/// Means `[C, D]` (f32) and precision `[D, D]` (f32).
pub struct ClassStats {
    pub means: Tensor,
    pub precision: Tensor,
}

/// Indices of at most `max_count` items per class, in dataset order (the
/// original's subset: the first `max_count` images of each class).
pub fn first_per_class(labels: &[i64], num_classes: usize, max_count: usize) -> Vec<i64> {
    let mut taken = vec![0usize; num_classes];
    let mut out = Vec::new();
    for (i, &label) in labels.iter().enumerate() {
        let c = label as usize;
        if c < num_classes && taken[c] < max_count {
            taken[c] += 1;
            out.push(i as i64);
        }
    }
    out
}

/// Statistics of `features` `[N, D]` with integer `labels` in `0..num_classes`.
/// With `normalize`, each feature is L2-normalised first and each class
/// mean re-normalised. The covariance is shared by all classes, taken over
/// all selected features in float64; its inverse is returned as f32.
pub fn class_stats(
    features: &Tensor,
    labels: &[i64],
    num_classes: usize,
    max_count: usize,
    normalize: bool,
) -> Result<ClassStats> {
    let (n, d) = features.size2()?;
    if n as usize != labels.len() {
        bail!("{n} features but {} labels", labels.len());
    }
    if let Some(bad) = labels.iter().find(|&&l| l < 0 || l as usize >= num_classes) {
        bail!("label {bad} is outside 0..{num_classes}");
    }
    let keep = first_per_class(labels, num_classes, max_count);
    let index = Tensor::from_slice(&keep);
    let mut x = features.to_kind(Kind::Double).index_select(0, &index);
    if normalize {
        x = l2_normalize(&x);
    }
    let kept_labels = Tensor::from_slice(labels).index_select(0, &index);
    let mut means = Vec::with_capacity(num_classes);
    for c in 0..num_classes as i64 {
        let rows = kept_labels.eq(c).nonzero().squeeze_dim(1);
        if rows.size()[0] == 0 {
            bail!("class {c} has no features; every class needs at least one image");
        }
        let mut mean = x.index_select(0, &rows).mean_dim(0, false, Kind::Double);
        if normalize {
            mean = &mean / mean.norm();
        }
        means.push(mean);
    }
    if (keep.len() as i64) <= d {
        bail!("{} features for a {d}x{d} covariance: it is singular; use more images per class (max_count) or more classes", keep.len());
    }
    let cov = x.transpose(0, 1).cov(1, None::<Tensor>, None::<Tensor>);
    let precision = Tensor::linalg_inv(&cov);
    Ok(ClassStats { means: Tensor::stack(&means, 0).to_kind(Kind::Float), precision: precision.to_kind(Kind::Float) })
}

/// Row-wise L2 normalisation.
pub fn l2_normalize(x: &Tensor) -> Tensor {
    x / x.norm_scalaropt_dim(2, [-1], true)
}
