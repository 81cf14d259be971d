//! Loading CLIP checkpoints: read named tensors from a file, infer the
//! configuration from their shapes, build the native model and copy every
//! tensor into its variable by name, checking shapes.
//!
//! Formats: OpenAI's released TorchScript archives (read through libtorch's
//! `CModule`) and safetensors files. Each reader yields `(name, tensor)`
//! pairs; everything after that is one code path.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use tch::{nn, Device, Kind, Tensor};

use super::{Clip, ClipConfig};

/// Entries of OpenAI's checkpoints that are settings, not weights
/// (`build_model` deletes them too).
const SETTINGS: [&str; 3] = ["input_resolution", "context_length", "vocab_size"];

/// A model with the variable store that owns its weights (needed to change
/// their type, train them, or save them).
pub struct LoadedClip {
    pub vs: nn::VarStore,
    pub clip: Clip,
}

impl LoadedClip {
    /// Converts every weight, e.g. to `Kind::Half` or `Kind::BFloat16` for
    /// inference on CUDA. Layer norms still compute in fp32.
    pub fn set_kind(&mut self, kind: Kind) {
        self.vs.set_kind(kind);
    }
}

/// Loads a CLIP checkpoint (TorchScript or safetensors) onto `device`, in
/// fp32 whatever the file's type.
pub fn load(path: impl AsRef<Path>, device: Device) -> Result<LoadedClip> {
    let path = path.as_ref();
    let tensors = read_tensors(path)?;
    from_tensors(tensors, device).with_context(|| format!("loading CLIP from {}", path.display()))
}

/// Builds a model from named tensors (any source): infers the configuration,
/// then copies the tensors in.
pub fn from_tensors(tensors: Vec<(String, Tensor)>, device: Device) -> Result<LoadedClip> {
    let shapes: BTreeMap<String, Vec<i64>> = tensors
        .iter()
        .map(|(name, tensor)| (name.clone(), tensor.size()))
        .collect();
    let config = ClipConfig::from_shapes(&shapes)?;
    let vs = nn::VarStore::new(device);
    let clip = Clip::new(&vs.root(), &config);
    copy_into(&vs, tensors)?;
    Ok(LoadedClip { vs, clip })
}

/// Copies named tensors into the store's variables of the same names. Every
/// variable must be present with its exact shape; names the model does not
/// have are an error too (as PyTorch's strict `load_state_dict`), except
/// OpenAI's settings entries and batch-norm counters.
pub fn copy_into(vs: &nn::VarStore, tensors: Vec<(String, Tensor)>) -> Result<()> {
    let mut source: HashMap<String, Tensor> = tensors
        .into_iter()
        .filter(|(name, _)| !SETTINGS.contains(&name.as_str()) && !name.ends_with(".num_batches_tracked"))
        .collect();
    let mut variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));

    let missing: Vec<&str> = variables
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| !source.contains_key(*name))
        .collect();
    if !missing.is_empty() {
        bail!(
            "the checkpoint lacks {} tensor(s) the model needs: {}",
            missing.len(),
            name_list(&missing)
        );
    }
    for (name, variable) in &variables {
        let found = &source[name];
        if found.size() != variable.size() {
            bail!(
                "tensor `{name}` has shape {:?} in the checkpoint, the model needs {:?}",
                found.size(),
                variable.size()
            );
        }
    }
    let mut unexpected: Vec<&str> = source
        .keys()
        .map(String::as_str)
        .filter(|name| !variables.iter().any(|(v, _)| v == name))
        .collect();
    if !unexpected.is_empty() {
        unexpected.sort_unstable();
        bail!(
            "the checkpoint has {} tensor(s) a CLIP model of this shape does not: {}",
            unexpected.len(),
            name_list(&unexpected)
        );
    }
    tch::no_grad(|| {
        for (name, variable) in &variables {
            let found = source.remove(name).expect("checked above");
            variable.shallow_clone().copy_(&found);
        }
    });
    Ok(())
}

fn name_list(names: &[&str]) -> String {
    const SHOWN: usize = 8;
    let mut list = names
        .iter()
        .take(SHOWN)
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        list.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    list
}

/// The formats a checkpoint can come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointFormat {
    /// `torch.jit.save` archives, as OpenAI released CLIP.
    TorchScript,
    Safetensors,
}

/// Tells the format from the file's first bytes.
pub fn detect_format(path: &Path) -> Result<CheckpointFormat> {
    let mut head = [0u8; 9];
    let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let read = file
        .read(&mut head)
        .with_context(|| format!("reading {}", path.display()))?;
    if read >= 4 && head[..4] == *b"PK\x03\x04" {
        return if zip_has_code(path)? {
            Ok(CheckpointFormat::TorchScript)
        } else {
            bail!(
                "{} is a torch.save archive, not TorchScript; save the model's state dict as \
                 safetensors, or load OpenAI's released .pt file",
                path.display()
            )
        };
    }
    // safetensors: an 8-byte little-endian header length, then a JSON object.
    if read == 9 && head[8] == b'{' {
        return Ok(CheckpointFormat::Safetensors);
    }
    bail!(
        "{} is neither a TorchScript archive nor a safetensors file (the formats CLIP checkpoints come in)",
        path.display()
    )
}

/// TorchScript archives hold the model's code (`<archive>/code/...`) and
/// `constants.pkl`; plain `torch.save` archives hold only data.
fn zip_has_code(path: &Path) -> Result<bool> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let archive = zip::ZipArchive::new(file)
        .with_context(|| format!("{} is not a valid zip archive", path.display()))?;
    let has_code = archive
        .file_names()
        .any(|name| name.ends_with("/constants.pkl") || name.contains("/code/"));
    Ok(has_code)
}

/// Reads every named tensor of a checkpoint, on the CPU.
pub fn read_tensors(path: &Path) -> Result<Vec<(String, Tensor)>> {
    match detect_format(path)? {
        CheckpointFormat::Safetensors => Tensor::read_safetensors(path)
            .with_context(|| format!("reading the safetensors file {}", path.display())),
        CheckpointFormat::TorchScript => {
            let module = tch::CModule::load_on_device(path, Device::Cpu)
                .with_context(|| format!("opening the TorchScript archive {}", path.display()))?;
            module
                .named_parameters()
                .with_context(|| format!("listing the parameters of {}", path.display()))
        }
    }
}
