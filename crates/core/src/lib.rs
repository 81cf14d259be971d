//! toe-pipe's engine: the pipeline spec, the DAG, the content-addressed
//! store, the scheduler, the command line and the worker protocol, with no
//! dependency on tch, so that the `toe-pipe` CLI does not load libtorch.
//! The ops themselves (and `registry()`) live in the `toe_pipe` crate.

pub mod cli;
pub mod config;
pub mod confine;
pub mod engine;
pub mod graph;
pub mod lineage;
pub mod logging;
pub mod ops;
pub mod spec;
pub mod store;
pub mod sys;
pub mod worker;

// For the op_params! and op_ports! macros, which expand in the op crate.
#[doc(hidden)]
pub use anyhow as __anyhow;
