//! toe-pipe: Textual Outlier Exposure for visual OoD detection as a DAG of
//! cached stages. The library holds everything; `main.rs` is a thin CLI.

pub mod decoder;
pub mod formats;
pub mod images;
pub mod metrics;
pub mod ops;
pub mod spec;
