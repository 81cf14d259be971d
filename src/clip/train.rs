//! Contrastive pre-training of a CLIP model on image-caption pairs (CLIP's
//! symmetric InfoNCE loss), for the demo world's tiny CLIP: the real
//! pipelines load OpenAI's released weights instead.
//!
//! As in OpenAI's training: AdamW with a linear warm-up and a cosine decay
//! of the learning rate, and the learned temperature clamped so that
//! `exp(logit_scale) <= 100`. Images are kept decoded and normalised in
//! memory; every step draws a batch of captions without replacement (a new
//! permutation each epoch) and the images they describe.

use anyhow::{ensure, Context, Result};
use serde::Serialize;
use tch::nn;
use tch::{Device, Kind, Tensor};

use super::Clip;

/// Settings of [`train_contrastive`].
#[derive(Debug, Clone)]
pub struct ContrastiveOptions {
    pub steps: usize,
    pub batch_size: usize,
    /// Peak learning rate (of the image tower and the temperature).
    pub lr: f64,
    /// The text tower's learning rate as a fraction of `lr` (its peak is
    /// `lr * text_lr_factor`). CLIP uses one rate for all; the demo's tiny
    /// CLIP learns in 1200 steps instead of 2000, and from every seed tried, with its
    /// text transformer at an eighth of the image tower's rate (at one rate
    /// it sat on the loss plateau for hundreds of steps, or for good).
    pub text_lr_factor: f64,
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
        ContrastiveOptions {
            steps: 1000,
            batch_size: 256,
            lr: 2e-3,
            text_lr_factor: 1.0,
            warmup: 50,
            weight_decay: 0.1,
            seed: 0,
        }
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
///
/// The steps run on a copy of the model whose vocabulary is only the tokens
/// the captions use (a few hundred of BPE's 49408 for the demo world), and
/// the trained rows are copied back. The result is the model the full
/// vocabulary gives, number for number: the embedding row of a token that
/// never occurs gets a zero gradient every step, so its Adam moments stay
/// zero and its update is exactly zero, and weight decay exempts
/// embeddings. What changes is the cost: Adam's pass over 3.2M embedding
/// weights and the embedding's dense gradient were a fifth of a step.
pub fn train_contrastive(
    model: &Clip,
    vs: &nn::VarStore,
    pairs: &Pairs,
    options: &ContrastiveOptions,
    log_every: usize,
    on_log: impl FnMut(&StepLog),
) -> Result<Vec<StepLog>> {
    let vocabulary = CorpusVocabulary::of(pairs.tokens, model.config().text.vocab_size)?;
    let mut config = *model.config();
    config.text.vocab_size = vocabulary.used.size()[0];
    let compact_vs = nn::VarStore::new(vs.device());
    let compact = Clip::new(&compact_vs.root(), &config);
    tch::no_grad(|| -> Result<()> {
        let full = vs.variables();
        for (name, var) in compact_vs.variables() {
            let source = full.get(&name).with_context(|| format!("the model has no variable {name}"))?;
            let source = if name == TOKEN_EMBEDDING {
                source.index_select(0, &vocabulary.used.to_device(source.device()))
            } else {
                source.shallow_clone()
            };
            var.shallow_clone().copy_(&source);
        }
        Ok(())
    })?;
    let tokens = vocabulary.rank.index_select(0, &pairs.tokens.flatten(0, -1)).view_as(pairs.tokens);
    let compact_pairs = Pairs { images: pairs.images, tokens: &tokens, image_of_text: pairs.image_of_text };
    let records = train_steps(&compact, &compact_vs, &compact_pairs, options, log_every, on_log)?;
    tch::no_grad(|| -> Result<()> {
        let trained = compact_vs.variables();
        for (name, var) in vs.variables() {
            let source = trained.get(&name).with_context(|| format!("the trained copy has no variable {name}"))?;
            let mut var = var.shallow_clone();
            if name == TOKEN_EMBEDDING {
                let _ = var.index_copy_(0, &vocabulary.used.to_device(var.device()), source);
            } else {
                var.copy_(source);
            }
        }
        Ok(())
    })?;
    Ok(records)
}

/// The checkpoint name of the text tower's token embedding.
const TOKEN_EMBEDDING: &str = "token_embedding.weight";

/// The tokens a corpus uses, and each token's index among them.
struct CorpusVocabulary {
    /// The used token ids, ascending (so the end-of-text token, the highest
    /// id, stays the highest: the text tower finds it by argmax).
    used: Tensor,
    /// `[vocab_size]`: a used token's rank in `used` (0 for the others).
    /// Both on the CPU, where the corpus' tokens are.
    rank: Tensor,
}

impl CorpusVocabulary {
    fn of(tokens: &Tensor, vocab_size: i64) -> Result<Self> {
        let (low, high) = (tokens.min().int64_value(&[]), tokens.max().int64_value(&[]));
        ensure!(
            low >= 0 && high < vocab_size,
            "token ids must lie in 0..{vocab_size} (the model's vocabulary), found {low}..={high}"
        );
        let (used, _, _) = tokens.flatten(0, -1).to_device(Device::Cpu).unique_dim(0, true, false, false);
        let rank = Tensor::zeros([vocab_size], (Kind::Int64, Device::Cpu));
        let _ = rank.shallow_clone().index_copy_(0, &used, &Tensor::arange(used.size()[0], (Kind::Int64, Device::Cpu)));
        Ok(Self { used, rank })
    }
}

/// The optimiser's parameter groups: each has its own learning rate.
#[derive(Clone, Copy)]
enum ParamGroup {
    /// The image tower and the temperature (`lr`).
    Image = 0,
    /// The text tower (`lr * text_lr_factor`).
    Text = 1,
}

impl ParamGroup {
    /// By checkpoint name: OpenAI's text weights have no prefix of their own
    /// (`token_embedding`, `transformer.*`, `ln_final`, ...).
    fn of(name: &str) -> Self {
        if name.starts_with("visual.") || name == "logit_scale" {
            ParamGroup::Image
        } else {
            ParamGroup::Text
        }
    }
}

/// The training loop proper, on whatever model it is given.
fn train_steps(
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

    // Two parameter groups, for the two learning rates. Adam's update is
    // per element, so with a factor of 1 the groups change nothing.
    let mut optimizer = tch::COptimizer::adam(options.lr, 0.9, 0.98, 0.0, 1e-6, false)?;
    let mut decayed: Vec<(Tensor, usize)> = Vec::new();
    let mut named: Vec<_> = vs.variables().into_iter().filter(|(_, var)| var.requires_grad()).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, var) in named {
        let group = ParamGroup::of(&name) as usize;
        optimizer.add_parameters(&var, group)?;
        if var.dim() >= 2 && !name.contains("embedding") {
            decayed.push((var, group));
        }
    }
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
        let group_lr = [lr, lr * options.text_lr_factor];
        for (group, &rate) in group_lr.iter().enumerate() {
            optimizer.set_learning_rate_group(group, rate)?;
        }
        let logits = model.logits(&model.encode_image_t(&images, true)?, &model.encode_text_t(&tokens)?);
        let loss =
            (logits.cross_entropy_for_logits(&labels) + logits.transpose(0, 1).cross_entropy_for_logits(&labels)) / 2.0;
        optimizer.zero_grad()?;
        loss.backward();
        // Decoupled weight decay (AdamW): shrink the decayed weights before
        // the Adam step, by their group's lr * wd, as torch.optim.AdamW does.
        tch::no_grad(|| {
            for (w, group) in &decayed {
                let _ = w.shallow_clone().g_mul_scalar_(1.0 - group_lr[*group] * options.weight_decay);
            }
        });
        optimizer.step()?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clip::{ClipConfig, ResNetConfig, TextConfig, VisionConfig};

    fn tiny() -> ClipConfig {
        ClipConfig {
            embed_dim: 8,
            image_resolution: 32,
            vision: VisionConfig::ResNet(ResNetConfig { layers: [1; 4], width: 8, heads: 4 }),
            text: TextConfig { context_length: 8, vocab_size: 49408, width: 16, heads: 1, layers: 1 },
        }
    }

    /// libtorch's generator is global and tests run on parallel threads:
    /// tests that seed it hold this lock.
    static GENERATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn variables(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
        let mut named: Vec<_> = vs.variables().into_iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        named
    }

    #[test]
    fn training_on_the_corpus_vocabulary_gives_the_full_vocabularys_model() {
        let _generator = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
        tch::manual_seed(3);
        let images = Tensor::randn([12, 3, 32, 32], (Kind::Float, Device::Cpu));
        let tokens = Tensor::randint_low(300, 340, [12, 6], (Kind::Int64, Device::Cpu));
        let _ = tokens.select(1, 0).fill_(49406);
        let _ = tokens.select(1, 4).fill_(49407);
        let _ = tokens.select(1, 5).fill_(0);
        let image_of_text: Vec<i64> = (0..12).collect();
        let pairs = Pairs { images: &images, tokens: &tokens, image_of_text: &image_of_text };
        let options = ContrastiveOptions { steps: 4, batch_size: 4, warmup: 2, seed: 5, ..Default::default() };
        let fresh = || {
            tch::manual_seed(9);
            let vs = nn::VarStore::new(Device::Cpu);
            let model = Clip::new(&vs.root(), &tiny());
            (vs, model)
        };
        let (full_vs, full) = fresh();
        let full_log = train_steps(&full, &full_vs, &pairs, &options, 1, |_| {}).unwrap();
        let (vs, model) = fresh();
        let before = vs.variables()[TOKEN_EMBEDDING].copy();
        let log = train_contrastive(&model, &vs, &pairs, &options, 1, |_| {}).unwrap();

        let losses = |log: &[StepLog]| log.iter().map(|r| r.loss).collect::<Vec<_>>();
        assert_eq!(losses(&log), losses(&full_log));
        for ((name, got), (_, expected)) in variables(&vs).iter().zip(variables(&full_vs).iter()) {
            assert!(got.equal(expected), "{name} differs");
        }
        // Rows of tokens the captions do not use are untouched; used ones moved.
        let after = &vs.variables()[TOKEN_EMBEDDING];
        assert!(after.get(1000).equal(&before.get(1000)));
        assert!(!after.get(300).equal(&before.get(300)) || !after.get(301).equal(&before.get(301)));
    }

    #[test]
    fn the_text_tower_learns_at_its_own_rate() {
        let _generator = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
        tch::manual_seed(3);
        let images = Tensor::randn([8, 3, 32, 32], (Kind::Float, Device::Cpu));
        let tokens = Tensor::randint_low(300, 340, [8, 5], (Kind::Int64, Device::Cpu));
        let _ = tokens.select(1, 0).fill_(49406);
        let _ = tokens.select(1, 4).fill_(49407);
        let image_of_text: Vec<i64> = (0..8).collect();
        let pairs = Pairs { images: &images, tokens: &tokens, image_of_text: &image_of_text };
        let options =
            ContrastiveOptions { steps: 3, batch_size: 4, warmup: 1, text_lr_factor: 0.0, ..Default::default() };
        tch::manual_seed(9);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Clip::new(&vs.root(), &tiny());
        let before: Vec<(String, Tensor)> = variables(&vs).into_iter().map(|(n, t)| (n, t.copy())).collect();
        train_contrastive(&model, &vs, &pairs, &options, 1, |_| {}).unwrap();
        for ((name, after), (_, before)) in variables(&vs).iter().zip(&before) {
            let frozen = matches!(ParamGroup::of(name), ParamGroup::Text);
            // Batch norm's running statistics are buffers, not trained.
            if name.contains("running_") || name.contains("num_batches") {
                continue;
            }
            assert_eq!(after.equal(before), frozen, "{name}: text tower frozen = {frozen}");
        }
    }
}
