//! Built-in ops: the registry the pipeline's `op = "..."` nodes resolve against.
//!
//! One op per file, written against `toe_pipe_core::ops` (re-exported
//! here): a params struct ([`op_params!`](toe_pipe_core::op_params)), input
//! and output structs ([`op_ports!`](toe_pipe_core::op_ports)) and a
//! [`TypedOp`] impl; docs/core.md ("Adding an op") gives the steps. What
//! several ops share (param groups, file helpers, the results schema) lives
//! in [`shared`], never in another op's file. The op files live here, not in
//! the core crate, because they use libtorch, which the core crate (and so
//! the `toe-pipe` CLI) does not link.

pub use toe_pipe_core::ops::*;

mod caption_images;
mod class_prompts;
mod class_stats;
mod embed_images;
mod embed_text;
mod evaluate;
mod import_outliers;
mod mahalanobis_select;
mod outliers_description;
mod outliers_word;
mod report;
pub mod shared;
mod synthesize_outliers;
mod train_clip;
mod train_decoder;
mod train_oe;
mod world_classes;
mod world_generate;

pub use outliers_description::read_descriptors;
pub use shared::results::{Evaluation, Score, ScoreMetrics, SetMetrics};

/// What every op file uses: `use super::prelude::*;`.
mod prelude {
    pub use anyhow::{bail, Context, Result};
    pub use toe_pipe_core::ops::{OpContext, TypedOp};
    pub use toe_pipe_core::{op_params, op_ports};
}

/// All built-in ops, by name. Each op file adds one line here.
pub fn registry() -> Registry {
    let ops: Vec<Box<dyn Op>> = vec![
        Box::new(world_generate::WorldGenerate),
        Box::new(world_classes::WorldClasses),
        Box::new(class_stats::ClassStats),
        Box::new(embed_text::EmbedText),
        Box::new(embed_images::EmbedImages),
        Box::new(mahalanobis_select::MahalanobisSelect),
        Box::new(outliers_description::OutliersDescription),
        Box::new(import_outliers::ImportOutliers),
        Box::new(train_clip::TrainClip),
        Box::new(train_oe::TrainOe),
        Box::new(evaluate::Evaluate),
        Box::new(report::Report),
        Box::new(train_decoder::TrainDecoder),
        Box::new(outliers_word::OutliersWord),
        Box::new(caption_images::CaptionImages),
        Box::new(class_prompts::ClassPrompts),
        Box::new(synthesize_outliers::SynthesizeOutliers),
    ];
    let mut r = Registry::new();
    for op in ops {
        r.register(op);
    }
    r
}

#[cfg(test)]
mod tests {
    /// Every default is a value its own declaration allows (a default out
    /// of its range would make every node that leaves it out an error).
    #[test]
    fn defaults_are_allowed_values() {
        for op in super::registry().catalog().ops.values() {
            for p in &op.params {
                if let Some(d) = &p.default {
                    assert_eq!(
                        p.validate(d).as_ref(),
                        Ok(d),
                        "op {} param {}: default {d} is not allowed ({:?})",
                        op.name,
                        p.name,
                        p.allowed()
                    );
                }
            }
        }
    }
}
