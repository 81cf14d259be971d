//! TorchScript archives (`torch.jit.save`), such as OpenAI's released CLIP
//! files, through `tch::CModule`.
//!
//! `CModule` runs the scripted methods and lists parameters, but libtorch's C
//! API that tch wraps has no buffer listing, so buffers (BatchNorm running
//! statistics in CLIP's ResNets) come from reading the archive's `data.pkl`
//! with the safe unpickler: every tensor attribute of every module is there.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use tch::{CModule, Device, IValue, Tensor};

use super::torch_pt::{detect_kind, load_state_dict, TorchFileKind};

/// Whether `path` is a TorchScript archive (as opposed to a `torch.save`
/// file, which [`super::torch_pt::load_pt`] reads).
pub fn is_torchscript(path: &Path) -> Result<bool> {
    Ok(detect_kind(path)? == TorchFileKind::TorchScript)
}

/// A loaded TorchScript module.
pub struct ScriptModule {
    path: PathBuf,
    device: Device,
    module: CModule,
}

impl ScriptModule {
    /// Loads a TorchScript archive onto `device` in eval mode. A `torch.save`
    /// file is an error that says to use `load_pt` instead.
    pub fn load(path: &Path, device: Device) -> Result<ScriptModule> {
        match detect_kind(path)? {
            TorchFileKind::TorchScript => {}
            kind => bail!(
                "{}: a {kind}, not a TorchScript archive; read it with formats::load_pt / load_state_dict",
                path.display()
            ),
        }
        let mut module = CModule::load_on_device(path, device)
            .map_err(|e| anyhow!("{}: libtorch cannot load this TorchScript archive: {e}", path.display()))?;
        module.f_set_eval()?;
        Ok(ScriptModule { path: path.to_path_buf(), device, module })
    }

    /// The underlying `tch` module.
    pub fn module(&self) -> &CModule {
        &self.module
    }

    /// Parameters with their dotted names (`visual.conv1.weight`), as
    /// `module.named_parameters()` gives them in Python.
    pub fn named_parameters(&self) -> Result<Vec<(String, Tensor)>> {
        self.module.named_parameters().map_err(|e| anyhow!("{}: cannot list parameters: {e}", self.path.display()))
    }

    /// Tensors the modules hold that are not parameters, on the module's
    /// device: registered buffers (e.g. BatchNorm's `running_mean`) and also
    /// plain tensor attributes (e.g. CLIP's `attn_mask`), which TorchScript
    /// stores alike. Read from the archive, so they are the saved values.
    pub fn named_buffers(&self) -> Result<Vec<(String, Tensor)>> {
        let params: HashSet<String> = self.named_parameters()?.into_iter().map(|(n, _)| n).collect();
        let tensors = load_state_dict(&self.path)?;
        tensors
            .into_iter()
            .filter(|(n, _)| !params.contains(n))
            .map(|(n, t)| Ok((n, t.f_to_device(self.device)?)))
            .collect()
    }

    /// Calls method `name` on tensors, expecting one tensor back
    /// (e.g. `encode_image`).
    pub fn method(&self, name: &str, inputs: &[Tensor]) -> Result<Tensor> {
        self.module
            .method_ts(name, inputs)
            .map_err(|e| anyhow!("{}: calling method {name:?} failed: {e}", self.path.display()))
    }

    /// Calls method `name` with arbitrary TorchScript values.
    pub fn method_is(&self, name: &str, inputs: &[IValue]) -> Result<IValue> {
        self.module
            .method_is(name, inputs)
            .map_err(|e| anyhow!("{}: calling method {name:?} failed: {e}", self.path.display()))
    }
}
