//! Word-level outlier generation, as in the original TOE code:
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
//! [`generate_captions`] is plain greedy captioning with the same cached
//! step (the demo world's captioner, `caption_images`).
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
    let mut greedy = Vec::new();
    let mut kept = Vec::new();
    let n = for_each_batch(model, clip_embeds, opts.batch_size, |enc| {
        let (g, k) = generate_batch(model, enc, opts)?;
        greedy.push(g.to_device(Device::Cpu));
        kept.push(k.to_device(Device::Cpu));
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

/// Call `f` with the encoder states [b, 1, H] of each batch of CLIP image
/// embeddings [N, D] (the ZOC tiling, on the model's device and kind),
/// without gradients. Returns N.
fn for_each_batch(
    model: &BertGenerationDecoder,
    clip_embeds: &Tensor,
    batch_size: usize,
    mut f: impl FnMut(&Tensor) -> Result<()>,
) -> Result<i64> {
    let n = match clip_embeds.size().as_slice() {
        [n, _] => *n,
        other => bail!("CLIP image embeddings must be [N, D], got {other:?}"),
    };
    if batch_size == 0 {
        bail!("the batch size must be at least one");
    }
    let (device, kind, hidden) = (model.device(), model.kind(), model.config().hidden_size);
    tch::no_grad(|| -> Result<()> {
        let mut start = 0;
        while start < n {
            let len = (batch_size as i64).min(n - start);
            let clip = clip_embeds.narrow(0, start, len).to_device(device);
            f(&clip_to_encoder_states(&clip, hidden, kind)?)?;
            start += len;
        }
        Ok(())
    })?;
    Ok(n)
}

/// Greedy captions of CLIP image embeddings [N, D], as a captioner writes
/// them: from BOS, feed back the argmax token at every step (one token per
/// step with the key/value cache) until EOS or `max_tokens` new tokens
/// (BLIP-2's `max_new_tokens` is 20). Returns each image's token ids, EOS
/// left out, in order.
pub fn generate_captions(
    model: &BertGenerationDecoder,
    clip_embeds: &Tensor,
    max_tokens: usize,
    batch_size: usize,
) -> Result<Vec<Vec<i64>>> {
    let c = model.config();
    if max_tokens == 0 {
        bail!("max_tokens must be at least one");
    }
    // BOS and the first max_tokens - 1 generated tokens are fed.
    if max_tokens as i64 > c.max_position_embeddings {
        bail!("max_tokens {max_tokens} exceeds the decoder's {} positions", c.max_position_embeddings);
    }
    let (bos, eos) = (c.bos_token_id, c.eos_token_id);
    let mut captions = Vec::new();
    for_each_batch(model, clip_embeds, batch_size, |enc| {
        let b = enc.size()[0] as usize;
        let mut cache = model.start_cache(enc)?;
        let mut input = Tensor::full([b as i64, 1], bos, (Kind::Int64, enc.device()));
        let mut tokens: Vec<Vec<i64>> = vec![Vec::new(); b];
        let mut done = vec![false; b];
        for _ in 0..max_tokens {
            let next = model.step(&input, &mut cache)?.to_kind(Kind::Float).argmax(-1, false);
            let ids = Vec::<i64>::try_from(next.to_device(Device::Cpu))?;
            for ((id, toks), finished) in ids.iter().zip(&mut tokens).zip(&mut done) {
                if *finished {
                    continue;
                }
                if *id == eos {
                    *finished = true;
                } else {
                    toks.push(*id);
                }
            }
            if done.iter().all(|&d| d) {
                break;
            }
            input = next.unsqueeze(1);
        }
        captions.extend(tokens);
        Ok(())
    })?;
    Ok(captions)
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
        tracing::warn!(
            "the tokenizer has {tokens} tokens, the decoder {vocab}; ids beyond the tokenizer decode to \"\""
        );
    }
    let generated = generate_topk(model, clip_embeds, opts)?;
    let ids = Vec::<i64>::try_from(generated.kept.flatten(0, -1))?;
    Ok(ids.into_iter().map(|id| tokenizer.decode_token(id).to_lowercase()).collect())
}
