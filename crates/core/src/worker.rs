//! The worker side of op nodes, and how the CLI talks to it.
//!
//! `toe-pipe-worker` is a second binary that links libtorch and the op
//! registry. The CLI starts it per op node (`toe-pipe-worker run JOB.json`),
//! asks it once for the op catalog (`describe`, cached in the store by the
//! worker binary's identity) and, when a gpu node is about to run, for the
//! number of CUDA devices (`gpus`). Test binaries can be workers too: they
//! call [`main`] with their own registry and are selected with
//! `TOE_PIPE_WORKER`.

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::ops::{Device, OpCatalog, OpContext, Registry};
use crate::store::records::LibtorchFacts;
use crate::store::{write_atomic, Hash};

/// What a worker runs: one op with its context.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub op: String,
    pub ctx: OpContext,
    /// libtorch's intra-op threads: the node's CPUs (0: libtorch's default).
    #[serde(default)]
    pub cpus: usize,
}

/// The worker binary: `$TOE_PIPE_WORKER`, else `toe-pipe-worker` next to
/// the running executable.
pub fn worker_exe() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("TOE_PIPE_WORKER") {
        return Ok(PathBuf::from(p));
    }
    let me = std::env::current_exe().context("cannot find the running executable")?;
    let exe = me.with_file_name("toe-pipe-worker");
    if !exe.is_file() {
        bail!(
            "op nodes need {}, which is missing.\n  fix: build it with `cargo build --release --bins` (scripts/setup.sh does), or set TOE_PIPE_WORKER",
            exe.display()
        );
    }
    // `cargo run` rebuilds only `toe-pipe`; an older worker may carry
    // older ops.
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(cli), Some(worker)) = (modified(&me), modified(&exe)) {
        if cli.duration_since(worker).is_ok_and(|d| d.as_secs() > 60) {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(
                    "{} is older than {}; if ops changed, rebuild both with `cargo build --bins`",
                    exe.display(),
                    me.display()
                )
            });
        }
    }
    Ok(exe)
}

/// The ops' declarations, from the worker; cached under `cache_dir` by the
/// worker binary's path, size and modification time.
pub fn catalog(cache_dir: Option<&Path>) -> anyhow::Result<OpCatalog> {
    let exe = worker_exe()?;
    let meta = std::fs::metadata(&exe).with_context(|| format!("cannot read {}", exe.display()))?;
    let identity = format!("{}|{}|{}|{}", exe.display(), meta.len(), meta.mtime(), meta.mtime_nsec());
    let cache = cache_dir.map(|d| d.join(format!("ops-{}.json", &Hash::of_bytes(identity.as_bytes()).hex()[..24])));
    if let Some(c) = &cache {
        if let Ok(bytes) = std::fs::read(c) {
            if let Ok(cat) = serde_json::from_slice(&bytes) {
                return Ok(cat);
            }
        }
    }
    let out = Command::new(&exe).arg("describe").output().with_context(|| format!("cannot run {}", exe.display()))?;
    if !out.status.success() {
        bail!("{} describe failed: {}", exe.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    let cat: OpCatalog = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("{} describe printed something that is not an op catalog", exe.display()))?;
    if let Some(c) = &cache {
        let _ = write_atomic(c, &out.stdout);
    }
    Ok(cat)
}

/// CUDA devices as libtorch sees them (asked of the worker, which links it).
pub fn gpu_count() -> anyhow::Result<usize> {
    let exe = worker_exe()?;
    let out = Command::new(&exe).arg("gpus").output().with_context(|| format!("cannot run {}", exe.display()))?;
    if !out.status.success() {
        bail!("{} gpus failed: {}", exe.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().context("toe-pipe-worker gpus did not print a number")
}

/// What a worker binary provides besides its ops: calls into the library
/// the ops run on, which this crate does not link.
pub struct Runtime {
    /// CUDA devices it sees.
    pub gpu_count: fn() -> usize,
    /// Set the library's intra-op threads (before the op runs).
    pub set_threads: fn(usize),
    /// Versions, CPU kernels and GPU, for lineage; asked after an op ran
    /// on `Device` (so CUDA is initialised when it was used).
    pub facts: fn(Device) -> LibtorchFacts,
}

/// The file a worker writes its [`LibtorchFacts`] to, beside its job file.
pub const FACTS_FILE: &str = "runtime.json";

/// The facts the worker of a node reported (nothing for cmd nodes, or a
/// worker that could not say).
pub fn read_facts(node_dir: &Path) -> LibtorchFacts {
    std::fs::read(node_dir.join(FACTS_FILE)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

/// Entry point of a worker binary. `runtime` is passed in so that this
/// library function does not itself reach libtorch.
pub fn main(registry: Registry, runtime: Runtime) -> ExitCode {
    // Its stderr is the node's log.
    crate::logging::init(tracing_subscriber::filter::LevelFilter::INFO);
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let result = match args.first().and_then(|a| a.to_str()) {
        Some("describe") => serde_json::to_string(&registry.catalog()).map(|s| println!("{s}")).map_err(anyhow::Error::from),
        Some("gpus") => {
            println!("{}", (runtime.gpu_count)());
            Ok(())
        }
        Some("run") if args.len() == 2 => run_job(&registry, &runtime, Path::new(&args[1])),
        _ => Err(anyhow::anyhow!(
            "usage: toe-pipe-worker describe | gpus | run JOB.json\n(this binary is started by toe-pipe; run pipelines with `toe-pipe run`)"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_job(registry: &Registry, runtime: &Runtime, job_path: &Path) -> anyhow::Result<()> {
    let text = std::fs::read(job_path).with_context(|| format!("cannot read job {}", job_path.display()))?;
    let job: Job = serde_json::from_slice(&text).with_context(|| format!("bad job file {}", job_path.display()))?;
    let op = registry.get(&job.op).with_context(|| format!("this worker has no op `{}`", job.op))?;
    let info = op.info();
    if job.cpus > 0 {
        (runtime.set_threads)(job.cpus);
    }
    tracing::info!(
        "toe-pipe-worker: op {} v{} for node {} on {}, {} threads",
        info.name,
        info.version,
        job.ctx.node,
        job.ctx.device,
        if job.cpus > 0 { job.cpus.to_string() } else { "default".into() }
    );
    // Errors name the node: reading the params and ports, before any work,
    // or "op NAME failed in node NODE: ..." from the op itself.
    op.run(&job.ctx)?;
    // Only a successful run is recorded, so only then are the facts needed.
    let facts = (runtime.facts)(job.ctx.device);
    let path = job_path.with_file_name(FACTS_FILE);
    if let Err(e) = serde_json::to_vec(&facts).map_err(anyhow::Error::from).and_then(|b| Ok(write_atomic(&path, &b)?)) {
        tracing::warn!("cannot write {} (lineage will lack libtorch's details): {e}", path.display());
    }
    Ok(())
}
