//! What the store remembers about actions and pipelines, as JSON.
//!
//! An [`ActionRecord`] is both the action cache entry (its file name is the
//! action key) and the lineage record of the run that produced it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::hash::Hash;
use super::Committed;
use crate::engine::key::Resolved;
use crate::spec::{ArtifactKind, Node, ParamValue, Pipeline};

pub const RECORD_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum RecordedAction {
    Op { op: String, op_version: u32 },
    Cmd { cmd: String },
}

impl RecordedAction {
    pub fn describe(&self) -> String {
        match self {
            RecordedAction::Op { op, op_version } => format!("op {op} v{op_version}"),
            RecordedAction::Cmd { cmd } => format!("cmd {}", one_line(cmd, 60)),
        }
    }
}

/// Shorten a command for listings.
pub fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

/// One artifact an action read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputRecord {
    pub hash: Hash,
    /// Set for sources: the path as written in the pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Set for node outputs: which node and output produced it, and the
    /// action key of that run (provenance, not part of the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Hash>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputRecord {
    pub hash: Hash,
    pub kind: ArtifactKind,
    pub size: u64,
    /// Workspace path the output was declared at, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
}

/// A successful run of one node: the cache entry and its lineage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionRecord {
    pub format: u32,
    pub key: Hash,
    pub pipeline: String,
    pub pipeline_file: PathBuf,
    pub node: String,
    pub action: RecordedAction,
    pub params: BTreeMap<String, ParamValue>,
    pub inputs: BTreeMap<String, Vec<InputRecord>>,
    pub outputs: BTreeMap<String, OutputRecord>,
    /// RFC 3339 times of the run.
    pub start: String,
    pub end: String,
    pub duration_s: f64,
    /// Where it ran: "cpu" or "cuda:N" (not part of the key).
    pub device: String,
    pub toe_pipe_version: String,
    pub host: String,
    /// Where and on what it ran; absent in records written before toe-pipe
    /// recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ran_on: Option<RanOn>,
}

/// Where and on what a run happened (provenance, not part of the key): the
/// same computation gives other digits on another CPU kind or libtorch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RanOn {
    /// `local` or `slurm`.
    pub executor: String,
    /// The Slurm job that ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm_job: Option<String>,
    /// The CPUs the node was given (its threads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_model: Option<String>,
    /// The CPU's vector extensions among those libtorch's kernels choose
    /// from (`crate::sys::SIMD_FLAGS`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cpu_flags: Vec<String>,
    /// What the worker reported (op nodes).
    #[serde(flatten)]
    pub libtorch: LibtorchFacts,
}

/// What an op node's worker reports about the libtorch it ran on, in
/// `runtime.json` beside its job file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LibtorchFacts {
    /// libtorch's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub libtorch: Option<String>,
    /// The CPU kernels libtorch dispatched to (`at::get_cpu_capability()`:
    /// `AVX2`, `AVX512`, `NO AVX`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_capability: Option<String>,
    /// The CUDA version libtorch was built with (none for a CPU build).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda: Option<String>,
    /// The GPU the op ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<String>,
}

impl RanOn {
    /// One line for `lineage`: executor, CPU, libtorch, GPU.
    pub fn describe(&self) -> String {
        let mut parts = vec![match &self.slurm_job {
            Some(job) => format!("{} job {job}", self.executor),
            None => self.executor.clone(),
        }];
        if let Some(n) = self.cpus {
            parts.push(format!("{n} cpu{}", if n == 1 { "" } else { "s" }));
        }
        if let Some(m) = &self.cpu_model {
            let flags =
                if self.cpu_flags.is_empty() { String::new() } else { format!(" [{}]", self.cpu_flags.join(" ")) };
            parts.push(format!("{m}{flags}"));
        }
        let t = &self.libtorch;
        if let Some(v) = &t.libtorch {
            let cuda = t.cuda.as_ref().map(|c| format!(" (CUDA {c} build)")).unwrap_or_default();
            parts.push(format!("libtorch {v}{cuda}"));
        }
        if let Some(c) = &t.cpu_capability {
            parts.push(format!("{c} kernels"));
        }
        if let Some(g) = &t.gpu {
            parts.push(format!("GPU {g}"));
        }
        parts.join(", ")
    }
}

/// Where a finished node ran, as its executor saw it.
#[derive(Debug, Clone, Default)]
pub struct Ran {
    pub host: String,
    pub on: RanOn,
}

impl Ran {
    /// A node that ran on this machine.
    pub fn here(cpus: Option<usize>, libtorch: LibtorchFacts) -> Ran {
        let machine = crate::sys::machine();
        Ran {
            host: machine.host.clone(),
            on: RanOn {
                executor: "local".into(),
                slurm_job: None,
                cpus,
                cpu_model: machine.cpu_model.clone(),
                cpu_flags: machine.cpu_flags.clone(),
                libtorch,
            },
        }
    }
}

/// When one run of a node started and ended.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub start: SystemTime,
    pub end: SystemTime,
    pub seconds: f64,
}

impl ActionRecord {
    /// The record of a successful run of `node`: what determined it
    /// (`res`), the outputs it committed, when, and where (`device`:
    /// "cpu" or "cuda:N"; `ran`: host, executor, CPU, libtorch).
    pub fn of_run(
        p: &Pipeline,
        node: &Node,
        res: &Resolved,
        outputs: &BTreeMap<String, Committed>,
        timing: &Timing,
        device: String,
        ran: Ran,
    ) -> ActionRecord {
        ActionRecord {
            format: RECORD_FORMAT,
            key: res.key,
            pipeline: p.name.clone(),
            pipeline_file: p.file.clone(),
            node: node.id.clone(),
            action: res.action.clone(),
            params: res.params.clone(),
            inputs: res.inputs.clone(),
            outputs: outputs
                .iter()
                .map(|(name, c)| {
                    let path = node.outputs.get(name).and_then(|o| o.path.clone());
                    (
                        name.clone(),
                        OutputRecord {
                            hash: c.hash,
                            kind: res.output_kinds.get(name).copied().unwrap_or(ArtifactKind::File),
                            size: c.size,
                            path,
                        },
                    )
                })
                .collect(),
            start: humantime::format_rfc3339_millis(timing.start).to_string(),
            end: humantime::format_rfc3339_millis(timing.end).to_string(),
            duration_s: timing.seconds,
            device,
            toe_pipe_version: env!("CARGO_PKG_VERSION").to_owned(),
            host: ran.host,
            ran_on: Some(ran.on),
        }
    }
}

/// The last run of each node of one pipeline: what `status` compares
/// against to say *why* a node is stale, what `log NODE` shows, and the
/// roots `gc` keeps.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PipelineRefs {
    pub pipeline: String,
    pub file: PathBuf,
    pub updated: String,
    pub nodes: BTreeMap<String, NodeRef>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeRef {
    /// The action whose outputs are in the workspace now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<Hash>,
    /// The last attempt to run the node (its log is under this key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt: Option<Attempt>,
    /// Where toe-pipe put the node's outputs in the workspace (output name
    /// -> workspace-relative path): paths it may replace later. Absent in
    /// refs written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placed: Option<BTreeMap<String, PathBuf>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attempt {
    pub key: Hash,
    pub ok: bool,
    pub at: String,
}
