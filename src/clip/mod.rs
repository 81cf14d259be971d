//! OpenAI's CLIP, natively in tch: the BPE tokenizer, the text transformer
//! and both image towers (vision transformer and modified ResNet), loaded
//! from OpenAI's released files or trained from scratch.
//!
//! Variable names mirror OpenAI's state dict (`visual.conv1.weight`,
//! `transformer.resblocks.0.attn.in_proj_weight`, `token_embedding.weight`,
//! `logit_scale`, ...), so checkpoints load by name and a model trained here
//! saves in the same layout.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use toe_pipe::clip::{self, Tokenizer};
//! let loaded = clip::load("ViT-B-16.pt", tch::Device::Cpu)?;
//! let tokens = Tokenizer::new()?.tokenize(&["a photo of a dog"], 77, true)?;
//! let text = loaded.clip.encode_text(&tokens)?; // [1, 512]
//! # Ok(()) }
//! ```

mod modified_resnet;
mod text;
mod text_clean;
#[rustfmt::skip]
mod text_tables;
pub mod tokenizer;
pub mod train;
mod transformer;
mod vit;
pub mod weights;

use std::collections::BTreeMap;

use anyhow::{bail, ensure, Context, Result};
use tch::nn;
use tch::{Kind, Tensor};

pub use modified_resnet::ResNetConfig;
pub use text::TextConfig;
pub use tokenizer::Tokenizer;
pub use vit::VitConfig;
pub use weights::{load, LoadedClip};

use modified_resnet::ModifiedResNet;
use text::TextTransformer;
use vit::VisionTransformer;

/// Per-channel mean of the RGB images CLIP was trained on (inputs are
/// `(pixel / 255 - mean) / std`, as OpenAI's preprocessing does).
pub const IMAGE_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
/// Per-channel standard deviation, see [`IMAGE_MEAN`].
pub const IMAGE_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

/// OpenAI's input normalisation for `[batch, 3, h, w]` RGB images: uint8
/// pixels are scaled to 0..=1 first, float images are taken as 0..=1.
/// (Resizing and cropping to the model's resolution come before this.)
pub fn normalize_images(images: &Tensor) -> Tensor {
    let images = match images.kind() {
        Kind::Uint8 => images.to_kind(Kind::Float) / 255.0,
        _ => images.shallow_clone(),
    };
    let options = (images.kind(), images.device());
    let mean = Tensor::from_slice(&IMAGE_MEAN).to_kind(options.0).to_device(options.1).view([1, 3, 1, 1]);
    let std = Tensor::from_slice(&IMAGE_STD).to_kind(options.0).to_device(options.1).view([1, 3, 1, 1]);
    (images - mean) / std
}

/// Which image tower, and its shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisionConfig {
    Vit(VitConfig),
    ResNet(ResNetConfig),
}

/// Everything that fixes the shapes of a CLIP model (the arguments of
/// OpenAI's `CLIP` constructor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipConfig {
    /// Size of the joint image-text embedding.
    pub embed_dim: i64,
    /// Side of the square input images.
    pub image_resolution: i64,
    pub vision: VisionConfig,
    pub text: TextConfig,
}

impl ClipConfig {
    /// The configuration of one of OpenAI's released models, by its name in
    /// `clip.available_models()` (`"ViT-B/16"`, `"RN50x4"`, ...).
    pub fn openai(name: &str) -> Option<Self> {
        let vit = |embed_dim, image_resolution, layers, width, patch_size, text_width| ClipConfig {
            embed_dim,
            image_resolution,
            vision: VisionConfig::Vit(VitConfig { width, layers, heads: width / 64, patch_size }),
            text: openai_text(text_width),
        };
        let resnet = |embed_dim, image_resolution, layers, width: i64, text_width| ClipConfig {
            embed_dim,
            image_resolution,
            vision: VisionConfig::ResNet(ResNetConfig { layers, width, heads: width * 32 / 64 }),
            text: openai_text(text_width),
        };
        Some(match name {
            "RN50" => resnet(1024, 224, [3, 4, 6, 3], 64, 512),
            "RN101" => resnet(512, 224, [3, 4, 23, 3], 64, 512),
            "RN50x4" => resnet(640, 288, [4, 6, 10, 6], 80, 640),
            "RN50x16" => resnet(768, 384, [6, 8, 18, 8], 96, 768),
            "RN50x64" => resnet(1024, 448, [3, 15, 36, 10], 128, 1024),
            "ViT-B/32" => vit(512, 224, 12, 768, 32, 512),
            "ViT-B/16" => vit(512, 224, 12, 768, 16, 512),
            "ViT-L/14" => vit(768, 224, 24, 1024, 14, 768),
            "ViT-L/14@336px" => vit(768, 336, 24, 1024, 14, 768),
            _ => return None,
        })
    }

    /// The names [`ClipConfig::openai`] knows.
    pub const OPENAI_MODELS: [&'static str; 9] =
        ["RN50", "RN101", "RN50x4", "RN50x16", "RN50x64", "ViT-B/32", "ViT-B/16", "ViT-L/14", "ViT-L/14@336px"];

    /// Infers the configuration from a checkpoint's tensor names and shapes,
    /// the way OpenAI's `build_model` does: a `visual.proj` means a vision
    /// transformer; layer counts are the distinct block indices; the image
    /// resolution follows from the positional embedding's length; heads are
    /// `width / 64` (at least one, for models narrower than OpenAI's).
    pub fn from_shapes(shapes: &BTreeMap<String, Vec<i64>>) -> Result<Self> {
        let shape = |name: &str| -> Result<&[i64]> {
            shapes
                .get(name)
                .map(Vec::as_slice)
                .with_context(|| format!("the checkpoint has no tensor `{name}`, which every CLIP model has"))
        };
        let dim = |name: &str, axis: usize| -> Result<i64> {
            let s = shape(name)?;
            s.get(axis)
                .copied()
                .filter(|&d| d > 0)
                .with_context(|| format!("tensor `{name}` has shape {s:?}, expected a positive size on axis {axis}"))
        };
        // Distinct values of the third dotted component among names with this prefix.
        let count_blocks = |prefix: &str| -> i64 {
            let blocks: std::collections::BTreeSet<&str> =
                shapes.keys().filter(|k| k.starts_with(prefix)).filter_map(|k| k.split('.').nth(2)).collect();
            blocks.len() as i64
        };
        let grid_of = |name: &str| -> Result<i64> {
            let positions = dim(name, 0)?;
            let grid = ((positions - 1) as f64).sqrt().round() as i64;
            ensure!(
                grid > 0 && grid * grid + 1 == positions,
                "tensor `{name}` has {positions} rows, expected a square grid of positions plus one"
            );
            Ok(grid)
        };

        let (vision, image_resolution) = if shapes.contains_key("visual.proj") {
            let width = dim("visual.conv1.weight", 0)?;
            let patch_size = dim("visual.conv1.weight", 3)?;
            let layers =
                shapes.keys().filter(|k| k.starts_with("visual.") && k.ends_with(".attn.in_proj_weight")).count()
                    as i64;
            let grid = grid_of("visual.positional_embedding")?;
            let heads = (width / 64).max(1);
            (VisionConfig::Vit(VitConfig { width, layers, heads, patch_size }), patch_size * grid)
        } else {
            let layers = [1, 2, 3, 4].map(|stage| count_blocks(&format!("visual.layer{stage}")));
            if layers.contains(&0) {
                bail!(
                    "the checkpoint has neither `visual.proj` (a vision transformer) nor blocks in all of \
                     `visual.layer1`..`visual.layer4` (a ResNet; found {layers:?}): not a CLIP model"
                );
            }
            let width = dim("visual.layer1.0.conv1.weight", 0)?;
            let grid = grid_of("visual.attnpool.positional_embedding")?;
            let heads = (width * 32 / 64).max(1);
            (VisionConfig::ResNet(ResNetConfig { layers, width, heads }), grid * 32)
        };

        let width = dim("ln_final.weight", 0)?;
        let text = TextConfig {
            context_length: dim("positional_embedding", 0)?,
            vocab_size: dim("token_embedding.weight", 0)?,
            width,
            heads: (width / 64).max(1),
            layers: count_blocks("transformer.resblocks"),
        };
        Ok(Self { embed_dim: dim("text_projection", 1)?, image_resolution, vision, text })
    }
}

fn openai_text(width: i64) -> TextConfig {
    TextConfig { context_length: 77, vocab_size: 49408, width, heads: width / 64, layers: 12 }
}

#[derive(Debug)]
enum ImageTower {
    Vit(VisionTransformer),
    ResNet(ModifiedResNet),
}

/// PyTorch's `Conv2d` default, which OpenAI's `initialize_parameters` keeps:
/// `kaiming_uniform_(a = sqrt(5))`, uniform within +-1/sqrt(fan_in). tch's
/// default uses the ReLU gain, a 2.45 times wider start; behind batch norm
/// that shrinks Adam's relative steps by as much, and the demo's CLIP
/// needed 2000 steps where 1200 now do.
pub(crate) const TORCH_CONV_INIT: nn::Init = nn::Init::Kaiming {
    dist: nn::init::NormalOrUniform::Uniform,
    fan: nn::init::FanInOut::FanIn,
    non_linearity: nn::init::NonLinearity::ExplicitGain(0.577_350_269_189_625_8), // 1/sqrt(3)
};

/// A CLIP model: `encode_image` and `encode_text` map images and token ids
/// into one embedding space; `logit_scale` is the learned temperature.
#[derive(Debug)]
pub struct Clip {
    config: ClipConfig,
    visual: ImageTower,
    text: TextTransformer,
    logit_scale: Tensor,
}

impl Clip {
    /// Creates the variables under `root` (usually a fresh `VarStore`'s root),
    /// initialised as OpenAI's `CLIP.initialize_parameters` does, so the model
    /// can be trained from scratch or have a checkpoint copied in.
    pub fn new(root: &nn::Path, config: &ClipConfig) -> Self {
        let visual_path = root / "visual";
        let visual = match &config.vision {
            VisionConfig::Vit(vit) => {
                ImageTower::Vit(VisionTransformer::new(visual_path, vit, config.image_resolution, config.embed_dim))
            }
            VisionConfig::ResNet(resnet) => {
                ImageTower::ResNet(ModifiedResNet::new(visual_path, resnet, config.image_resolution, config.embed_dim))
            }
        };
        Self {
            config: *config,
            visual,
            text: TextTransformer::new(root, &config.text, config.embed_dim),
            logit_scale: root.var("logit_scale", &[], nn::Init::Const((1.0f64 / 0.07).ln())),
        }
    }

    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// Image features `[batch, embed_dim]` for inference: no gradients, batch
    /// norms use their running statistics. `images` is `[batch, 3, res, res]`,
    /// normalised with [`IMAGE_MEAN`] and [`IMAGE_STD`], of any float type
    /// (it is cast to the model's).
    pub fn encode_image(&self, images: &Tensor) -> Result<Tensor> {
        tch::no_grad(|| self.encode_image_t(images, false))
    }

    /// Text features `[batch, embed_dim]` for inference (no gradients) from
    /// int64 token ids `[batch, n]`, `n <= context_length`, as
    /// [`Tokenizer::tokenize`] makes them.
    pub fn encode_text(&self, tokens: &Tensor) -> Result<Tensor> {
        tch::no_grad(|| self.encode_text_t(tokens))
    }

    /// [`Clip::encode_image`] for training: tracks gradients, and with
    /// `train` the ResNet's batch norms use (and update) batch statistics.
    pub fn encode_image_t(&self, images: &Tensor, train: bool) -> Result<Tensor> {
        let res = self.config.image_resolution;
        let size = images.size();
        ensure!(
            size.len() == 4 && size[0] > 0 && size[1] == 3 && size[2] == res && size[3] == res,
            "CLIP expects images of shape [batch, 3, {res}, {res}], got {size:?}"
        );
        ensure!(images.is_floating_point(), "CLIP expects normalised float images, got {:?}", images.kind());
        let images = images.to_device(self.logit_scale.device());
        Ok(match &self.visual {
            ImageTower::Vit(vit) => vit.forward(&images),
            ImageTower::ResNet(resnet) => resnet.forward_t(&images, train),
        })
    }

    /// [`Clip::encode_text`] with gradient tracking, for training.
    pub fn encode_text_t(&self, tokens: &Tensor) -> Result<Tensor> {
        let size = tokens.size();
        let context = self.config.text.context_length;
        ensure!(
            size.len() == 2 && size[0] > 0 && (1..=context).contains(&size[1]),
            "CLIP expects token ids of shape [batch, n] with 1 <= n <= {context}, got {size:?}"
        );
        ensure!(tokens.kind() == Kind::Int64, "CLIP expects int64 token ids, got {:?}", tokens.kind());
        let (low, high) = (tokens.min().int64_value(&[]), tokens.max().int64_value(&[]));
        let vocab = self.config.text.vocab_size;
        ensure!(
            low >= 0 && high < vocab,
            "token ids must lie in 0..{vocab} (the model's vocabulary), found {low}..={high}"
        );
        Ok(self.text.forward(&tokens.to_device(self.logit_scale.device())))
    }

    /// The learned temperature's logarithm (CLIP's `logit_scale`).
    pub fn logit_scale(&self) -> &Tensor {
        &self.logit_scale
    }

    /// CLIP's `forward` on features: cosine similarities scaled by
    /// `exp(logit_scale)`, `[images, texts]` (the transpose is per text).
    pub fn logits(&self, image_features: &Tensor, text_features: &Tensor) -> Tensor {
        let normalise = |xs: &Tensor| xs / xs.norm_scalaropt_dim(2, [-1], true);
        let similarity = normalise(image_features).matmul(&normalise(text_features).transpose(0, 1));
        similarity * self.logit_scale.exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_centres_the_training_mean() {
        let mean_pixel: Vec<u8> = IMAGE_MEAN.iter().map(|m| (m * 255.0).round() as u8).collect();
        let image = Tensor::from_slice(&mean_pixel).view([1, 3, 1, 1]).repeat([2, 1, 4, 4]);
        let normalised = normalize_images(&image);
        assert_eq!(normalised.size(), [2, 3, 4, 4]);
        assert!(normalised.abs().max().double_value(&[]) < 0.01);
        let white = normalize_images(&Tensor::ones([1, 3, 1, 1], (Kind::Float, tch::Device::Cpu)));
        let expected = (1.0 - IMAGE_MEAN[0]) / IMAGE_STD[0];
        assert!((white.double_value(&[0, 0, 0, 0]) - expected).abs() < 1e-5);
    }
}
