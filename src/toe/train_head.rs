//! Outlier-exposure training of the linear head on cached CLIP features
//! (toe-method.md, "Training"). The original re-encodes every image every
//! epoch; features are fixed (CLIP is frozen), so we encode once upstream
//! and train here on the cached arrays, which is what makes a 100-epoch
//! run cheap.

use anyhow::{bail, Result};
use serde::Serialize;
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};

use super::class_stats::l2_normalize;

#[derive(Debug, Clone)]
pub struct HeadConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub outlier_batch_size: usize,
    pub lr: f64,
    pub seed: i64,
    /// Weight of the OE loss (0.5 in the original).
    pub oe_weight: f64,
    /// Variance of the Gaussian noise added to normalised text features
    /// (0.016 in the original, std about 0.1265).
    pub noise_var: f64,
    pub device: Device,
}

impl Default for HeadConfig {
    fn default() -> Self {
        HeadConfig {
            epochs: 100,
            batch_size: 32,
            outlier_batch_size: 32,
            lr: 1e-3,
            seed: 42,
            oe_weight: 0.5,
            noise_var: 0.016,
            device: Device::Cpu,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub loss: f64,
    pub ce: f64,
    pub oe: f64,
    pub train_accuracy: f64,
}

pub struct TrainedHead {
    /// `[C, D]`, as `nn.Linear(D, C).weight`.
    pub weight: Tensor,
    /// `[C]`.
    pub bias: Tensor,
    pub log: Vec<EpochLog>,
}

/// Normalise, add N(0, var) noise, normalise again (the original's
/// `noise_injection`): moves text features off the text cone so the head
/// cannot separate outliers from ID images by modality alone.
pub fn inject_noise(x: &Tensor, var: f64) -> Tensor {
    if var == 0.0 {
        return l2_normalize(x);
    }
    let noisy = l2_normalize(x) + x.randn_like() * var.sqrt();
    l2_normalize(&noisy)
}

/// Cross-entropy to the uniform distribution, averaged over rows:
/// mean( logsumexp(z) - mean_k z_k ).
pub fn oe_loss(logits: &Tensor) -> Tensor {
    (logits.logsumexp([1i64].as_slice(), false) - logits.mean_dim([1i64].as_slice(), false, Kind::Float)).mean(Kind::Float)
}

/// Train `Linear(D, C)` on ID `features` `[N, D]` with `labels` `[N]` and,
/// unless `outliers` is None (the no-exposure baseline), text outlier
/// features `[M, D]` with the OE loss.
///
/// An epoch is one pass over the ID set in shuffled batches; each ID batch
/// is paired with the next outlier batch, and the outlier set is reshuffled
/// and restarted whenever it runs out. (The original zips the two loaders,
/// so its epoch ends with the shorter one; with few outliers that silently
/// shortens every epoch, which we do not reproduce.)
pub fn train_head(features: &Tensor, labels: &Tensor, outliers: Option<&Tensor>, num_classes: i64, cfg: &HeadConfig) -> Result<TrainedHead> {
    let (n, d) = features.size2()?;
    if labels.size() != [n] {
        bail!("{n} features but labels of shape {:?}", labels.size());
    }
    if n == 0 || cfg.batch_size == 0 || cfg.outlier_batch_size == 0 {
        bail!("need ID features and positive batch sizes");
    }
    if let Some(o) = outliers {
        let (m, dt) = o.size2()?;
        if dt != d {
            bail!("outlier features are {dt}-d but image features are {d}-d");
        }
        if m == 0 {
            bail!("the outlier set is empty");
        }
    }
    tch::manual_seed(cfg.seed);
    let device = cfg.device;
    if device == Device::Cpu {
        // Each step multiplies 32 x D by D x C: far less work than waking
        // OpenMP's thread team costs, and on a busy machine the team's
        // spinning makes a step 10-20x slower. One thread is fastest here.
        tch::set_num_threads(1);
    }
    let x = features.to_kind(Kind::Float).to_device(device);
    let y = labels.to_kind(Kind::Int64).to_device(device);
    let out = outliers.map(|o| o.to_kind(Kind::Float).to_device(device));

    let vs = nn::VarStore::new(device);
    let head = nn::linear(vs.root(), d, num_classes, Default::default());
    let mut opt = nn::Adam::default().build(&vs, cfg.lr)?;

    let mut out_order = Tensor::empty([0], (Kind::Int64, device));
    let mut out_pos = 0i64;
    let mut log = Vec::with_capacity(cfg.epochs);
    for epoch in 0..cfg.epochs {
        let order = Tensor::randperm(n, (Kind::Int64, device));
        let (mut sum_loss, mut sum_ce, mut sum_oe, mut steps) = (0.0, 0.0, 0.0, 0usize);
        for batch in order.split(cfg.batch_size as i64, 0) {
            let ce = head.forward(&x.index_select(0, &batch)).cross_entropy_for_logits(&y.index_select(0, &batch));
            let mut loss = ce.shallow_clone();
            if let Some(out) = &out {
                let m = out.size()[0];
                if out_pos + cfg.outlier_batch_size as i64 > out_order.size()[0] {
                    out_order = Tensor::randperm(m, (Kind::Int64, device));
                    out_pos = 0;
                }
                let take = (cfg.outlier_batch_size as i64).min(m);
                let idx = out_order.narrow(0, out_pos, take);
                out_pos += take;
                let text = inject_noise(&out.index_select(0, &idx), cfg.noise_var);
                let oe = oe_loss(&head.forward(&text));
                sum_oe += oe.double_value(&[]);
                loss = loss + oe * cfg.oe_weight;
            }
            opt.backward_step(&loss);
            sum_loss += loss.double_value(&[]);
            sum_ce += ce.double_value(&[]);
            steps += 1;
        }
        let accuracy = tch::no_grad(|| accuracy(&head.forward(&x), &y));
        let s = steps as f64;
        log.push(EpochLog { epoch: epoch + 1, loss: sum_loss / s, ce: sum_ce / s, oe: sum_oe / s, train_accuracy: accuracy });
    }
    Ok(TrainedHead { weight: head.ws.detach().to_device(Device::Cpu), bias: head.bs.as_ref().expect("linear has a bias").detach().to_device(Device::Cpu), log })
}

/// Top-1 accuracy of `logits` `[N, C]` against `labels` `[N]`.
pub fn accuracy(logits: &Tensor, labels: &Tensor) -> f64 {
    logits.argmax(1, false).eq_tensor(labels).to_kind(Kind::Double).mean(Kind::Double).double_value(&[])
}
