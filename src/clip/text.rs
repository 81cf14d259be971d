//! CLIP's text tower (`CLIP.encode_text` in OpenAI's `model.py`): token and
//! position embeddings, a causal transformer, and the final normalised
//! state at the end-of-text token projected to the embedding. Its weights sit
//! at the top level of the checkpoint (`token_embedding.weight`,
//! `transformer.resblocks.<i>...`, `ln_final`, `text_projection`).

use tch::nn::{self, Module};
use tch::{Kind, Tensor};

use super::transformer::{LayerNorm, Transformer};

/// The shape of the text tower. OpenAI's models have `heads = width / 64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextConfig {
    pub context_length: i64,
    pub vocab_size: i64,
    pub width: i64,
    pub heads: i64,
    pub layers: i64,
}

#[derive(Debug)]
pub struct TextTransformer {
    token_embedding: nn::Embedding,
    positional_embedding: Tensor,
    transformer: Transformer,
    ln_final: LayerNorm,
    text_projection: Tensor,
}

impl TextTransformer {
    /// `path` is the model's root: the text weights have no prefix of their own.
    pub fn new(path: &nn::Path, config: &TextConfig, embed_dim: i64) -> Self {
        let TextConfig { context_length, vocab_size, width, heads, layers } = *config;
        let embedding =
            nn::EmbeddingConfig { ws_init: nn::Init::Randn { mean: 0.0, stdev: 0.02 }, ..Default::default() };
        // The draws above and below are OpenAI's `initialize_parameters`.
        let this = Self {
            token_embedding: nn::embedding(path / "token_embedding", vocab_size, width, embedding),
            positional_embedding: path.randn("positional_embedding", &[context_length, width], 0.0, 0.01),
            transformer: Transformer::new(path / "transformer", width, layers, heads),
            ln_final: LayerNorm::new(path / "ln_final", width),
            text_projection: path.randn("text_projection", &[width, embed_dim], 0.0, (width as f64).powf(-0.5)),
        };
        this.transformer.init_like_openai(width);
        this
    }

    /// `[batch, n]` int64 token ids (`n` at most the context length, each row
    /// ending with its highest id, the end-of-text token) to `[batch, embed_dim]`.
    pub fn forward(&self, tokens: &Tensor) -> Tensor {
        let kind = self.text_projection.kind();
        // The end-of-text token has the highest id, so argmax finds it.
        let end_of_text = tokens.argmax(-1, false);
        // Attention is causal, so positions after the last end-of-text token
        // cannot change any feature: drop them (captions rarely fill 77).
        let n = end_of_text.max().int64_value(&[]) + 1;
        let tokens = tokens.narrow(1, 0, n);
        let xs =
            tokens.apply(&self.token_embedding).to_kind(kind) + self.positional_embedding.narrow(0, 0, n).to_kind(kind);
        let xs = self.ln_final.forward(&self.transformer.forward(&xs, true));
        let rows = Tensor::arange(xs.size()[0], (Kind::Int64, xs.device()));
        xs.index(&[Some(rows), Some(end_of_text)]).matmul(&self.text_projection)
    }
}
