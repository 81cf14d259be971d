//! `embed_text`: CLIP text features of a list of strings (textual outliers,
//! captions), tokenised with CLIP's BPE at the model's context length.

use tch::{Kind, Tensor};

use super::prelude::*;
use super::shared::files::write_features;
use super::shared::params::{tch_device, InferencePrecision};
use crate::clip::{self, Tokenizer};
use crate::formats;

pub struct EmbedText;

op_params! {
    pub struct Params {
        /// strings per forward pass
        #[range(1..)]
        batch_size: usize = 256,
        /// cut strings longer than the context (as clip.tokenize(truncate=True))
        truncate: bool = true,
        precision: InferencePrecision,
    }
}

op_ports! {
    pub struct Inputs {
        /// CLIP checkpoint: OpenAI's TorchScript .pt, a state dict .pt or safetensors
        model: Pt,
        /// the strings to embed
        strings: Npy,
        /// BPE vocabulary (bpe_simple_vocab_16e6.txt.gz); default: the venv's clip package
        bpe: Option<File>,
    }
}

op_ports! {
    pub struct Outputs {
        /// text features [N, D], float32, not normalised
        features: Npy,
    }
}

impl TypedOp for EmbedText {
    const NAME: &'static str = "embed_text";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "CLIP text features [N, D] of a string list";
    type Params = Params;
    type Inputs = Inputs;
    type Outputs = Outputs;

    fn run(&self, ctx: &OpContext, p: Params, i: Inputs, o: Outputs) -> Result<()> {
        let strings = formats::read_strings(&i.strings)?;
        let tokenizer = match &i.bpe {
            Some(path) => Tokenizer::from_file(path)?,
            None => Tokenizer::new()?,
        };
        let dev = tch_device(ctx.device);
        let mut model = clip::load(&i.model, dev)?;
        if let Some(kind) = p.precision.kind(ctx.device) {
            model.set_kind(kind);
        }
        let context = model.clip.config().text.context_length as usize;
        let mut parts = Vec::new();
        for chunk in strings.chunks(p.batch_size) {
            let tokens = tokenizer.tokenize(chunk, context, p.truncate)?.to_device(dev);
            parts.push(model.clip.encode_text(&tokens)?.to_kind(Kind::Float).to_device(tch::Device::Cpu));
        }
        if parts.is_empty() {
            bail!("node {}: no strings to embed in {}", ctx.node, i.strings.display());
        }
        let features = Tensor::cat(&parts, 0);
        println!("{} strings -> {:?}", strings.len(), features.size());
        write_features(&o.features, &features)
    }
}
