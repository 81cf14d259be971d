//! `toe-pipe run`: run what is stale, in parallel, in worker processes.
//!
//! A node becomes ready when every node it reads from is done. Its action
//! key is then known (it includes the *content* of its inputs), so a cache
//! hit needs no run: the outputs are materialised from the store. This is
//! what gives early cutoff (a re-run node with byte-identical outputs
//! leaves its dependants' keys unchanged) and restore-on-revert (an earlier
//! key is still in the action cache).
//!
//! Slots: `jobs` CPU slots plus one slot per GPU. A gpu node takes a free
//! GPU; on a machine without GPUs it takes a CPU slot (with a notice),
//! unless it requires a GPU, which is an error before anything runs.
//!
//! Failure: a failed node's dependants are skipped; everything independent
//! of it still runs (make's `--keep-going`). `fail_fast` instead starts
//! nothing new after the first failure. Either way the exit status is
//! non-zero.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;

use super::exec::{self, Prepared, Slot};
use super::key::{lookup, resolve, KnownOutputs, Lookup, Resolved, SourceHashes};
use super::materialise::{materialise, placement, Placement};
use super::progress::Progress;
use super::{signals, status, Engine, State};
use crate::spec::Device;
use crate::store::records::{ActionRecord, Attempt, NodeRef, OutputRecord, PipelineRefs, RECORD_FORMAT};
use crate::store::verify::object_ok;
use crate::store::{remove_any, Committed, Hash, Store};

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// CPU slots (at least 1).
    pub jobs: usize,
    /// GPUs to use; `None` asks libtorch (through the worker) how many
    /// there are, when a gpu node first needs one.
    pub gpus: Option<Vec<u32>>,
    /// Run only these nodes (patterns) and what they need.
    pub only: Vec<String>,
    /// Run these nodes (patterns) even if cached.
    pub force: Vec<String>,
    /// Re-hash sources and the stored outputs of cache hits.
    pub verify: bool,
    /// Start nothing new after the first failure.
    pub fail_fast: bool,
}

/// What happened to one node.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Not part of this run (`--only`).
    NotSelected,
    Fresh,
    /// Outputs put (back) in the workspace from the store, no run.
    Restored(String),
    Ran { seconds: f64, device: String },
    Failed(String),
    Skipped(String),
    /// Stopped by Ctrl-C or a termination signal.
    Interrupted,
}

#[derive(Debug)]
pub struct RunReport {
    /// Indexed like `pipeline.nodes`.
    pub outcomes: Vec<Outcome>,
    pub interrupted: bool,
    pub elapsed: Duration,
}

impl RunReport {
    pub fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.outcomes.iter().filter(|o| f(o)).count()
    }
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed(_)))
    }
    pub fn success(&self) -> bool {
        !self.interrupted && self.count(|o| matches!(o, Outcome::Failed(_) | Outcome::Skipped(_))) == 0
    }
}

#[derive(Debug)]
enum NodeState {
    Off,
    Pending,
    Queued(Box<Resolved>),
    Running,
    Finished,
}

enum Msg {
    Started { node: usize, pid: u32 },
    Finished { node: usize, result: Result<BTreeMap<String, Committed>, String>, start: SystemTime, end: SystemTime, seconds: f64 },
}

struct Running {
    res: Box<Resolved>,
    slot: Slot,
    pid: Option<u32>,
    log: PathBuf,
    dir: PathBuf,
}

struct Scheduler<'e, 'a> {
    e: &'e Engine<'a>,
    opts: &'e RunOptions,
    progress: &'e Progress,
    state: Vec<NodeState>,
    outcomes: Vec<Outcome>,
    forced: Vec<bool>,
    /// Position of each node in topological order (dispatch priority).
    position: Vec<usize>,
    known: KnownOutputs,
    sources: SourceHashes,
    refs: PipelineRefs,
    refs_dirty: bool,
    running: HashMap<usize, Running>,
    cpu_busy: usize,
    gpus: Option<Vec<u32>>,
    gpu_busy: Vec<u32>,
    cpu_fallback_noted: bool,
    run_dir: Option<PathBuf>,
    stop_starting: bool,
    tx: Sender<Msg>,
}

/// Run the pipeline. Holds the store lock for the duration.
pub fn run(e: &Engine, opts: &RunOptions, progress: &Progress) -> anyhow::Result<RunReport> {
    let started = Instant::now();
    let p = e.pipeline;
    let n = p.nodes.len();
    let _lock = e.store.lock(&format!("run {}", p.file.display()))?;
    e.store.clean_tmp().context("cannot clean the store's tmp/")?;
    signals::install();

    let selected = if opts.only.is_empty() { vec![true; n] } else { e.dag.with_ancestors(&e.matching(&opts.only)?) };
    let mut forced = vec![false; n];
    for i in e.matching(&opts.force)? {
        forced[i] = true;
    }
    let sources = e.hash_sources(&selected, opts.verify)?;

    let mut gpus = opts.gpus.clone();
    if p.nodes.iter().enumerate().any(|(i, nd)| selected[i] && nd.require_gpu) {
        let found = match &gpus {
            Some(list) => list.clone(),
            None => (0..crate::worker::gpu_count().unwrap_or(0) as u32).collect(),
        };
        if found.is_empty() {
            // Only an error if such a node would actually run.
            let needs: Vec<String> = status(e, false)?
                .into_iter()
                .filter(|s| selected[s.node] && p.nodes[s.node].require_gpu && matches!(s.state, State::Stale | State::Waiting))
                .map(|s| p.nodes[s.node].id.clone())
                .collect();
            if !needs.is_empty() {
                anyhow::bail!(
                    "node {} requires a GPU (require_gpu = true) but none is available{}.\n  fix: run on a machine with a CUDA GPU, or remove require_gpu to let it run on the CPU",
                    needs.join(", "),
                    if opts.gpus.is_some() { " (--gpus selected none)" } else { " (libtorch sees no CUDA device)" }
                );
            }
        }
        gpus = Some(found);
    }

    let mut position = vec![0; n];
    for (pos, &i) in e.dag.order.iter().enumerate() {
        position[i] = pos;
    }
    let (tx, rx) = mpsc::channel();
    let mut s = Scheduler {
        e,
        opts,
        progress,
        state: (0..n).map(|i| if selected[i] { NodeState::Pending } else { NodeState::Off }).collect(),
        outcomes: vec![Outcome::NotSelected; n],
        forced,
        position,
        known: KnownOutputs::new(),
        sources,
        refs: e.store.read_refs(&p.name),
        refs_dirty: false,
        running: HashMap::new(),
        cpu_busy: 0,
        gpus,
        gpu_busy: Vec::new(),
        cpu_fallback_noted: false,
        run_dir: None,
        stop_starting: false,
        tx,
    };
    let interrupted = s.main_loop(&rx);
    s.finish(interrupted)?;
    progress.finish();
    Ok(RunReport { outcomes: s.outcomes, interrupted, elapsed: started.elapsed() })
}

impl Scheduler<'_, '_> {
    fn node_id(&self, i: usize) -> &str {
        &self.e.pipeline.nodes[i].id
    }

    /// Returns whether the run was interrupted.
    fn main_loop(&mut self, rx: &Receiver<Msg>) -> bool {
        let mut interrupt_deadline: Option<Instant> = None;
        loop {
            if signals::interrupted() && interrupt_deadline.is_none() {
                self.progress.line("interrupted: stopping running nodes (the store stays consistent; the next run resumes)");
                self.stop_starting = true;
                self.signal_running(libc::SIGTERM);
                interrupt_deadline = Some(Instant::now() + Duration::from_secs(5));
            }
            if let Some(d) = interrupt_deadline {
                if Instant::now() > d {
                    self.signal_running(libc::SIGKILL);
                }
            } else {
                self.settle();
                self.dispatch();
            }
            self.show_state();
            if self.running.is_empty() {
                return interrupt_deadline.is_some();
            }
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(Msg::Started { node, pid }) => {
                    if let Some(r) = self.running.get_mut(&node) {
                        r.pid = Some(pid);
                    }
                }
                Ok(Msg::Finished { node, result, start, end, seconds }) => {
                    let interrupted = interrupt_deadline.is_some();
                    self.finished(node, result, start, end, seconds, interrupted);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return interrupt_deadline.is_some(),
            }
        }
    }

    fn show_state(&self) {
        let finished = self.state.iter().filter(|s| matches!(s, NodeState::Finished)).count();
        let mut running: Vec<&str> = self.running.keys().map(|&i| self.node_id(i)).collect();
        running.sort_unstable();
        // With one node running (a long training, say), its newest log line
        // is the progress worth showing.
        let latest = match (self.progress.is_live(), self.running.values().next()) {
            (true, Some(r)) if self.running.len() == 1 => last_line(&r.log),
            _ => None,
        };
        self.progress.set_state(finished, &running, latest.as_deref());
    }

    fn signal_running(&self, sig: libc::c_int) {
        for r in self.running.values() {
            if let Some(pid) = r.pid {
                // SAFETY: signals the node's own process group.
                unsafe {
                    libc::kill(-(pid as libc::pid_t), sig);
                }
            }
        }
    }

    /// Resolve every pending node whose inputs are all done: a cache hit
    /// finishes it on the spot, a miss queues it.
    fn settle(&mut self) {
        let order = self.e.dag.order.clone();
        for i in order {
            if !matches!(self.state[i], NodeState::Pending) {
                continue;
            }
            let parents = self.e.dag.parents(i);
            if !parents.iter().all(|&j| matches!(self.state[j], NodeState::Finished) && self.finished_ok(j)) {
                continue;
            }
            let node = &self.e.pipeline.nodes[i];
            let Some(res) = resolve(node, self.e.catalog, &self.known, &self.sources) else {
                // Unreachable with all parents finished; fail loudly rather than hang.
                self.fail(i, "internal error: inputs unknown after their nodes finished".into());
                continue;
            };
            if self.forced[i] {
                self.queue(i, res);
                continue;
            }
            match lookup(self.e.store, &res.key) {
                Lookup::Hit(rec) => {
                    if self.opts.verify {
                        let bad: Vec<Hash> = rec.outputs.values().map(|o| o.hash).filter(|h| !object_ok(self.e.store, h).unwrap_or(false)).collect();
                        if !bad.is_empty() {
                            for h in &bad {
                                let _ = self.e.store.remove_object(h);
                            }
                            let id = self.node_id(i).to_owned();
                            self.progress.line(&format!("  corrupt  {id}  stored output {} did not match its hash; removed, running again", bad[0].short()));
                            self.queue(i, res);
                            continue;
                        }
                    }
                    self.finish_hit(i, &res, &rec);
                }
                Lookup::Miss | Lookup::Incomplete(_) => self.queue(i, res),
            }
        }
    }

    fn finished_ok(&self, i: usize) -> bool {
        matches!(self.outcomes[i], Outcome::Fresh | Outcome::Restored(_) | Outcome::Ran { .. })
    }

    fn queue(&mut self, i: usize, res: Resolved) {
        self.state[i] = NodeState::Queued(Box::new(res));
    }

    /// A cache hit: put the outputs in the workspace where they are not.
    fn finish_hit(&mut self, i: usize, res: &Resolved, rec: &ActionRecord) {
        let id = self.node_id(i).to_owned();
        let current = self.refs.nodes.get(&id).and_then(|r| r.current);
        let restored = match self.place_outputs(i, rec) {
            Ok(r) => r,
            Err(msg) => {
                self.fail(i, msg);
                return;
            }
        };
        for (name, out) in &rec.outputs {
            self.known.insert((id.clone(), name.clone()), (out.hash, res.key));
        }
        self.e.store.touch_action(&res.key);
        let outcome = if current != Some(res.key) {
            Outcome::Restored("earlier result from the store, no run".to_owned())
        } else if !restored.is_empty() {
            Outcome::Restored(format!("put back {}", restored.join(", ")))
        } else {
            Outcome::Fresh
        };
        match &outcome {
            Outcome::Restored(what) => self.progress.node("restored", &id, &format!("({what})")),
            _ if self.progress.verbose => self.progress.node("fresh", &id, ""),
            _ => {}
        }
        self.set_current(&id, res.key);
        self.outcomes[i] = outcome;
        self.state[i] = NodeState::Finished;
    }

    /// Materialise a node's declared outputs; returns the paths written.
    fn place_outputs(&self, i: usize, rec: &ActionRecord) -> Result<Vec<String>, String> {
        let node = &self.e.pipeline.nodes[i];
        let mut written = Vec::new();
        for (name, out) in &node.outputs {
            let (Some(path), Some(stored)) = (&out.path, rec.outputs.get(name)) else { continue };
            let target = self.e.pipeline.workspace_path(path);
            if placement(self.e.store, &stored.hash, &target) != Placement::InPlace {
                materialise(self.e.store, &stored.hash, &target).map_err(|err| format!("cannot materialise output `{name}` at {}: {err}", target.display()))?;
                written.push(path.display().to_string());
            }
        }
        Ok(written)
    }

    fn set_current(&mut self, id: &str, key: Hash) {
        let entry = self.refs.nodes.entry(id.to_owned()).or_insert(NodeRef { current: None, last_attempt: None });
        if entry.current != Some(key) {
            entry.current = Some(key);
            self.refs_dirty = true;
        }
    }

    /// Start queued nodes while there are free slots, in topological order.
    fn dispatch(&mut self) {
        if self.stop_starting {
            return;
        }
        let mut queued: Vec<usize> = (0..self.state.len()).filter(|&i| matches!(self.state[i], NodeState::Queued(_))).collect();
        queued.sort_by_key(|&i| self.position[i]);
        for i in queued {
            let Some(slot) = self.free_slot(i) else { continue };
            let NodeState::Queued(res) = std::mem::replace(&mut self.state[i], NodeState::Running) else { continue };
            if let Err(err) = self.start(i, res, slot) {
                self.state[i] = NodeState::Pending;
                self.fail(i, format!("{err:#}"));
            }
        }
    }

    fn free_slot(&mut self, i: usize) -> Option<Slot> {
        let node = &self.e.pipeline.nodes[i];
        if node.device == Device::Gpu {
            let gpus = self.gpus.get_or_insert_with(|| match crate::worker::gpu_count() {
                Ok(n) => (0..n as u32).collect(),
                Err(_) => Vec::new(),
            });
            if !gpus.is_empty() {
                let free = gpus.iter().copied().find(|g| !self.gpu_busy.contains(g))?;
                self.gpu_busy.push(free);
                return Some(Slot::Gpu(free));
            }
            if !self.cpu_fallback_noted {
                self.cpu_fallback_noted = true;
                self.progress.line("note: no GPU available; gpu nodes run on CPU slots (set require_gpu = true on a node to make this an error)");
            }
        }
        if self.cpu_busy < self.opts.jobs.max(1) {
            self.cpu_busy += 1;
            Some(Slot::Cpu)
        } else {
            None
        }
    }

    fn release(&mut self, slot: Slot) {
        match slot {
            Slot::Cpu => self.cpu_busy -= 1,
            Slot::Gpu(g) => self.gpu_busy.retain(|&x| x != g),
        }
    }

    fn start(&mut self, i: usize, res: Box<Resolved>, slot: Slot) -> anyhow::Result<()> {
        let run_dir = match &self.run_dir {
            Some(d) => d.clone(),
            None => {
                let d = self.e.store.new_run_dir().context("cannot create a run directory in the store")?;
                self.run_dir = Some(d.clone());
                d
            }
        };
        let node = &self.e.pipeline.nodes[i];
        let prepared = match exec::prepare(self.e.pipeline, node, &res, self.e.store, &run_dir, slot) {
            Ok(p) => p,
            Err(err) => {
                self.release(slot);
                return Err(err);
            }
        };
        if self.progress.verbose {
            self.progress.node("start", &node.id, &if slot == Slot::Cpu { String::new() } else { format!("on {}", slot.label()) });
        }
        self.running.insert(i, Running { res, slot, pid: None, log: prepared.log.clone(), dir: prepared.dir.clone() });
        spawn_node(i, node.id.clone(), prepared, slot, self.e.store.clone(), self.tx.clone());
        Ok(())
    }

    fn finished(&mut self, i: usize, result: Result<BTreeMap<String, Committed>, String>, start: SystemTime, end: SystemTime, seconds: f64, interrupted: bool) {
        let Some(run) = self.running.remove(&i) else { return };
        self.release(run.slot);
        let id = self.node_id(i).to_owned();
        let key = run.res.key;
        // Keep the log of every attempt under its action key.
        let log = self.e.store.log_path(&key);
        if let Some(parent) = log.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::rename(&run.log, &log);
        let _ = remove_any(&run.dir);
        match result {
            Ok(outputs) => {
                let node = &self.e.pipeline.nodes[i];
                let rec = ActionRecord {
                    format: RECORD_FORMAT,
                    key,
                    pipeline: self.e.pipeline.name.clone(),
                    pipeline_file: self.e.pipeline.file.clone(),
                    node: id.clone(),
                    action: run.res.action.clone(),
                    params: run.res.params.clone(),
                    inputs: run.res.inputs.clone(),
                    outputs: outputs
                        .iter()
                        .map(|(name, c)| {
                            let path = node.outputs.get(name).and_then(|o| o.path.clone());
                            (name.clone(), OutputRecord { hash: c.hash, kind: run.res.output_kinds.get(name).copied().unwrap_or(crate::spec::ArtifactKind::File), size: c.size, path })
                        })
                        .collect(),
                    start: humantime::format_rfc3339_millis(start).to_string(),
                    end: humantime::format_rfc3339_millis(end).to_string(),
                    duration_s: seconds,
                    device: run.slot.label(),
                    toe_pipe_version: env!("CARGO_PKG_VERSION").to_owned(),
                    host: crate::sys::hostname(),
                };
                if let Err(err) = self.e.store.write_action(&rec) {
                    self.record_attempt(&id, key, false);
                    self.fail(i, format!("cannot write the action record: {err}"));
                    return;
                }
                if let Err(msg) = self.place_outputs(i, &rec) {
                    self.record_attempt(&id, key, true);
                    self.fail(i, msg);
                    return;
                }
                for (name, c) in &outputs {
                    self.known.insert((id.clone(), name.clone()), (c.hash, key));
                }
                self.record_attempt(&id, key, true);
                self.set_current(&id, key);
                self.progress.node("ran", &id, &format!("({seconds:.2}s{})", if run.slot == Slot::Cpu { String::new() } else { format!(" on {}", run.slot.label()) }));
                self.outcomes[i] = Outcome::Ran { seconds, device: run.slot.label() };
                self.state[i] = NodeState::Finished;
            }
            Err(_) if interrupted => {
                self.progress.node("stopped", &id, "");
                self.outcomes[i] = Outcome::Interrupted;
                self.state[i] = NodeState::Finished;
            }
            Err(msg) => {
                self.record_attempt(&id, key, false);
                let tail = exec::log_tail(&log, 15);
                let mut detail = format!("{msg}; full log: toe-pipe log {id}");
                if !tail.trim().is_empty() {
                    detail.push_str("\n      | ");
                    detail.push_str(&tail.replace('\n', "\n      | "));
                }
                self.fail(i, detail);
            }
        }
    }

    fn record_attempt(&mut self, id: &str, key: Hash, ok: bool) {
        let entry = self.refs.nodes.entry(id.to_owned()).or_insert(NodeRef { current: None, last_attempt: None });
        entry.last_attempt = Some(Attempt { key, ok, at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string() });
        self.refs_dirty = true;
    }

    /// Mark a node failed and skip everything downstream of it.
    fn fail(&mut self, i: usize, msg: String) {
        let id = self.node_id(i).to_owned();
        self.progress.node("FAILED", &id, &msg);
        self.outcomes[i] = Outcome::Failed(msg);
        self.state[i] = NodeState::Finished;
        let below = self.e.dag.with_descendants(&[i]);
        for (d, &is_below) in below.iter().enumerate() {
            if is_below && d != i && matches!(self.state[d], NodeState::Pending | NodeState::Queued(_)) {
                let did = self.node_id(d).to_owned();
                self.progress.node("skipped", &did, &format!("(needs {id}, which failed)"));
                self.outcomes[d] = Outcome::Skipped(format!("needs {id}, which failed"));
                self.state[d] = NodeState::Finished;
            }
        }
        if self.opts.fail_fast {
            self.stop_starting = true;
        }
    }

    /// Account for nodes that never started, write the refs, tidy up.
    fn finish(&mut self, interrupted: bool) -> anyhow::Result<()> {
        for i in 0..self.state.len() {
            if matches!(self.state[i], NodeState::Pending | NodeState::Queued(_)) {
                self.outcomes[i] = if interrupted { Outcome::Interrupted } else { Outcome::Skipped("not started (--fail-fast)".into()) };
                self.state[i] = NodeState::Finished;
            }
        }
        let p = self.e.pipeline;
        let before = self.refs.nodes.len();
        self.refs.nodes.retain(|id, _| p.node_index(id).is_some());
        if self.refs.nodes.len() != before || self.refs.file != p.file || self.refs.pipeline != p.name {
            self.refs_dirty = true;
        }
        if self.refs_dirty {
            self.refs.pipeline = p.name.clone();
            self.refs.file = p.file.clone();
            self.refs.updated = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
            self.e.store.write_refs(&self.refs).context("cannot write the pipeline's refs")?;
        }
        if let Some(d) = &self.run_dir {
            let _ = remove_any(d);
        }
        Ok(())
    }
}

/// Run one node on its own thread: start the process, wait for it, commit
/// its outputs. The thread outlives the child (see `exec::spawn`).
fn spawn_node(i: usize, id: String, prepared: Prepared, slot: Slot, store: Store, tx: Sender<Msg>) {
    std::thread::spawn(move || {
        let start = SystemTime::now();
        let t0 = Instant::now();
        let result = match exec::spawn(&prepared, &id, slot) {
            Err(e) => Err(format!("cannot start {}: {e}", prepared.program.display())),
            Ok(mut child) => {
                let _ = tx.send(Msg::Started { node: i, pid: child.id() });
                match child.wait() {
                    Ok(status) if status.success() => exec::collect_outputs(&store, &prepared.outputs),
                    Ok(status) => Err(exec::describe_status(status)),
                    Err(e) => Err(format!("lost the node's process: {e}")),
                }
            }
        };
        let seconds = t0.elapsed().as_secs_f64();
        let _ = tx.send(Msg::Finished { node: i, result, start, end: SystemTime::now(), seconds });
    });
}

/// The last non-empty line of a log file (read from its last 4 KiB).
fn last_line(path: &std::path::Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(4096))).ok()?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).ok()?;
    let text = String::from_utf8_lossy(&tail);
    text.lines().rev().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned)
}
