//! The decoder's shape, as Hugging Face's `BertGenerationConfig` with the
//! ZOC settings `is_decoder=True, add_cross_attention=True`.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::Tensor;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecoderConfig {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub intermediate_size: i64,
    pub max_position_embeddings: i64,
    pub layer_norm_eps: f64,
    pub hidden_dropout_prob: f64,
    pub attention_probs_dropout_prob: f64,
    pub pad_token_id: i64,
    pub bos_token_id: i64,
    pub eos_token_id: i64,
    /// The LM head's weight is the word embedding matrix (HF's default).
    pub tie_word_embeddings: bool,
}

impl DecoderConfig {
    /// `google/bert_for_seq_generation_L-24_bbc_encoder`, the configuration
    /// of the released ZOC/TOE decoder checkpoint.
    pub fn bbc_encoder_l24() -> Self {
        DecoderConfig {
            vocab_size: 50358,
            hidden_size: 1024,
            num_hidden_layers: 24,
            num_attention_heads: 16,
            intermediate_size: 4096,
            max_position_embeddings: 512,
            layer_norm_eps: 1e-12,
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            pad_token_id: 0,
            bos_token_id: 2,
            eos_token_id: 1,
            tie_word_embeddings: true,
        }
    }

    /// A small decoder for a small vocabulary (heads of width 64 or less).
    pub fn small(vocab_size: i64, hidden_size: i64, num_hidden_layers: i64, num_attention_heads: i64) -> Self {
        DecoderConfig {
            vocab_size,
            hidden_size,
            num_hidden_layers,
            num_attention_heads,
            intermediate_size: 4 * hidden_size,
            max_position_embeddings: 128,
            ..Self::bbc_encoder_l24()
        }
    }

    pub fn head_dim(&self) -> i64 {
        self.hidden_size / self.num_attention_heads
    }

    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if v <= 0 {
                bail!("decoder config: {name} must be positive, got {v}");
            }
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            bail!(
                "decoder config: hidden size {} is not a multiple of the {} attention heads",
                self.hidden_size,
                self.num_attention_heads
            );
        }
        for (name, id) in [("pad", self.pad_token_id), ("bos", self.bos_token_id), ("eos", self.eos_token_id)] {
            if id < 0 || id >= self.vocab_size {
                bail!("decoder config: {name} token id {id} is outside the vocabulary of {}", self.vocab_size);
            }
        }
        Ok(())
    }

    /// Read the shape off a state dict with Hugging Face names (optionally
    /// under a prefix such as `net.`): vocabulary, width, layers, positions
    /// and FFN width from the tensors; heads as given, else width / 64 (the
    /// BERT convention: 1024 -> 16). Special ids and dropout are
    /// BertGeneration's defaults. Errors name `source`.
    pub fn from_weights(weights: &[(String, Tensor)], num_heads: Option<i64>, source: &Path) -> Result<Self> {
        let prefix = weights_prefix(weights)
            .with_context(|| format!("{}: not a BertGenerationDecoder state dict", source.display()))?;
        let shape = |name: &str| -> Result<Vec<i64>> {
            let full = format!("{prefix}{name}");
            weights
                .iter()
                .find(|(n, _)| *n == full)
                .map(|(_, t)| t.size())
                .with_context(|| format!("{}: missing tensor {full}", source.display()))
        };
        let emb = shape("bert.embeddings.word_embeddings.weight")?;
        let pos = shape("bert.embeddings.position_embeddings.weight")?;
        let ffn = shape("bert.encoder.layer.0.intermediate.dense.weight")?;
        if emb.len() != 2 || pos.len() != 2 || ffn.len() != 2 {
            bail!("{}: embedding and FFN weights must be matrices", source.display());
        }
        let layer_prefix = format!("{prefix}bert.encoder.layer.");
        let layers: BTreeSet<i64> = weights
            .iter()
            .filter_map(|(n, _)| n.strip_prefix(&layer_prefix)?.split('.').next()?.parse().ok())
            .collect();
        // Layers must be numbered 0..L-1 without gaps.
        let num_layers = layers.len() as i64;
        if layers.iter().copied().ne(0..num_layers) {
            bail!("{}: encoder layers are not numbered 0..{}: {:?}", source.display(), num_layers, layers);
        }
        let has_cross = weights.iter().any(|(n, _)| n.starts_with(&format!("{layer_prefix}0.crossattention.")));
        if !has_cross {
            bail!(
                "{}: the layers have no cross-attention; a ZOC decoder is built with add_cross_attention=True",
                source.display()
            );
        }
        let hidden = emb[1];
        let heads = num_heads.unwrap_or((hidden / 64).max(1));
        let config = DecoderConfig {
            vocab_size: emb[0],
            hidden_size: hidden,
            num_hidden_layers: num_layers,
            num_attention_heads: heads,
            intermediate_size: ffn[0],
            max_position_embeddings: pos[0],
            ..Self::bbc_encoder_l24()
        };
        config.validate().with_context(|| format!("{}: inferred decoder config", source.display()))?;
        Ok(config)
    }
}

/// The prefix (e.g. `""` or `"net."`) under which a state dict holds
/// `bert.embeddings.word_embeddings.weight`.
pub fn weights_prefix(weights: &[(String, Tensor)]) -> Option<String> {
    const KEY: &str = "bert.embeddings.word_embeddings.weight";
    weights.iter().find_map(|(n, _)| n.strip_suffix(KEY).map(str::to_string))
}
