//! `toe-pipe run PIPELINE`

use std::process::ExitCode;

use clap::Args;

use super::{executor_kind, load, Cli, CmdResult, PipelineArgs};
use crate::config::ExecutorKind;
use crate::engine::executor::{Executor, LocalExecutor};
use crate::engine::progress::Progress;
use crate::engine::slurm::SlurmExecutor;
use crate::engine::{plan, Outcome, RunOptions, Selection, State};
use crate::store::Store;

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub p: PipelineArgs,
    /// Say what would run, run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Run only these nodes and what they need (`*` wildcards; repeat or
    /// separate with commas).
    #[arg(long, value_name = "NODE", value_delimiter = ',')]
    pub only: Vec<String>,
    /// Run these nodes even if cached (`*` wildcards). Their dependants
    /// still re-run only if the outputs change.
    #[arg(long, value_name = "NODE", value_delimiter = ',')]
    pub force: Vec<String>,
    /// CPU slots (default: the number of cores); with `--executor slurm`,
    /// jobs in flight (default 100).
    #[arg(short = 'j', long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Where nodes run: `local` processes, or one Slurm batch job each
    /// (default: `executor` in toe-pipe.toml beside the pipeline or
    /// config.toml in the store, else local).
    #[arg(long, value_enum)]
    pub executor: Option<ExecutorKind>,
    /// GPUs to use, e.g. `0,1`, or `none` (default: all that libtorch sees).
    #[arg(long, value_name = "IDS")]
    pub gpus: Option<String>,
    /// Re-hash sources and cached outputs instead of trusting the stat cache.
    #[arg(long)]
    pub verify: bool,
    /// Start nothing new after the first failure (default: finish every
    /// branch that does not depend on the failed node).
    #[arg(long)]
    pub fail_fast: bool,
}

pub fn run(cli: &Cli, a: &RunArgs) -> CmdResult {
    let loaded = load(cli, &a.p, true)?;
    let store = Store::open_or_create(&loaded.store_dir)?;
    let engine = loaded.engine(&store);
    let p = &loaded.pipeline;

    if a.dry_run {
        // The whole pipeline, as `status` shows it (--only and --force
        // are not applied).
        let statuses = plan(&engine, &Selection::all(p.nodes.len()), a.verify)?.nodes;
        let width = statuses.iter().map(|s| p.nodes[s.node].id.len()).max().unwrap_or(0);
        let mut counts = [0usize; 4];
        for s in &statuses {
            let state = s.state();
            let verb = match state {
                State::Fresh => "fresh",
                State::Restore => "restore",
                State::Stale => "would run",
                State::Waiting => "may run",
            };
            counts[state as usize] += 1;
            if state != State::Fresh || cli.verbose {
                println!(
                    "{}",
                    format!("{verb:>9}  {:width$}  {}", p.nodes[s.node].id, s.reasons.join("; ")).trim_end()
                );
            }
        }
        println!(
            "dry run: {} would run, {} may run (unless their inputs come out unchanged), {} to restore, {} fresh",
            counts[State::Stale as usize],
            counts[State::Waiting as usize],
            counts[State::Restore as usize],
            counts[State::Fresh as usize]
        );
        return Ok(ExitCode::SUCCESS);
    }

    let gpus = match a.gpus.as_deref() {
        None => None,
        Some("none") | Some("") => Some(vec![]),
        Some(list) => Some(
            list.split(',')
                .map(|s| {
                    s.trim().parse::<u32>().map_err(|_| {
                        anyhow::anyhow!("--gpus: {s:?} is not a GPU number (write e.g. --gpus 0,1 or --gpus none)")
                    })
                })
                .collect::<anyhow::Result<Vec<u32>>>()?,
        ),
    };
    let kind = executor_kind(a.executor, &loaded, &a.p)?;
    let default_jobs = match kind {
        ExecutorKind::Local => crate::sys::cpus(),
        // The cluster queues what it cannot run yet; this only bounds how
        // many jobs one run keeps submitted.
        ExecutorKind::Slurm => 100,
    };
    let opts =
        RunOptions { jobs: a.jobs.unwrap_or(default_jobs).max(1), gpus, verify: a.verify, fail_fast: a.fail_fast };
    let selection = engine.select(&a.only, &a.force)?;
    let progress = Progress::new(selection.count(), cli.verbose, cli.quiet);
    let executor: Box<dyn Executor> = match kind {
        ExecutorKind::Local => {
            let left = crate::engine::slurm::ledger::Ledger::of(&store).entries();
            if !left.is_empty() {
                progress.line(&format!(
                    "warning: {} Slurm job(s) of an earlier run may still be running (the store's slurm/ folder lists them); their results are not used\n  fix: run with --executor slurm to adopt or cancel them",
                    left.len()
                ));
            }
            Box::new(LocalExecutor::new(store.clone()))
        }
        ExecutorKind::Slurm => Box::new(SlurmExecutor::new(store.clone(), p)),
    };
    let report = crate::engine::run_with(&engine, &selection, &opts, &progress, executor)?;

    let ran = report.count(|o| matches!(o, Outcome::Ran { .. }));
    let restored = report.count(|o| matches!(o, Outcome::Restored(_)));
    let fresh = report.count(|o| matches!(o, Outcome::Fresh));
    let failed = report.failed();
    let skipped = report.count(|o| matches!(o, Outcome::Skipped(_)));
    let stopped = report.count(|o| matches!(o, Outcome::Interrupted));
    let secs = report.elapsed.as_secs_f64();
    if report.interrupted {
        eprintln!(
            "interrupted after {secs:.2}s: {ran} ran, {stopped} stopped; finished nodes are kept, run again to resume"
        );
        return Ok(ExitCode::from(130));
    }
    if ran == 0 && restored == 0 && failed == 0 && skipped == 0 {
        eprintln!("nothing to do: {fresh} nodes fresh ({secs:.3}s)");
        show(p);
        return Ok(ExitCode::SUCCESS);
    } else {
        let mut parts = vec![format!("{ran} ran"), format!("{restored} restored"), format!("{fresh} fresh")];
        if failed > 0 {
            parts.push(format!("{failed} failed"));
        }
        if skipped > 0 {
            parts.push(format!("{skipped} skipped"));
        }
        eprintln!("{} {secs:.2}s: {}", if report.success() { "done in" } else { "run failed after" }, parts.join(", "));
    }
    if report.success() {
        show(p);
    }
    Ok(if report.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Print the outputs the pipeline asks to see (`show = [...]`), e.g. the
/// results table, after a successful run, including one with nothing to do.
fn show(p: &crate::spec::Pipeline) {
    for rel in &p.show {
        let path = p.workspace.join(rel);
        match std::fs::read_to_string(&path) {
            Ok(text) => println!("\n{}:\n\n{}", rel.display(), text.trim_end()),
            Err(e) => tracing::warn!("cannot show {}: {e}", path.display()),
        }
    }
}
