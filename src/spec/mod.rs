//! The pipeline spec: what a user writes in `pipelines/*.toml`.

use serde::{Deserialize, Serialize};

/// What kind of file an artifact is; checked between connected ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactKind {
    Npy,
    Pt,
    Json,
    Text,
    Dir,
    Md,
    Svg,
    Png,
    File,
}

/// A typed param value, as written in TOML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<ParamValue>),
}
