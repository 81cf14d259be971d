//! Loading CLIP checkpoints: read named tensors from a file, infer the
//! configuration from their shapes, build the native model and copy every
//! tensor into its variable by name, checking shapes.
//!
//! Formats: OpenAI's released TorchScript archives (parameters through
//! libtorch's `CModule`, buffers such as batch-norm statistics from the
//! archive's pickle), `torch.save` state dicts (both through
//! `crate::formats`), and safetensors files. Each reader yields
//! `(name, tensor)` pairs; everything after that is one code path.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use tch::{nn, Device, Kind, Tensor};

use super::{Clip, ClipConfig};
use crate::formats::{self, TorchFileKind};

/// Entries of OpenAI's checkpoints that are settings, not weights
/// (`build_model` deletes them too).
const SETTINGS: [&str; 3] = ["input_resolution", "context_length", "vocab_size"];

/// Entries that are not weights: OpenAI's settings, batch-norm step
/// counters, and the causal mask TorchScript stores with each text block
/// (recomputed here by the fused attention's `is_causal`).
fn is_not_a_weight(name: &str) -> bool {
    SETTINGS.contains(&name) || name.ends_with(".num_batches_tracked") || name.ends_with("attn_mask")
}

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

/// Loads a CLIP checkpoint (OpenAI's TorchScript release, a `torch.save`
/// state dict, or safetensors) onto `device`, in fp32 whatever the file's type.
pub fn load(path: impl AsRef<Path>, device: Device) -> Result<LoadedClip> {
    let path = path.as_ref();
    let tensors = read_tensors(path)?;
    from_tensors(tensors, device).with_context(|| format!("loading CLIP from {}", path.display()))
}

/// Builds a model from named tensors (any source): infers the configuration,
/// then copies the tensors in.
pub fn from_tensors(tensors: Vec<(String, Tensor)>, device: Device) -> Result<LoadedClip> {
    let shapes: BTreeMap<String, Vec<i64>> =
        tensors.iter().map(|(name, tensor)| (name.clone(), tensor.size())).collect();
    let config = ClipConfig::from_shapes(&shapes)?;
    let vs = nn::VarStore::new(device);
    let clip = Clip::new(&vs.root(), &config);
    copy_into(&vs, tensors)?;
    Ok(LoadedClip { vs, clip })
}

/// Copies named tensors into the store's variables of the same names. Every
/// variable must be present with its exact shape; names the model does not
/// have are an error too (as PyTorch's strict `load_state_dict`), except
/// entries that are not weights (settings, counters, masks).
pub fn copy_into(vs: &nn::VarStore, tensors: Vec<(String, Tensor)>) -> Result<()> {
    let mut source: HashMap<String, Tensor> = tensors.into_iter().filter(|(name, _)| !is_not_a_weight(name)).collect();
    let mut variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));

    let missing: Vec<&str> =
        variables.iter().map(|(name, _)| name.as_str()).filter(|name| !source.contains_key(*name)).collect();
    if !missing.is_empty() {
        bail!("the checkpoint lacks {} tensor(s) the model needs: {}", missing.len(), name_list(&missing));
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
    let mut unexpected: Vec<&str> =
        source.keys().map(String::as_str).filter(|name| !variables.iter().any(|(v, _)| v == name)).collect();
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
    let mut list = names.iter().take(SHOWN).map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
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
    /// A state dict written by `torch.save` (zip archive or legacy pickle).
    TorchSave,
    Safetensors,
}

/// Tells the format from the file's first bytes.
pub fn detect_format(path: &Path) -> Result<CheckpointFormat> {
    let mut head = [0u8; 9];
    let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let read = file.read(&mut head).with_context(|| format!("reading {}", path.display()))?;
    // safetensors: an 8-byte little-endian header length, then a JSON object.
    if read == 9 && head[8] == b'{' {
        return Ok(CheckpointFormat::Safetensors);
    }
    match formats::detect_kind(path) {
        Ok(TorchFileKind::TorchScript) => Ok(CheckpointFormat::TorchScript),
        Ok(TorchFileKind::TorchSave | TorchFileKind::LegacyTorchSave) => Ok(CheckpointFormat::TorchSave),
        Err(err) => Err(err).with_context(|| {
            format!(
                "{} is not a CLIP checkpoint: expected a TorchScript archive (OpenAI's release), \
                 a torch.save state dict or a safetensors file",
                path.display()
            )
        }),
    }
}

/// Reads every named tensor of a checkpoint, on the CPU. A state dict saved
/// inside a wrapper (`{"model": state_dict, "epoch": ...}`, or with the
/// `module.` prefix of data-parallel training) is unwrapped.
pub fn read_tensors(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let tensors = match detect_format(path)? {
        CheckpointFormat::Safetensors => Tensor::read_safetensors(path)
            .with_context(|| format!("reading the safetensors file {}", path.display()))?,
        CheckpointFormat::TorchSave => formats::load_state_dict(path)?,
        CheckpointFormat::TorchScript => {
            let module = formats::ScriptModule::load(path, Device::Cpu)?;
            let mut tensors = module.named_parameters()?;
            tensors.extend(module.named_buffers()?);
            tensors
        }
    };
    Ok(unwrap_prefix(tensors))
}

/// Drops a common name prefix in front of CLIP's own names: when there is no
/// `token_embedding.weight` but exactly one `<prefix>token_embedding.weight`,
/// the tensors under `<prefix>` are the model and the rest (an optimizer's
/// state, say) is left out.
fn unwrap_prefix(tensors: Vec<(String, Tensor)>) -> Vec<(String, Tensor)> {
    const ANCHOR: &str = "token_embedding.weight";
    if tensors.iter().any(|(name, _)| name == ANCHOR) {
        return tensors;
    }
    let prefixes: Vec<String> = tensors
        .iter()
        .filter_map(|(name, _)| name.strip_suffix(ANCHOR).filter(|p| p.ends_with('.')).map(str::to_string))
        .collect();
    let [prefix] = &prefixes[..] else { return tensors };
    tensors
        .into_iter()
        .filter_map(|(name, tensor)| name.strip_prefix(prefix.as_str()).map(|n| (n.to_string(), tensor)))
        .collect()
}
