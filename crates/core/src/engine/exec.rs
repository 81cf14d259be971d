//! Starting one node: the command line (cmd nodes: `sh -c`; op nodes: the
//! worker), its environment, its log, and collecting its outputs.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::RawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use anyhow::Context;

use super::key::Resolved;
use super::{cmdline, nodedir};
use crate::ops::OpContext;
use crate::spec::{Action, ArtifactKind, InputRef, Node, Output, Pipeline, LINEAGE_REF};
use crate::store::verify::object_ok;
use crate::store::{Committed, Hash, Store};
use crate::worker::{worker_exe, Job};

/// Where a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Cpu,
    Gpu(u32),
}

impl Slot {
    /// As recorded in lineage.
    pub fn label(self) -> String {
        match self {
            Slot::Cpu => "cpu".into(),
            Slot::Gpu(i) => format!("cuda:{i}"),
        }
    }
    /// As the op sees it (the worker sees only its own GPU).
    fn device(self) -> &'static str {
        match self {
            Slot::Cpu => "cpu",
            Slot::Gpu(_) => "cuda",
        }
    }
    fn cuda_visible_devices(self) -> String {
        match self {
            Slot::Cpu => String::new(),
            Slot::Gpu(i) => i.to_string(),
        }
    }
}

/// A node ready to start.
#[derive(Debug)]
pub struct Prepared {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    /// The log, inside the node's temporary directory.
    pub log: PathBuf,
    /// (output name, where the node writes it, kind)
    pub outputs: Vec<(String, PathBuf, ArtifactKind)>,
    /// The node's temporary directory, removed once it is done.
    pub dir: PathBuf,
    /// The CPUs (threads) it was told to use.
    pub cpus: usize,
    /// The action key it computes.
    pub key: Hash,
    /// The store objects it reads, checked against their hashes while it
    /// runs (see [`check_inputs`]).
    pub objects: Vec<StagedInput>,
}

/// A store object a node reads.
#[derive(Debug, Clone)]
pub struct StagedInput {
    pub port: String,
    pub hash: Hash,
    /// `output x of node a`, for messages.
    pub from: String,
}

/// Build the node's command in its temporary directory `dir` (from
/// [`NodeDirs::take`](super::nodedir::NodeDirs::take), with a holder for
/// each output), for a process that may use `cpus` threads.
pub fn prepare(
    p: &Pipeline,
    node: &Node,
    res: &Resolved,
    store: &Store,
    dir: &Path,
    slot: Slot,
    cpus: usize,
) -> anyhow::Result<Prepared> {
    let dir = dir.to_path_buf();
    let scratch = dir.join(nodedir::SCRATCH);

    let mut outputs = Vec::new();
    for (i, (name, out)) in node.outputs.iter().enumerate() {
        let kind = out.kind_or_file();
        let path = output_path(&dir, i, name, out);
        if kind == ArtifactKind::Dir {
            fs::create_dir(&path).with_context(|| format!("cannot create {}", path.display()))?;
        }
        outputs.push((name.clone(), path, kind));
    }

    let mut inputs: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    let mut objects = Vec::new();
    for (port, input) in &node.inputs {
        // resolve() puts an @lineage record after the port's other ones.
        let (mut recs, mut lineage) =
            (res.inputs[port].iter().filter(|r| r.source.as_deref() != Some(LINEAGE_REF)), None);
        let mut paths = Vec::with_capacity(input.refs.len());
        for r in &input.refs {
            paths.push(match r {
                InputRef::Node { node: up, output } => {
                    let rec = recs.next().context("an input without its record")?;
                    objects.push(StagedInput {
                        port: port.clone(),
                        hash: rec.hash,
                        from: format!("output {output} of node {up}"),
                    });
                    store.object_path(&rec.hash)
                }
                InputRef::Source { abs, .. } => {
                    recs.next();
                    abs.clone()
                }
                InputRef::Lineage => {
                    let path = lineage_file(&dir, port);
                    if lineage.is_none() {
                        let doc = res.lineage.as_ref().context("a @lineage input without its document")?;
                        fs::write(&path, doc).with_context(|| format!("cannot write {}", path.display()))?;
                        lineage = Some(());
                    }
                    path
                }
            });
        }
        inputs.insert(port.clone(), paths);
    }

    let mut env = vec![
        ("TOE_PIPE_NODE".to_owned(), node.id.clone()),
        ("TOE_PIPE_PIPELINE".to_owned(), p.name.clone()),
        ("TOE_PIPE_WORKSPACE".to_owned(), p.workspace.display().to_string()),
        ("TOE_PIPE_SCRATCH".to_owned(), scratch.display().to_string()),
        ("TOE_PIPE_DEVICE".to_owned(), slot.device().to_owned()),
        ("CUDA_VISIBLE_DEVICES".to_owned(), slot.cuda_visible_devices()),
    ];
    env.extend(thread_env(cpus));
    // libtorch's OpenMP threads spin while they wait for work. When nodes
    // run side by side (or the machine is busy) the spinning threads starve
    // the working ones: a CLIP training step went from 0.4 s to 3 s on two
    // shared cores. So waiters sleep, but only after a short spin (1000
    // rounds, libgomp's own count for oversubscribed runs): waking a thread
    // takes microseconds and a step waits hundreds of times. 300 steps of
    // the demo's CLIP on two threads took 34 s with the short spin and 50 s
    // without on two idle cores, 74 s and 67 s beside a busy core
    // (docs/core.md). libgomp reads these when it loads, so they must come
    // from the parent; a user's own setting of either wins.
    if std::env::var_os("OMP_WAIT_POLICY").is_none() && std::env::var_os("GOMP_SPINCOUNT").is_none() {
        env.push(("OMP_WAIT_POLICY".to_owned(), "PASSIVE".to_owned()));
        env.push(("GOMP_SPINCOUNT".to_owned(), "1000".to_owned()));
    }
    let (program, args) = match &node.action {
        Action::Cmd { template, span } => {
            let outs: BTreeMap<String, PathBuf> = outputs.iter().map(|(n, p, _)| (n.clone(), p.clone())).collect();
            let values = cmdline::Values { inputs: &inputs, outputs: &outs, params: &res.params, dir: &dir };
            let (line, lists) = cmdline::fill(template, &values).map_err(|e| match e.fix {
                Some(fix) => anyhow::anyhow!(p.diagnostic(span, Some(&node.id), e.message).with_fix(fix).to_string()),
                None => anyhow::anyhow!("node {}: {}", node.id, e.message),
            })?;
            // `check` refuses these before a run; this catches what it
            // could not foresee, before the kernel answers E2BIG.
            if let Some((message, fix)) = cmdline::too_long(template, &line, &inputs, false) {
                anyhow::bail!(p.diagnostic(span, Some(&node.id), message).with_fix(fix).to_string());
            }
            for list in &lists {
                fs::write(&list.path, &list.bytes).with_context(|| format!("cannot write {}", list.path.display()))?;
            }
            (PathBuf::from("/bin/sh"), vec!["-c".to_owned(), line])
        }
        Action::Op { name, .. } => {
            let job = Job {
                op: name.clone(),
                ctx: OpContext {
                    node: node.id.clone(),
                    params: res.params.clone(),
                    inputs,
                    outputs: outputs.iter().map(|(n, p, _)| (n.clone(), p.clone())).collect(),
                    device: if slot == Slot::Cpu { crate::ops::Device::Cpu } else { crate::ops::Device::Cuda },
                    scratch: scratch.clone(),
                },
                cpus,
            };
            let job_path = dir.join("job.json");
            fs::write(&job_path, serde_json::to_vec_pretty(&job)?)?;
            (worker_exe()?, vec!["run".to_owned(), job_path.display().to_string()])
        }
    };
    Ok(Prepared {
        program,
        args,
        env,
        cwd: p.workspace.clone(),
        log: dir.join("log"),
        outputs,
        dir,
        cpus,
        key: res.key,
        objects,
    })
}

/// Where output `name`, the node's `i`-th, is written in the node's
/// directory `dir`. It keeps its declared file name (tools such as np.save
/// add an extension to names that lack it).
pub fn output_path(dir: &Path, i: usize, name: &str, out: &Output) -> PathBuf {
    let kind = out.kind_or_file();
    let file_name = match &out.path {
        Some(path) => path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| name.to_owned()),
        None if kind.extension().is_empty() => name.to_owned(),
        None => format!("{name}.{}", kind.extension()),
    };
    nodedir::holder(dir, i).join(file_name)
}

/// Where an `@lineage` input on `port` is written in the node's directory.
pub fn lineage_file(dir: &Path, port: &str) -> PathBuf {
    dir.join(format!("{port}.lineage.json"))
}

/// Tell a process how many threads it may use: the usual thread-pool
/// variables (OpenMP, MKL, OpenBLAS as numpy wheels ship it, rayon) and
/// `TOE_PIPE_CPUS` for scripts. The node's declaration wins over the
/// caller's environment: it is what the slots were counted for.
pub fn thread_env(cpus: usize) -> Vec<(String, String)> {
    ["TOE_PIPE_CPUS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS"]
        .iter()
        .map(|k| (k.to_string(), cpus.to_string()))
        .collect()
}

/// Quote for `sh` unless the text is plainly safe.
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c));
    if safe {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Start the node. Its stdout and stderr go to the log; it gets its own
/// process group (so an interrupt can stop it and everything it started),
/// listed with the `reaper` (given its pipe), which kills the group if
/// toe-pipe dies; its leader is also killed by PR_SET_PDEATHSIG.
///
/// The death signal fires when the *thread* that spawned the child exits,
/// so call this from a thread that outlives the child.
pub fn spawn(prep: &Prepared, node: &str, slot: Slot, reaper: Option<RawFd>) -> io::Result<Child> {
    let mut log = File::create(&prep.log)?;
    // One write: the log is unbuffered, and each piece would cost a call.
    let header = format!(
        "# toe-pipe: node {node} on {}\n# $ {} {}\n",
        slot.label(),
        prep.program.display(),
        prep.args.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ")
    );
    log.write_all(header.as_bytes())?;
    let mut cmd = Command::new(&prep.program);
    cmd.args(&prep.args)
        .current_dir(&prep.cwd)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .envs(prep.env.iter().map(|(k, v)| (k, v)));
    // SAFETY: only async-signal-safe libc calls between fork and exec.
    let parent = unsafe { libc::getpid() };
    unsafe {
        cmd.pre_exec(move || {
            libc::setpgid(0, 0);
            if let Some(fd) = reaper {
                super::reaper::register_self(fd);
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != parent {
                return Err(io::Error::other("toe-pipe exited while starting the node"));
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Why a node could not be started, for its failure report. E2BIG gets
/// the sizes and what to do: the kernel only says "Argument list too long".
pub fn start_error(prep: &Prepared, e: &io::Error) -> String {
    if e.raw_os_error() != Some(libc::E2BIG) {
        return format!("cannot start {}: {e}", prep.program.display());
    }
    let args: usize = prep.args.iter().map(|a| a.len() + 1).sum::<usize>() + prep.program.as_os_str().len() + 1;
    // The node's process gets toe-pipe's environment with its own on top.
    let mut env: BTreeMap<std::ffi::OsString, std::ffi::OsString> = std::env::vars_os().collect();
    env.extend(prep.env.iter().map(|(k, v)| (k.into(), v.into())));
    let env_bytes: usize = env.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    format!(
        "cannot start {}: the system refused its arguments ({args} bytes) and environment ({env_bytes} bytes) as too long (E2BIG; Linux allows each at most 128 KiB, and all together a quarter of the stack limit, `ulimit -s`)\n  fix: give long list inputs as files (`${{in.NAME:list}}`), or start toe-pipe with a smaller environment",
        prep.program.display()
    )
}

pub fn describe_status(s: ExitStatus) -> String {
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "failed".to_owned(),
    }
}

/// Check that every output was written with the right type, and commit
/// them all to the store.
pub fn collect_outputs(
    store: &Store,
    outputs: &[(String, PathBuf, ArtifactKind)],
) -> Result<BTreeMap<String, Committed>, String> {
    // Every output is checked before any is stored: a node that failed
    // on its second output must not leave its first in the store.
    for (name, path, kind) in outputs {
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(_) => {
                return Err(format!(
                    "the node finished but did not write output `{name}` (expected at {})",
                    path.display()
                ))
            }
        };
        if (*kind == ArtifactKind::Dir) != meta.is_dir() {
            let want = if *kind == ArtifactKind::Dir { "a directory" } else { "a file" };
            return Err(format!("output `{name}` should be {want} ({kind}) but is not"));
        }
    }
    let mut done = BTreeMap::new();
    for (name, path, _) in outputs {
        match store.commit(path) {
            Ok(c) => {
                done.insert(name.clone(), c);
            }
            Err(e) => return Err(format!("cannot store output `{name}`: {e}")),
        }
    }
    Ok(done)
}

/// Objects already checked in this run, and whether they matched.
pub type Checked = Arc<Mutex<HashMap<Hash, bool>>>;

/// A node's inputs that are not what its action key says.
#[derive(Debug, Default)]
pub struct BadInputs {
    /// Objects whose bytes no longer match their hash.
    pub corrupt: Vec<Hash>,
    /// Why, one line per input (corrupt, or unreadable), or that the run
    /// was interrupted before the check ended.
    pub problems: Vec<String>,
    /// An input is corrupt or unreadable: the node may as well stop now
    /// (an interrupt stops it anyway, in its own way).
    pub stop: bool,
}

/// Hash the store objects a node reads and compare them with the hashes
/// its action key was computed from: a node's result is kept only if its
/// inputs were the bytes its key names. Each object is hashed once per run
/// (`checked`).
///
/// Run while the node runs: the bytes are read from the page cache the
/// node fills (or fill it for the node), and the check costs no wall time
/// unless it takes longer than the node.
pub fn check_inputs(store: &Store, objects: &[StagedInput], checked: &Checked) -> BadInputs {
    let mut bad = BadInputs::default();
    for input in objects {
        // An interrupted run stops the node; its result is not kept
        // unchecked.
        if super::signals::interrupted() {
            bad.problems.push("interrupted before its inputs were checked".to_owned());
            break;
        }
        let known = checked.lock().ok().and_then(|c| c.get(&input.hash).copied());
        let ok = match known {
            Some(ok) => Ok(ok),
            None => object_ok(store, &input.hash),
        };
        if let (None, Ok(ok), Ok(mut c)) = (known, &ok, checked.lock()) {
            c.insert(input.hash, *ok);
        }
        match ok {
            Ok(true) => {}
            Ok(false) => {
                bad.stop = true;
                if !bad.corrupt.contains(&input.hash) {
                    bad.corrupt.push(input.hash);
                }
                bad.problems.push(format!(
                    "input `{}` ({}) is corrupt in the store: its bytes no longer match its hash {}; nothing made from it is kept: the object is removed and the next run rebuilds it",
                    input.port,
                    input.from,
                    input.hash.short()
                ));
            }
            Err(e) => {
                bad.stop = true;
                bad.problems.push(format!(
                    "cannot read input `{}` ({}, object {}) to check it: {e}",
                    input.port,
                    input.from,
                    input.hash.short()
                ))
            }
        }
    }
    bad
}

/// Most of a log [`log_tail`] reads: a node's log can be gigabytes, and
/// the tail is printed for a person; longer lines are shown cut.
const TAIL_MAX_BYTES: u64 = 1 << 20;

/// The last `n` lines of a log, for failure reports. Read from the end of
/// the file, in growing blocks, never more than [`TAIL_MAX_BYTES`].
pub fn log_tail(path: &Path, n: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = fs::File::open(path) else { return String::new() };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut want = 64 * 1024u64;
    let mut bytes = Vec::new();
    loop {
        let start = len.saturating_sub(want.min(TAIL_MAX_BYTES));
        bytes.clear();
        if file.seek(SeekFrom::Start(start)).and_then(|_| file.read_to_end(&mut bytes)).is_err() {
            return String::new();
        }
        // n lines need n+1 newlines when the block starts mid-line.
        let enough = bytes.iter().filter(|&&b| b == b'\n').count() > n;
        if start == 0 || enough || want >= TAIL_MAX_BYTES {
            if start > 0 && enough {
                // Drop the partial first line.
                let first = bytes.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
                bytes.drain(..first);
            }
            break;
        }
        want *= 4;
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with("# toe-pipe:") && !l.starts_with("# $ ")).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
