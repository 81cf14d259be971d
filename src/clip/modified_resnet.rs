//! CLIP's modified ResNet image tower (`ModifiedResNet` in OpenAI's
//! `model.py`; RN50, RN101, RN50x4, ...). Unlike torchvision's ResNet it has a
//! three-convolution stem with an average pool, anti-aliased downsampling
//! (an average pool before the stride-1 convolution instead of a strided
//! convolution), and an attention pool instead of global average pooling.

use tch::nn;
use tch::Tensor;

use super::transformer::{merge_heads, normal_, split_heads};
use super::TORCH_CONV_INIT;

/// The shape of a modified ResNet tower. OpenAI's models have
/// `heads = width * 32 / 64` in the attention pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResNetConfig {
    /// Bottleneck blocks in each of the four stages.
    pub layers: [i64; 4],
    /// Channels of the first stage (the stem ends with this many).
    pub width: i64,
    pub heads: i64,
}

/// Bottleneck blocks expand their channels by this factor.
const EXPANSION: i64 = 4;

fn conv(path: nn::Path, inputs: i64, outputs: i64, kernel: i64, stride: i64, padding: i64) -> nn::Conv2D {
    let config = nn::ConvConfig { stride, padding, bias: false, ws_init: TORCH_CONV_INIT, ..Default::default() };
    nn::conv2d(path, inputs, outputs, kernel, config)
}

/// PyTorch's BatchNorm2d defaults (scale 1, shift 0).
fn batch_norm(path: nn::Path, channels: i64) -> nn::BatchNorm {
    let config = nn::BatchNormConfig { ws_init: nn::Init::Const(1.0), ..Default::default() };
    nn::batch_norm2d(path, channels, config)
}

fn avg_pool(xs: &Tensor, size: i64) -> Tensor {
    if size == 1 {
        return xs.shallow_clone();
    }
    xs.avg_pool2d([size, size], [size, size], [0, 0], false, true, None)
}

#[derive(Debug)]
struct Bottleneck {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    bn2: nn::BatchNorm,
    conv3: nn::Conv2D,
    bn3: nn::BatchNorm,
    stride: i64,
    /// `downsample.0` (1x1 convolution) and `downsample.1`, after an average pool.
    downsample: Option<(nn::Conv2D, nn::BatchNorm)>,
}

impl Bottleneck {
    fn new(path: nn::Path, inplanes: i64, planes: i64, stride: i64) -> Self {
        let outplanes = planes * EXPANSION;
        let downsample = (stride > 1 || inplanes != outplanes).then(|| {
            let ds = &path / "downsample";
            (conv(&ds / "0", inplanes, outplanes, 1, 1, 0), batch_norm(&ds / "1", outplanes))
        });
        Self {
            conv1: conv(&path / "conv1", inplanes, planes, 1, 1, 0),
            bn1: batch_norm(&path / "bn1", planes),
            conv2: conv(&path / "conv2", planes, planes, 3, 1, 1),
            bn2: batch_norm(&path / "bn2", planes),
            conv3: conv(&path / "conv3", planes, outplanes, 1, 1, 0),
            bn3: batch_norm(&path / "bn3", outplanes),
            stride,
            downsample,
        }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let out = xs.apply(&self.conv1).apply_t(&self.bn1, train).relu();
        let out = out.apply(&self.conv2).apply_t(&self.bn2, train).relu();
        let out = avg_pool(&out, self.stride).apply(&self.conv3).apply_t(&self.bn3, train);
        let identity = match &self.downsample {
            Some((conv, bn)) => avg_pool(xs, self.stride).apply(conv).apply_t(bn, train),
            None => xs.shallow_clone(),
        };
        (out + identity).relu()
    }
}

/// Attention pooling: the mean of the final feature map, with learned
/// positions, attends over all positions; its output is the embedding.
#[derive(Debug)]
struct AttentionPool2d {
    positional_embedding: Tensor,
    q_proj: nn::Linear,
    k_proj: nn::Linear,
    v_proj: nn::Linear,
    c_proj: nn::Linear,
    heads: i64,
}

impl AttentionPool2d {
    fn new(path: nn::Path, spatial: i64, channels: i64, heads: i64, output_dim: i64) -> Self {
        let std = (channels as f64).powf(-0.5);
        let linear = |name: &str, outputs: i64| nn::linear(&path / name, channels, outputs, Default::default());
        Self {
            positional_embedding: path.randn("positional_embedding", &[spatial * spatial + 1, channels], 0.0, std),
            q_proj: linear("q_proj", channels),
            k_proj: linear("k_proj", channels),
            v_proj: linear("v_proj", channels),
            c_proj: linear("c_proj", output_dim),
            heads,
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        let tokens = xs.flatten(2, 3).transpose(1, 2); // [b, h*w, c]
        let tokens =
            Tensor::cat(&[tokens.mean_dim(1, true, None), tokens], 1) + self.positional_embedding.to_kind(xs.kind());
        let query = split_heads(&tokens.narrow(1, 0, 1).apply(&self.q_proj), self.heads);
        let key = split_heads(&tokens.apply(&self.k_proj), self.heads);
        let value = split_heads(&tokens.apply(&self.v_proj), self.heads);
        let pooled =
            Tensor::scaled_dot_product_attention(&query, &key, &value, None::<Tensor>, 0.0, false, None, false);
        merge_heads(&pooled).apply(&self.c_proj).squeeze_dim(1)
    }
}

#[derive(Debug)]
pub struct ModifiedResNet {
    stem: Vec<(nn::Conv2D, nn::BatchNorm)>,
    stages: Vec<Vec<Bottleneck>>,
    attnpool: AttentionPool2d,
}

impl ModifiedResNet {
    /// `path` is the tower's prefix (`visual`).
    pub fn new(path: nn::Path, config: &ResNetConfig, image_resolution: i64, embed_dim: i64) -> Self {
        let width = config.width;
        let stem = vec![
            (conv(&path / "conv1", 3, width / 2, 3, 2, 1), batch_norm(&path / "bn1", width / 2)),
            (conv(&path / "conv2", width / 2, width / 2, 3, 1, 1), batch_norm(&path / "bn2", width / 2)),
            (conv(&path / "conv3", width / 2, width, 3, 1, 1), batch_norm(&path / "bn3", width)),
        ];
        let mut inplanes = width;
        let mut stages = Vec::with_capacity(4);
        for (stage, &blocks) in config.layers.iter().enumerate() {
            let planes = width << stage;
            let stride = if stage == 0 { 1 } else { 2 };
            let layer = &path / format!("layer{}", stage + 1);
            let mut stage_blocks = Vec::with_capacity(blocks as usize);
            for block in 0..blocks {
                let block_stride = if block == 0 { stride } else { 1 };
                stage_blocks.push(Bottleneck::new(&layer / block, inplanes, planes, block_stride));
                inplanes = planes * EXPANSION;
            }
            stages.push(stage_blocks);
        }
        let attnpool =
            AttentionPool2d::new(&path / "attnpool", image_resolution / 32, width * 32, config.heads, embed_dim);
        let this = Self { stem, stages, attnpool };
        this.init_like_openai();
        this
    }

    /// `[batch, 3, res, res]` images (already normalised) to `[batch, embed_dim]`;
    /// `train` selects batch statistics (and updates the running ones).
    pub fn forward_t(&self, images: &Tensor, train: bool) -> Tensor {
        let kind = self.attnpool.c_proj.ws.kind();
        let mut xs = images.to_kind(kind);
        for (conv, bn) in &self.stem {
            xs = xs.apply(conv).apply_t(bn, train).relu();
        }
        xs = avg_pool(&xs, 2);
        for block in self.stages.iter().flatten() {
            xs = block.forward_t(&xs, train);
        }
        self.attnpool.forward(&xs)
    }

    /// OpenAI's initialisation (`CLIP.initialize_parameters`): attention-pool
    /// projections N(0, 1/channels), and each block's last batch-norm scale at
    /// zero so that every residual block starts as the identity.
    fn init_like_openai(&self) {
        let pool = &self.attnpool;
        let std = (pool.c_proj.ws.size()[1] as f64).powf(-0.5);
        tch::no_grad(|| {
            for linear in [&pool.q_proj, &pool.k_proj, &pool.v_proj, &pool.c_proj] {
                normal_(&linear.ws, std);
            }
            for block in self.stages.iter().flatten() {
                if let Some(scale) = &block.bn3.ws {
                    let _ = scale.shallow_clone().zero_();
                }
            }
        });
    }
}
