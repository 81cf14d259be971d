//! `outliers_word`: word-level textual outliers (toe-method.md, "Word-level
//! outliers"). The ZOC decoder, conditioned on the CLIP embedding of each
//! ID validation image, decodes greedily for 9 steps from BOS; at each step
//! the tokens ranked 31..55 of the top-55 are kept (near the image, not its
//! top guess), decoded to lower-case words, ID class names and non-semantic
//! words dropped, duplicates removed; each word w becomes "This is a photo
//! of a w" plus the four templates.
//!
//! One difference from the original, off with `keep_special_tokens`: the
//! tokenizer's special tokens (`<s>`, `</s>`, `<pad>`, `<unk>`) are dropped
//! too. The original keeps whatever ranks 31..55 decode to; with its 50k
//! vocabulary these tokens rarely get there, with a demo decoder's ~70 words
//! they always do, and "This is a photo of a <pad>" is no outlier.
//!
//! The features are fed as they come: raw CLIP `encode_image` outputs, not
//! normalised (what `embed_images` writes, what TOE's `textual_outliers.py`
//! feeds and what `train_decoder` trains on).

use anyhow::{bail, Context, Result};

use super::io::{device, read_features};
use super::{Op, OpContext, ParamSpec, ParamType, PortSpec};
use crate::decoder::model_dir::DEFAULT_CHECKPOINT;
use crate::decoder::{outlier_words, DecoderDir, GenerateOptions};
use crate::formats;
use crate::spec::{ArtifactKind, ParamValue};
use crate::toe::outlier_text::{filter_words, word_sentences};

pub struct OutliersWord;

/// The params every op that reads a decoder model folder has.
pub(super) fn model_dir_params() -> Vec<ParamSpec> {
    vec![
        ParamSpec::with_default("checkpoint", ParamType::Str, ParamValue::Str(DEFAULT_CHECKPOINT.into()), "checkpoint file inside the model folder (the released TOE decoder: model_epoch100.pt)"),
        ParamSpec::with_default("heads", ParamType::Int, ParamValue::Int(0), "attention heads: 0 = from the folder's config.json, else 16 (the released decoder's)"),
    ]
}

/// Open the decoder model folder connected to input `model`.
pub(super) fn open_model_dir(ctx: &OpContext) -> Result<DecoderDir> {
    let heads = ctx.param_i64("heads")?;
    if heads < 0 {
        bail!("node {}: heads must be positive, or 0 to read config.json", ctx.node);
    }
    let dir = ctx.input("model")?;
    DecoderDir::open(dir, ctx.param_str("checkpoint")?, (heads > 0).then_some(heads), device(&ctx.device))
        .with_context(|| format!("node {}", ctx.node))
}

/// The `threads` param of the decoder ops.
pub(super) fn threads_param() -> ParamSpec {
    ParamSpec::with_default(
        "threads",
        ParamType::Int,
        ParamValue::Int(1),
        "libtorch threads on the CPU (0 = libtorch's default, all cores); 1 is fastest for small decoders: OpenMP's thread team costs more than their steps and spins on a busy machine (10x slower seen)",
    )
}

/// Apply the `threads` param (CPU only).
pub(super) fn set_threads(ctx: &OpContext) -> Result<()> {
    let threads = ctx.param_i64("threads")?;
    if threads < 0 {
        bail!("node {}: threads must be positive, or 0 for libtorch's default", ctx.node);
    }
    if threads > 0 && device(&ctx.device) == tch::Device::Cpu {
        tch::set_num_threads(threads as i32);
    }
    Ok(())
}

impl Op for OutliersWord {
    fn name(&self) -> &'static str {
        "outliers_word"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "word-level textual outliers: decoder top-k words of ID image embeddings (ranks 31-55 of 55), filtered, plus templates"
    }
    fn params(&self) -> Vec<ParamSpec> {
        let int = |name, v, doc| ParamSpec::with_default(name, ParamType::Int, ParamValue::Int(v), doc);
        let mut p = model_dir_params();
        p.extend([
            int("steps", 9, "greedy decoding steps from BOS (the original stops at 10 tokens with BOS)"),
            int("top_k", 55, "size of the top-k taken at each step; must not exceed the decoder's vocabulary"),
            int("keep_from", 31, "first kept rank, 1-based (31 keeps ranks 31..top_k, i.e. indices 30..54 as the original's [30:])"),
            ParamSpec::with_default("templates", ParamType::Bool, ParamValue::Bool(true), "add the four template sentences of every word"),
            ParamSpec::with_default("keep_special_tokens", ParamType::Bool, ParamValue::Bool(false), "keep <s>, </s>, <pad>, <unk> among the words, as the original does (it never filters them)"),
            ParamSpec::with_default("feed_only_bos", ParamType::Bool, ParamValue::Bool(false), "reproduce the original's bug: every step is fed only [BOS], so all steps give the same words"),
            int("batch_size", 64, "images per decoder pass"),
            threads_param(),
        ]);
        p
    }
    fn inputs(&self) -> Vec<PortSpec> {
        vec![
            PortSpec::new("model", ArtifactKind::Dir, "decoder model folder: checkpoint, spiece.model or vocab.json, optional config.json"),
            PortSpec::new("features", ArtifactKind::Npy, "CLIP image features [N, D] of the ID validation images (embed_images; not normalised)"),
            PortSpec::new("class_names", ArtifactKind::Npy, "ID class names (numpy unicode array, as imagenet_class_clean.npy)"),
        ]
    }
    fn outputs(&self) -> Vec<PortSpec> {
        vec![
            PortSpec::new("words", ArtifactKind::Npy, "the outlier words (numpy unicode array), first-seen order"),
            PortSpec::new("sentences", ArtifactKind::Npy, "\"This is a photo of a <word>\" per word, then the templates (numpy unicode array)"),
        ]
    }
    fn run(&self, ctx: &OpContext) -> Result<()> {
        let top_k = ctx.param_positive("top_k")?;
        let keep_from = ctx.param_positive("keep_from")?;
        if keep_from > top_k {
            bail!("node {}: keep_from ({keep_from}) must be at most top_k ({top_k})", ctx.node);
        }
        let opts = GenerateOptions {
            steps: ctx.param_positive("steps")? as usize,
            top_k,
            keep_from: keep_from - 1,
            feed_only_bos: ctx.param_bool("feed_only_bos")?,
            batch_size: ctx.param_positive("batch_size")? as usize,
        };
        set_threads(ctx)?;
        let features_path = ctx.input("features")?;
        let features = read_features(features_path)?;
        let class_names = formats::read_strings(ctx.input("class_names")?)?;
        let dir = open_model_dir(ctx)?;
        let vocab = dir.model.config().vocab_size.min(dir.tokenizer.as_dyn().vocab_size() as i64);
        if top_k > vocab {
            bail!(
                "node {}: top_k {top_k} exceeds the decoder's vocabulary of {vocab} tokens ({}); lower the param `top_k` \
                 (and `keep_from`) to at most {vocab}",
                ctx.node,
                dir.path.display()
            );
        }
        let decoded = outlier_words(&dir.model, dir.tokenizer.as_dyn(), &features, &opts)
            .with_context(|| format!("node {}: decoding {}", ctx.node, features_path.display()))?;
        let mut words = filter_words(&decoded, &class_names);
        if !ctx.param_bool("keep_special_tokens")? {
            let t = dir.tokenizer.as_dyn();
            let special: Vec<String> =
                [t.bos_id(), t.eos_id(), t.pad_id()].iter().map(|&id| t.decode_token(id).to_lowercase()).chain(["<unk>".into()]).collect();
            words.retain(|w| !special.contains(w));
        }
        if words.is_empty() {
            bail!(
                "node {}: every decoded word was an ID class name or a non-semantic word ({} decoded); a decoder trained \
                 longer or a wider top_k gives more",
                ctx.node,
                decoded.len()
            );
        }
        let sentences = word_sentences(&words, ctx.param_bool("templates")?);
        formats::write_strings(ctx.output("words")?, &words)?;
        formats::write_strings(ctx.output("sentences")?, &sentences)?;
        println!(
            "{} images -> {} decoded words -> {} outlier words -> {} sentences",
            features.size()[0],
            decoded.len(),
            words.len(),
            sentences.len()
        );
        Ok(())
    }
}
