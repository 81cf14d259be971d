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

/// The statistics as the original's `get_mean_prec` computes them when
/// `caption_select.py` calls it (`set_train_loader(args, transform)`: every
/// train image, no `max_count` subset, shuffled, batches of `batch_size`),
/// quirks included:
/// * class c's mean is taken over the rows whose *indices* are the batch
///   numbers of c's images (`classwise_idx[label].append(idx)` with `idx` the
///   batch number), once per image, in the shuffled order: so every mean is
///   a weighted mean of the first N / batch_size shuffled features, and all
///   are almost the same vector;
/// * only the first `n_cls` = 100 classes get a mean (the argument's
///   default); fewer when there are fewer classes (the original then
///   averages empty sets into NaN rows);
/// * the covariance is over every feature (as ours; order does not matter).
///
/// The shuffle is `randperm(N)` after `manual_seed(seed)`; the original's
/// loader draws an unseeded order, so any seed is as faithful as another.
pub fn class_stats_as_released(
    features: &Tensor,
    labels: &[i64],
    num_classes: usize,
    normalize: bool,
    batch_size: usize,
    seed: i64,
) -> Result<ClassStats> {
    const ORIGINAL_N_CLS: usize = 100;
    let (n, d) = features.size2()?;
    if n as usize != labels.len() {
        bail!("{n} features but {} labels", labels.len());
    }
    if let Some(bad) = labels.iter().find(|&&l| l < 0 || l as usize >= num_classes) {
        bail!("label {bad} is outside 0..{num_classes}");
    }
    if n <= d {
        bail!("{n} features for a {d}x{d} covariance: it is singular; use more images");
    }
    tch::manual_seed(seed);
    let order = Vec::<i64>::try_from(&Tensor::randperm(n, (Kind::Int64, tch::Device::Cpu)))?;
    let mut x = features.to_kind(Kind::Double).index_select(0, &Tensor::from_slice(&order));
    if normalize {
        x = l2_normalize(&x);
    }
    let mean_classes = num_classes.min(ORIGINAL_N_CLS);
    let mut batch_numbers = vec![Vec::<i64>::new(); mean_classes];
    for (position, &image) in order.iter().enumerate() {
        let label = labels[image as usize] as usize;
        if label < mean_classes {
            batch_numbers[label].push((position / batch_size) as i64);
        }
    }
    let mut means = Vec::with_capacity(mean_classes);
    for (c, rows) in batch_numbers.iter().enumerate() {
        if rows.is_empty() {
            bail!("class {c} has no features; every class needs at least one image");
        }
        let mut mean = x.index_select(0, &Tensor::from_slice(rows)).mean_dim(0, false, Kind::Double);
        if normalize {
            mean = &mean / mean.norm();
        }
        means.push(mean);
    }
    let cov = x.transpose(0, 1).cov(1, None::<Tensor>, None::<Tensor>);
    let precision = Tensor::linalg_inv(&cov);
    Ok(ClassStats { means: Tensor::stack(&means, 0).to_kind(Kind::Float), precision: precision.to_kind(Kind::Float) })
}

/// Row-wise L2 normalisation.
pub fn l2_normalize(x: &Tensor) -> Tensor {
    x / x.norm_scalaropt_dim(2, [-1], true)
}
