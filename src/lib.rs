//! toe-pipe: Textual Outlier Exposure for visual OoD detection as a DAG of
//! cached stages. The library holds everything; `main.rs` is a thin CLI.
//!
//! The engine side (spec, graph, store, engine, cli, lineage, sys, worker
//! and what an op is) lives in the `toe_pipe_core` crate (crates/core),
//! which does not depend on tch, so the `toe-pipe` CLI links no libtorch;
//! it is re-exported here so every `toe_pipe::...` path keeps working.

pub use toe_pipe_core::{cli, engine, graph, lineage, spec, store, sys, worker};
pub use toe_pipe_core::{op_params, op_ports, param_enum};

pub mod clip;
pub mod decoder;
pub mod formats;
pub mod images;
pub mod metrics;
pub mod ops;
pub mod runtime;
pub mod toe;
pub mod world;
