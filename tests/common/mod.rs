//! Helpers for the root crate's tests: the CLI helpers of crates/core's
//! tests (one copy, included from there), and a tiny CLIP for op tests.
#![allow(dead_code)]

use std::path::Path;

#[path = "../../crates/core/tests/common/mod.rs"]
mod cli;
pub use cli::*;

/// A tiny ResNet-family CLIP with random weights (seed 7), saved as a state
/// dict with OpenAI's names: what the op tests embed images and text with.
pub fn write_tiny_clip(path: &Path) {
    use toe_pipe::clip::{Clip, ClipConfig, ResNetConfig, TextConfig, VisionConfig};
    tch::manual_seed(7);
    let config = ClipConfig {
        embed_dim: 16,
        image_resolution: 32,
        vision: VisionConfig::ResNet(ResNetConfig { layers: [1, 1, 1, 1], width: 8, heads: 4 }),
        text: TextConfig { context_length: 24, vocab_size: 49408, width: 64, heads: 1, layers: 1 },
    };
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _clip = Clip::new(&vs.root(), &config);
    let mut entries: Vec<(String, tch::Tensor)> = vs.variables().into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    std::fs::create_dir_all(path.parent().expect("a file path")).expect("create the model folder");
    toe_pipe::formats::save_state_dict_pt(path, &entries).expect("write the tiny CLIP");
}

/// Write `t` as an `.npy` file at `rel` in the workspace (folders made).
pub fn save_npy(ws: &Ws, rel: &str, t: &tch::Tensor) {
    let p = ws.path(rel);
    std::fs::create_dir_all(p.parent().expect("a file path")).expect("create the folder");
    toe_pipe::formats::write_npy_tensor(&p, t).expect("write the npy");
}
