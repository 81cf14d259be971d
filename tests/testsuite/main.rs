//! The root crate's integration tests, as one test binary with a module per
//! area (cargo's own layout): each test binary links libtorch, so one binary
//! instead of one per file saves most of the link time and disk.
//!
//! Not here: `tests/op_worker.rs`, a test binary that is also a worker
//! (`harness = false`), and the engine's CLI tests, which live with the
//! engine in crates/core/tests/cli/. `tests/common` is shared with
//! op_worker, so it stays where both find it.

#[path = "../common/mod.rs"]
mod common;

mod clip_support;
mod decoder_common;
mod formats_util;
mod images_support;

mod clip_model;
mod clip_text_tables;
mod clip_tokenizer;
mod decoder_hf;
mod decoder_tokenizer;
mod decoder_train;
mod demo_pipeline;
mod faithful;
mod formats_errors;
mod formats_npy;
mod formats_reference;
mod formats_torch;
mod images_batches;
mod images_decode;
mod images_folder;
mod images_jpeg_region;
mod images_pillow_parity;
mod metrics_sklearn;
mod ops_decoder;
mod ops_toe;
mod pipelines_real;
mod report_page;
mod slurm_ops;
mod study;
mod toe_math;
mod toe_pipeline;
mod toe_scores;
mod world;

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// libtorch's random generator is global to the process, and every test of
/// this binary runs in one process on parallel threads. A test that seeds it
/// and needs reproducible draws holds [`rng_lock`] (exclusive); a test that
/// draws without seeding (random initialisation of a model it builds or
/// loads) holds [`rng_draws`] (shared), so that its draws cannot interleave
/// with a seeded test's. Draws in worker processes (op nodes) need neither.
static RNG: RwLock<()> = RwLock::new(());

pub fn rng_lock() -> RwLockWriteGuard<'static, ()> {
    RNG.write().unwrap_or_else(|e| e.into_inner())
}

pub fn rng_draws() -> RwLockReadGuard<'static, ()> {
    RNG.read().unwrap_or_else(|e| e.into_inner())
}

/// `common::write_tiny_clip` (seeded) under [`rng_lock`].
pub fn write_tiny_clip(path: &std::path::Path) {
    let _rng = rng_lock();
    common::write_tiny_clip(path);
}
