//! Word-level outlier generation (toe-method.md, "Word-level outliers"):
//! for each CLIP image embedding, decode greedily for 9 steps from BOS and
//! at each step keep the tokens ranked 31..55 of the last position (indices
//! 30..54 of the top-55): near the image, but not its top guess.
//!
//! Two behaviours, chosen by [`GenerateOptions::feed_only_bos`]:
//! * `false` (default): real greedy decoding. Step t feeds BOS followed by
//!   the t argmax tokens so far (with a key/value cache, so each step costs
//!   one token), and takes the top-k of the newest position.
//! * `true`: the original TOE code (textual_outliers.py,
//!   `greedysearch_generation_topk`). It builds `target` from `[BOS]` anew
//!   at every step and never feeds back the prediction it appends to
//!   `target_list`, so all 9 steps see the same one-token input and yield
//!   the same top-k; the 9 blocks are identical copies. We compute the block
//!   once and repeat it, which gives exactly the original's output.
//!
//! Images are processed in batches (every sequence in a batch has the same
//! length at each step, so nothing is padded), without gradients, in the
//! model's kind (fp32 on CPU; fp16/bf16 are fine on CUDA). Logits are
//! compared in fp32.

use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

use super::bert_generation::{clip_to_encoder_states, BertGenerationDecoder};
use super::tokenizer::DecoderTokenizer;

#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// Decoding steps from BOS (9: the original stops at 10 tokens incl. BOS).
    pub steps: usize,
    /// Size of the top-k taken at each step (55).
    pub top_k: i64,
    /// Index of the first kept rank (30 = rank 31).
    pub keep_from: i64,
    /// Reproduce the original's behaviour of feeding only [BOS] at every
    /// step (see the module docs).
    pub feed_only_bos: bool,
    /// Images per forward pass.
    pub batch_size: usize,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions { steps: 9, top_k: 55, keep_from: 30, feed_only_bos: false, batch_size: 64 }
    }
}

impl GenerateOptions {
    pub fn kept_per_step(&self) -> i64 {
        self.top_k - self.keep_from
    }

    fn validate(&self, vocab_size: i64, max_positions: i64) -> Result<()> {
        if self.steps == 0 || self.batch_size == 0 {
            bail!("generation needs at least one step and a batch size of at least one");
        }
        if self.keep_from < 0 || self.keep_from >= self.top_k {
            bail!("keep_from ({}) must be in 0..top_k ({})", self.keep_from, self.top_k);
        }
        if self.top_k > vocab_size {
            bail!("top_k {} exceeds the decoder vocabulary of {vocab_size}", self.top_k);
        }
        if !self.feed_only_bos && self.steps as i64 > max_positions {
            bail!("{} steps exceed the decoder's {max_positions} positions", self.steps);
        }
        Ok(())
    }
}

/// Token ids produced for a set of images.
#[derive(Debug)]
pub struct Generated {
    /// The greedy (argmax) token of each step, [N, steps].
    pub greedy: Tensor,
    /// The kept top-k ranks of each step, [N, steps, top_k - keep_from],
    /// best rank first.
    pub kept: Tensor,
}

/// Run the decoder on CLIP image embeddings [N, D] (D dividing the decoder
/// width). The embeddings may live on any device; results are on the CPU.
pub fn generate_topk(model: &BertGenerationDecoder, clip_embeds: &Tensor, opts: &GenerateOptions) -> Result<Generated> {
    let c = model.config();
    opts.validate(c.vocab_size, c.max_position_embeddings)?;
    let n = match clip_embeds.size().as_slice() {
        [n, _] => *n,
        other => bail!("CLIP image embeddings must be [N, D], got {other:?}"),
    };
    let device = model.device();
    let kind = model.kind();
    let mut greedy = Vec::new();
    let mut kept = Vec::new();
    tch::no_grad(|| -> Result<()> {
        let mut start = 0;
        while start < n {
            let len = (opts.batch_size as i64).min(n - start);
            let clip = clip_embeds.narrow(0, start, len).to_device(device);
            let enc = clip_to_encoder_states(&clip, c.hidden_size, kind)?;
            let (g, k) = generate_batch(model, &enc, opts)?;
            greedy.push(g.to_device(Device::Cpu));
            kept.push(k.to_device(Device::Cpu));
            start += len;
        }
        Ok(())
    })?;
    if n == 0 {
        let k = opts.kept_per_step();
        return Ok(Generated {
            greedy: Tensor::zeros([0, opts.steps as i64], (Kind::Int64, Device::Cpu)),
            kept: Tensor::zeros([0, opts.steps as i64, k], (Kind::Int64, Device::Cpu)),
        });
    }
    Ok(Generated { greedy: Tensor::cat(&greedy, 0), kept: Tensor::cat(&kept, 0) })
}

fn generate_batch(model: &BertGenerationDecoder, enc: &Tensor, opts: &GenerateOptions) -> Result<(Tensor, Tensor)> {
    let b = enc.size()[0];
    let bos = model.config().bos_token_id;
    let mut cache = model.start_cache(enc)?;
    let mut input = Tensor::full([b, 1], bos, (Kind::Int64, enc.device()));
    let steps = if opts.feed_only_bos { 1 } else { opts.steps };
    let mut greedy = Vec::with_capacity(opts.steps);
    let mut kept = Vec::with_capacity(opts.steps);
    for _ in 0..steps {
        let logits = model.step(&input, &mut cache)?.to_kind(Kind::Float);
        let next = logits.argmax(-1, false);
        let (_, top) = logits.topk(opts.top_k, -1, true, true);
        kept.push(top.narrow(1, opts.keep_from, opts.kept_per_step()));
        greedy.push(next.shallow_clone());
        input = next.unsqueeze(1);
    }
    if opts.feed_only_bos {
        // Every step of the original sees the same input: repeat the block.
        greedy = (0..opts.steps).map(|_| greedy[0].shallow_clone()).collect();
        kept = (0..opts.steps).map(|_| kept[0].shallow_clone()).collect();
    }
    Ok((Tensor::stack(&greedy, 1), Tensor::stack(&kept, 1)))
}

/// The words of the kept ranks, decoded one id at a time and lower-cased
/// (as `berttokenizer.decode(id).lower()`), in order image, step, rank,
/// duplicates included. Dropping class names and non-semantic words and
/// de-duplicating is the caller's (`toe::outlier_text::filter_words`).
pub fn outlier_words(
    model: &BertGenerationDecoder,
    tokenizer: &dyn DecoderTokenizer,
    clip_embeds: &Tensor,
    opts: &GenerateOptions,
) -> Result<Vec<String>> {
    let (tokens, vocab) = (tokenizer.vocab_size() as i64, model.config().vocab_size);
    if tokens > vocab {
        bail!(
            "the tokenizer has {tokens} tokens but the decoder's vocabulary has {vocab}; they do not belong together"
        );
    }
    if tokens < vocab {
        // A model vocabulary padded past the tokenizer's: ids beyond it
        // decode to "" (which the non-semantic filter drops).
        tracing::warn!("the tokenizer has {tokens} tokens, the decoder {vocab}; ids beyond the tokenizer decode to \"\"");
    }
    let generated = generate_topk(model, clip_embeds, opts)?;
    let ids = Vec::<i64>::try_from(generated.kept.flatten(0, -1))?;
    Ok(ids.into_iter().map(|id| tokenizer.decode_token(id).to_lowercase()).collect())
}
