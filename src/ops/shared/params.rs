//! Param groups that several ops share, with the code that applies them.
//! An op includes a group as one field of its params struct; the group's
//! params join the op's under their own names (`threads`, `precision`, ...),
//! with one declaration and one description for every op.

use std::path::Path;

use anyhow::{Context, Result};
use tch::{Kind, Tensor};
use toe_pipe_core::op_params;
use toe_pipe_core::ops::{Device, NotANumber, ParamType, ParamValueType, Precision};

use super::files::read_features;
use crate::decoder::model_dir::DEFAULT_CHECKPOINT;
use crate::decoder::DecoderDir;
use crate::spec::ParamValue;
use crate::world::{WorldConfig, WorldSet};

/// The tch device for an op's device (CPU when CUDA was asked for but
/// libtorch sees none).
pub fn tch_device(device: Device) -> tch::Device {
    if device == Device::Cuda && tch::Cuda::is_available() {
        tch::Device::Cuda(0)
    } else {
        tch::Device::Cpu
    }
}

op_params! {
    /// `threads`, of the decoder ops.
    pub struct Threads {
        /// libtorch threads on the CPU (0 = the node's CPUs, `resources.cpus`); 1 is fastest for small decoders: OpenMP's thread team costs more than their steps and spins on a busy machine (10x slower seen)
        threads: usize = 1,
    }
}

impl Threads {
    /// Apply the param (on the CPU only; 0 leaves what the worker set: the
    /// node's CPUs).
    pub fn apply(&self, device: Device) {
        if self.threads > 0 && tch_device(device) == tch::Device::Cpu {
            tch::set_num_threads(self.threads as i32);
        }
    }
}

op_params! {
    /// `precision`, of the CLIP inference ops.
    pub struct InferencePrecision {
        /// fp32, or fp16 / bf16 on CUDA (features are saved as fp32)
        precision: Precision = Precision::Fp32,
    }
}

impl InferencePrecision {
    /// The reduced precision asked for, when the device supports it.
    pub fn kind(&self, device: Device) -> Option<Kind> {
        let kind = match self.precision {
            Precision::Fp32 => return None,
            Precision::Fp16 => Kind::Half,
            Precision::Bf16 => Kind::BFloat16,
        };
        if tch_device(device) == tch::Device::Cpu {
            tracing::warn!("precision {} needs CUDA; computing in fp32 on the CPU", self.precision);
            return None;
        }
        Some(kind)
    }
}

op_params! {
    /// The params of every op that runs a decoder model folder over image
    /// features (`outliers_word`, `caption_images`).
    pub struct ModelDir {
        /// checkpoint file inside the model folder (the released TOE decoder: model_epoch100.pt)
        checkpoint: String = DEFAULT_CHECKPOINT.into(),
        /// attention heads: 0 = from the folder's config.json, else 16 (the released decoder's)
        heads: usize = 0,
        /// images per decoder pass
        #[range(1..)]
        batch_size: usize = 64,
    }
}

impl ModelDir {
    /// Open the decoder model folder `dir` (the op's `model` input).
    pub fn open(&self, node: &str, dir: &Path, device: Device) -> Result<DecoderDir> {
        let heads = (self.heads > 0).then_some(self.heads as i64);
        DecoderDir::open(dir, &self.checkpoint, heads, tch_device(device)).with_context(|| format!("node {node}"))
    }
}

op_params! {
    /// `normalize_features`, of the ops that read image features into a
    /// head (`train_oe`, `evaluate`): off by default, as in the original.
    pub struct NormalizeFeatures {
        /// L2-normalise image features before the head (off in the original, which uses raw CLIP features; train and evaluate must agree)
        normalize_features: bool = false,
    }
}

impl NormalizeFeatures {
    /// Image features for a head: as stored, or L2-normalised.
    pub fn read(&self, path: &Path) -> Result<Tensor> {
        Ok(self.apply(read_features(path)?))
    }

    /// Features as read from a file, for a head: as they are, or L2-normalised.
    pub fn apply(&self, features: Tensor) -> Tensor {
        if self.normalize_features {
            &features / features.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12)
        } else {
            features
        }
    }
}

op_params! {
    /// The demo world's fixed choices, of `world_generate` and `world_classes`.
    pub struct World {
        /// side of the square images in pixels
        #[range(8..=256)]
        image_size: usize = 32,
        /// the shapes that are ID classes; the others are near OoD
        id_classes: Vec<String>,
    }
}

impl World {
    pub fn config(&self, seed: u64) -> Result<WorldConfig> {
        WorldConfig::new(seed, self.image_size, &self.id_classes)
    }
}

/// A world set is an enum param, spelled as `WorldSet::name`.
impl ParamValueType for WorldSet {
    const TYPE: ParamType = ParamType::Str;
    type Num = NotANumber;
    fn choices() -> Vec<String> {
        WorldSet::ALL.iter().map(|s| s.name().to_owned()).collect()
    }
    fn to_value(&self) -> ParamValue {
        ParamValue::Str(self.name().to_owned())
    }
    fn from_value(v: &ParamValue) -> Option<Self> {
        WorldSet::from_name(v.as_str()?).ok()
    }
}
