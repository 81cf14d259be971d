//! Energy scores of a trained linear head, TOE's OoD score.

use anyhow::{bail, Result};
use tch::{Kind, Tensor};

/// Logits of `Linear(D, C)` with `weight` `[C, D]` and `bias` `[C]`.
pub fn head_logits(features: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let (_, d) = features.size2()?;
    let (_, dw) = weight.size2()?;
    if d != dw {
        bail!("features are {d}-d but the head expects {dw}-d inputs");
    }
    Ok(features.to_kind(Kind::Float).linear(&weight.to_kind(Kind::Float), Some(&bias.to_kind(Kind::Float))))
}

/// ID-positive score -E(x) = T * logsumexp(logits / T) (higher = more ID),
/// the negated energy the metrics use with ID as the positive class.
pub fn negative_energy(logits: &Tensor, temperature: f64) -> Result<Vec<f32>> {
    let s = (logits / temperature).logsumexp([1i64].as_slice(), false) * temperature;
    Ok(Vec::<f32>::try_from(&s.to_kind(Kind::Float))?)
}
