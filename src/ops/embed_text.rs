//! `embed_text`: CLIP text features of a list of strings (textual outliers,
//! captions), tokenised with CLIP's BPE at the model's context length.

use anyhow::{bail, Result};
use tch::{Kind, Tensor};

use super::io::{device, write_features};
use super::{Op, OpContext, ParamSpec, ParamType, PortSpec};
use crate::clip::{self, Tokenizer};
use crate::formats;
use crate::spec::{ArtifactKind, ParamValue};

pub struct EmbedText;

/// The reduced precision asked for, when the device supports it.
pub(super) fn inference_kind(ctx: &OpContext) -> Result<Option<Kind>> {
    let kind = match ctx.param_str("precision")? {
        "fp32" => None,
        "fp16" => Some(Kind::Half),
        "bf16" => Some(Kind::BFloat16),
        other => bail!("node {}: precision {other:?} is not one of fp32, fp16, bf16", ctx.node),
    };
    if kind.is_some() && device(&ctx.device) == tch::Device::Cpu {
        println!("precision {} needs CUDA; computing in fp32 on the CPU", ctx.param_str("precision")?);
        return Ok(None);
    }
    Ok(kind)
}

pub(super) fn precision_param() -> ParamSpec {
    ParamSpec::with_default("precision", ParamType::Str, ParamValue::Str("fp32".into()), "fp32, or fp16 / bf16 on CUDA (features are saved as fp32)")
}

impl Op for EmbedText {
    fn name(&self) -> &'static str {
        "embed_text"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "CLIP text features [N, D] of a string list"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::with_default("batch_size", ParamType::Int, ParamValue::Int(256), "strings per forward pass"),
            ParamSpec::with_default("truncate", ParamType::Bool, ParamValue::Bool(true), "cut strings longer than the context (as clip.tokenize(truncate=True))"),
            precision_param(),
        ]
    }
    fn inputs(&self) -> Vec<PortSpec> {
        vec![
            PortSpec::new("model", ArtifactKind::Pt, "CLIP checkpoint: OpenAI's TorchScript .pt, a state dict .pt or safetensors"),
            PortSpec::new("strings", ArtifactKind::Npy, "the strings to embed"),
            PortSpec::new("bpe", ArtifactKind::File, "BPE vocabulary (bpe_simple_vocab_16e6.txt.gz); default: the venv's clip package").optional(),
        ]
    }
    fn outputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("features", ArtifactKind::Npy, "text features [N, D], float32, not normalised")]
    }
    fn run(&self, ctx: &OpContext) -> Result<()> {
        let strings = formats::read_strings(ctx.input("strings")?)?;
        let tokenizer = match ctx.input_list("bpe") {
            [path] => Tokenizer::from_file(path)?,
            _ => Tokenizer::new()?,
        };
        let dev = device(&ctx.device);
        let mut model = clip::load(ctx.input("model")?, dev)?;
        if let Some(kind) = inference_kind(ctx)? {
            model.set_kind(kind);
        }
        let batch = ctx.param_i64("batch_size")?.max(1) as usize;
        let context = model.clip.config().text.context_length as usize;
        let truncate = ctx.param_bool("truncate")?;
        let mut parts = Vec::new();
        for chunk in strings.chunks(batch) {
            let tokens = tokenizer.tokenize(chunk, context, truncate)?.to_device(dev);
            parts.push(model.clip.encode_text(&tokens)?.to_kind(Kind::Float).to_device(tch::Device::Cpu));
        }
        let features = if parts.is_empty() {
            bail!("node {}: no strings to embed in {}", ctx.node, ctx.input("strings")?.display());
        } else {
            Tensor::cat(&parts, 0)
        };
        println!("{} strings -> {:?}", strings.len(), features.size());
        write_features(ctx.output("features")?, &features)
    }
}
