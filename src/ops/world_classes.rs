//! `world_classes`: the demo world's ID class names and descriptors, in the
//! formats of `imagenet_class_clean.npy` and `descriptors_imagenet.json`.

use super::prelude::*;
use super::shared::params::World;
use crate::formats;
use crate::world::{descriptors_json, id_class_names};

pub struct WorldClasses;

op_ports! {
    pub struct Outputs {
        /// ID class names in label order (numpy unicode array)
        class_names: Npy,
        /// class name -> descriptor phrases
        descriptors: Json,
    }
}

impl TypedOp for WorldClasses {
    const NAME: &'static str = "world_classes";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "class names (npy) and LLM-style descriptors (json) of the demo world's ID classes";
    type Params = World;
    type Inputs = ();
    type Outputs = Outputs;

    fn run(&self, _: &OpContext, world: World, _: (), o: Outputs) -> Result<()> {
        // Names and descriptors do not depend on the seed.
        let cfg = world.config(0)?;
        formats::write_strings(&o.class_names, &id_class_names(&cfg))?;
        std::fs::write(&o.descriptors, descriptors_json(&cfg))
            .with_context(|| format!("writing {}", o.descriptors.display()))
    }
}
