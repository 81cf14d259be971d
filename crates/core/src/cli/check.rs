//! `toe-pipe check PIPELINE`

use std::process::ExitCode;

use clap::Args;

use super::{executor_kind, load, Cli, CmdResult, PipelineArgs};
use crate::config::ExecutorKind;
use crate::engine::slurm::storage::local_filesystem_warnings;
use crate::spec::InputRef;

#[derive(Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub p: PipelineArgs,
    /// Do not require source paths to exist (check the file alone).
    #[arg(long)]
    pub no_sources: bool,
    /// Check for this executor (default: the config file's, else local);
    /// with slurm, warn about a store, sources or worker on a filesystem
    /// local to this machine.
    #[arg(long, value_enum)]
    pub executor: Option<ExecutorKind>,
}

pub fn run(cli: &Cli, a: &CheckArgs) -> CmdResult {
    let loaded = load(cli, &a.p, !a.no_sources)?;
    let kind = executor_kind(a.executor, &loaded, &a.p)?;
    let p = &loaded.pipeline;
    let sources: std::collections::BTreeSet<_> = p
        .nodes
        .iter()
        .flat_map(|n| n.inputs.values().flat_map(|i| i.refs.iter()))
        .filter_map(|r| match r {
            InputRef::Source { abs, .. } => Some(abs),
            _ => None,
        })
        .collect();
    let outputs: usize = p.nodes.iter().map(|n| n.outputs.len()).sum();
    println!(
        "ok: pipeline {} ({}): {} nodes, {} outputs, {} sources",
        p.name,
        a.p.pipeline.display(),
        p.nodes.len(),
        outputs,
        sources.len()
    );
    if kind == ExecutorKind::Slurm {
        for warning in local_filesystem_warnings(p, &loaded.store_dir) {
            eprintln!("{warning}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
