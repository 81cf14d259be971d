//! The transformer both CLIP towers share: pre-norm residual blocks of
//! multi-head attention and a QuickGELU MLP (`Transformer`,
//! `ResidualAttentionBlock` and `LayerNorm` in OpenAI's `model.py`).
//!
//! Activations are batch-first `[batch, tokens, width]` here (OpenAI's code
//! permutes to `[tokens, batch, width]` for `nn.MultiheadAttention`); the
//! results are the same. Attention goes through libtorch's fused
//! `scaled_dot_product_attention`, with `is_causal` for the text tower rather
//! than an additive mask, which picks the fast kernels.

use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// LayerNorm computed in fp32 whatever the activations' type, as OpenAI's
/// subclass does so that fp16/bf16 inference keeps its statistics exact.
#[derive(Debug)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    width: i64,
}

impl LayerNorm {
    pub fn new(path: nn::Path, width: i64) -> Self {
        Self { weight: path.ones("weight", &[width]), bias: path.zeros("bias", &[width]), width }
    }
}

impl Module for LayerNorm {
    fn forward(&self, xs: &Tensor) -> Tensor {
        let kind = xs.kind();
        xs.to_kind(Kind::Float)
            .layer_norm(
                [self.width],
                Some(&self.weight.to_kind(Kind::Float)),
                Some(&self.bias.to_kind(Kind::Float)),
                1e-5,
                true,
            )
            .to_kind(kind)
    }
}

/// `x * sigmoid(1.702 x)`, the GELU approximation CLIP was trained with.
pub fn quick_gelu(xs: &Tensor) -> Tensor {
    xs * (xs * 1.702).sigmoid()
}

/// Splits `[batch, tokens, heads * head_dim]` into `[batch, heads, tokens, head_dim]`.
pub fn split_heads(xs: &Tensor, heads: i64) -> Tensor {
    let (batch, tokens, width) = xs.size3().expect("activations are [batch, tokens, width]");
    xs.view([batch, tokens, heads, width / heads]).transpose(1, 2)
}

/// The inverse of [`split_heads`].
pub fn merge_heads(xs: &Tensor) -> Tensor {
    let (batch, heads, tokens, head_dim) = xs.size4().expect("heads are [batch, heads, tokens, dim]");
    xs.transpose(1, 2).reshape([batch, tokens, heads * head_dim])
}

/// `nn.MultiheadAttention` with one packed input projection
/// (`in_proj_weight`, `in_proj_bias`) and `out_proj`, self-attention only.
#[derive(Debug)]
pub struct SelfAttention {
    in_proj_weight: Tensor,
    in_proj_bias: Tensor,
    out_proj: nn::Linear,
    heads: i64,
}

impl SelfAttention {
    pub fn new(path: nn::Path, width: i64, heads: i64) -> Self {
        // PyTorch's init: xavier-uniform packed projection, zero biases.
        let bound = (6.0 / (width + 3 * width) as f64).sqrt();
        let in_proj_weight =
            path.var("in_proj_weight", &[3 * width, width], nn::Init::Uniform { lo: -bound, up: bound });
        let in_proj_bias = path.zeros("in_proj_bias", &[3 * width]);
        let out_proj = nn::linear(
            &path / "out_proj",
            width,
            width,
            nn::LinearConfig { bs_init: Some(nn::Init::Const(0.0)), ..Default::default() },
        );
        Self { in_proj_weight, in_proj_bias, out_proj, heads }
    }

    pub fn forward(&self, xs: &Tensor, causal: bool) -> Tensor {
        let qkv = xs.linear(&self.in_proj_weight, Some(&self.in_proj_bias));
        let parts = qkv.chunk(3, -1);
        let [q, k, v] = [&parts[0], &parts[1], &parts[2]].map(|t| split_heads(t, self.heads));
        let attended = Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, causal, None, false);
        merge_heads(&attended).apply(&self.out_proj)
    }
}

/// Pre-norm block: `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))`.
#[derive(Debug)]
pub struct ResidualAttentionBlock {
    attn: SelfAttention,
    ln_1: LayerNorm,
    c_fc: nn::Linear,
    c_proj: nn::Linear,
    ln_2: LayerNorm,
}

impl ResidualAttentionBlock {
    pub fn new(path: nn::Path, width: i64, heads: i64) -> Self {
        let mlp = &path / "mlp";
        Self {
            attn: SelfAttention::new(&path / "attn", width, heads),
            ln_1: LayerNorm::new(&path / "ln_1", width),
            c_fc: nn::linear(&mlp / "c_fc", width, 4 * width, Default::default()),
            c_proj: nn::linear(&mlp / "c_proj", 4 * width, width, Default::default()),
            ln_2: LayerNorm::new(&path / "ln_2", width),
        }
    }

    pub fn forward(&self, xs: &Tensor, causal: bool) -> Tensor {
        let xs = xs + self.attn.forward(&xs.apply(&self.ln_1), causal);
        let hidden = quick_gelu(&xs.apply(&self.ln_2).apply(&self.c_fc));
        &xs + hidden.apply(&self.c_proj)
    }
}

/// A stack of residual attention blocks (`<prefix>.resblocks.<i>`).
#[derive(Debug)]
pub struct Transformer {
    blocks: Vec<ResidualAttentionBlock>,
}

impl Transformer {
    pub fn new(path: nn::Path, width: i64, layers: i64, heads: i64) -> Self {
        let blocks = &path / "resblocks";
        Self { blocks: (0..layers).map(|i| ResidualAttentionBlock::new(&blocks / i, width, heads)).collect() }
    }

    /// `causal`: each token attends only to itself and earlier ones (text).
    pub fn forward(&self, xs: &Tensor, causal: bool) -> Tensor {
        self.blocks.iter().fold(xs.shallow_clone(), |xs, block| block.forward(&xs, causal))
    }

    /// OpenAI's initialisation of the blocks (`CLIP.initialize_parameters`),
    /// applied to the text transformer when a model is trained from scratch.
    pub fn init_like_openai(&self, width: i64) {
        let layers = self.blocks.len() as f64;
        let proj_std = (width as f64).powf(-0.5) * (2.0 * layers).powf(-0.5);
        let attn_std = (width as f64).powf(-0.5);
        let fc_std = (2.0 * width as f64).powf(-0.5);
        tch::no_grad(|| {
            for block in &self.blocks {
                normal_(&block.attn.in_proj_weight, attn_std);
                normal_(&block.attn.out_proj.ws, proj_std);
                normal_(&block.c_fc.ws, fc_std);
                normal_(&block.c_proj.ws, proj_std);
            }
        });
    }
}

/// Fills a parameter in place with N(0, std²) (callers hold `no_grad`).
pub fn normal_(tensor: &Tensor, std: f64) {
    let _ = tensor.shallow_clone().normal_(0.0, std);
}
