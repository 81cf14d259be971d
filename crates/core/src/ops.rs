//! What an op is: the [`Op`] trait, its typed params and ports, the
//! [`OpContext`] it runs with, a [`Registry`] of ops by name and the
//! [`OpCatalog`] of their declarations.
//!
//! One op per file, in the `toe_pipe` crate (src/ops), whose `registry()`
//! lists the built-in ones. An op declares its typed params, its named input
//! and output ports (with artifact kinds) and a version; the version is part
//! of every action key, so bump it whenever the op's results would change for
//! the same inputs and params.
//!
//! Ops run only inside `toe-pipe-worker` (the binary that links libtorch).
//! The `toe-pipe` CLI never links the registry: it learns the ops' params
//! and ports from the worker as an [`OpCatalog`] (JSON), so that commands
//! which run no op (status, a no-op run) do not pay libtorch's start-up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};

use crate::spec::{ArtifactKind, ParamValue};

/// The type of a param, checked by `toe-pipe check` before anything runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    Bool,
    Int,
    /// A number; integers written in the file are read as floats.
    Float,
    Str,
    /// A list of strings.
    StrList,
    /// A list of integers.
    IntList,
    /// A list of numbers.
    FloatList,
}

impl ParamType {
    pub fn name(self) -> &'static str {
        match self {
            ParamType::Bool => "boolean",
            ParamType::Int => "integer",
            ParamType::Float => "float",
            ParamType::Str => "string",
            ParamType::StrList => "array of strings",
            ParamType::IntList => "array of integers",
            ParamType::FloatList => "array of numbers",
        }
    }

    /// The value in its canonical form if it has this type (integers become
    /// floats for float params, so `lr = 1` and `lr = 1.0` share a cache entry).
    pub fn coerce(self, v: &ParamValue) -> Option<ParamValue> {
        let float = |v: &ParamValue| v.as_f64().map(ParamValue::Float);
        let list = |v: &ParamValue, each: &dyn Fn(&ParamValue) -> Option<ParamValue>| match v {
            ParamValue::List(items) => items.iter().map(each).collect::<Option<Vec<_>>>().map(ParamValue::List),
            _ => None,
        };
        match self {
            ParamType::Bool => v.as_bool().map(ParamValue::Bool),
            ParamType::Int => v.as_i64().map(ParamValue::Int),
            ParamType::Float => float(v),
            ParamType::Str => v.as_str().map(|s| ParamValue::Str(s.to_owned())),
            ParamType::StrList => list(v, &|x| x.as_str().map(|s| ParamValue::Str(s.to_owned()))),
            ParamType::IntList => list(v, &|x| x.as_i64().map(ParamValue::Int)),
            ParamType::FloatList => list(v, &float),
        }
    }
}

/// One param an op accepts. `default: None` means the param is required.
#[derive(Debug, Clone)]
pub struct ParamSpec {
    pub name: &'static str,
    pub ty: ParamType,
    pub default: Option<ParamValue>,
    pub doc: &'static str,
}

impl ParamSpec {
    pub fn required(name: &'static str, ty: ParamType, doc: &'static str) -> ParamSpec {
        ParamSpec { name, ty, default: None, doc }
    }
    pub fn with_default(name: &'static str, ty: ParamType, default: ParamValue, doc: &'static str) -> ParamSpec {
        ParamSpec { name, ty, default: Some(default), doc }
    }
}

/// One named input or output of an op.
#[derive(Debug, Clone)]
pub struct PortSpec {
    pub name: &'static str,
    pub kind: ArtifactKind,
    /// An optional input may be left unconnected.
    pub optional: bool,
    /// The input takes a list of artifacts (`inputs.x = ["a.out", "b.out"]`).
    pub list: bool,
    pub doc: &'static str,
}

impl PortSpec {
    pub fn new(name: &'static str, kind: ArtifactKind, doc: &'static str) -> PortSpec {
        PortSpec { name, kind, optional: false, list: false, doc }
    }
    pub fn optional(mut self) -> PortSpec {
        self.optional = true;
        self
    }
    pub fn list(mut self) -> PortSpec {
        self.list = true;
        self
    }
}

/// Everything an op sees while it runs (inside a worker process).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpContext {
    /// Node id, for messages.
    pub node: String,
    /// Params after defaults were applied and types checked.
    pub params: BTreeMap<String, ParamValue>,
    /// Input name -> paths of the artifacts (in the store or source paths);
    /// one path unless the port is a list port.
    pub inputs: BTreeMap<String, Vec<PathBuf>>,
    /// Output name -> path the op must write (a temporary place; the
    /// scheduler commits it to the store only if the op succeeds). Dir
    /// outputs exist already (empty).
    pub outputs: BTreeMap<String, PathBuf>,
    /// "cpu" or "cuda" (the worker has CUDA_VISIBLE_DEVICES set already).
    pub device: String,
    /// A scratch directory removed after the node finishes.
    pub scratch: PathBuf,
}

impl OpContext {
    /// The single artifact connected to input `name`.
    pub fn input(&self, name: &str) -> anyhow::Result<&Path> {
        match self.inputs.get(name).map(Vec::as_slice) {
            Some([one]) => Ok(one),
            Some([]) | None => bail!("node {}: input `{name}` is not connected", self.node),
            Some(_) => bail!("node {}: input `{name}` has several artifacts; the op expects one", self.node),
        }
    }
    /// The artifacts connected to input `name` (empty if unconnected).
    pub fn input_list(&self, name: &str) -> &[PathBuf] {
        self.inputs.get(name).map(Vec::as_slice).unwrap_or(&[])
    }
    pub fn output(&self, name: &str) -> anyhow::Result<&Path> {
        self.outputs.get(name).map(PathBuf::as_path).ok_or_else(|| anyhow!("node {}: no output `{name}`", self.node))
    }
    pub fn param(&self, name: &str) -> anyhow::Result<&ParamValue> {
        self.params.get(name).ok_or_else(|| anyhow!("node {}: param `{name}` is missing", self.node))
    }
    pub fn param_f64(&self, name: &str) -> anyhow::Result<f64> {
        self.param(name)?.as_f64().with_context(|| format!("param `{name}` is not a number"))
    }
    pub fn param_i64(&self, name: &str) -> anyhow::Result<i64> {
        self.param(name)?.as_i64().with_context(|| format!("param `{name}` is not an integer"))
    }
    /// An integer param that must be at least 1.
    pub fn param_positive(&self, name: &str) -> anyhow::Result<i64> {
        let v = self.param_i64(name)?;
        if v <= 0 {
            bail!("node {}: param `{name}` must be positive, got {v}", self.node);
        }
        Ok(v)
    }
    pub fn param_bool(&self, name: &str) -> anyhow::Result<bool> {
        self.param(name)?.as_bool().with_context(|| format!("param `{name}` is not a boolean"))
    }
    pub fn param_str(&self, name: &str) -> anyhow::Result<&str> {
        self.param(name)?.as_str().with_context(|| format!("param `{name}` is not a string"))
    }
    pub fn param_str_list(&self, name: &str) -> anyhow::Result<Vec<String>> {
        match self.param(name)? {
            ParamValue::List(items) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned).with_context(|| format!("param `{name}` has a non-string element")))
                .collect(),
            _ => bail!("param `{name}` is not a list"),
        }
    }
    pub fn param_i64_list(&self, name: &str) -> anyhow::Result<Vec<i64>> {
        match self.param(name)? {
            ParamValue::List(items) => items
                .iter()
                .map(|v| v.as_i64().with_context(|| format!("param `{name}` has a non-integer element")))
                .collect(),
            _ => bail!("param `{name}` is not a list"),
        }
    }
    pub fn is_cuda(&self) -> bool {
        self.device == "cuda"
    }
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

/// Ops by name.
#[derive(Default)]
pub struct Registry {
    ops: BTreeMap<&'static str, Box<dyn Op>>,
}

impl Registry {
    /// A registry with no ops (tests add their own).
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Add an op; a later op with the same name replaces the earlier one.
    pub fn register(&mut self, op: Box<dyn Op>) {
        self.ops.insert(op.name(), op);
    }

    pub fn get(&self, name: &str) -> Option<&dyn Op> {
        self.ops.get(name).map(|b| b.as_ref())
    }

    /// The ops' declarations, without their code.
    pub fn catalog(&self) -> OpCatalog {
        OpCatalog {
            ops: self
                .ops
                .values()
                .map(|op| OpInfo {
                    name: op.name().to_owned(),
                    version: op.version(),
                    summary: op.summary().to_owned(),
                    params: op
                        .params()
                        .into_iter()
                        .map(|p| ParamInfo { name: p.name.to_owned(), ty: p.ty, default: p.default, doc: p.doc.to_owned() })
                        .collect(),
                    inputs: op.inputs().into_iter().map(PortInfo::from).collect(),
                    outputs: op.outputs().into_iter().map(PortInfo::from).collect(),
                })
                .map(|info| (info.name.clone(), info))
                .collect(),
        }
    }
}

/// What the CLI knows about the ops: their declarations, as JSON from the
/// worker (`toe-pipe-worker describe`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OpCatalog {
    pub ops: BTreeMap<String, OpInfo>,
}

impl OpCatalog {
    pub fn get(&self, name: &str) -> Option<&OpInfo> {
        self.ops.get(name)
    }
    pub fn names(&self) -> impl Iterator<Item = &str> + Clone {
        self.ops.keys().map(String::as_str)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpInfo {
    pub name: String,
    pub version: u32,
    pub summary: String,
    pub params: Vec<ParamInfo>,
    pub inputs: Vec<PortInfo>,
    pub outputs: Vec<PortInfo>,
}

impl OpInfo {
    pub fn param(&self, name: &str) -> Option<&ParamInfo> {
        self.params.iter().find(|p| p.name == name)
    }
    pub fn input(&self, name: &str) -> Option<&PortInfo> {
        self.inputs.iter().find(|p| p.name == name)
    }
    pub fn output(&self, name: &str) -> Option<&PortInfo> {
        self.outputs.iter().find(|p| p.name == name)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParamInfo {
    pub name: String,
    pub ty: ParamType,
    pub default: Option<ParamValue>,
    pub doc: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PortInfo {
    pub name: String,
    pub kind: ArtifactKind,
    pub optional: bool,
    pub list: bool,
    pub doc: String,
}

impl From<PortSpec> for PortInfo {
    fn from(p: PortSpec) -> PortInfo {
        PortInfo { name: p.name.to_owned(), kind: p.kind, optional: p.optional, list: p.list, doc: p.doc.to_owned() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coercion_is_canonical() {
        assert_eq!(ParamType::Float.coerce(&ParamValue::Int(1)), Some(ParamValue::Float(1.0)));
        assert_eq!(ParamType::Int.coerce(&ParamValue::Float(1.0)), None);
        assert_eq!(
            ParamType::FloatList.coerce(&ParamValue::List(vec![ParamValue::Int(1), ParamValue::Float(0.5)])),
            Some(ParamValue::List(vec![ParamValue::Float(1.0), ParamValue::Float(0.5)]))
        );
        assert_eq!(ParamType::StrList.coerce(&ParamValue::List(vec![ParamValue::Int(1)])), None);
    }
}
