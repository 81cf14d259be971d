//! Decoder checkpoints on disk. Chosen by extension:
//! * `.safetensors`: the state dict with Hugging Face names;
//! * anything else (`.pt`, `.pth`): a `torch.save` file, either ZOC's
//!   `{'net': state_dict, ...}` (what TOE's `model_epoch100.pt` is) or a
//!   bare state dict.

use std::path::Path;

use anyhow::{Context, Result};
use tch::{Device, Tensor};

use super::bert_generation::BertGenerationDecoder;
use crate::formats::{load_state_dict, save_pt, PtValue};

fn is_safetensors(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("safetensors"))
}

/// Every tensor of a checkpoint file, by name.
pub fn read_weights(path: &Path) -> Result<Vec<(String, Tensor)>> {
    if is_safetensors(path) {
        Tensor::read_safetensors(path).with_context(|| format!("reading decoder weights {}", path.display()))
    } else {
        load_state_dict(path).with_context(|| format!("reading decoder checkpoint {}", path.display()))
    }
}

/// Load a decoder checkpoint, its shape read off the weights (heads: given,
/// else width / 64).
pub fn load_decoder(path: &Path, num_heads: Option<i64>, device: Device) -> Result<BertGenerationDecoder> {
    let weights = read_weights(path)?;
    BertGenerationDecoder::from_weights(&weights, num_heads, device, path)
}

/// Save the decoder: `.safetensors` as a flat state dict, otherwise in ZOC's
/// format, `torch.save({'net': state_dict})`, which
/// `BertGenerationDecoder.load_state_dict(torch.load(path)['net'])` loads.
pub fn save_decoder(model: &BertGenerationDecoder, path: &Path) -> Result<()> {
    save(model, path, None)
}

/// As [`save_decoder`], with the extra entries ZOC's `train_decoder.py`
/// writes next to `'net'`: `'epoch'` and `'validation loss'` (`.pt` only).
pub fn save_decoder_with_epoch(
    model: &BertGenerationDecoder,
    path: &Path,
    epoch: usize,
    validation_loss: Option<f64>,
) -> Result<()> {
    save(model, path, Some((epoch, validation_loss)))
}

fn save(model: &BertGenerationDecoder, path: &Path, epoch: Option<(usize, Option<f64>)>) -> Result<()> {
    let state = model.state_dict();
    if is_safetensors(path) {
        // safetensors refuses aliases that share memory: give each its own.
        let owned: Vec<(String, Tensor)> = state.into_iter().map(|(n, t)| (n, t.copy())).collect();
        return Tensor::write_safetensors(&owned, path)
            .with_context(|| format!("writing decoder weights {}", path.display()));
    }
    let mut entries = vec![("net".to_string(), PtValue::state_dict(&state))];
    if let Some((epoch, loss)) = epoch {
        entries.push(("epoch".to_string(), PtValue::Int(epoch as i64)));
        if let Some(loss) = loss {
            entries.push(("validation loss".to_string(), PtValue::Float(loss)));
        }
    }
    save_pt(path, &PtValue::Dict(entries)).with_context(|| format!("writing decoder checkpoint {}", path.display()))
}
