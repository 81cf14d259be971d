//! The engine's CLI tests, one test binary (cargo's own layout): pipelines
//! of `cmd` nodes run through the `toe-pipe` binary, with no libtorch.
//! `../common` holds the helpers; the root crate's tests include it too.

#[path = "../common/mod.rs"]
mod common;

mod corruption;
mod errors;
mod failures;
mod hostile_store;
mod incremental;
mod kill;
mod lineage_input;
mod long_lists;
mod outputs;
mod resources;
mod slurm;
mod spec_fuzz;
mod store;
