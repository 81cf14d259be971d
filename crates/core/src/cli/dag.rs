//! `toe-pipe dag PIPELINE [--format text|dot|json]`

use std::collections::BTreeMap;
use std::fmt::Write;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use serde::Serialize;

use super::{load, Cli, CmdResult, PipelineArgs};
use crate::spec::{Action, InputRef, Pipeline};

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Dot,
    Json,
}

#[derive(Args)]
pub struct DagArgs {
    #[command(flatten)]
    pub p: PipelineArgs,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

pub fn run(cli: &Cli, a: &DagArgs) -> CmdResult {
    let loaded = load(cli, &a.p, false)?;
    let p = &loaded.pipeline;
    let order = &loaded.dag.order;
    let out = match a.format {
        Format::Text => text(p, order),
        Format::Dot => dot(p, order),
        Format::Json => serde_json::to_string_pretty(&json(p, order))? + "\n",
    };
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

fn action_label(p: &Pipeline, i: usize) -> String {
    let n = &p.nodes[i];
    let device = if n.require_gpu { "gpu required".to_owned() } else { n.device.to_string() };
    format!("{}, {device}", n.kind_label())
}

fn text(p: &Pipeline, order: &[usize]) -> String {
    let mut s = format!("pipeline {} ({} nodes, in run order)\n", p.name, p.nodes.len());
    if let Some(d) = &p.description {
        let _ = writeln!(s, "{d}");
    }
    for &i in order {
        let n = &p.nodes[i];
        let _ = writeln!(s, "{}  [{}]", n.id, action_label(p, i));
        if let Some(doc) = &n.doc {
            let _ = writeln!(s, "    # {doc}");
        }
        for (port, input) in &n.inputs {
            for r in &input.refs {
                let what = match r {
                    InputRef::Node { .. } | InputRef::Lineage => r.to_string(),
                    InputRef::Source { path, .. } => format!("source {path}"),
                };
                let _ = writeln!(s, "    <- {port}: {what}");
            }
        }
        for (name, o) in &n.outputs {
            let path = o.path.as_ref().map(|p| format!(" -> {}", p.display())).unwrap_or_default();
            let _ = writeln!(s, "    -> {name}: {}{path}", o.kind_or_file());
        }
    }
    s
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn dot(p: &Pipeline, order: &[usize]) -> String {
    let mut s =
        format!("digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n", dot_escape(&p.name));
    let mut sources: BTreeMap<String, usize> = BTreeMap::new();
    for &i in order {
        let n = &p.nodes[i];
        let style = if matches!(n.action, Action::Op { .. }) { "" } else { ", style=rounded" };
        let _ = writeln!(
            s,
            "  \"{}\" [label=\"{}\\n{}\"{style}];",
            dot_escape(&n.id),
            dot_escape(&n.id),
            dot_escape(&action_label(p, i))
        );
    }
    for &i in order {
        let n = &p.nodes[i];
        for (port, input) in &n.inputs {
            for r in &input.refs {
                match r {
                    InputRef::Node { node, output } => {
                        let _ = writeln!(
                            s,
                            "  \"{}\" -> \"{}\" [label=\"{}→{}\"];",
                            dot_escape(node),
                            dot_escape(&n.id),
                            dot_escape(output),
                            dot_escape(port)
                        );
                    }
                    // The lineage follows the node's other inputs: no edge of its own.
                    InputRef::Lineage => {}
                    InputRef::Source { path, .. } => {
                        let next = sources.len();
                        let id = *sources.entry(path.clone()).or_insert(next);
                        let _ = writeln!(
                            s,
                            "  \"source{id}\" -> \"{}\" [label=\"{}\"];",
                            dot_escape(&n.id),
                            dot_escape(port)
                        );
                    }
                }
            }
        }
    }
    for (path, id) in &sources {
        let _ = writeln!(s, "  \"source{id}\" [label=\"{}\", shape=note];", dot_escape(path));
    }
    s.push_str("}\n");
    s
}

#[derive(Serialize)]
struct JsonDag<'a> {
    pipeline: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    nodes: Vec<JsonNode<'a>>,
    edges: Vec<JsonEdge<'a>>,
}

#[derive(Serialize)]
struct JsonNode<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    op: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cmd: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    doc: Option<&'a str>,
    device: String,
    require_gpu: bool,
    params: BTreeMap<&'a str, &'a crate::spec::ParamValue>,
    sources: BTreeMap<&'a str, Vec<&'a str>>,
    outputs: BTreeMap<&'a str, JsonOutput>,
}

#[derive(Serialize)]
struct JsonOutput {
    kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
}

#[derive(Serialize)]
struct JsonEdge<'a> {
    from: &'a str,
    output: &'a str,
    to: &'a str,
    input: &'a str,
}

fn json<'a>(p: &'a Pipeline, order: &[usize]) -> JsonDag<'a> {
    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    for &i in order {
        let n = &p.nodes[i];
        let (op, cmd) = match &n.action {
            Action::Op { name, .. } => (Some(name.as_str()), None),
            Action::Cmd { template, .. } => (None, Some(template.as_str())),
        };
        let mut sources: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (port, input) in &n.inputs {
            for r in &input.refs {
                match r {
                    InputRef::Node { node, output } => {
                        edges.push(JsonEdge { from: node, output, to: &n.id, input: port })
                    }
                    InputRef::Source { path, .. } => sources.entry(port.as_str()).or_default().push(path),
                    InputRef::Lineage => {}
                }
            }
        }
        nodes.push(JsonNode {
            id: &n.id,
            op,
            cmd,
            doc: n.doc.as_deref(),
            device: n.device.to_string(),
            require_gpu: n.require_gpu,
            params: n.params.iter().map(|(k, v)| (k.as_str(), &v.value)).collect(),
            sources,
            outputs: n
                .outputs
                .iter()
                .map(|(k, o)| {
                    (
                        k.as_str(),
                        JsonOutput {
                            kind: o.kind_or_file().to_string(),
                            path: o.path.as_ref().map(|p| p.display().to_string()),
                        },
                    )
                })
                .collect(),
        });
    }
    JsonDag { pipeline: &p.name, description: p.description.as_deref(), nodes, edges }
}
