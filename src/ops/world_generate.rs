//! `world_generate`: one dataset of the built-in demo world (see
//! `crate::world`), written as an ImageFolder or a captioned corpus.

use anyhow::Result;

use super::{Op, OpContext, ParamSpec, ParamType, PortSpec};
use crate::spec::{ArtifactKind, ParamValue};
use crate::world::{write_set, WorldConfig, WorldSet};

pub struct WorldGenerate;

pub(super) fn world_params() -> Vec<ParamSpec> {
    vec![
        ParamSpec::with_default("seed", ParamType::Int, ParamValue::Int(0), "seed of the world"),
        ParamSpec::with_default("image_size", ParamType::Int, ParamValue::Int(32), "side of the square images in pixels"),
        ParamSpec::required("id_classes", ParamType::StrList, "the shapes that are ID classes; the others are near OoD"),
    ]
}

pub(super) fn world_config(ctx: &OpContext) -> Result<WorldConfig> {
    WorldConfig::new(ctx.param_i64("seed")? as u64, ctx.param_i64("image_size")? as usize, &ctx.param_str_list("id_classes")?)
}

impl Op for WorldGenerate {
    fn name(&self) -> &'static str {
        "world_generate"
    }
    fn version(&self) -> u32 {
        // 2: COCO-style bare file names in the corpus; captions name
        // colours and backgrounds less often.
        2
    }
    fn summary(&self) -> &'static str {
        "draw one dataset of the demo world (corpus, id_train, id_val, ood_near, ood_scenes, ood_textures)"
    }
    fn params(&self) -> Vec<ParamSpec> {
        let mut p = world_params();
        p.push(ParamSpec::required("set", ParamType::Str, "corpus | id_train | id_val | ood_near | ood_scenes | ood_textures"));
        p.push(ParamSpec::required("count", ParamType::Int, "images per class for id_*, in total otherwise"));
        p
    }
    fn inputs(&self) -> Vec<PortSpec> {
        vec![]
    }
    fn outputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::new("images", ArtifactKind::Dir, "ImageFolder (or images/ + captions.json for the corpus)")]
    }
    fn run(&self, ctx: &OpContext) -> Result<()> {
        let cfg = world_config(ctx)?;
        let set = WorldSet::from_name(ctx.param_str("set")?)?;
        let count = ctx.param_i64("count")?;
        if count <= 0 {
            anyhow::bail!("node {}: count must be positive, got {count}", ctx.node);
        }
        let summary = write_set(&cfg, set, count as usize, ctx.output("images")?)?;
        println!("{}: {} images in {} folders", summary.set, summary.images, summary.folders.len());
        Ok(())
    }
}
