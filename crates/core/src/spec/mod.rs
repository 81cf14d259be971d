//! The pipeline spec: what a user writes in `pipelines/*.toml`, and the
//! resolved [`Pipeline`] the rest of toe-pipe works on.
//!
//! Loading happens in three steps, each in its own file:
//! * [`raw`]: the TOML as written, with byte spans for error messages;
//! * [`expand`]: variables interpolated and `for_each` templates expanded
//!   into plain nodes;
//! * [`check`]: everything that needs the whole graph, the op catalog or the
//!   file system (dangling references, cycles, params, missing sources).

pub mod check;
pub mod diag;
pub mod expand;
pub mod raw;
pub mod resources;
pub mod vars;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use diag::{Diagnostic, Diagnostics, SourceMap, Span};
pub use expand::{expand, load, LoadOptions};
pub use resources::Resources;

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
    Html,
    File,
}

impl ArtifactKind {
    pub const ALL: [ArtifactKind; 10] = [
        ArtifactKind::Npy,
        ArtifactKind::Pt,
        ArtifactKind::Json,
        ArtifactKind::Text,
        ArtifactKind::Dir,
        ArtifactKind::Md,
        ArtifactKind::Svg,
        ArtifactKind::Png,
        ArtifactKind::Html,
        ArtifactKind::File,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ArtifactKind::Npy => "npy",
            ArtifactKind::Pt => "pt",
            ArtifactKind::Json => "json",
            ArtifactKind::Text => "text",
            ArtifactKind::Dir => "dir",
            ArtifactKind::Md => "md",
            ArtifactKind::Svg => "svg",
            ArtifactKind::Png => "png",
            ArtifactKind::Html => "html",
            ArtifactKind::File => "file",
        }
    }

    pub fn parse(s: &str) -> Option<ArtifactKind> {
        ArtifactKind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// The usual file extension, used to name outputs that have no
    /// workspace path (tools such as `np.save` append one otherwise).
    pub fn extension(self) -> &'static str {
        match self {
            ArtifactKind::Text => "txt",
            ArtifactKind::File | ArtifactKind::Dir => "",
            other => other.name(),
        }
    }

    /// Whether an output of kind `self` may feed an input port of kind
    /// `wanted`. `file` is the unspecified file kind and matches any file.
    pub fn feeds(self, wanted: ArtifactKind) -> bool {
        if self == wanted {
            return true;
        }
        let is_dir = |k: ArtifactKind| k == ArtifactKind::Dir;
        !is_dir(self) && !is_dir(wanted) && (self == ArtifactKind::File || wanted == ArtifactKind::File)
    }
}

impl fmt::Display for ArtifactKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A typed param value, as written in TOML (and in action records as JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ParamValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<ParamValue>),
    Table(BTreeMap<String, ParamValue>),
}

impl ParamValue {
    /// The TOML-ish type name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            ParamValue::Bool(_) => "boolean",
            ParamValue::Int(_) => "integer",
            ParamValue::Float(_) => "float",
            ParamValue::Str(_) => "string",
            ParamValue::List(_) => "array",
            ParamValue::Table(_) => "table",
        }
    }

    /// The value as it is pasted into a command line (strings unquoted).
    pub fn to_plain_string(&self) -> String {
        match self {
            ParamValue::Bool(b) => b.to_string(),
            ParamValue::Int(i) => i.to_string(),
            ParamValue::Float(x) => format_float(*x),
            ParamValue::Str(s) => s.clone(),
            ParamValue::List(items) => items.iter().map(|v| v.to_plain_string()).collect::<Vec<_>>().join(" "),
            ParamValue::Table(_) => serde_json::to_string(self).unwrap_or_default(),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            ParamValue::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            ParamValue::Int(i) => Some(*i),
            _ => None,
        }
    }
    /// Floats, and integers read as floats.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            ParamValue::Float(x) => Some(*x),
            ParamValue::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            ParamValue::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

/// Floats keep a decimal point so `1.0` does not read back as an integer.
fn format_float(x: f64) -> String {
    if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Str(s) => write!(f, "{s:?}"),
            ParamValue::List(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            ParamValue::Table(t) => {
                f.write_str("{")?;
                for (i, (k, v)) in t.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k} = {v}")?;
                }
                f.write_str("}")
            }
            other => f.write_str(&other.to_plain_string()),
        }
    }
}

/// Hand-written so that a wrong value gets a message that says what is
/// accepted (serde's untagged enums only say "did not match any variant").
impl<'de> Deserialize<'de> for ParamValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ParamValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a boolean, integer, float, string, array or table")
            }
            fn visit_bool<E>(self, v: bool) -> Result<ParamValue, E> {
                Ok(ParamValue::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<ParamValue, E> {
                Ok(ParamValue::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ParamValue, E> {
                i64::try_from(v)
                    .map(ParamValue::Int)
                    .map_err(|_| E::custom(format!("integer {v} is too large (max {})", i64::MAX)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<ParamValue, E> {
                Ok(ParamValue::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<ParamValue, E> {
                Ok(ParamValue::Str(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<ParamValue, E> {
                Ok(ParamValue::Str(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<ParamValue, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(ParamValue::List(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<ParamValue, A::Error> {
                let mut table = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    // The toml crate hands datetimes over as a one-entry map.
                    if key.starts_with("$__toml_private") {
                        return Err(serde::de::Error::custom(
                            "dates and times are not supported here; write the value as a string",
                        ));
                    }
                    let value = map.next_value()?;
                    table.insert(key, value);
                }
                Ok(ParamValue::Table(table))
            }
        }
        d.deserialize_any(V)
    }
}

/// Where a node may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    Cpu,
    Gpu,
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Device::Cpu => "cpu",
            Device::Gpu => "gpu",
        })
    }
}

/// A fully expanded pipeline: no variables, no templates left.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    pub description: Option<String>,
    /// The pipeline file, absolute.
    pub file: PathBuf,
    /// The directory that relative source and output paths start from.
    pub workspace: PathBuf,
    /// Nodes in file order (templates expanded in place).
    pub nodes: Vec<Node>,
    /// Workspace-relative output paths that `run` prints when it finishes
    /// (`show = [...]` under `[pipeline]`), e.g. the results table.
    pub show: Vec<PathBuf>,
    /// The file's text, to turn spans into line:col in later checks.
    pub source: SourceMap,
    /// Ids (glob patterns) of nodes left out because they had errors, so
    /// that references to them are not reported a second time.
    pub broken: Vec<String>,
    /// `[sources_help]`: guidance for missing sources, by path.
    pub sources_help: Vec<SourceHelp>,
}

/// One `[sources_help]` entry: the text applies to a source at `abs` or
/// anywhere under it.
#[derive(Debug, Clone)]
pub struct SourceHelp {
    pub abs: PathBuf,
    pub text: String,
}

impl Pipeline {
    pub fn node_index(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    pub fn is_broken(&self, id: &str) -> bool {
        self.broken.iter().any(|p| glob_match(p, id))
    }

    /// A workspace-relative path made absolute.
    pub fn workspace_path(&self, rel: &Path) -> PathBuf {
        self.workspace.join(rel)
    }

    /// The `[sources_help]` text for a source path: the entry with the
    /// longest path that is the source itself or a folder above it.
    pub fn source_help(&self, abs: &Path) -> Option<&str> {
        self.sources_help
            .iter()
            .filter(|h| abs.starts_with(&h.abs))
            .max_by_key(|h| h.abs.components().count())
            .map(|h| h.text.as_str())
    }

    /// A diagnostic located at `span` of this pipeline's file.
    pub fn diagnostic(&self, span: &Span, node: Option<&str>, message: impl Into<String>) -> Diagnostic {
        Diagnostic::at(&self.source, span, node, message)
    }
}

/// `*` matches any run of characters, `?` one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// One node of the DAG.
#[derive(Debug, Clone)]
pub struct Node {
    pub id: String,
    /// Span of the node's id value (templates: the template's id).
    pub span: Span,
    pub action: Action,
    /// Params as written (op defaults are applied by `check`).
    pub params: BTreeMap<String, Param>,
    /// Input port name -> what feeds it (node outputs and sources).
    pub inputs: BTreeMap<String, Input>,
    pub outputs: BTreeMap<String, Output>,
    pub device: Device,
    /// A gpu node that must not fall back to the CPU.
    pub require_gpu: bool,
    /// What it asks of the machine, after the pipeline's defaults.
    pub resources: Resources,
    pub doc: Option<String>,
}

impl Node {
    /// Ids of the nodes this node reads from, without repeats.
    pub fn upstream_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self
            .inputs
            .values()
            .flat_map(|i| i.refs.iter())
            .filter_map(|r| match r {
                InputRef::Node { node, .. } => Some(node.as_str()),
                InputRef::Source { .. } | InputRef::Lineage => None,
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    pub fn kind_label(&self) -> String {
        match &self.action {
            Action::Op { name, .. } => format!("op {name}"),
            Action::Cmd { .. } => "cmd".to_owned(),
        }
    }
}

/// What a node does.
#[derive(Debug, Clone)]
pub enum Action {
    /// A built-in op from the registry.
    Op { name: String, span: Span },
    /// A shell command; `${in.x}`, `${out.x}` and `${param.x}` are filled in
    /// when it runs, `$$` stands for `$`.
    Cmd { template: String, span: Span },
}

#[derive(Debug, Clone)]
pub struct Param {
    pub value: ParamValue,
    pub span: Span,
}

/// What feeds one input port.
#[derive(Debug, Clone)]
pub struct Input {
    pub refs: Vec<InputRef>,
    /// Written as an array: the port receives a list even of one element.
    pub is_list: bool,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputRef {
    /// `node.output`
    Node { node: String, output: String },
    /// A file or directory outside the store. `path` is as written (after
    /// variables); `abs` is resolved against the workspace.
    Source { path: String, abs: PathBuf },
    /// `@lineage`: a JSON document of the action records of every action
    /// the node's other inputs came from, transitively (see
    /// `engine::lineage_input`).
    Lineage,
}

/// How an input refers to the lineage of the node's other inputs.
pub const LINEAGE_REF: &str = "@lineage";

impl fmt::Display for InputRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputRef::Node { node, output } => write!(f, "{node}.{output}"),
            InputRef::Source { path, .. } => f.write_str(path),
            InputRef::Lineage => f.write_str(LINEAGE_REF),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Output {
    /// `None` until `check` fills it from the op's port (op nodes may omit it).
    pub kind: Option<ArtifactKind>,
    /// Workspace-relative path where the artifact is materialised.
    pub path: Option<PathBuf>,
    pub span: Span,
}

impl Output {
    pub fn kind_or_file(&self) -> ArtifactKind {
        self.kind.unwrap_or(ArtifactKind::File)
    }
}
