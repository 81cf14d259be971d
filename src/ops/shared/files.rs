//! File helpers shared by the ops: features, labels and JSON, with errors
//! that name the file and what was expected.

use std::path::Path;

use anyhow::{bail, Context, Result};
use tch::{Device, Kind, Tensor};

use crate::formats;

/// A `[N, D]` float feature matrix from an `.npy` file, as f32.
pub fn read_features(path: &Path) -> Result<Tensor> {
    let t = formats::read_npy_tensor(path)?;
    if t.dim() != 2 {
        bail!("{}: expected a 2-d feature array [N, D], found shape {:?}", path.display(), t.size());
    }
    if !matches!(t.kind(), Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16) {
        bail!("{}: expected float features, found {:?}", path.display(), t.kind());
    }
    Ok(t.to_kind(Kind::Float))
}

/// Integer class labels `[N]` from an `.npy` file.
pub fn read_labels(path: &Path) -> Result<Vec<i64>> {
    let t = formats::read_npy_tensor(path)?;
    if t.dim() != 1 || !matches!(t.kind(), Kind::Int64 | Kind::Int | Kind::Int16 | Kind::Int8 | Kind::Uint8) {
        bail!("{}: expected a 1-d integer label array, found {:?} of shape {:?}", path.display(), t.kind(), t.size());
    }
    Vec::<i64>::try_from(&t.to_kind(Kind::Int64)).with_context(|| format!("reading labels from {}", path.display()))
}

pub fn write_features(path: &Path, t: &Tensor) -> Result<()> {
    formats::write_npy_tensor(path, &t.to_kind(Kind::Float).to_device(Device::Cpu).contiguous())
}

pub fn write_labels(path: &Path, labels: &[i64]) -> Result<()> {
    formats::write_npy_tensor(path, &Tensor::from_slice(labels))
}

/// Check that features and labels describe the same items.
pub fn check_same_length(features: &Tensor, features_path: &Path, labels: &[i64], labels_path: &Path) -> Result<()> {
    let n = features.size()[0] as usize;
    if n != labels.len() {
        bail!(
            "{} has {n} feature rows but {} has {} labels; they must come from the same dataset",
            features_path.display(),
            labels_path.display(),
            labels.len()
        );
    }
    Ok(())
}

/// Write JSON, pretty-printed, with the path in any error.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value)?;
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Class names from a numpy string array (as `imagenet_class_clean.npy`),
/// a JSON list of strings, the `classes` JSON that `embed_images` writes
/// (`{"classes": [...]}`, an ImageFolder's folder names), or a text file
/// with one name per line (blank lines skipped; a word list).
pub fn read_names(path: &Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.starts_with(b"\x93NUMPY") {
        return formats::read_strings(path);
    }
    let json_like = bytes.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|b| *b == b'[' || *b == b'{');
    if !json_like {
        let text = String::from_utf8(bytes)
            .map_err(|_| anyhow::anyhow!("{}: neither a numpy string array, JSON nor UTF-8 text", path.display()))?;
        return Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect());
    }
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not valid JSON (a list of names, or {{\"classes\": [...]}})", path.display()))?;
    let list = match &value {
        serde_json::Value::Object(map) => map.get("classes"),
        list => Some(list),
    };
    let names: Option<Vec<String>> =
        list.and_then(|l| l.as_array()).map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect());
    match names {
        Some(n) if n.len() == list.and_then(|l| l.as_array()).map_or(0, |a| a.len()) => Ok(n),
        _ => bail!(
            "{}: expected a JSON list of class names or an object with a \"classes\" list of strings",
            path.display()
        ),
    }
}
