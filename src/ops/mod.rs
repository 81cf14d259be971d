//! Built-in ops: the registry the pipeline's `op = "..."` nodes resolve against.
//!
//! One op per file. What an op is (the [`Op`] trait, params, ports, the
//! [`OpContext`]) lives in `toe_pipe_core::ops`, re-exported here; the op
//! files live here because they use libtorch, which the core crate (and so
//! the `toe-pipe` CLI) does not link.

pub use toe_pipe_core::ops::*;

mod caption_images;
mod class_stats;
mod embed_images;
mod embed_text;
mod evaluate;
mod import_outliers;
mod io;
mod mahalanobis_select;
mod outliers_description;
mod outliers_word;
mod report;
mod train_clip;
mod train_decoder;
mod train_oe;
mod world_classes;
mod world_generate;

pub use evaluate::{Evaluation, SetMetrics};
pub use outliers_description::read_descriptors;

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
    ];
    let mut r = Registry::new();
    for op in ops {
        r.register(op);
    }
    r
}
