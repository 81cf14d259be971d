//! Outlier-exposure training of the linear head on cached CLIP features,
//! as in the original TOE code. The original re-encodes every image every
//! epoch; features are fixed (CLIP is frozen), so we encode once upstream
//! and train here on the cached arrays, which is what makes a 100-epoch
//! run cheap.

use anyhow::{bail, Result};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use super::class_stats::l2_normalize;

mod plain;

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
    /// What an epoch is when there are outliers.
    pub epoch: EpochKind,
    /// Which embedding space the outliers come from.
    pub outlier_domain: OutlierDomain,
    pub device: Device,
}

/// Where the outliers live, which decides what the head sees of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutlierDomain {
    /// CLIP text features (TOE): L2-normalised, noise added, normalised
    /// again ([`inject_noise`]), to bridge the modality gap.
    Text,
    /// Image-space features (real auxiliary images, or samples synthesised
    /// among the image features): fed as they are, like the ID features.
    Image,
}

/// How an epoch pairs ID batches with outlier batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochKind {
    /// The original's `for batch, out_batch in zip(image_loader, ood_loader)`:
    /// both orders reshuffled each epoch (ID first, then outliers), and the
    /// epoch ends with the shorter loader, so with fewer outlier batches than
    /// ID batches it sees only part of the ID set. The last outlier batch may
    /// be partial, as a `DataLoader` without `drop_last` gives it.
    Zip,
    /// One pass over the ID set; the outliers cycle, reshuffled whenever
    /// fewer than a batch remain.
    Cycle,
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
            epoch: EpochKind::Zip,
            outlier_domain: OutlierDomain::Text,
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
    /// Optimizer steps in the epoch (shorter than the ID batches when a zip
    /// epoch runs out of outliers first).
    pub steps: usize,
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
    (logits.logsumexp([1i64].as_slice(), false) - logits.mean_dim([1i64].as_slice(), false, Kind::Float))
        .mean(Kind::Float)
}

/// How the training steps are computed. Both run the same maths on the same
/// draws from torch's seeded generator, so they train the same head (up to
/// float rounding; `tests/testsuite/toe_math.rs` checks they agree).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Plain Rust on f32 buffers (CPU only): a 32 + 32-row step is two small
    /// GEMMs, softmax and Adam, which tch would spread over ~40 ops whose
    /// dispatch and allocation cost more than the arithmetic.
    Plain,
    /// tch tensor ops on `HeadConfig::device` (CPU or CUDA).
    Tensor,
}

/// Train `Linear(D, C)` on ID `features` `[N, D]` with `labels` `[N]` and,
/// unless `outliers` is None (the no-exposure baseline), text outlier
/// features `[M, D]` with the OE loss.
///
/// Each ID batch is paired with the next outlier batch; `cfg.epoch` says
/// when an epoch ends ([`EpochKind`]). Without outliers an epoch is one pass
/// over the ID set, as the original's `train_one_epoch`.
///
/// On the CPU the steps run in plain Rust ([`Backend::Plain`]), elsewhere
/// with tch ops ([`Backend::Tensor`]).
pub fn train_head(
    features: &Tensor,
    labels: &Tensor,
    outliers: Option<&Tensor>,
    num_classes: i64,
    cfg: &HeadConfig,
) -> Result<TrainedHead> {
    let backend = if cfg.device == Device::Cpu { Backend::Plain } else { Backend::Tensor };
    train_head_with(backend, features, labels, outliers, num_classes, cfg)
}

/// [`train_head`] with the backend chosen by the caller.
pub fn train_head_with(
    backend: Backend,
    features: &Tensor,
    labels: &Tensor,
    outliers: Option<&Tensor>,
    num_classes: i64,
    cfg: &HeadConfig,
) -> Result<TrainedHead> {
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
    if backend == Backend::Plain && cfg.device != Device::Cpu {
        bail!("the plain-Rust training backend runs on the CPU only, not on {:?}", cfg.device);
    }
    let y_host = Vec::<i64>::try_from(&labels.to_kind(Kind::Int64).to_device(Device::Cpu))?;
    if let Some((row, label)) = y_host.iter().enumerate().find(|(_, &l)| l < 0 || l >= num_classes) {
        bail!("label {label} at row {row} is outside 0..{num_classes}; set num_classes to cover every label");
    }
    tch::manual_seed(cfg.seed);
    let device = cfg.device;
    if device == Device::Cpu {
        // Each step multiplies 32 x D by D x C: far less work than waking
        // OpenMP's thread team costs, and on a busy machine the team's
        // spinning makes a step 10-20x slower. One thread is fastest here.
        tch::set_num_threads(1);
    }
    // The head as one matrix [C, D + 1] (weight and bias) over inputs with a
    // trailing 1, trained with closed-form gradients and Adam written out:
    // the same maths as autograd + torch.optim.Adam, in far fewer ops.
    let bound = 1.0 / (d as f64).sqrt(); // nn.Linear's initialisation
    let head = Tensor::empty([num_classes, d + 1], (Kind::Float, device)).f_uniform_(-bound, bound)?;
    let x = features.to_kind(Kind::Float).to_device(device);
    let out = outliers.map(|o| o.to_kind(Kind::Float).to_device(device));
    let (head, log) = tch::no_grad(|| match backend {
        Backend::Plain => plain::train(&x, &y_host, out.as_ref(), head, cfg),
        Backend::Tensor => {
            train_with_tensors(&x, &labels.to_kind(Kind::Int64).to_device(device), out.as_ref(), head, cfg)
        }
    })?;
    let head = head.to_device(Device::Cpu);
    Ok(TrainedHead { weight: head.narrow(1, 0, d).contiguous(), bias: head.select(1, d).contiguous(), log })
}

/// The outliers paired with each ID batch, as positions in `order`, a
/// shuffled order of all M drawn from torch's generator. Both backends draw
/// from it, so they consume the generator identically.
struct OutlierCursor {
    m: i64,
    batch: i64,
    kind: EpochKind,
    device: Device,
    order: Tensor,
    /// How many times `order` has been drawn (lets a caller cache it).
    shuffles: u64,
    pos: i64,
}

impl OutlierCursor {
    fn new(m: i64, batch: usize, kind: EpochKind, device: Device) -> OutlierCursor {
        OutlierCursor {
            m,
            batch: batch as i64,
            kind,
            device,
            order: Tensor::empty([0], (Kind::Int64, device)),
            shuffles: 0,
            pos: 0,
        }
    }

    fn reshuffle(&mut self) -> Result<()> {
        self.order = Tensor::f_randperm(self.m, (Kind::Int64, self.device))?;
        self.shuffles += 1;
        self.pos = 0;
        Ok(())
    }

    /// Called after the epoch's ID order is drawn: a zip epoch iterates the
    /// outlier loader afresh, which draws its new order.
    fn start_epoch(&mut self) -> Result<()> {
        match self.kind {
            EpochKind::Zip => self.reshuffle(),
            EpochKind::Cycle => Ok(()),
        }
    }

    /// The next batch as (start, length) in `self.order`; None when a zip
    /// epoch has used every outlier (the epoch ends there).
    fn next(&mut self) -> Result<Option<(i64, i64)>> {
        let take = match self.kind {
            EpochKind::Zip => {
                if self.pos >= self.m {
                    return Ok(None);
                }
                self.batch.min(self.m - self.pos)
            }
            EpochKind::Cycle => {
                if self.pos + self.batch > self.order.size()[0] {
                    self.reshuffle()?;
                }
                self.batch.min(self.m)
            }
        };
        let start = self.pos;
        self.pos += take;
        Ok(Some((start, take)))
    }
}

/// The steps with tch ops, on any device (one [C, D + 1] matrix, closed-form
/// gradients, Adam written out).
fn train_with_tensors(
    x: &Tensor,
    y: &Tensor,
    out: Option<&Tensor>,
    mut head: Tensor,
    cfg: &HeadConfig,
) -> Result<(Tensor, Vec<EpochLog>)> {
    let device = cfg.device;
    let n = x.size()[0];
    let num_classes = head.size()[0];
    let mut adam = Adam::new(&head, cfg.lr);
    let x1 = with_ones(x);
    let uniform = 1.0 / num_classes as f64;
    let rows = Tensor::arange(cfg.batch_size as i64, (Kind::Int64, device));
    let minus_one = Tensor::from(-1.0f32).to_device(device);
    let mut cursor = out.map(|o| OutlierCursor::new(o.size()[0], cfg.outlier_batch_size, cfg.epoch, device));
    let mut log = Vec::with_capacity(cfg.epochs);
    for epoch in 0..cfg.epochs {
        let order = Tensor::f_randperm(n, (Kind::Int64, device))?;
        if let Some(cursor) = cursor.as_mut() {
            cursor.start_epoch()?;
        }
        let sums = Tensor::zeros([2], (Kind::Double, device)); // ce, oe
        let mut steps = 0usize;
        for batch in order.split(cfg.batch_size as i64, 0) {
            let pair = match cursor.as_mut() {
                Some(cursor) => match cursor.next()? {
                    Some(pair) => Some(pair),
                    None => break, // a zip epoch ran out of outliers
                },
                None => None,
            };
            let b = batch.size()[0];
            let xb = x1.index_select(0, &batch);
            let yb = y.index_select(0, &batch);
            let log_p = xb.matmul(&head.tr()).log_softmax(1, Kind::Float);
            // d CE / d logits = (softmax - onehot) / B
            let mut grad_logits = log_p.exp();
            let _ = grad_logits.index_put_(&[Some(rows.narrow(0, 0, b)), Some(yb.shallow_clone())], &minus_one, true);
            let ce = -log_p.gather(1, &yb.unsqueeze(1), false).mean(Kind::Float);
            let _ = sums.narrow(0, 0, 1).g_add_(&ce.to_kind(Kind::Double));
            let (inputs, grads) = match (out, cursor.as_ref(), pair) {
                (Some(out), Some(cursor), Some((start, take))) => {
                    let idx = cursor.order.narrow(0, start, take);
                    let rows = out.index_select(0, &idx);
                    let text = with_ones(&match cfg.outlier_domain {
                        OutlierDomain::Text => inject_noise(&rows, cfg.noise_var),
                        OutlierDomain::Image => rows,
                    });
                    let logits = text.matmul(&head.tr());
                    let lse = logits.logsumexp([1i64].as_slice(), true);
                    let oe = (&lse - logits.mean_dim([1i64].as_slice(), true, Kind::Float)).mean(Kind::Float);
                    let _ = sums.narrow(0, 1, 1).g_add_(&oe.to_kind(Kind::Double));
                    // d OE / d logits = (softmax - 1/C) / B_out, times the OE weight
                    let grad_out = ((logits - lse).exp() - uniform) * (cfg.oe_weight / take as f64);
                    (Tensor::cat(&[xb, text], 0), Tensor::cat(&[grad_logits / b as f64, grad_out], 0))
                }
                _ => (xb, grad_logits / b as f64),
            };
            adam.step(&mut head, &grads.tr().matmul(&inputs));
            steps += 1;
        }
        let sums = Vec::<f64>::try_from(&sums.to_device(Device::Cpu))?;
        let s = steps as f64;
        let (ce, oe) = (sums[0] / s, sums[1] / s);
        let accuracy = accuracy(&x1.matmul(&head.tr()), y);
        log.push(EpochLog { epoch: epoch + 1, loss: ce + cfg.oe_weight * oe, ce, oe, train_accuracy: accuracy, steps });
    }
    Ok((head, log))
}

/// `[N, D]` -> `[N, D + 1]` with a trailing column of ones (the bias input).
fn with_ones(x: &Tensor) -> Tensor {
    Tensor::cat(&[x.shallow_clone(), x.ones_like().narrow(1, 0, 1)], 1)
}

/// torch.optim.Adam's update (betas 0.9 / 0.999, eps 1e-8, no weight
/// decay) on one tensor, in place.
struct Adam {
    lr: f64,
    step: i32,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

impl Adam {
    fn new(param: &Tensor, lr: f64) -> Adam {
        Adam { lr, step: 0, exp_avg: param.zeros_like(), exp_avg_sq: param.zeros_like() }
    }

    fn step(&mut self, param: &mut Tensor, grad: &Tensor) {
        const BETA1: f64 = 0.9;
        const BETA2: f64 = 0.999;
        self.step += 1;
        let _ = self.exp_avg.lerp_(grad, 1.0 - BETA1);
        let _ = self.exp_avg_sq.lerp_(&(grad * grad), 1.0 - BETA2);
        let bias1 = 1.0 - BETA1.powi(self.step);
        let bias2 = 1.0 - BETA2.powi(self.step);
        let denom = self.exp_avg_sq.sqrt() / bias2.sqrt() + 1e-8;
        let _ = param.addcdiv_(&(&self.exp_avg * (-self.lr / bias1)), &denom);
    }
}

/// Top-1 accuracy of `logits` `[N, C]` against `labels` `[N]`.
pub fn accuracy(logits: &Tensor, labels: &Tensor) -> f64 {
    logits.argmax(1, false).eq_tensor(labels).to_kind(Kind::Double).mean(Kind::Double).double_value(&[])
}
