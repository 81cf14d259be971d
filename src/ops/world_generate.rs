//! `world_generate`: one dataset of the built-in demo world (see
//! `crate::world`), written as an ImageFolder or a captioned corpus.

use super::prelude::*;
use super::shared::params::World;
use crate::world::{write_set, WorldSet};

pub struct WorldGenerate;

op_params! {
    pub struct Params {
        /// seed of the world
        seed: i64 = 0,
        world: World,
        /// corpus | id_train | id_val | ood_near | ood_scenes | ood_textures
        set: WorldSet,
        /// images per class for id_*, in total otherwise
        #[range(1..)]
        count: usize,
        /// corpus only: the share of pictures with no object in them (textures, scenery, full-frame patterns), captioned by what fills the frame
        #[range(0.0..=1.0)]
        object_free: f64 = 0.0,
    }
}

op_ports! {
    pub struct Outputs {
        /// ImageFolder (or images/ + captions.json for the corpus)
        images: Dir,
    }
}

impl TypedOp for WorldGenerate {
    const NAME: &'static str = "world_generate";
    // 2: COCO-style bare file names in the corpus; captions name colours
    // and backgrounds less often.
    const VERSION: u32 = 2;
    const SUMMARY: &'static str =
        "draw one dataset of the demo world (corpus, id_train, id_val, ood_near, ood_scenes, ood_textures)";
    type Params = Params;
    type Inputs = ();
    type Outputs = Outputs;

    fn run(&self, _: &OpContext, p: Params, _: (), o: Outputs) -> Result<()> {
        // The seed is stored as written; the world draws from its bits.
        let mut cfg = p.world.config(p.seed as u64)?;
        cfg.object_free_share = p.object_free;
        let summary = write_set(&cfg, p.set, p.count, &o.images)?;
        println!("{}: {} images in {} folders", summary.set, summary.images, summary.folders.len());
        Ok(())
    }
}
