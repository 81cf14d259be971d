//! Training the decoder to caption CLIP image embeddings, as ZOC's
//! `train_decoder.py` (which TOE adopts for its `preprocess/train_decoder.py`)
//! trains it on MS-COCO:
//! * each caption becomes `<s> caption </s>`, at most 77 tokens (an
//!   over-long caption loses its EOS), padded with `<pad>`; every caption is
//!   paired with its image's CLIP embedding (COCO: 5 captions per image);
//! * the encoder sequence is the embedding repeated to the decoder width,
//!   length 1; teacher forcing: logits of positions 0..L-2 against tokens
//!   1..L-1, cross-entropy averaged over non-pad targets (HF's shifted LM
//!   loss with pads labelled -100);
//! * AdamW as `transformers.AdamW` defaults it (betas 0.9/0.999, eps 1e-6,
//!   weight decay 0), lr 1e-5, batch 128, shuffled, dropout on (train mode);
//!   ZOC's default is 1 epoch ("trained with 25"), TOE's released checkpoint
//!   is `model_epoch100.pt`;
//! * after each epoch the validation loss; ZOC saves the epoch with the
//!   lowest validation loss, and so do we (the best weights are restored).
//!
//! One quirk of the original we do not copy: its loader converts the CLIP
//! features with `torch.tensor(clip_features, dtype=torch.long)`, which
//! truncates every feature to an integer (mostly 0) before training. We
//! train on the real float embeddings; the op's `integer_embeddings`
//! reproduces the truncation.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tch::nn::OptimizerConfig;
use tch::{nn, Device, Kind, Tensor};

use super::bert_generation::{clip_to_encoder_states, BertGenerationDecoder};

#[derive(Debug, Clone, PartialEq)]
pub struct TrainOptions {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub adam_eps: f64,
    /// Longest tokenised caption, BOS and EOS included (77).
    pub max_len: usize,
    /// Seeds the initialisation the caller does, the shuffling and dropout.
    pub seed: u64,
    /// With validation data: restore the weights of the epoch with the
    /// lowest validation loss at the end (ZOC keeps that checkpoint).
    pub keep_best: bool,
}

impl Default for TrainOptions {
    /// ZOC's settings for fine-tuning the pre-trained BertGeneration
    /// decoder; a decoder trained from scratch wants a higher lr (1e-3).
    fn default() -> Self {
        TrainOptions {
            epochs: 1,
            batch_size: 128,
            lr: 1e-5,
            weight_decay: 0.0,
            adam_eps: 1e-6,
            max_len: 77,
            seed: 42,
            keep_best: true,
        }
    }
}

/// Captions paired with CLIP image embeddings.
pub struct CaptionSet<'a> {
    /// [N, D] CLIP image embeddings (any device).
    pub clip_embeds: &'a Tensor,
    /// Token ids of each caption, `[BOS] ... [EOS]` (see
    /// [`super::DecoderTokenizer::encode_caption`]).
    pub captions: &'a [Vec<i64>],
    /// The row of `clip_embeds` each caption describes.
    pub image_of_caption: &'a [usize],
}

impl CaptionSet<'_> {
    fn validate(&self, what: &str, vocab_size: i64) -> Result<()> {
        let n = match self.clip_embeds.size().as_slice() {
            [n, _] => *n as usize,
            other => bail!("{what}: CLIP image embeddings must be [N, D], got {other:?}"),
        };
        if self.captions.len() != self.image_of_caption.len() {
            bail!("{what}: {} captions but {} image indices", self.captions.len(), self.image_of_caption.len());
        }
        if self.captions.is_empty() {
            bail!("{what}: no captions to train on");
        }
        for (i, (cap, &img)) in self.captions.iter().zip(self.image_of_caption).enumerate() {
            if img >= n {
                bail!("{what}: caption {i} refers to image {img}, but there are {n} embeddings");
            }
            if cap.len() < 2 {
                bail!("{what}: caption {i} has {} tokens; at least BOS and one more are needed", cap.len());
            }
            if let Some(&bad) = cap.iter().find(|&&t| t < 0 || t >= vocab_size) {
                bail!("{what}: caption {i} holds token id {bad}, outside the vocabulary of {vocab_size}");
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct EpochLog {
    pub epoch: usize,
    /// Mean of the batch losses.
    pub train_loss: f64,
    pub val_loss: Option<f64>,
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrainReport {
    pub epochs: Vec<EpochLog>,
    /// The epoch whose weights the model holds at the end, when validation
    /// chose it.
    pub best_epoch: Option<usize>,
}

/// splitmix64: a small seeded generator for the shuffling, independent of
/// libtorch's generator (which dropout draws from).
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(crate) fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// Input ids [B, L] (right-padded with `pad`) of the captions `order`.
fn batch_ids(set: &CaptionSet, order: &[usize], pad: i64, device: Device) -> Tensor {
    let len = order.iter().map(|&i| set.captions[i].len()).max().unwrap_or(0);
    let mut flat = Vec::with_capacity(order.len() * len);
    for &i in order {
        let c = &set.captions[i];
        flat.extend_from_slice(c);
        flat.extend(std::iter::repeat_n(pad, len - c.len()));
    }
    Tensor::from_slice(&flat).view([order.len() as i64, len as i64]).to_device(device)
}

/// Teacher-forced LM loss of one batch (mean over non-pad targets).
fn batch_loss(model: &BertGenerationDecoder, set: &CaptionSet, order: &[usize], train: bool) -> Result<Tensor> {
    let c = model.config();
    let device = model.device();
    let ids = batch_ids(set, order, c.pad_token_id, device);
    let l = ids.size()[1];
    let rows: Vec<i64> = order.iter().map(|&i| set.image_of_caption[i] as i64).collect();
    let rows = Tensor::from_slice(&rows).to_device(set.clip_embeds.device());
    let clip = set.clip_embeds.index_select(0, &rows).to_device(device);
    let enc = clip_to_encoder_states(&clip, c.hidden_size, model.kind())?;
    // The last position predicts nothing, so it is not fed; with causal
    // attention the other positions' logits are unchanged.
    let logits = model.forward(&ids.narrow(1, 0, l - 1), &enc, None, train)?;
    let targets = ids.narrow(1, 1, l - 1);
    let targets = targets.masked_fill(&targets.eq(c.pad_token_id), -100);
    Ok(logits.to_kind(Kind::Float).view([-1, c.vocab_size]).cross_entropy_loss::<Tensor>(
        &targets.view([-1]),
        None,
        tch::Reduction::Mean,
        -100,
        0.0,
    ))
}

/// Mean batch loss over a caption set, without dropout or gradients.
pub fn evaluate_loss(model: &BertGenerationDecoder, set: &CaptionSet, batch_size: usize) -> Result<f64> {
    set.validate("validation captions", model.config().vocab_size)?;
    let order: Vec<usize> = (0..set.captions.len()).collect();
    let mut total = 0.0;
    let mut batches = 0;
    tch::no_grad(|| -> Result<()> {
        for chunk in order.chunks(batch_size.max(1)) {
            total += batch_loss(model, set, chunk, false)?.double_value(&[]);
            batches += 1;
        }
        Ok(())
    })?;
    Ok(total / batches as f64)
}

fn snapshot(model: &BertGenerationDecoder) -> HashMap<String, Tensor> {
    model.var_store().variables().into_iter().map(|(n, t)| (n, t.detach().copy())).collect()
}

fn restore(model: &BertGenerationDecoder, weights: &HashMap<String, Tensor>) {
    tch::no_grad(|| {
        for (name, mut var) in model.var_store().variables() {
            if let Some(w) = weights.get(&name) {
                var.copy_(w);
            }
        }
    });
}

/// Train `model` (freshly initialised or loaded from a checkpoint) on
/// captions of CLIP image embeddings; logs and returns the loss per epoch.
/// Seeding sets libtorch's generator, which is global to the process:
/// results repeat exactly unless another thread draws from it meanwhile.
pub fn train_decoder(
    model: &mut BertGenerationDecoder,
    train: &CaptionSet,
    val: Option<&CaptionSet>,
    opts: &TrainOptions,
) -> Result<TrainReport> {
    train_decoder_with(model, train, val, opts, &mut |_| {})
}

/// As [`train_decoder`], calling `on_epoch` after every epoch (progress).
pub fn train_decoder_with(
    model: &mut BertGenerationDecoder,
    train: &CaptionSet,
    val: Option<&CaptionSet>,
    opts: &TrainOptions,
    on_epoch: &mut dyn FnMut(&EpochLog),
) -> Result<TrainReport> {
    let vocab = model.config().vocab_size;
    train.validate("training captions", vocab)?;
    if let Some(v) = val {
        v.validate("validation captions", vocab)?;
    }
    if model.kind() != Kind::Float {
        bail!("train the decoder in fp32 (its weights are {:?}); cast for generation afterwards", model.kind());
    }
    if opts.batch_size == 0 || opts.epochs == 0 {
        bail!("training needs a positive batch size and number of epochs");
    }
    let max_positions = model.config().max_position_embeddings as usize;
    if let Some(long) = train.captions.iter().map(Vec::len).find(|&l| l > opts.max_len.min(max_positions)) {
        bail!(
            "a training caption has {long} tokens, more than max_len {} or the decoder's {max_positions} positions; \
             truncate when tokenising",
            opts.max_len
        );
    }
    tch::manual_seed(opts.seed as i64);
    let mut rng = SplitMix(opts.seed);
    let mut optimizer =
        nn::AdamW { beta1: 0.9, beta2: 0.999, wd: opts.weight_decay, eps: opts.adam_eps, amsgrad: false }
            .build(model.var_store(), opts.lr)
            .context("building the AdamW optimizer")?;

    let mut order: Vec<usize> = (0..train.captions.len()).collect();
    let mut report = TrainReport { epochs: Vec::new(), best_epoch: None };
    let mut best: Option<(f64, HashMap<String, Tensor>)> = None;
    for epoch in 0..opts.epochs {
        let started = Instant::now();
        rng.shuffle(&mut order);
        let mut total = 0.0;
        let mut batches = 0;
        for chunk in order.chunks(opts.batch_size) {
            let loss = batch_loss(model, train, chunk, true)?;
            optimizer.zero_grad();
            loss.backward();
            optimizer.step();
            total += loss.double_value(&[]);
            batches += 1;
        }
        let train_loss = total / batches as f64;
        let val_loss = val.map(|v| evaluate_loss(model, v, opts.batch_size)).transpose()?;
        let log = EpochLog { epoch, train_loss, val_loss, seconds: started.elapsed().as_secs_f64() };
        // Progress for the user is `on_epoch`'s to print (the train_decoder
        // op writes a line per epoch to its node log); this is for debugging.
        tracing::debug!(
            epoch,
            train_loss,
            val_loss = val_loss.unwrap_or(f64::NAN),
            seconds = log.seconds,
            "decoder training epoch"
        );
        if let (Some(v), true) = (val_loss, opts.keep_best) {
            if best.as_ref().is_none_or(|(b, _)| v < *b) {
                best = Some((v, snapshot(model)));
                report.best_epoch = Some(epoch);
            }
        }
        on_epoch(&log);
        report.epochs.push(log);
    }
    if let Some((_, weights)) = &best {
        restore(model, weights);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_is_seeded_permutation() {
        let mut a: Vec<usize> = (0..50).collect();
        let mut b = a.clone();
        SplitMix(7).shuffle(&mut a);
        SplitMix(7).shuffle(&mut b);
        assert_eq!(a, b);
        assert_ne!(a, (0..50).collect::<Vec<_>>());
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    }
}
