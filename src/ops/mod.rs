//! Built-in ops: the registry the pipeline's `op = "..."` nodes resolve against.
//!
//! One op per file. An op declares its typed params, its named input and output
//! ports (with artifact kinds) and a version; the version is part of every
//! action key, so bump it whenever the op's results would change for the same
//! inputs and params.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::spec::{ArtifactKind, ParamValue};

/// The type of a param, checked by `toe-pipe check` before anything runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    Bool,
    Int,
    Float,
    Str,
    /// A list of strings.
    StrList,
    /// A list of numbers.
    FloatList,
}

/// One param an op accepts. `default: None` means the param is required.
#[derive(Debug, Clone)]
pub struct ParamSpec {
    pub name: &'static str,
    pub ty: ParamType,
    pub default: Option<ParamValue>,
    pub doc: &'static str,
}

/// One named input or output of an op.
#[derive(Debug, Clone)]
pub struct PortSpec {
    pub name: &'static str,
    pub kind: ArtifactKind,
    /// An optional input may be left unconnected.
    pub optional: bool,
    pub doc: &'static str,
}

/// Everything an op sees while it runs (inside a worker process).
pub struct OpContext {
    /// Node id, for messages.
    pub node: String,
    /// Params after defaults were applied and types checked.
    pub params: BTreeMap<String, ParamValue>,
    /// Input name -> path of the artifact (in the store or a source path).
    pub inputs: BTreeMap<String, PathBuf>,
    /// Output name -> path the op must write (a temporary place; the
    /// scheduler commits it to the store only if the op succeeds).
    pub outputs: BTreeMap<String, PathBuf>,
    /// "cpu" or "cuda" (the worker has CUDA_VISIBLE_DEVICES set already).
    pub device: String,
    /// A scratch directory removed after the node finishes.
    pub scratch: PathBuf,
}

/// A built-in op.
pub trait Op: Send + Sync {
    fn name(&self) -> &'static str;
    /// Bump when results change for the same inputs and params.
    fn version(&self) -> u32;
    /// One line for `toe-pipe ops` and error messages.
    fn summary(&self) -> &'static str;
    fn params(&self) -> Vec<ParamSpec>;
    fn inputs(&self) -> Vec<PortSpec>;
    fn outputs(&self) -> Vec<PortSpec>;
    fn run(&self, ctx: &OpContext) -> anyhow::Result<()>;
}

/// All built-in ops, by name.
pub fn registry() -> BTreeMap<&'static str, Box<dyn Op>> {
    let ops: Vec<Box<dyn Op>> = vec![];
    ops.into_iter().map(|op| (op.name(), op)).collect()
}
