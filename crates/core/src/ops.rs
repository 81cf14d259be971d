//! What an op is: the [`TypedOp`] trait an op implements, with its params
//! and ports declared as structs ([`op_params!`](crate::op_params),
//! [`op_ports!`](crate::op_ports)); the object-safe [`Op`] every `TypedOp`
//! is, which a [`Registry`] holds by name; the [`OpContext`] a worker gets
//! from the CLI; and the [`OpCatalog`] of the ops' declarations.
//!
//! One op per file, in the `toe_pipe` crate (src/ops), whose `registry()`
//! lists the built-in ones. An op declares its params (types, defaults,
//! allowed ranges and values), its named input and output ports (with
//! artifact kinds) and a version; the version is part of every action key,
//! so bump it whenever the op's results would change for the same inputs
//! and params. The catalog is derived from those declarations, and the
//! worker reads the job into the same structs before the op runs, so what
//! `toe-pipe check` accepts and what the op reads cannot drift apart.
//!
//! Ops run only inside `toe-pipe-worker` (the binary that links libtorch).
//! The `toe-pipe` CLI never links the registry: it learns the ops' params
//! and ports from the worker as an [`OpCatalog`] (JSON), so that commands
//! which run no op (status, a no-op run) do not pay libtorch's start-up.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::spec::ParamValue;

mod params;
mod ports;

pub use params::*;
pub use ports::*;

/// Where an op runs, as the op sees it (the worker has CUDA_VISIBLE_DEVICES
/// set already, so `Cuda` is its one GPU). Spelled `cpu` / `cuda` in jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    Cpu,
    Cuda,
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
        })
    }
}

crate::param_enum! {
    /// Arithmetic precision of inference: a shared param of the CLIP ops.
    pub enum Precision {
        Fp32 = "fp32",
        Fp16 = "fp16",
        Bf16 = "bf16",
    }
}

/// A job for a worker: everything one op node runs with. The CLI writes it
/// (JSON); the op sees only its typed params and ports (read from the
/// fields below by [`TypedOp`]'s `Op` impl) and the public fields.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpContext {
    /// Node id, for messages.
    pub node: String,
    /// Params after defaults were applied and types checked by the CLI.
    pub(crate) params: BTreeMap<String, crate::spec::ParamValue>,
    /// Input name -> paths of the artifacts (in the store or source paths);
    /// one path unless the port is a list port.
    pub(crate) inputs: BTreeMap<String, Vec<PathBuf>>,
    /// Output name -> path the op must write (a temporary place; the
    /// scheduler commits it to the store only if the op succeeds). Dir
    /// outputs exist already (empty).
    pub(crate) outputs: BTreeMap<String, PathBuf>,
    pub device: Device,
    /// A scratch directory removed after the node finishes.
    pub scratch: PathBuf,
}

/// An op, written against typed params and ports. Implementing it makes the
/// type an [`Op`] that a [`Registry`] can hold:
///
/// ```ignore
/// op_params! {
///     pub struct Params {
///         /// by how much
///         #[range(above(0.0))]
///         factor: f64 = 2.0,
///     }
/// }
/// op_ports! {
///     pub struct Inputs {
///         /// numbers
///         x: Npy,
///     }
/// }
/// op_ports! {
///     pub struct Outputs {
///         /// the numbers, scaled
///         y: Npy,
///     }
/// }
///
/// pub struct Scale;
///
/// impl TypedOp for Scale {
///     const NAME: &'static str = "scale";
///     const VERSION: u32 = 1;
///     const SUMMARY: &'static str = "multiply numbers";
///     type Params = Params;
///     type Inputs = Inputs;
///     type Outputs = Outputs;
///     fn run(&self, ctx: &OpContext, p: Params, i: Inputs, o: Outputs) -> anyhow::Result<()> {
///         // p.factor, i.x and o.y are read and checked already.
///     }
/// }
/// ```
pub trait TypedOp: Send + Sync {
    const NAME: &'static str;
    /// Bump when results change for the same inputs and params.
    const VERSION: u32;
    /// One line for `toe-pipe ops` and error messages.
    const SUMMARY: &'static str;
    type Params: ParamSet;
    type Inputs: PortSet;
    type Outputs: PortSet;
    /// Optional inputs that some param values need (a score that reads
    /// class text features, say). `toe-pipe check` reports a node that
    /// chooses such a value without connecting the input, and the worker
    /// refuses the job, both before the op runs. Default: none.
    fn needs() -> Vec<InputNeed> {
        Vec::new()
    }
    /// Run with the node's params and paths, already read and checked.
    fn run(
        &self,
        ctx: &OpContext,
        params: Self::Params,
        inputs: Self::Inputs,
        outputs: Self::Outputs,
    ) -> anyhow::Result<()>;
}

/// A built-in op as the registry holds it (object-safe). Every [`TypedOp`]
/// is one; implement `TypedOp`, not this.
pub trait Op: Send + Sync {
    /// The op's declaration, as the catalog lists it.
    fn info(&self) -> OpInfo;
    /// Read the job's params and paths into the op's types (every problem
    /// is an error naming the node and the param or port), then run.
    fn run(&self, ctx: &OpContext) -> anyhow::Result<()>;
}

impl<T: TypedOp> Op for T {
    fn info(&self) -> OpInfo {
        OpInfo {
            name: T::NAME.to_owned(),
            version: T::VERSION,
            summary: T::SUMMARY.to_owned(),
            params: T::Params::infos(),
            inputs: T::Inputs::infos(),
            outputs: T::Outputs::infos(),
            needs: T::needs(),
        }
    }
    fn run(&self, ctx: &OpContext) -> anyhow::Result<()> {
        let params = T::Params::from_params(&ctx.node, &ctx.params)?;
        let info = self.info();
        let unmet = info.unmet_needs(&ctx.params, |port| ctx.inputs.get(port).is_some_and(|p| !p.is_empty()));
        if !unmet.is_empty() {
            let lines: Vec<String> =
                unmet.iter().map(|n| format!("node {}: {}", ctx.node, info.need_text(n))).collect();
            anyhow::bail!("{}", lines.join("\n"));
        }
        let inputs = T::Inputs::from_paths(&ctx.node, PortDir::Input, &ctx.inputs)?;
        let outputs: BTreeMap<String, Vec<PathBuf>> =
            ctx.outputs.iter().map(|(k, p)| (k.clone(), vec![p.clone()])).collect();
        let outputs = T::Outputs::from_paths(&ctx.node, PortDir::Output, &outputs)?;
        TypedOp::run(self, ctx, params, inputs, outputs)
            .with_context(|| format!("op {} failed in node {}", T::NAME, ctx.node))
    }
}

/// Ops by name.
#[derive(Default)]
pub struct Registry {
    ops: BTreeMap<String, Box<dyn Op>>,
}

impl Registry {
    /// A registry with no ops (tests add their own).
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Add an op; a later op with the same name replaces the earlier one.
    pub fn register(&mut self, op: Box<dyn Op>) {
        self.ops.insert(op.info().name, op);
    }

    pub fn get(&self, name: &str) -> Option<&dyn Op> {
        self.ops.get(name).map(|b| b.as_ref())
    }

    /// The ops' declarations, without their code.
    pub fn catalog(&self) -> OpCatalog {
        OpCatalog { ops: self.ops.values().map(|op| op.info()).map(|info| (info.name.clone(), info)).collect() }
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpInfo {
    pub name: String,
    pub version: u32,
    pub summary: String,
    pub params: Vec<ParamInfo>,
    pub inputs: Vec<PortInfo>,
    pub outputs: Vec<PortInfo>,
    /// Optional inputs that some param values need ([`TypedOp::needs`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<InputNeed>,
}

/// An optional input that one value of a param needs: when param `param`
/// is `value` (or is a list that holds it), input `input` must be
/// connected. Declared by the op, so that `toe-pipe check`, which does not
/// run op code, can report it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputNeed {
    pub param: String,
    pub value: String,
    pub input: String,
}

impl InputNeed {
    pub fn new(param: &str, value: impl ToString, input: &str) -> InputNeed {
        InputNeed { param: param.to_owned(), value: value.to_string(), input: input.to_owned() }
    }

    /// Whether a param value (a string, or a list of strings) chooses `value`.
    fn chosen_by(&self, v: &ParamValue) -> bool {
        match v {
            ParamValue::List(items) => items.iter().any(|i| i.as_str() == Some(self.value.as_str())),
            one => one.as_str() == Some(self.value.as_str()),
        }
    }
}

impl OpInfo {
    /// The needs that `params` choose and `connected` (is input X
    /// connected?) leaves unmet. A param missing from `params` counts at
    /// its implicit value, else at its default (a job leaves implicit
    /// values out; `check` sees every value).
    pub fn unmet_needs(
        &self,
        params: &BTreeMap<String, ParamValue>,
        connected: impl Fn(&str) -> bool,
    ) -> Vec<&InputNeed> {
        self.needs
            .iter()
            .filter(|n| {
                let info = self.param(&n.param);
                let value =
                    params.get(&n.param).or_else(|| info.and_then(|i| i.implicit.as_ref().or(i.default.as_ref())));
                value.is_some_and(|v| n.chosen_by(v)) && !connected(&n.input)
            })
            .collect()
    }

    /// "param `scores` has "mcm", which needs input `class_text` (its doc);
    /// it is not connected".
    pub fn need_text(&self, n: &InputNeed) -> String {
        let doc = self.input(&n.input).map(|i| format!(" ({} {})", i.kind, i.doc)).unwrap_or_default();
        format!("param `{}` has {:?}, which needs input `{}`{doc}; it is not connected", n.param, n.value, n.input)
    }

    /// The values that need input `port`, as "scores \"mcm\", \"neglabel\"".
    pub fn needed_by(&self, port: &str) -> Option<String> {
        let mut by_param: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for n in self.needs.iter().filter(|n| n.input == port) {
            by_param.entry(&n.param).or_default().push(format!("{:?}", n.value));
        }
        let parts: Vec<String> = by_param.into_iter().map(|(p, v)| format!("{p} {}", v.join(", "))).collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }

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
