//! Mahalanobis scores against class statistics, and the caption filter that
//! keeps the least ID-like fraction (the original's `caption_select.py`).

use anyhow::{bail, Result};
use tch::{Kind, Tensor};

use super::class_stats::l2_normalize;

/// score(x) = max over classes c of -0.5 (x - mu_c)^T P (x - mu_c), for each
/// row of `features` (L2-normalised first). Low = far from every ID class.
/// Computed in chunks so memory stays bounded for millions of rows.
pub fn mahalanobis_scores(features: &Tensor, means: &Tensor, precision: &Tensor) -> Result<Vec<f32>> {
    let (_, d) = features.size2()?;
    let (_, dm) = means.size2()?;
    if d != dm || precision.size() != [d, d] {
        bail!("feature width {d} does not match class means {:?} and precision {:?}", means.size(), precision.size());
    }
    let x = l2_normalize(&features.to_kind(Kind::Float));
    let means = means.to_kind(Kind::Float);
    let precision = precision.to_kind(Kind::Float);
    // (x - m)^T P (x - m) = x^T P x - 2 x^T P m + m^T P m, with P symmetric.
    let mp = means.matmul(&precision);
    let m_term = (&mp * &means).sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
    let mut out = Vec::with_capacity(x.size()[0] as usize);
    for chunk in x.split(4096, 0) {
        let xp = chunk.matmul(&precision);
        let x_term = (&xp * &chunk).sum_dim_intlist([1i64].as_slice(), true, Kind::Float);
        let cross = chunk.matmul(&mp.transpose(0, 1));
        let dist = x_term - cross * 2.0 + m_term.unsqueeze(0);
        let score = (dist * -0.5).amax([1i64].as_slice(), false);
        out.extend(Vec::<f32>::try_from(&score)?);
    }
    Ok(out)
}

/// Indices of the lowest-scoring `ratio` fraction (`int(n * ratio)` items,
/// ascending by score, ties by index), as the original's caption index file.
pub fn lowest_fraction(scores: &[f32], ratio: f64) -> Result<Vec<i64>> {
    if !(0.0..=1.0).contains(&ratio) {
        bail!("ratio {ratio} must be within 0..=1");
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    let keep = (scores.len() as f64 * ratio) as usize;
    Ok(order[..keep].iter().map(|&i| i as i64).collect())
}

/// Remove the modality gap before scoring text against image statistics:
/// shift the (normalised) text features so their mean lands on the mean of
/// the image class means, then re-normalise. Off by default (the original
/// does not do it); without it, text sits far from every image class and
/// the filter keeps plain ID captions.
pub fn centre_on_image_modality(text_features: &Tensor, means: &Tensor) -> Tensor {
    let text = l2_normalize(&text_features.to_kind(Kind::Float));
    let text_centre = text.mean_dim(0, true, Kind::Float);
    let image_centre = means.to_kind(Kind::Float).mean_dim(0, true, Kind::Float);
    l2_normalize(&(text - text_centre + image_centre))
}
