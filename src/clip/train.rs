//! Contrastive pre-training of a CLIP model on image-caption pairs (CLIP's
//! symmetric InfoNCE loss), for the demo world's tiny CLIP: the real
//! pipelines load OpenAI's released weights instead.
//!
//! As in OpenAI's training: AdamW with a linear warm-up and a cosine decay
//! of the learning rate, and the learned temperature clamped so that
//! `exp(logit_scale) <= 100`. Images are kept decoded and normalised in
//! memory; every step draws a batch of captions without replacement (a new
//! permutation each epoch) and the images they describe.

use anyhow::{ensure, Result};
use serde::Serialize;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

use super::Clip;

/// Settings of [`train_contrastive`].
#[derive(Debug, Clone)]
pub struct ContrastiveOptions {
    pub steps: usize,
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Steps of linear warm-up before the cosine decay.
    pub warmup: usize,
    /// AdamW's decoupled weight decay (on matrices and convolutions only:
    /// gains, biases, embeddings' positions and the temperature are exempt,
    /// as in CLIP).
    pub weight_decay: f64,
    pub seed: i64,
}

impl Default for ContrastiveOptions {
    fn default() -> Self {
        ContrastiveOptions { steps: 1000, batch_size: 256, lr: 2e-3, warmup: 50, weight_decay: 0.1, seed: 0 }
    }
}

/// One line of the training log.
#[derive(Debug, Clone, Serialize)]
pub struct StepLog {
    pub step: usize,
    pub lr: f64,
    /// Mean loss over the steps since the last record.
    pub loss: f64,
    /// Fraction of images whose own caption scored highest in their batch.
    pub batch_accuracy: f64,
    pub temperature: f64,
}

/// Pairs to learn from: `images[image_of_text[i]]` goes with `tokens[i]`.
pub struct Pairs<'a> {
    /// `[N_images, 3, r, r]`, normalised (as [`crate::images`] makes them).
    pub images: &'a Tensor,
    /// `[N_texts, n]` int64 token ids (CLIP's tokenizer).
    pub tokens: &'a Tensor,
    pub image_of_text: &'a [i64],
}

/// The largest `logit_scale` CLIP allows: a temperature of 1/100.
const MAX_LOGIT_SCALE: f64 = 4.605_170_185_988_091;

/// Learning rate at `step` (0-based): linear warm-up, then cosine to zero.
pub fn learning_rate(options: &ContrastiveOptions, step: usize) -> f64 {
    if step < options.warmup {
        return options.lr * (step + 1) as f64 / options.warmup as f64;
    }
    let decay_steps = (options.steps - options.warmup).max(1) as f64;
    let progress = (step - options.warmup) as f64 / decay_steps;
    0.5 * options.lr * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// Trains `model` (whose variables live in `vs`) in place. `on_log` sees a
/// record every `log_every` steps and at the last one; all records are
/// returned.
pub fn train_contrastive(
    model: &Clip,
    vs: &nn::VarStore,
    pairs: &Pairs,
    options: &ContrastiveOptions,
    log_every: usize,
    mut on_log: impl FnMut(&StepLog),
) -> Result<Vec<StepLog>> {
    let n_texts = pairs.tokens.size()[0];
    ensure!(n_texts as usize == pairs.image_of_text.len(), "one image index per caption is needed");
    ensure!(options.batch_size >= 2, "contrastive training needs batches of at least 2 pairs");
    ensure!(
        n_texts >= options.batch_size as i64,
        "the corpus has {n_texts} captions, fewer than one batch of {}",
        options.batch_size
    );
    ensure!(options.steps > 0, "at least one step is needed");
    let device = vs.device();
    tch::manual_seed(options.seed);
    let image_of_text = Tensor::from_slice(pairs.image_of_text);

    let decayed: Vec<Tensor> = vs
        .variables()
        .into_iter()
        .filter(|(name, var)| var.requires_grad() && var.dim() >= 2 && !name.contains("embedding"))
        .map(|(_, var)| var)
        .collect();
    let mut optimizer =
        nn::Adam { beta1: 0.9, beta2: 0.98, wd: 0.0, eps: 1e-6, amsgrad: false }.build(vs, options.lr)?;
    let batch = options.batch_size as i64;
    let labels = Tensor::arange(batch, (Kind::Int64, device));
    let mut order = Tensor::randperm(n_texts, (Kind::Int64, Device::Cpu));
    let mut cursor = 0i64;
    let (mut loss_sum, mut correct, mut seen, mut since) = (0.0, 0i64, 0i64, 0usize);
    let mut records = Vec::new();
    for step in 0..options.steps {
        if cursor + batch > n_texts {
            order = Tensor::randperm(n_texts, (Kind::Int64, Device::Cpu));
            cursor = 0;
        }
        let texts = order.narrow(0, cursor, batch);
        cursor += batch;
        let image_index = image_of_text.index_select(0, &texts);
        let images = pairs.images.index_select(0, &image_index).to_device(device);
        let tokens = pairs.tokens.index_select(0, &texts).to_device(device);

        let lr = learning_rate(options, step);
        optimizer.set_lr(lr);
        let logits = model.logits(&model.encode_image_t(&images, true)?, &model.encode_text_t(&tokens)?);
        let loss =
            (logits.cross_entropy_for_logits(&labels) + logits.transpose(0, 1).cross_entropy_for_logits(&labels)) / 2.0;
        optimizer.zero_grad();
        loss.backward();
        // Decoupled weight decay (AdamW): shrink the decayed weights before
        // the Adam step, by lr * wd, as torch.optim.AdamW does.
        tch::no_grad(|| {
            for w in &decayed {
                let _ = w.shallow_clone().g_mul_scalar_(1.0 - lr * options.weight_decay);
            }
        });
        optimizer.step();
        tch::no_grad(|| {
            let _ = model.logit_scale().shallow_clone().clamp_max_(MAX_LOGIT_SCALE);
        });

        loss_sum += loss.double_value(&[]);
        correct += logits.argmax(1, false).eq_tensor(&labels).sum(Kind::Int64).int64_value(&[]);
        seen += batch;
        since += 1;
        if (step + 1) % log_every.max(1) == 0 || step + 1 == options.steps {
            let record = StepLog {
                step: step + 1,
                lr,
                loss: loss_sum / since as f64,
                batch_accuracy: correct as f64 / seen as f64,
                temperature: 1.0 / model.logit_scale().exp().double_value(&[]),
            };
            on_log(&record);
            records.push(record);
            (loss_sum, correct, seen, since) = (0.0, 0, 0, 0);
        }
    }
    Ok(records)
}

/// Zero-shot classification accuracy: each image goes to the class whose
/// prompt's text feature is most similar to the image's feature.
pub fn zero_shot_accuracy(model: &Clip, images: &Tensor, labels: &[i64], prompt_tokens: &Tensor) -> Result<f64> {
    ensure!(images.size()[0] as usize == labels.len(), "one label per image is needed");
    let text = model.encode_text(prompt_tokens)?;
    let text = &text / text.norm_scalaropt_dim(2, [-1], true);
    let mut correct = 0usize;
    for (start, chunk) in (0..labels.len()).step_by(256).zip(labels.chunks(256)) {
        let feats = model.encode_image(&images.narrow(0, start as i64, chunk.len() as i64))?;
        let feats = &feats / feats.norm_scalaropt_dim(2, [-1], true);
        let predicted =
            Vec::<i64>::try_from(feats.matmul(&text.transpose(0, 1)).argmax(1, false).to_device(Device::Cpu))?;
        correct += predicted.iter().zip(chunk).filter(|(p, l)| p == l).count();
    }
    Ok(correct as f64 / labels.len().max(1) as f64)
}
