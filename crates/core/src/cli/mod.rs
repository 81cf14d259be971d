//! The command line: one file per command, each a thin layer over the
//! library. `main.rs` only calls [`main`].

mod check;
mod dag;
mod gc;
mod hash;
mod lineage;
mod log;
mod ops;
mod run;
mod status;
mod verify;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::ExecutorKind;
use crate::graph::Dag;
use crate::ops::OpCatalog;
use crate::spec::check::CheckOptions;
use crate::spec::{Action, LoadOptions, Pipeline};
use crate::store::Store;

#[derive(Parser)]
#[command(
    name = "toe-pipe",
    version,
    about = "Textual Outlier Exposure (TOE) for visual OoD detection as a DAG of cached stages"
)]
pub struct Cli {
    /// Store directory (default: `artifacts/` in the pipeline's workspace;
    /// for commands without a pipeline, the nearest `artifacts/` store at or
    /// above the current directory).
    #[arg(long, global = true, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Also list nodes that were already fresh, and log at info level
    /// (RUST_LOG, when set, chooses the log level instead).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Print only errors and the final summary (and log only errors).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run what is stale (in parallel, cached, incremental).
    Run(run::RunArgs),
    /// Show each node as fresh or stale, and why.
    Status(status::StatusArgs),
    /// Print the DAG as text, Graphviz dot or JSON.
    Dag(dag::DagArgs),
    /// Show where an artifact came from, down to its sources.
    Lineage(lineage::LineageArgs),
    /// Print the log of a node's last run.
    Log(log::LogArgs),
    /// Remove what no pipeline and no recent run needs from the store.
    Gc(gc::GcArgs),
    /// Check a pipeline file without running anything.
    Check(check::CheckArgs),
    /// Re-hash every object in the store to find corrupt ones.
    Verify(verify::VerifyArgs),
    /// List the built-in ops with their params and ports.
    Ops(ops::OpsArgs),
    /// Print the content hash the store uses for a file or directory.
    Hash(hash::HashArgs),
}

/// A pipeline file and `--set` overrides; shared by the commands that take one.
#[derive(Args, Clone)]
pub struct PipelineArgs {
    /// The pipeline file (TOML).
    pub pipeline: PathBuf,
    /// Override a variable of the pipeline's [vars]: --set name=value
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_set)]
    pub set: Vec<(String, String)>,
}

fn parse_set(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected NAME=VALUE, got {s:?}"))
}

/// An error already printed (diagnostics), or one to print.
pub enum Failure {
    Printed(ExitCode),
    Error(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure::Error(e.into())
    }
}

pub type CmdResult = Result<ExitCode, Failure>;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::logging::init(match (cli.quiet, cli.verbose) {
        (true, _) => tracing_subscriber::filter::LevelFilter::ERROR,
        (false, true) => tracing_subscriber::filter::LevelFilter::INFO,
        (false, false) => tracing_subscriber::filter::LevelFilter::WARN,
    });
    let result = match &cli.command {
        Command::Run(a) => run::run(&cli, a),
        Command::Status(a) => status::run(&cli, a),
        Command::Dag(a) => dag::run(&cli, a),
        Command::Lineage(a) => lineage::run(&cli, a),
        Command::Log(a) => log::run(&cli, a),
        Command::Gc(a) => gc::run(&cli, a),
        Command::Check(a) => check::run(&cli, a),
        Command::Verify(a) => verify::run(&cli, a),
        Command::Ops(a) => ops::run(&cli, a),
        Command::Hash(a) => hash::run(&cli, a),
    };
    match result {
        Ok(code) => code,
        Err(Failure::Printed(code)) => code,
        Err(Failure::Error(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A loaded, checked pipeline with its store and op catalog.
pub struct Loaded {
    pub pipeline: Pipeline,
    pub dag: Dag,
    pub store_dir: PathBuf,
    pub catalog: OpCatalog,
}

impl Loaded {
    pub fn engine<'a>(&'a self, store: &'a Store) -> crate::engine::Engine<'a> {
        crate::engine::Engine { pipeline: &self.pipeline, dag: &self.dag, store, catalog: &self.catalog }
    }
}

/// Load and check a pipeline; diagnostics are printed here.
pub fn load(cli: &Cli, args: &PipelineArgs, check_sources: bool) -> Result<Loaded, Failure> {
    let opts = LoadOptions { set: args.set.clone() };
    let (mut pipeline, mut diags) = crate::spec::expand(&args.pipeline, &opts).map_err(print_diagnostics)?;
    let store_dir = store_dir_for(cli, &pipeline);
    let catalog = if pipeline.nodes.iter().any(|n| matches!(n.action, Action::Op { .. })) {
        let cache = store_dir.join("cache");
        crate::worker::catalog(cache.is_dir().then_some(cache.as_path()))?
    } else {
        OpCatalog::default()
    };
    let check_opts = CheckOptions { sources: check_sources, store: Some(store_dir.clone()) };
    let checked = crate::spec::check::check(&mut pipeline, Some(&catalog), &check_opts);
    // Commands too long to start: this needs the store's paths, so it is
    // the engine's to say (after `check` completed the pipeline).
    diags.extend(crate::engine::cmdline::check_lengths(&pipeline, &store_dir));
    match checked {
        Ok(dag) if diags.is_empty() => Ok(Loaded { pipeline, dag, store_dir, catalog }),
        Ok(_) => Err(print_diagnostics(diags.into_result().err().unwrap_or_default())),
        Err(more) => {
            diags.extend(more);
            Err(print_diagnostics(diags.into_result().err().unwrap_or_default()))
        }
    }
}

/// Where nodes run: `--executor`, else the config file's (`toe-pipe.toml`
/// beside the pipeline, or `config.toml` in the store), else local.
pub fn executor_kind(
    flag: Option<ExecutorKind>,
    loaded: &Loaded,
    args: &PipelineArgs,
) -> Result<ExecutorKind, Failure> {
    if let Some(kind) = flag {
        return Ok(kind);
    }
    let config = crate::config::load(&args.pipeline, &loaded.store_dir).map_err(print_diagnostics)?;
    Ok(config.executor.unwrap_or(ExecutorKind::Local))
}

fn print_diagnostics(d: crate::spec::Diagnostics) -> Failure {
    eprintln!("{d}");
    Failure::Printed(ExitCode::FAILURE)
}

/// `--store`, else `artifacts/` in the pipeline's workspace.
pub fn store_dir_for(cli: &Cli, p: &Pipeline) -> PathBuf {
    match &cli.store {
        Some(s) => absolute(s),
        None => p.workspace.join("artifacts"),
    }
}

/// `--store`, else the nearest store at or above `start` (default: cwd).
pub fn find_store(cli: &Cli, start: Option<&Path>) -> anyhow::Result<Store> {
    if let Some(s) = &cli.store {
        return Store::open_existing(&absolute(s));
    }
    let from = start.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    match Store::discover(&from) {
        Some(dir) => Store::open_existing(&dir),
        None => anyhow::bail!(
            "no toe-pipe store (artifacts/STORE) at or above {}.\n  fix: run from the project directory, or pass --store DIR",
            std::fs::canonicalize(&from).unwrap_or(from).display()
        ),
    }
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf())
    }
}

/// Bytes in human units.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
