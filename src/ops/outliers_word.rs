//! `outliers_word`: word-level textual outliers, made as the original
//! release makes them. The ZOC decoder, conditioned on the CLIP embedding
//! of each ID validation image, decodes greedily for 9 steps from BOS; at each step
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

use super::prelude::*;
use super::shared::files::read_features;
use super::shared::params::{ModelDir, Threads};
use crate::decoder::{outlier_words, GenerateOptions};
use crate::formats;
use crate::toe::outlier_text::{filter_words, word_sentences, ClassNameMatch};

pub struct OutliersWord;

op_params! {
    pub struct Params {
        model_dir: ModelDir,
        threads: Threads,
        /// greedy decoding steps from BOS (the original stops at 10 tokens with BOS)
        #[range(1..)]
        steps: usize = 9,
        /// size of the top-k taken at each step; must not exceed the decoder's vocabulary
        #[range(1..)]
        top_k: i64 = 55,
        /// first kept rank, 1-based (31 keeps ranks 31..top_k, i.e. indices 30..54 as the original's [30:])
        #[range(1..)]
        keep_from: i64 = 31,
        /// add the four template sentences of every word
        templates: bool = true,
        /// keep <s>, </s>, <pad>, <unk> among the words, as the original does (it never filters them)
        keep_special_tokens: bool = false,
        /// reproduce the original's bug: every step is fed only [BOS], so all steps give the same words
        feed_only_bos: bool = false,
        /// drop a word only when a class name equals it exactly, case included, as the original's set difference (which keeps "chihuahua" for the class "Chihuahua"); false compares lower-case
        exact_class_names: bool = false,
    }
}

op_ports! {
    pub struct Inputs {
        /// decoder model folder: checkpoint, spiece.model or vocab.json, optional config.json
        model: Dir,
        /// CLIP image features [N, D] of the ID validation images (embed_images; not normalised)
        features: Npy,
        /// ID class names (numpy unicode array, as imagenet_class_clean.npy)
        class_names: Npy,
    }
}

op_ports! {
    pub struct Outputs {
        /// the outlier words (numpy unicode array), first-seen order
        words: Npy,
        /// "This is a photo of a <word>" per word, then the templates (numpy unicode array)
        sentences: Npy,
    }
}

impl TypedOp for OutliersWord {
    const NAME: &'static str = "outliers_word";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "word-level textual outliers: decoder top-k words of ID image embeddings (ranks 31-55 of 55), filtered, plus templates";
    type Params = Params;
    type Inputs = Inputs;
    type Outputs = Outputs;

    fn run(&self, ctx: &OpContext, p: Params, i: Inputs, o: Outputs) -> Result<()> {
        let (top_k, keep_from) = (p.top_k, p.keep_from);
        if keep_from > top_k {
            bail!("node {}: keep_from ({keep_from}) must be at most top_k ({top_k})", ctx.node);
        }
        let opts = GenerateOptions {
            steps: p.steps,
            top_k,
            keep_from: keep_from - 1,
            feed_only_bos: p.feed_only_bos,
            batch_size: p.model_dir.batch_size,
        };
        p.threads.apply(ctx.device);
        let features = read_features(&i.features)?;
        let class_names = formats::read_strings(&i.class_names)?;
        let dir = p.model_dir.open(&ctx.node, &i.model, ctx.device)?;
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
            .with_context(|| format!("node {}: decoding {}", ctx.node, i.features.display()))?;
        let matching = if p.exact_class_names { ClassNameMatch::Exact } else { ClassNameMatch::AnyCase };
        let mut words = filter_words(&decoded, &class_names, matching);
        if !p.keep_special_tokens {
            let t = dir.tokenizer.as_dyn();
            let special: Vec<String> = [t.bos_id(), t.eos_id(), t.pad_id()]
                .iter()
                .map(|&id| t.decode_token(id).to_lowercase())
                .chain(["<unk>".into()])
                .collect();
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
        let sentences = word_sentences(&words, p.templates);
        formats::write_strings(&o.words, &words)?;
        formats::write_strings(&o.sentences, &sentences)?;
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
