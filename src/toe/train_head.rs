//! Outlier-exposure training of the linear head on cached CLIP features
//! (toe-method.md, "Training"). The original re-encodes every image every
//! epoch; features are fixed (CLIP is frozen), so we encode once upstream
//! and train here on the cached arrays, which is what makes a 100-epoch
//! run cheap.

use anyhow::{bail, Result};
use serde::Serialize;
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

    // The head as one matrix [C, D + 1] (weight and bias) over inputs with a
    // trailing 1, trained with closed-form gradients and Adam written out:
    // the same maths as autograd + torch.optim.Adam, in a third of the
    // tensor ops, which is what a 32-row step costs.
    let bound = 1.0 / (d as f64).sqrt(); // nn.Linear's initialisation
    let mut head = Tensor::empty([num_classes, d + 1], (Kind::Float, device)).uniform_(-bound, bound);
    let mut adam = Adam::new(&head, cfg.lr);
    let x1 = with_ones(&x);
    let uniform = 1.0 / num_classes as f64;
    let rows = Tensor::arange(cfg.batch_size as i64, (Kind::Int64, device));
    let minus_one = Tensor::from(-1.0f32).to_device(device);

    let mut out_order = Tensor::empty([0], (Kind::Int64, device));
    let mut out_pos = 0i64;
    let mut log = Vec::with_capacity(cfg.epochs);
    tch::no_grad(|| -> Result<()> {
        for epoch in 0..cfg.epochs {
            let order = Tensor::randperm(n, (Kind::Int64, device));
            let sums = Tensor::zeros([2], (Kind::Double, device)); // ce, oe
            let mut steps = 0usize;
            for batch in order.split(cfg.batch_size as i64, 0) {
                let b = batch.size()[0];
                let xb = x1.index_select(0, &batch);
                let yb = y.index_select(0, &batch);
                let log_p = xb.matmul(&head.tr()).log_softmax(1, Kind::Float);
                // d CE / d logits = (softmax - onehot) / B
                let mut grad_logits = log_p.exp();
                let _ = grad_logits.index_put_(&[Some(rows.narrow(0, 0, b)), Some(yb.shallow_clone())], &minus_one, true);
                let ce = -log_p.gather(1, &yb.unsqueeze(1), false).mean(Kind::Float);
                let _ = sums.narrow(0, 0, 1).g_add_(&ce.to_kind(Kind::Double));
                let (inputs, grads) = match &out {
                    None => (xb, grad_logits / b as f64),
                    Some(out) => {
                        let m = out.size()[0];
                        if out_pos + cfg.outlier_batch_size as i64 > out_order.size()[0] {
                            out_order = Tensor::randperm(m, (Kind::Int64, device));
                            out_pos = 0;
                        }
                        let take = (cfg.outlier_batch_size as i64).min(m);
                        let idx = out_order.narrow(0, out_pos, take);
                        out_pos += take;
                        let text = with_ones(&inject_noise(&out.index_select(0, &idx), cfg.noise_var));
                        let logits = text.matmul(&head.tr());
                        let lse = logits.logsumexp([1i64].as_slice(), true);
                        let oe = (&lse - logits.mean_dim([1i64].as_slice(), true, Kind::Float)).mean(Kind::Float);
                        let _ = sums.narrow(0, 1, 1).g_add_(&oe.to_kind(Kind::Double));
                        // d OE / d logits = (softmax - 1/C) / B_out, times the OE weight
                        let grad_out = ((logits - lse).exp() - uniform) * (cfg.oe_weight / take as f64);
                        (Tensor::cat(&[xb, text], 0), Tensor::cat(&[grad_logits / b as f64, grad_out], 0))
                    }
                };
                adam.step(&mut head, &grads.tr().matmul(&inputs));
                steps += 1;
            }
            let sums = Vec::<f64>::try_from(&sums.to_device(Device::Cpu))?;
            let s = steps as f64;
            let (ce, oe) = (sums[0] / s, sums[1] / s);
            let accuracy = accuracy(&x1.matmul(&head.tr()), &y);
            log.push(EpochLog { epoch: epoch + 1, loss: ce + cfg.oe_weight * oe, ce, oe, train_accuracy: accuracy });
        }
        Ok(())
    })?;
    let head = head.to_device(Device::Cpu);
    Ok(TrainedHead { weight: head.narrow(1, 0, d).contiguous(), bias: head.select(1, d).contiguous(), log })
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
