//! `caption_images`: the demo world's captioner. The decoder writes one
//! caption per image greedily (argmax, until EOS or `max_tokens` new
//! tokens, 20 as BLIP-2's `max_new_tokens` in the original) from CLIP image
//! features, in image order, as the original's caption npy. On ImageNet the
//! captions come from BLIP-2 instead; the caption-level selection that
//! follows (`mahalanobis_select`) is the same either way.

use anyhow::{Context, Result};

use super::io::read_features;
use super::outliers_word::{model_dir_params, open_model_dir, set_threads, threads_param};
use super::{Op, OpContext, ParamSpec, ParamType, PortSpec};
use crate::decoder::generate_captions;
use crate::formats;
use crate::spec::{ArtifactKind, ParamValue};

pub struct CaptionImages;

impl Op for CaptionImages {
    fn name(&self) -> &'static str {
        "caption_images"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "one greedy caption per image from a decoder model folder and CLIP image features (the demo's captioner)"
    }
    fn params(&self) -> Vec<ParamSpec> {
        let mut p = model_dir_params();
        p.extend([
            ParamSpec::with_default("max_tokens", ParamType::Int, ParamValue::Int(20), "most new tokens per caption (BLIP-2's max_new_tokens in the original: 20)"),
            ParamSpec::with_default("batch_size", ParamType::Int, ParamValue::Int(64), "images per decoder pass"),
            threads_param(),
        ]);
        p
    }
    fn inputs(&self) -> Vec<PortSpec> {
        vec![
            PortSpec::new("model", ArtifactKind::Dir, "decoder model folder: checkpoint, spiece.model or vocab.json, optional config.json"),
            PortSpec::new("features", ArtifactKind::Npy, "CLIP image features [N, D] (embed_images; not normalised)"),
        ]
    }
    fn outputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("captions", ArtifactKind::Npy, "one caption per image, in order (numpy unicode array)")]
    }
    fn run(&self, ctx: &OpContext) -> Result<()> {
        let max_tokens = ctx.param_positive("max_tokens")? as usize;
        let batch_size = ctx.param_positive("batch_size")? as usize;
        set_threads(ctx)?;
        let features_path = ctx.input("features")?;
        let features = read_features(features_path)?;
        let dir = open_model_dir(ctx)?;
        let ids = generate_captions(&dir.model, &features, max_tokens, batch_size)
            .with_context(|| format!("node {}: captioning {}", ctx.node, features_path.display()))?;
        let tokenizer = dir.tokenizer.as_dyn();
        let captions: Vec<String> = ids.iter().map(|t| tokenizer.decode_text(t)).collect();
        formats::write_strings(ctx.output("captions")?, &captions)?;
        let empty = captions.iter().filter(|c| c.is_empty()).count();
        println!("{} images -> {} captions ({} empty); first: {:?}", features.size()[0], captions.len(), empty, captions.first());
        Ok(())
    }
}
