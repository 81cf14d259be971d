//! What a node asks of the machine that runs it: `resources = { cpus = 4 }`
//! on a node, with pipeline-wide defaults under `[resources]` (and, for
//! `device = "gpu"` nodes, `[resources.gpu]`). A node's own value wins,
//! then the gpu defaults (gpu nodes), then `[resources]`, then built-ins.
//!
//! `cpus` counts everywhere; the other keys are requests to a cluster
//! (the Slurm executor turns them into `sbatch` flags) and are checked
//! here, before anything is submitted.

use toml::Spanned;

use super::raw::RawResources;
use super::vars::{self, Scope};
use super::{Device, ParamValue, Span};

/// A node's resources after defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    /// CPUs (threads) the node's process uses. Locally it takes that many
    /// of the `-j` slots (at most all of them); the process is told so. On
    /// a cluster, `--cpus-per-task`.
    pub cpus: u32,
    /// GPUs of a gpu node on a cluster (`--gres=gpu:N`).
    pub gpus: u32,
    /// Memory (`--mem`, e.g. "16G").
    pub mem: Option<String>,
    /// Time limit (`--time`, e.g. "2:00:00" or "1-12").
    pub time: Option<String>,
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// More `sbatch` flags, as written.
    pub sbatch: Vec<String>,
}

impl Default for Resources {
    fn default() -> Resources {
        // One CPU, as in Snakemake and Nextflow: a node that does not say
        // uses one core, so `-j` nodes side by side never oversubscribe
        // them, and it gets the same on a cluster.
        Resources {
            cpus: 1,
            gpus: 1,
            mem: None,
            time: None,
            partition: None,
            account: None,
            qos: None,
            sbatch: Vec::new(),
        }
    }
}

/// Values given at one level (node, gpu defaults, pipeline defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Partial {
    pub cpus: Option<u32>,
    pub gpus: Option<u32>,
    pub mem: Option<String>,
    pub time: Option<String>,
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    pub sbatch: Option<Vec<String>>,
}

impl Partial {
    /// `self`, with what it leaves open taken from `under`.
    pub fn over(&self, under: &Partial) -> Partial {
        let pick = |a: &Option<String>, b: &Option<String>| a.clone().or_else(|| b.clone());
        Partial {
            cpus: self.cpus.or(under.cpus),
            gpus: self.gpus.or(under.gpus),
            mem: pick(&self.mem, &under.mem),
            time: pick(&self.time, &under.time),
            partition: pick(&self.partition, &under.partition),
            account: pick(&self.account, &under.account),
            qos: pick(&self.qos, &under.qos),
            sbatch: self.sbatch.clone().or_else(|| under.sbatch.clone()),
        }
    }

    pub fn finish(&self) -> Resources {
        let base = Resources::default();
        Resources {
            cpus: self.cpus.unwrap_or(base.cpus),
            gpus: self.gpus.unwrap_or(base.gpus),
            mem: self.mem.clone(),
            time: self.time.clone(),
            partition: self.partition.clone(),
            account: self.account.clone(),
            qos: self.qos.clone(),
            sbatch: self.sbatch.clone().unwrap_or_default(),
        }
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
pub fn node(
    raw: &RawResources,
    device: Device,
    node_span: &Span,
    scope: &Scope,
    problems: &mut Vec<Problem>,
) -> Partial {
    if let Some(g) = &raw.gpu {
        problems.push((
            g.span().unwrap_or(node_span.clone()),
            "`gpu` defaults belong in the pipeline-wide [resources.gpu] table, not in a node".into(),
            "write the values directly in the node's resources (a gpu node is one with device = \"gpu\")".into(),
        ));
    }
    if let (Some(g), Device::Cpu) = (&raw.gpus, device) {
        problems.push((
            g.span(),
            "resources `gpus` on a cpu node".into(),
            "add device = \"gpu\" (it then gets GPUs), or remove gpus".into(),
        ));
    }
    partial(raw, scope, problems)
}

fn partial(raw: &RawResources, scope: &Scope, problems: &mut Vec<Problem>) -> Partial {
    let text = |v: &Option<Spanned<String>>, problems: &mut Vec<Problem>| {
        v.as_ref().and_then(|v| match vars::scalar(v.get_ref(), scope) {
            Ok(s) => Some((s, v.span())),
            Err(e) => {
                problems.push((v.span(), e.message, e.fix));
                None
            }
        })
    };
    let mut checked = |v: &Option<Spanned<String>>, key: &str, ok: fn(&str) -> bool, fix: &str| {
        let (s, span) = text(v, problems)?;
        if ok(&s) {
            Some(s)
        } else {
            problems.push((span, format!("resources `{key}` = {s:?} is not {}", what(key)), fix.to_owned()));
            None
        }
    };
    let mem = checked(&raw.mem, "mem", is_mem, "write a number with K, M, G or T, e.g. mem = \"16G\"");
    let time = checked(
        &raw.time,
        "time",
        is_time,
        "write minutes, H:MM:SS or D-HH:MM:SS as sbatch --time reads them, e.g. time = \"2:00:00\"",
    );
    let partition = checked(&raw.partition, "partition", is_name, "write the partition's name, e.g. \"gpu\"");
    let account = checked(&raw.account, "account", is_name, "write the account's name");
    let qos = checked(&raw.qos, "qos", is_name, "write the QoS's name");
    let sbatch = raw.sbatch.as_ref().map(|flags| {
        let mut out = Vec::new();
        for flag in flags.get_ref() {
            match vars::scalar(flag, scope) {
                Ok(f) => match sbatch_flag_problem(&f) {
                    None => out.push(f),
                    Some((msg, fix)) => problems.push((flags.span(), msg, fix)),
                },
                Err(e) => problems.push((flags.span(), e.message, e.fix)),
            }
        }
        out
    });
    Partial {
        cpus: raw.cpus.as_ref().and_then(|v| count(v, "cpus", "cpus = 4", scope, problems)),
        gpus: raw.gpus.as_ref().and_then(|v| count(v, "gpus", "gpus = 2", scope, problems)),
        mem,
        time,
        partition,
        account,
        qos,
        sbatch,
    }
}

fn what(key: &str) -> &'static str {
    match key {
        "mem" => "a memory size",
        "time" => "a time limit",
        _ => "a name (letters, digits, `_`, `-`, `.`)",
    }
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

/// `--mem`: digits, then at most one unit.
fn is_mem(s: &str) -> bool {
    let digits = s.trim_end_matches(['K', 'M', 'G', 'T']);
    !digits.is_empty() && s.len() - digits.len() <= 1 && digits.bytes().all(|b| b.is_ascii_digit())
}

/// `--time`: minutes, M:S, H:M:S, D-H, D-H:M, D-H:M:S, or unlimited.
fn is_time(s: &str) -> bool {
    if matches!(s.to_ascii_lowercase().as_str(), "unlimited" | "infinite") {
        return true;
    }
    let num = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    let (days, rest) = match s.split_once('-') {
        Some((d, r)) => (Some(d), r),
        None => (None, s),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    days.is_none_or(num) && parts.iter().all(|p| num(p)) && parts.len() <= 3
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

/// Flags toe-pipe sets itself, or that would change what a job is.
const OWN_FLAGS: [&str; 12] =
    ["--output", "-o", "--error", "-e", "--chdir", "-D", "--parsable", "--wrap", "--array", "-a", "--dependency", "-d"];

fn sbatch_flag_problem(flag: &str) -> Option<(String, String)> {
    if !flag.starts_with('-') {
        return Some((
            format!("resources `sbatch`: {flag:?} is not a flag"),
            "write each flag with its value as one string, e.g. sbatch = [\"--constraint=a100\"]".into(),
        ));
    }
    let name = flag.split_once('=').map_or(flag, |(n, _)| n);
    let short = name.len() > 2 && !name.starts_with("--");
    let name = if short { &name[..2] } else { name };
    OWN_FLAGS.contains(&name).then(|| {
        (
            format!("resources `sbatch`: toe-pipe sets {name} itself"),
            "leave it out (toe-pipe writes each job's log and status into the store and waits for the job itself)"
                .into(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_values() {
        for ok in ["16G", "500", "2T", "64M"] {
            assert!(is_mem(ok), "{ok}");
        }
        for bad in ["16 G", "G", "16GB", "-1", ""] {
            assert!(!is_mem(bad), "{bad}");
        }
        for ok in ["30", "30:00", "2:00:00", "1-12", "1-12:30", "1-12:30:00", "UNLIMITED"] {
            assert!(is_time(ok), "{ok}");
        }
        for bad in ["2h", "1:2:3:4", "-5", "1-", ""] {
            assert!(!is_time(bad), "{bad}");
        }
        assert!(sbatch_flag_problem("--constraint=a100").is_none());
        assert!(sbatch_flag_problem("--exclusive").is_none());
        assert!(sbatch_flag_problem("constraint=a100").is_some());
        assert!(sbatch_flag_problem("--output=x").is_some());
        assert!(sbatch_flag_problem("-ox").is_some());
    }

    #[test]
    fn levels_override_each_other() {
        let all =
            Partial { cpus: Some(2), mem: Some("4G".into()), partition: Some("cpu".into()), ..Default::default() };
        let gpu = Partial { cpus: Some(8), partition: Some("gpu".into()), ..Default::default() };
        let d = Defaults { all, gpu };
        let own = Partial { mem: Some("32G".into()), ..Default::default() };
        let r = d.apply(&own, Device::Gpu);
        assert_eq!((r.cpus, r.gpus, r.mem.as_deref(), r.partition.as_deref()), (8, 1, Some("32G"), Some("gpu")));
        let r = d.apply(&Partial::default(), Device::Cpu);
        assert_eq!((r.cpus, r.mem.as_deref(), r.partition.as_deref()), (2, Some("4G"), Some("cpu")));
    }
}
