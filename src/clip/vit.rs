//! CLIP's vision transformer image tower (`VisionTransformer` in OpenAI's
//! `model.py`; ViT-B/32, ViT-B/16, ViT-L/14): patches by a strided
//! convolution, a class token, learned positions, the transformer, and the
//! class token's normalised output projected to the embedding.

use tch::nn::{self, Module};
use tch::Tensor;

use super::transformer::{LayerNorm, Transformer};
use super::TORCH_CONV_INIT;

/// The shape of a vision transformer tower. OpenAI's models have
/// `heads = width / 64`; smaller models may choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VitConfig {
    pub width: i64,
    pub layers: i64,
    pub heads: i64,
    pub patch_size: i64,
}

#[derive(Debug)]
pub struct VisionTransformer {
    conv1: nn::Conv2D,
    class_embedding: Tensor,
    positional_embedding: Tensor,
    ln_pre: LayerNorm,
    transformer: Transformer,
    ln_post: LayerNorm,
    proj: Tensor,
}

impl VisionTransformer {
    /// `path` is the tower's prefix (`visual`).
    pub fn new(path: nn::Path, config: &VitConfig, image_resolution: i64, embed_dim: i64) -> Self {
        let VitConfig { width, layers, heads, patch_size } = *config;
        let grid = image_resolution / patch_size;
        let scale = (width as f64).powf(-0.5);
        let conv = nn::ConvConfig { stride: patch_size, bias: false, ws_init: TORCH_CONV_INIT, ..Default::default() };
        Self {
            conv1: nn::conv2d(&path / "conv1", 3, width, patch_size, conv),
            class_embedding: path.randn("class_embedding", &[width], 0.0, scale),
            positional_embedding: path.randn("positional_embedding", &[grid * grid + 1, width], 0.0, scale),
            ln_pre: LayerNorm::new(&path / "ln_pre", width),
            transformer: Transformer::new(&path / "transformer", width, layers, heads),
            ln_post: LayerNorm::new(&path / "ln_post", width),
            proj: path.randn("proj", &[width, embed_dim], 0.0, scale),
        }
    }

    /// `[batch, 3, res, res]` images (already normalised) to `[batch, embed_dim]`.
    pub fn forward(&self, images: &Tensor) -> Tensor {
        let kind = self.proj.kind();
        let patches = images.to_kind(kind).apply(&self.conv1); // [b, width, grid, grid]
        let (batch, width, _, _) = patches.size4().expect("conv output is 4-d");
        let tokens = patches.flatten(2, 3).transpose(1, 2); // [b, grid², width]
        let class_token = self.class_embedding.to_kind(kind).view([1, 1, width]).expand([batch, 1, width], false);
        let xs = Tensor::cat(&[class_token, tokens], 1) + self.positional_embedding.to_kind(kind);
        let xs = self.transformer.forward(&xs.apply(&self.ln_pre), false);
        self.ln_post.forward(&xs.select(1, 0)).matmul(&self.proj)
    }
}
