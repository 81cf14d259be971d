//! toe-pipe: Textual Outlier Exposure for visual OoD detection as a DAG of
//! cached stages. The library holds everything; `main.rs` is a thin CLI.

pub mod decoder;
pub mod formats;
pub mod graph;
pub mod images;
pub mod metrics;
pub mod ops;
pub mod spec;
pub mod store;
pub mod engine;
pub mod sys;
pub mod worker;
pub mod lineage;
pub mod cli;
pub mod world;
pub mod toe;
pub mod clip;
