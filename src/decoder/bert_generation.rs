//! Hugging Face's `BertGenerationDecoder` with `is_decoder=True,
//! add_cross_attention=True`, the text decoder of ZOC and TOE, natively in
//! tch. Variable names mirror the checkpoint's (`bert.embeddings...`,
//! `bert.encoder.layer.N.attention.self.query.weight`,
//! `...crossattention...`, `lm_head.bias`), so a ZOC state dict loads by name.
//!
//! The architecture, as transformers' modeling_bert_generation.py builds it:
//! * embeddings: word + absolute position (ids 0..L-1 after any cached
//!   tokens), LayerNorm (eps 1e-12), dropout; no token-type embeddings;
//! * per layer, post-LN: causal self-attention -> dense -> dropout ->
//!   LayerNorm(x + .); cross-attention from that output to the encoder
//!   states (unmasked) -> dense -> dropout -> LayerNorm(x + .); FFN dense ->
//!   exact (erf) GELU -> dense -> dropout -> LayerNorm(x + .);
//! * LM head: `lm_head.decoder` (weight tied to the word embeddings by
//!   default) plus `lm_head.bias` (HF's `lm_head.decoder.bias` is the same
//!   parameter); no transform layer before it.
//!
//! Init for training from scratch follows HF's `_init_weights`: weights
//! N(0, 0.02), biases 0, LayerNorm 1/0, the padding row of the word
//! embeddings 0.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

use super::config::{weights_prefix, DecoderConfig};

const INIT: nn::Init = nn::Init::Randn { mean: 0.0, stdev: 0.02 };

fn linear(p: nn::Path, in_dim: i64, out_dim: i64) -> nn::Linear {
    nn::linear(p, in_dim, out_dim, nn::LinearConfig { ws_init: INIT, bs_init: Some(nn::Init::Const(0.0)), bias: true })
}

fn layer_norm(p: nn::Path, dim: i64, eps: f64) -> nn::LayerNorm {
    nn::layer_norm(p, vec![dim], nn::LayerNormConfig { eps, ..Default::default() })
}

/// Which positions a self-attention query may see.
enum Mask<'a> {
    /// Every key (a single new token after cached ones, or cross-attention).
    All,
    /// Causal over a sequence with no cached prefix.
    Causal,
    /// Boolean [B or 1, 1, Lq, Lk], true = attend.
    Explicit(&'a Tensor),
}

/// `attention.self` + `attention.output` (or the cross-attention pair).
#[derive(Debug)]
struct Attention {
    query: nn::Linear,
    key: nn::Linear,
    value: nn::Linear,
    dense: nn::Linear,
    norm: nn::LayerNorm,
    heads: i64,
    head_dim: i64,
    attn_dropout: f64,
    hidden_dropout: f64,
}

impl Attention {
    fn new(p: nn::Path, c: &DecoderConfig) -> Self {
        let h = c.hidden_size;
        let s = &p / "self";
        let o = &p / "output";
        Attention {
            query: linear(&s / "query", h, h),
            key: linear(&s / "key", h, h),
            value: linear(&s / "value", h, h),
            dense: linear(&o / "dense", h, h),
            norm: layer_norm(&o / "LayerNorm", h, c.layer_norm_eps),
            heads: c.num_attention_heads,
            head_dim: c.head_dim(),
            attn_dropout: c.attention_probs_dropout_prob,
            hidden_dropout: c.hidden_dropout_prob,
        }
    }

    /// [B, T, H] -> [B, heads, T, head_dim]
    fn split_heads(&self, x: &Tensor) -> Tensor {
        let (b, t, _) = x.size3().expect("hidden states are [B, T, H]");
        x.view([b, t, self.heads, self.head_dim]).transpose(1, 2)
    }

    fn keys_values(&self, source: &Tensor) -> (Tensor, Tensor) {
        (self.split_heads(&self.key.forward(source)), self.split_heads(&self.value.forward(source)))
    }

    /// Attend from `x` to (`k`, `v`), then the output block:
    /// LayerNorm(x + dropout(dense(context))).
    fn attend(&self, x: &Tensor, k: &Tensor, v: &Tensor, mask: Mask, train: bool) -> Tensor {
        let (b, t, h) = x.size3().expect("hidden states are [B, T, H]");
        let q = self.split_heads(&self.query.forward(x));
        let p = if train { self.attn_dropout } else { 0.0 };
        let ctx = match mask {
            Mask::All => Tensor::scaled_dot_product_attention(&q, k, v, None::<Tensor>, p, false, None, false),
            Mask::Causal => Tensor::scaled_dot_product_attention(&q, k, v, None::<Tensor>, p, true, None, false),
            Mask::Explicit(m) => Tensor::scaled_dot_product_attention(&q, k, v, Some(m), p, false, None, false),
        };
        let ctx = ctx.transpose(1, 2).contiguous().view([b, t, h]);
        let out = self.dense.forward(&ctx).dropout(self.hidden_dropout, train);
        self.norm.forward(&(out + x))
    }
}

#[derive(Debug)]
struct Layer {
    attention: Attention,
    crossattention: Attention,
    intermediate: nn::Linear,
    output: nn::Linear,
    output_norm: nn::LayerNorm,
    hidden_dropout: f64,
}

impl Layer {
    fn new(p: nn::Path, c: &DecoderConfig) -> Self {
        Layer {
            attention: Attention::new(&p / "attention", c),
            crossattention: Attention::new(&p / "crossattention", c),
            intermediate: linear(&p / "intermediate" / "dense", c.hidden_size, c.intermediate_size),
            output: linear(&p / "output" / "dense", c.intermediate_size, c.hidden_size),
            output_norm: layer_norm(&p / "output" / "LayerNorm", c.hidden_size, c.layer_norm_eps),
            hidden_dropout: c.hidden_dropout_prob,
        }
    }

    fn feed_forward(&self, x: &Tensor, train: bool) -> Tensor {
        let y = self.intermediate.forward(x).gelu("none");
        let y = self.output.forward(&y).dropout(self.hidden_dropout, train);
        self.output_norm.forward(&(y + x))
    }
}

/// Keys and values of one layer: self-attention over the tokens so far,
/// cross-attention over the encoder states (computed once).
#[derive(Debug)]
struct LayerCache {
    self_kv: Option<(Tensor, Tensor)>,
    cross_kv: (Tensor, Tensor),
}

/// Incremental-decoding state: per-layer keys/values and the number of
/// tokens already fed (the next token's position id).
#[derive(Debug)]
pub struct DecoderCache {
    layers: Vec<LayerCache>,
    len: i64,
}

impl DecoderCache {
    pub fn len(&self) -> i64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[derive(Debug)]
pub struct BertGenerationDecoder {
    vs: nn::VarStore,
    config: DecoderConfig,
    word_embeddings: nn::Embedding,
    position_embeddings: nn::Embedding,
    embeddings_norm: nn::LayerNorm,
    layers: Vec<Layer>,
    /// `Some` only when the LM head is not tied to the word embeddings.
    lm_weight: Option<Tensor>,
    lm_bias: Tensor,
}

impl BertGenerationDecoder {
    /// A randomly initialised decoder (seed with `tch::manual_seed` first).
    pub fn new(config: DecoderConfig, device: Device) -> Result<Self> {
        config.validate()?;
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let c = &config;
        let bert = &root / "bert";
        let emb = &bert / "embeddings";
        let emb_cfg = nn::EmbeddingConfig { ws_init: INIT, padding_idx: c.pad_token_id, ..Default::default() };
        let word_embeddings = nn::embedding(&emb / "word_embeddings", c.vocab_size, c.hidden_size, emb_cfg);
        let position_embeddings = nn::embedding(
            &emb / "position_embeddings",
            c.max_position_embeddings,
            c.hidden_size,
            nn::EmbeddingConfig { ws_init: INIT, ..Default::default() },
        );
        tch::no_grad(|| {
            let _ = word_embeddings.ws.get(c.pad_token_id).zero_();
        });
        let embeddings_norm = layer_norm(&emb / "LayerNorm", c.hidden_size, c.layer_norm_eps);
        let enc = &bert / "encoder" / "layer";
        let layers = (0..c.num_hidden_layers).map(|i| Layer::new(&enc / i, c)).collect();
        let head = &root / "lm_head";
        let lm_weight =
            (!c.tie_word_embeddings).then(|| (&head / "decoder").var("weight", &[c.vocab_size, c.hidden_size], INIT));
        let lm_bias = head.var("bias", &[c.vocab_size], nn::Init::Const(0.0));
        Ok(BertGenerationDecoder {
            vs,
            config,
            word_embeddings,
            position_embeddings,
            embeddings_norm,
            layers,
            lm_weight,
            lm_bias,
        })
    }

    /// Build a decoder shaped by a state dict (see [`DecoderConfig::from_weights`])
    /// and load it. `source` names the file in errors.
    pub fn from_weights(
        weights: &[(String, Tensor)],
        num_heads: Option<i64>,
        device: Device,
        source: &Path,
    ) -> Result<Self> {
        let mut config = DecoderConfig::from_weights(weights, num_heads, source)?;
        config.tie_word_embeddings = lm_head_is_tied(weights);
        let mut model = Self::new(config, device)?;
        model.load_weights(weights, source)?;
        Ok(model)
    }

    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    pub fn var_store_mut(&mut self) -> &mut nn::VarStore {
        &mut self.vs
    }

    /// The floating-point kind of the weights.
    pub fn kind(&self) -> Kind {
        self.lm_bias.kind()
    }

    /// Cast every weight (e.g. `Kind::Half` or `Kind::BFloat16` on CUDA).
    pub fn set_kind(&mut self, kind: Kind) {
        self.vs.set_kind(kind);
    }

    fn lm_weight(&self) -> &Tensor {
        self.lm_weight.as_ref().unwrap_or(&self.word_embeddings.ws)
    }

    /// Copy a state dict with Hugging Face names (optionally under a prefix
    /// such as `net.`) into the model. Every weight must be present with
    /// the model's shape; errors name the tensor and `source`. The ignored
    /// extras are HF's aliases (`lm_head.decoder.bias`, and
    /// `lm_head.decoder.weight` when tied) and the old `position_ids` buffer.
    pub fn load_weights(&mut self, weights: &[(String, Tensor)], source: &Path) -> Result<()> {
        let prefix = weights_prefix(weights).with_context(|| {
            format!(
                "{}: no bert.embeddings.word_embeddings.weight; not a BertGenerationDecoder state dict",
                source.display()
            )
        })?;
        let by_name: HashMap<&str, &Tensor> =
            weights.iter().filter_map(|(n, t)| Some((n.strip_prefix(prefix.as_str())?, t))).collect();
        let vars = self.vs.variables();
        for (name, var) in &vars {
            let found = by_name.get(name.as_str()).or_else(|| match name.as_str() {
                "lm_head.bias" => by_name.get("lm_head.decoder.bias"),
                _ => None,
            });
            let src = found.with_context(|| format!("{}: missing tensor {prefix}{name}", source.display()))?;
            if src.size() != var.size() {
                bail!(
                    "{}: tensor {prefix}{name} has shape {:?}, the decoder expects {:?}",
                    source.display(),
                    src.size(),
                    var.size()
                );
            }
            if !src.is_floating_point() {
                bail!("{}: tensor {prefix}{name} is not floating point ({:?})", source.display(), src.kind());
            }
            tch::no_grad(|| {
                let mut var = var.shallow_clone();
                var.copy_(&src.to_device(var.device()));
            });
        }
        let known_aliases = ["lm_head.decoder.bias", "lm_head.decoder.weight", "bert.embeddings.position_ids"];
        for name in by_name.keys() {
            if !vars.contains_key(*name) && !known_aliases.contains(name) {
                tracing::warn!("{}: ignoring unexpected tensor {prefix}{name}", source.display());
            }
        }
        Ok(())
    }

    /// The state dict as Hugging Face writes it (same names, order and
    /// aliases: `lm_head.bias`, `lm_head.decoder.weight`,
    /// `lm_head.decoder.bias`), on the CPU, for saving in the ZOC format.
    pub fn state_dict(&self) -> Vec<(String, Tensor)> {
        let vars = self.vs.variables();
        let mut names: Vec<&String> = vars.keys().collect();
        names.sort_by_key(|n| hf_order_key(n));
        let mut out: Vec<(String, Tensor)> = names
            .into_iter()
            .filter(|n| !n.starts_with("lm_head."))
            .map(|n| (n.clone(), vars[n].detach().to(Device::Cpu)))
            .collect();
        out.push(("lm_head.bias".into(), self.lm_bias.detach().to(Device::Cpu)));
        out.push(("lm_head.decoder.weight".into(), self.lm_weight().detach().to(Device::Cpu)));
        out.push(("lm_head.decoder.bias".into(), self.lm_bias.detach().to(Device::Cpu)));
        out
    }

    fn embed(&self, input_ids: &Tensor, past: i64, train: bool) -> Tensor {
        let (_, l) = input_ids.size2().expect("input ids are [B, L]");
        let positions = Tensor::arange_start(past, past + l, (Kind::Int64, input_ids.device()));
        let x = self.word_embeddings.forward(input_ids) + self.position_embeddings.forward(&positions).unsqueeze(0);
        self.embeddings_norm.forward(&x).dropout(self.config.hidden_dropout_prob, train)
    }

    fn check_inputs(&self, input_ids: &Tensor, encoder_states: &Tensor, past: i64) -> Result<()> {
        let ids = input_ids.size();
        let enc = encoder_states.size();
        if ids.len() != 2 {
            bail!("decoder input ids must be [batch, length], got {ids:?}");
        }
        if enc.len() != 3 || enc[0] != ids[0] || enc[2] != self.config.hidden_size {
            bail!("encoder states must be [batch={}, length, hidden={}], got {enc:?}", ids[0], self.config.hidden_size);
        }
        if past + ids[1] > self.config.max_position_embeddings {
            bail!(
                "sequence of {} tokens exceeds the decoder's {} positions",
                past + ids[1],
                self.config.max_position_embeddings
            );
        }
        Ok(())
    }

    /// Logits [B, L, V] for `input_ids` [B, L] attending to `encoder_states`
    /// [B, S, H], positions 0..L-1. `attention_mask` [B, L] (1 = token,
    /// 0 = padding) hides padded keys as HF does; right-padded training
    /// batches do not need it, since causal attention never lets a real
    /// token see a later pad and pad positions carry no loss. `train`
    /// enables dropout.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        encoder_states: &Tensor,
        attention_mask: Option<&Tensor>,
        train: bool,
    ) -> Result<Tensor> {
        self.check_inputs(input_ids, encoder_states, 0)?;
        let (_, l) = input_ids.size2()?;
        let explicit = attention_mask.map(|m| {
            let causal = Tensor::ones([l, l], (Kind::Bool, m.device())).tril(0);
            causal.unsqueeze(0).unsqueeze(0).logical_and(&m.to_kind(Kind::Bool).unsqueeze(1).unsqueeze(1))
        });
        let mut x = self.embed(input_ids, 0, train);
        for layer in &self.layers {
            let (k, v) = layer.attention.keys_values(&x);
            let mask = explicit.as_ref().map_or(Mask::Causal, Mask::Explicit);
            x = layer.attention.attend(&x, &k, &v, mask, train);
            let (ck, cv) = layer.crossattention.keys_values(encoder_states);
            x = layer.crossattention.attend(&x, &ck, &cv, Mask::All, train);
            x = layer.feed_forward(&x, train);
        }
        Ok(x.linear(self.lm_weight(), Some(&self.lm_bias)))
    }

    /// Start incremental decoding: cross-attention keys/values of every
    /// layer from `encoder_states` [B, S, H].
    pub fn start_cache(&self, encoder_states: &Tensor) -> Result<DecoderCache> {
        let enc = encoder_states.size();
        if enc.len() != 3 || enc[2] != self.config.hidden_size {
            bail!("encoder states must be [batch, length, hidden={}], got {enc:?}", self.config.hidden_size);
        }
        let layers = self
            .layers
            .iter()
            .map(|l| LayerCache { self_kv: None, cross_kv: l.crossattention.keys_values(encoder_states) })
            .collect();
        Ok(DecoderCache { layers, len: 0 })
    }

    /// Feed `input_ids` [B, l] after the cached tokens and return the
    /// logits of the last new position [B, V] (eval mode, no dropout).
    /// Equal to `forward` on the whole sequence, at a fraction of the cost.
    pub fn step(&self, input_ids: &Tensor, cache: &mut DecoderCache) -> Result<Tensor> {
        let (b, l) = input_ids.size2().context("decoder input ids must be [batch, length]")?;
        let past = cache.len;
        let batch_of_cache = cache.layers.first().map(|c| c.cross_kv.0.size()[0]).unwrap_or(b);
        if batch_of_cache != b {
            bail!("step with a batch of {b} on a cache started for {batch_of_cache}");
        }
        if past + l > self.config.max_position_embeddings {
            bail!(
                "sequence of {} tokens exceeds the decoder's {} positions",
                past + l,
                self.config.max_position_embeddings
            );
        }
        // A block of several new tokens after a cached prefix needs an
        // offset causal mask; one new token sees everything.
        let offset_mask = (past > 0 && l > 1).then(|| {
            let q = Tensor::arange_start(past, past + l, (Kind::Int64, input_ids.device())).unsqueeze(1);
            let k = Tensor::arange(past + l, (Kind::Int64, input_ids.device())).unsqueeze(0);
            k.le_tensor(&q).unsqueeze(0).unsqueeze(0)
        });
        let mut x = self.embed(input_ids, past, false);
        for (layer, lc) in self.layers.iter().zip(cache.layers.iter_mut()) {
            let (k_new, v_new) = layer.attention.keys_values(&x);
            let (k, v) = match lc.self_kv.take() {
                Some((k0, v0)) => (Tensor::cat(&[k0, k_new], 2), Tensor::cat(&[v0, v_new], 2)),
                None => (k_new, v_new),
            };
            let mask = match (&offset_mask, past, l) {
                (Some(m), _, _) => Mask::Explicit(m),
                (None, 0, l) if l > 1 => Mask::Causal,
                _ => Mask::All,
            };
            x = layer.attention.attend(&x, &k, &v, mask, false);
            lc.self_kv = Some((k, v));
            let (ck, cv) = &lc.cross_kv;
            x = layer.crossattention.attend(&x, ck, cv, Mask::All, false);
            x = layer.feed_forward(&x, false);
        }
        cache.len += l;
        let last = x.select(1, l - 1);
        Ok(last.linear(self.lm_weight(), Some(&self.lm_bias)))
    }
}

/// Whether the state dict's LM head weight is the word embedding matrix
/// (true when it has no separate `lm_head.decoder.weight`, as HF saves tied
/// weights under both names).
fn lm_head_is_tied(weights: &[(String, Tensor)]) -> bool {
    let Some(prefix) = weights_prefix(weights) else { return true };
    let get = |n: &str| weights.iter().find(|(k, _)| *k == format!("{prefix}{n}")).map(|(_, t)| t);
    match (get("bert.embeddings.word_embeddings.weight"), get("lm_head.decoder.weight")) {
        (Some(e), Some(w)) => e.size() == w.size() && e.equal(w),
        _ => true,
    }
}

/// Sort key reproducing HF's module order: embeddings, then layers by
/// number, within a layer attention, crossattention, intermediate, output,
/// each weight before bias.
fn hf_order_key(name: &str) -> (u8, i64, u8, u8, String) {
    let leaf = |n: &str| if n.ends_with(".weight") { 0 } else { 1 };
    if let Some(rest) = name.strip_prefix("bert.embeddings.") {
        let part = ["word_embeddings", "position_embeddings", "LayerNorm"]
            .iter()
            .position(|p| rest.starts_with(p))
            .unwrap_or(9) as u8;
        return (0, part as i64, 0, leaf(rest), String::new());
    }
    if let Some(rest) = name.strip_prefix("bert.encoder.layer.") {
        let (num, tail) = rest.split_once('.').unwrap_or((rest, ""));
        let n = num.parse().unwrap_or(i64::MAX);
        let order = [
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
            "attention.output.LayerNorm",
            "crossattention.self.query",
            "crossattention.self.key",
            "crossattention.self.value",
            "crossattention.output.dense",
            "crossattention.output.LayerNorm",
            "intermediate.dense",
            "output.dense",
            "output.LayerNorm",
        ];
        let part = order.iter().position(|p| tail.starts_with(&format!("{p}."))).unwrap_or(99) as u8;
        return (1, n, part, leaf(tail), String::new());
    }
    (2, 0, 0, 0, name.to_string())
}

/// The ZOC conditioning: a CLIP image embedding [N, D] becomes a length-1
/// encoder sequence [N, 1, H] by tiling it H / D times along the features
/// (`clip_out.repeat(1, 2)` for D = 512, H = 1024), in the model's kind.
pub fn clip_to_encoder_states(clip: &Tensor, hidden_size: i64, kind: Kind) -> Result<Tensor> {
    let size = clip.size();
    if size.len() != 2 || size[1] <= 0 {
        bail!("CLIP image embeddings must be [N, D], got {size:?}");
    }
    let d = size[1];
    if hidden_size % d != 0 {
        bail!(
            "the decoder width {hidden_size} is not a multiple of the CLIP embedding size {d}; \
             ZOC repeats the embedding to the decoder width"
        );
    }
    Ok(clip.to_kind(Kind::Float).repeat([1, hidden_size / d]).to_kind(kind).unsqueeze(1))
}
