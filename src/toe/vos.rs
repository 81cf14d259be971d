//! Virtual outlier synthesis (VOS; Du, Wang, Cai and Li, ICLR 2022) in a
//! feature space: class-conditional Gaussians with one shared covariance,
//! fitted to labelled features, sampled, and the least likely samples kept
//! as outliers. The image-vs-text study applies it to image features and to
//! text features of each class's prompts.
//!
//! VOS fits the Gaussians to a queue of recent features during training and
//! at every step keeps the least likely of `sample_from` = 10,000 fresh
//! samples per class; here the fit is to all the features and the samples
//! are drawn once, so the outliers are an artifact like TOE's text outliers
//! and the same head training consumes them.

use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone)]
pub struct VosConfig {
    /// Samples drawn per class (VOS's `sample_from`, 10,000).
    pub samples_per_class: usize,
    /// The least likely samples kept per class.
    pub keep_per_class: usize,
    /// Added to the covariance's diagonal (VOS: 0.0001 * I).
    pub ridge: f64,
    /// Seeds the draws: `manual_seed(seed)`, then per class in label order
    /// `randn([samples_per_class, D])`.
    pub seed: i64,
}

/// The kept samples `[C * keep, D]` (f32, class-major, least likely first
/// within a class) and their classes.
pub struct Synthesised {
    pub features: Tensor,
    pub labels: Vec<i64>,
}

/// Fit and sample, in float64: mean μ_c per class, the shared covariance
/// Σ = Σ_i (x_i − μ_{y_i})(x_i − μ_{y_i})ᵀ / N + ridge·I (VOS's centred
/// `XᵀX / len(X)`), L = cholesky(Σ); per class the samples μ_c + L ε with
/// ε ~ N(0, I). A sample's log-likelihood is −‖ε‖²/2 plus a constant
/// shared by all, so the least likely are those with the largest ‖ε‖ (what
/// VOS's `topk(-log_prob, select)` picks).
pub fn synthesize(features: &Tensor, labels: &[i64], num_classes: usize, cfg: &VosConfig) -> Result<Synthesised> {
    let (n, d) = features.size2()?;
    if n as usize != labels.len() {
        bail!("{n} features but {} labels", labels.len());
    }
    if let Some(bad) = labels.iter().find(|&&l| l < 0 || l as usize >= num_classes) {
        bail!("label {bad} is outside 0..{num_classes}");
    }
    if cfg.keep_per_class > cfg.samples_per_class {
        bail!("keep_per_class {} is more than samples_per_class {}", cfg.keep_per_class, cfg.samples_per_class);
    }
    let x = features.to_kind(Kind::Double).to_device(Device::Cpu);
    let y = Tensor::from_slice(labels);
    let mut means = Vec::with_capacity(num_classes);
    for c in 0..num_classes as i64 {
        let rows = y.eq(c).nonzero().squeeze_dim(1);
        if rows.size()[0] == 0 {
            bail!("class {c} has no features; every class needs at least one");
        }
        means.push(x.index_select(0, &rows).mean_dim(0, false, Kind::Double));
    }
    let means = Tensor::stack(&means, 0);
    let centred = &x - means.index_select(0, &y);
    let cov = centred.tr().matmul(&centred) / n as f64 + Tensor::eye(d, (Kind::Double, Device::Cpu)) * cfg.ridge;
    let l = cov
        .f_linalg_cholesky(false)
        .map_err(|e| anyhow::anyhow!("the covariance is not positive definite ({e}); raise the ridge"))?;
    tch::manual_seed(cfg.seed);
    let mut kept = Vec::with_capacity(num_classes);
    let mut kept_labels = Vec::with_capacity(num_classes * cfg.keep_per_class);
    for c in 0..num_classes as i64 {
        let eps = Tensor::randn([cfg.samples_per_class as i64, d], (Kind::Double, Device::Cpu));
        let samples = means.get(c).unsqueeze(0) + eps.matmul(&l.tr());
        let (_, order) = (&eps * &eps).sum_dim_intlist([1i64].as_slice(), false, Kind::Double).topk(
            cfg.keep_per_class as i64,
            0,
            true,
            true,
        );
        kept.push(samples.index_select(0, &order));
        kept_labels.extend(std::iter::repeat_n(c, cfg.keep_per_class));
    }
    Ok(Synthesised { features: Tensor::cat(&kept, 0).to_kind(Kind::Float), labels: kept_labels })
}
