//! `caption_images`: the demo world's captioner. The decoder writes one
//! caption per image greedily (argmax, until EOS or `max_tokens` new
//! tokens, 20 as BLIP-2's `max_new_tokens` in the original) from CLIP image
//! features, in image order, as the original's caption npy. On ImageNet the
//! captions come from BLIP-2 instead; the caption-level selection that
//! follows (`mahalanobis_select`) is the same either way.

use super::prelude::*;
use super::shared::files::read_features;
use super::shared::params::{ModelDir, Threads};
use crate::decoder::generate_captions;
use crate::formats;

pub struct CaptionImages;

op_params! {
    pub struct Params {
        model_dir: ModelDir,
        threads: Threads,
        /// most new tokens per caption (BLIP-2's max_new_tokens in the original: 20)
        #[range(1..)]
        max_tokens: usize = 20,
    }
}

op_ports! {
    pub struct Inputs {
        /// decoder model folder: checkpoint, spiece.model or vocab.json, optional config.json
        model: Dir,
        /// CLIP image features [N, D] (embed_images; not normalised)
        features: Npy,
    }
}

op_ports! {
    pub struct Outputs {
        /// one caption per image, in order (numpy unicode array)
        captions: Npy,
    }
}

impl TypedOp for CaptionImages {
    const NAME: &'static str = "caption_images";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str =
        "one greedy caption per image from a decoder model folder and CLIP image features (the demo's captioner)";
    type Params = Params;
    type Inputs = Inputs;
    type Outputs = Outputs;

    fn run(&self, ctx: &OpContext, p: Params, i: Inputs, o: Outputs) -> Result<()> {
        p.threads.apply(ctx.device);
        let features = read_features(&i.features)?;
        let dir = p.model_dir.open(&ctx.node, &i.model, ctx.device)?;
        let ids = generate_captions(&dir.model, &features, p.max_tokens, p.model_dir.batch_size)
            .with_context(|| format!("node {}: captioning {}", ctx.node, i.features.display()))?;
        let tokenizer = dir.tokenizer.as_dyn();
        let captions: Vec<String> = ids.iter().map(|t| tokenizer.decode_text(t)).collect();
        formats::write_strings(&o.captions, &captions)?;
        let empty = captions.iter().filter(|c| c.is_empty()).count();
        println!(
            "{} images -> {} captions ({} empty); first: {:?}",
            features.size()[0],
            captions.len(),
            empty,
            captions.first()
        );
        Ok(())
    }
}
