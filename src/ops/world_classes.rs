//! `world_classes`: the demo world's ID class names and descriptors, in the
//! formats of `imagenet_class_clean.npy` and `descriptors_imagenet.json`.

use anyhow::{Context, Result};

use super::world_generate::world_params;
use super::{Op, OpContext, ParamSpec, PortSpec};
use crate::formats;
use crate::spec::ArtifactKind;
use crate::world::{descriptors_json, id_class_names, WorldConfig};

pub struct WorldClasses;

impl Op for WorldClasses {
    fn name(&self) -> &'static str {
        "world_classes"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "class names (npy) and LLM-style descriptors (json) of the demo world's ID classes"
    }
    fn params(&self) -> Vec<ParamSpec> {
        world_params().into_iter().filter(|p| p.name != "seed").collect()
    }
    fn inputs(&self) -> Vec<PortSpec> {
        vec![]
    }
    fn outputs(&self) -> Vec<PortSpec> {
        vec![
            PortSpec::new("class_names", ArtifactKind::Npy, "ID class names in label order (numpy unicode array)"),
            PortSpec::new("descriptors", ArtifactKind::Json, "class name -> descriptor phrases"),
        ]
    }
    fn run(&self, ctx: &OpContext) -> Result<()> {
        // Names and descriptors do not depend on the seed.
        let cfg = WorldConfig::new(0, ctx.param_i64("image_size")? as usize, &ctx.param_str_list("id_classes")?)?;
        formats::write_strings(ctx.output("class_names")?, &id_class_names(&cfg))?;
        let path = ctx.output("descriptors")?;
        std::fs::write(path, descriptors_json(&cfg)).with_context(|| format!("writing {}", path.display()))
    }
}
