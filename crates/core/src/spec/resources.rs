//! What a node asks of the machine that runs it: `resources = { cpus = 4 }`
//! on a node, with pipeline-wide defaults under `[resources]` (and, for
//! `device = "gpu"` nodes, `[resources.gpu]`). A node's own value wins,
//! then the gpu defaults (gpu nodes), then `[resources]`, then built-ins.

use toml::Spanned;

use super::raw::RawResources;
use super::vars::{self, Scope};
use super::{Device, ParamValue, Span};

/// A node's resources after defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    /// CPUs (threads) the node's process uses. Locally it takes that many
    /// of the `-j` slots (at most all of them); the process is told so.
    pub cpus: u32,
}

impl Default for Resources {
    fn default() -> Resources {
        // One, as in Snakemake and Nextflow: a node that does not say uses
        // one core, so `-j` nodes side by side never oversubscribe them.
        Resources { cpus: 1 }
    }
}

/// Values given at one level (node, gpu defaults, pipeline defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Partial {
    pub cpus: Option<u32>,
}

impl Partial {
    /// `self`, with what it leaves open taken from `under`.
    pub fn over(&self, under: &Partial) -> Partial {
        Partial { cpus: self.cpus.or(under.cpus) }
    }

    pub fn finish(&self) -> Resources {
        let base = Resources::default();
        Resources { cpus: self.cpus.unwrap_or(base.cpus) }
    }
}

/// The pipeline-wide `[resources]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Defaults {
    pub all: Partial,
    /// `[resources.gpu]`: for `device = "gpu"` nodes, over `all`.
    pub gpu: Partial,
}

impl Defaults {
    /// A node's resources: its own values over the defaults for its device.
    pub fn apply(&self, own: &Partial, device: Device) -> Resources {
        let under = if device == Device::Gpu { self.gpu.over(&self.all) } else { self.all.clone() };
        own.over(&under).finish()
    }
}

/// A problem in a resources table: where, what, and the fix.
pub type Problem = (Span, String, String);

/// Read `[resources]` (with its `gpu` table).
pub fn defaults(raw: &RawResources, scope: &Scope, problems: &mut Vec<Problem>) -> Defaults {
    let gpu = match &raw.gpu {
        Some(g) => {
            if let Some(inner) = &g.gpu {
                problems.push((
                    inner.span().unwrap_or(0..0),
                    "[resources.gpu] cannot have a gpu table of its own".into(),
                    "put the gpu nodes' defaults directly under [resources.gpu]".into(),
                ));
            }
            partial(g, scope, problems)
        }
        None => Partial::default(),
    };
    Defaults { all: partial(raw, scope, problems), gpu }
}

/// Read a node's `resources` table (`node_span` locates problems the
/// table's values cannot).
pub fn node(raw: &RawResources, node_span: &Span, scope: &Scope, problems: &mut Vec<Problem>) -> Partial {
    if let Some(g) = &raw.gpu {
        problems.push((
            g.span().unwrap_or(node_span.clone()),
            "`gpu` defaults belong in the pipeline-wide [resources.gpu] table, not in a node".into(),
            "write the values directly in the node's resources (a gpu node is one with device = \"gpu\")".into(),
        ));
    }
    partial(raw, scope, problems)
}

fn partial(raw: &RawResources, scope: &Scope, problems: &mut Vec<Problem>) -> Partial {
    Partial { cpus: raw.cpus.as_ref().and_then(|v| count(v, "cpus", "cpus = 4", scope, problems)) }
}

/// A whole number of at least 1 (or a variable holding one).
fn count(v: &Spanned<ParamValue>, key: &str, example: &str, scope: &Scope, problems: &mut Vec<Problem>) -> Option<u32> {
    match vars::param(v.get_ref(), scope) {
        Ok(ParamValue::Int(n)) if n >= 1 && n <= u32::MAX as i64 => Some(n as u32),
        Ok(other) => {
            problems.push((
                v.span(),
                format!("resources `{key}` must be a whole number of at least 1, not {other}"),
                format!("write e.g. {example}"),
            ));
            None
        }
        Err(e) => {
            problems.push((v.span(), e.message, e.fix));
            None
        }
    }
}
