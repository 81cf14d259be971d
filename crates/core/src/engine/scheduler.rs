//! `toe-pipe run`: run what is stale, in parallel, in worker processes.
//!
//! A node becomes ready when every node it reads from is done. Its action
//! key is then known (it includes the *content* of its inputs), so a cache
//! hit needs no run: the outputs are materialised from the store. This is
//! what gives early cutoff (a re-run node with byte-identical outputs
//! leaves its dependants' keys unchanged) and restore-on-revert (an earlier
//! key is still in the action cache).
//!
//! Slots: `jobs` CPU slots plus one slot per GPU. A node takes as many CPU
//! slots as it asks CPUs for (`resources.cpus`, default 1; at most all of
//! them), and its process is told to use that many threads, so nodes side
//! by side never oversubscribe the cores. A CPU node that does not fit
//! waits, and no CPU node after it (in run order) starts before it, so a
//! wide node is not starved by narrow ones. A gpu node takes a free GPU
//! (and no CPU slot; it still uses its `cpus` threads); on a machine
//! without GPUs it takes CPU slots (with a notice), unless it requires a
//! GPU, which is an error before anything runs.
//!
//! Failure: a failed node's dependants are skipped; everything independent
//! of it still runs (make's `--keep-going`). `fail_fast` instead starts
//! nothing new after the first failure. Either way the exit status is
//! non-zero.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;

use super::exec::{self, Slot};
use super::executor::{Executor, Finished, LocalExecutor, Stop};
use super::guard::{may_write, Owned};
use super::key::{resolve, KnownOutputs, Resolved, SourceHashes};
use super::materialise::materialise;
use super::nodedir::NodeDirs;
use super::plan::{decide, gpu_use, learn, plan, put_back, Decision, GpuUse, NodePlan, PutBack, Selection};
use super::progress::Progress;
use super::{signals, Engine};
use crate::spec::Node;
use crate::store::durable::Fsync;
use crate::store::records::{ActionRecord, Attempt, NodeRef, OutputRecord, PipelineRefs};
use crate::store::verify::repair;
use crate::store::{remove_any, Hash, Pending};

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// CPU slots (at least 1).
    pub jobs: usize,
    /// GPUs to use; `None` asks libtorch (through the worker) how many
    /// there are, when a gpu node first needs one.
    pub gpus: Option<Vec<u32>>,
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
    Ran {
        seconds: f64,
        device: String,
    },
    Failed(String),
    Skipped(String),
    /// Stopped by Ctrl-C or a termination signal.
    Interrupted,
}

impl Outcome {
    /// Whether the node's outputs are there for the nodes that read them.
    fn ok(&self) -> bool {
        matches!(self, Outcome::Fresh | Outcome::Restored(_) | Outcome::Ran { .. })
    }
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

/// Where a node is in the run.
#[derive(Debug)]
enum Step {
    /// Not selected.
    Off,
    /// Not started; planned, or waiting for its inputs (`Decision::Wait`).
    Planned(Box<NodePlan>),
    /// To run when a slot is free.
    Queued(Box<Resolved>),
    Running,
    Done(Outcome),
}

/// CPU slots and GPU slots.
struct Slots {
    /// Nodes run on a cluster, which allocates CPUs and GPUs: `jobs` then
    /// counts nodes in flight.
    remote: bool,
    jobs: usize,
    cpu_busy: usize,
    /// Found once, when first needed (asking libtorch takes a process).
    gpus: Option<Vec<u32>>,
    gpu_busy: Vec<u32>,
    cpu_fallback_noted: bool,
}

impl Slots {
    /// `--gpus`, else the executor's GPUs, asked once.
    fn gpus(&mut self, executor: &mut dyn Executor) -> &[u32] {
        self.gpus.get_or_insert_with(|| executor.gpus())
    }

    /// A free slot for a node that asks for `cpus` CPUs, if there is one,
    /// with the CPU slots it takes (none on a GPU). A gpu node takes a
    /// GPU; on a machine without one it takes CPU slots (with a notice).
    fn take(&mut self, gpu: GpuUse, cpus: usize, executor: &mut dyn Executor, progress: &Progress) -> Take {
        if self.remote {
            if self.cpu_busy >= self.jobs.max(1) {
                return Take::NoCpu;
            }
            self.cpu_busy += 1;
            return Take::Slot(if gpu == GpuUse::None { Slot::Cpu } else { Slot::Gpu(0) }, 1);
        }
        if gpu != GpuUse::None {
            if !self.gpus(executor).is_empty() {
                let busy = &self.gpu_busy;
                let Some(free) = self.gpus.iter().flatten().copied().find(|g| !busy.contains(g)) else {
                    return Take::NoGpu;
                };
                self.gpu_busy.push(free);
                return Take::Slot(Slot::Gpu(free), 0);
            }
            if !self.cpu_fallback_noted {
                self.cpu_fallback_noted = true;
                progress.line("note: no GPU available; gpu nodes run on CPU slots (set require_gpu = true on a node to make this an error)");
            }
        }
        let n = cpus.clamp(1, self.jobs.max(1));
        if self.cpu_busy + n <= self.jobs.max(1) {
            self.cpu_busy += n;
            Take::Slot(Slot::Cpu, n)
        } else {
            Take::NoCpu
        }
    }

    /// Give back a slot and the CPU slots taken with it.
    fn release(&mut self, slot: Slot, cpus: usize) {
        self.cpu_busy -= cpus;
        if let Slot::Gpu(g) = slot {
            self.gpu_busy.retain(|&x| x != g);
        }
    }
}

/// What [`Slots::take`] found.
enum Take {
    /// A slot, and how many CPU slots come with it.
    Slot(Slot, usize),
    /// Every GPU is busy.
    NoGpu,
    /// Not enough free CPU slots.
    NoCpu,
}

/// The pipeline's refs as the run updates them.
struct Refs {
    refs: PipelineRefs,
    dirty: bool,
}

impl Refs {
    fn current(&self, id: &str) -> Option<Hash> {
        self.refs.nodes.get(id).and_then(|r| r.current)
    }

    fn entry(&mut self, id: &str) -> &mut NodeRef {
        self.refs.nodes.entry(id.to_owned()).or_insert(NodeRef { current: None, last_attempt: None, placed: None })
    }

    fn set_current(&mut self, id: &str, key: Hash) {
        let entry = self.entry(id);
        if entry.current != Some(key) {
            entry.current = Some(key);
            self.dirty = true;
        }
    }

    /// Where the node's outputs are now in the workspace (all of its
    /// declared paths, after they were put in place).
    fn set_placed(&mut self, node: &Node) {
        let placed: BTreeMap<String, PathBuf> =
            node.outputs.iter().filter_map(|(n, o)| o.path.clone().map(|p| (n.clone(), p))).collect();
        let entry = self.entry(&node.id);
        if entry.placed.as_ref() != Some(&placed) {
            entry.placed = Some(placed);
            self.dirty = true;
        }
    }

    fn record_attempt(&mut self, id: &str, key: Hash, ok: bool) {
        self.entry(id).last_attempt =
            Some(Attempt { key, ok, at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string() });
        self.dirty = true;
    }
}

struct Running {
    res: Box<Resolved>,
    slot: Slot,
    /// CPU slots it holds.
    cpus: usize,
    log: PathBuf,
    dir: PathBuf,
}

struct Scheduler<'e, 'a> {
    e: &'e Engine<'a>,
    sel: &'e Selection,
    opts: &'e RunOptions,
    progress: &'e Progress,
    /// Indexed like `pipeline.nodes`.
    steps: Vec<Step>,
    known: KnownOutputs,
    sources: SourceHashes,
    refs: Refs,
    /// Workspace paths toe-pipe put outputs at (see `guard`).
    owned: Owned,
    slots: Slots,
    executor: Box<dyn Executor>,
    running: HashMap<usize, Running>,
    run_dir: Option<PathBuf>,
    /// The node folders in `run_dir`, made with it.
    node_dirs: Option<NodeDirs>,
    /// Folders of the action records written, flushed when the run ends.
    pending: Pending,
    stop_starting: bool,
}

/// Run the selected nodes as local processes. Holds the store lock for
/// the duration.
pub fn run(e: &Engine, sel: &Selection, opts: &RunOptions, progress: &Progress) -> anyhow::Result<RunReport> {
    run_with(e, sel, opts, progress, Box::new(LocalExecutor::new(e.store.clone())))
}

/// Run the selected nodes through `executor`.
pub fn run_with(
    e: &Engine,
    sel: &Selection,
    opts: &RunOptions,
    progress: &Progress,
    mut executor: Box<dyn Executor>,
) -> anyhow::Result<RunReport> {
    let started = Instant::now();
    let p = e.pipeline;
    let _lock = e.store.lock(&format!("run {}", p.file.display()))?;
    let keep = executor.recover(progress)?;
    e.store.clean_tmp_keeping(&keep).context("cannot clean the store's tmp/")?;
    signals::install();

    let plan = plan(e, sel, opts.verify)?;
    let mut slots = Slots {
        remote: executor.remote(),
        jobs: opts.jobs,
        cpu_busy: 0,
        gpus: opts.gpus.clone(),
        gpu_busy: Vec::new(),
        cpu_fallback_noted: false,
    };
    // Only an error if such a node would actually run.
    let needs: Vec<&str> = plan.requiring_gpu().map(|i| p.nodes[i].id.as_str()).collect();
    if !needs.is_empty() && !slots.remote && slots.gpus(&mut *executor).is_empty() {
        anyhow::bail!(
            "node {} requires a GPU (require_gpu = true) but none is available{}.\n  fix: run on a machine with a CUDA GPU, or remove require_gpu to let it run on the CPU",
            needs.join(", "),
            if opts.gpus.is_some() { " (--gpus selected none)" } else { " (libtorch sees no CUDA device)" }
        );
    }

    let mut steps: Vec<Step> = (0..p.nodes.len()).map(|_| Step::Off).collect();
    for planned in plan.nodes {
        let i = planned.node;
        steps[i] = Step::Planned(Box::new(planned));
    }
    let mut s = Scheduler {
        e,
        sel,
        opts,
        progress,
        steps,
        known: KnownOutputs::new(),
        sources: plan.sources,
        owned: Owned::from_refs(e.store, &plan.refs, &p.workspace),
        refs: Refs { refs: plan.refs, dirty: false },
        slots,
        executor,
        running: HashMap::new(),
        run_dir: None,
        node_dirs: None,
        pending: Pending::default(),
        stop_starting: false,
    };
    let interrupted = s.main_loop();
    s.finish(interrupted)?;
    progress.finish();
    let outcomes =
        s.steps.into_iter().map(|step| if let Step::Done(o) = step { o } else { Outcome::NotSelected }).collect();
    Ok(RunReport { outcomes, interrupted, elapsed: started.elapsed() })
}

impl Scheduler<'_, '_> {
    fn node_id(&self, i: usize) -> &str {
        &self.e.pipeline.nodes[i].id
    }

    /// Returns whether the run was interrupted.
    fn main_loop(&mut self) -> bool {
        let mut interrupt_deadline: Option<Instant> = None;
        loop {
            if signals::interrupted() && interrupt_deadline.is_none() {
                self.progress
                    .line("interrupted: stopping running nodes (the store stays consistent; the next run resumes)");
                self.stop_starting = true;
                self.executor.cancel(Stop::Ask);
                interrupt_deadline = Some(Instant::now() + Duration::from_secs(5));
            }
            if let Some(d) = interrupt_deadline {
                if Instant::now() > d {
                    self.executor.cancel(Stop::Kill);
                }
            } else {
                self.settle();
                self.dispatch();
            }
            for notice in self.executor.notices() {
                self.progress.line(&notice);
            }
            self.show_state();
            if self.running.is_empty() {
                return interrupt_deadline.is_some();
            }
            if let Some(f) = self.executor.wait(Duration::from_millis(100)) {
                self.finished(f, interrupt_deadline.is_some());
            }
        }
    }

    fn show_state(&self) {
        let finished = self.steps.iter().filter(|s| matches!(s, Step::Done(_))).count();
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

    fn done(&self, i: usize) -> Option<&Outcome> {
        match &self.steps[i] {
            Step::Done(o) => Some(o),
            _ => None,
        }
    }

    /// Carry out the plan of every node whose inputs are all done: a hit
    /// finishes on the spot, a node to run is queued. A node that waited
    /// is decided now that its inputs (and so its key) are known.
    fn settle(&mut self) {
        for idx in 0..self.e.dag.order.len() {
            let i = self.e.dag.order[idx];
            if !matches!(self.steps[i], Step::Planned(_)) {
                continue;
            }
            if !self.e.dag.parents(i).iter().all(|&j| self.done(j).is_some_and(Outcome::ok)) {
                continue;
            }
            let Step::Planned(mut planned) = std::mem::replace(&mut self.steps[i], Step::Running) else { continue };
            if matches!(planned.decision, Decision::Wait) {
                let node = &self.e.pipeline.nodes[i];
                let Some(res) = resolve(node, self.e.catalog, &self.known, &self.sources, self.e.store) else {
                    // Unreachable with all parents finished; fail loudly rather than hang.
                    self.fail(i, "internal error: inputs unknown after their nodes finished".into());
                    continue;
                };
                *planned = decide(self.e, i, res, self.refs.current(&node.id), self.sel.forced[i], self.opts.verify);
            }
            let key = planned.key;
            if let Some(k) = key {
                self.executor.decided(i, k, matches!(planned.decision, Decision::Run { .. }));
            }
            match (planned.decision, key) {
                (Decision::Fresh { outputs }, Some(key)) => self.finish_hit(i, key, &outputs, &[], false),
                (Decision::Restore { outputs, put_back, earlier }, Some(key)) => {
                    self.finish_hit(i, key, &outputs, &put_back, earlier)
                }
                (Decision::Run { resolved, corrupt }, _) => {
                    // Removed so that the run replaces them, with the
                    // results made from them. A node with the same output
                    // content may have removed them already.
                    let present: Vec<Hash> = corrupt.into_iter().filter(|h| self.e.store.has_object(h)).collect();
                    if let Some(first) = present.first() {
                        let id = self.node_id(i).to_owned();
                        self.progress.line(&format!(
                            "  corrupt  {id}  stored output {} did not match its hash; removed, running again",
                            first.short()
                        ));
                    }
                    self.repair(&present);
                    self.steps[i] = Step::Queued(resolved);
                }
                // decide() gives every decision but Wait a key.
                _ => self.fail(i, "internal error: no decision for a node whose inputs finished".into()),
            }
        }
    }

    /// Remove corrupt objects and the records of the actions that read
    /// them (see `store::verify::repair`), and say so.
    fn repair(&self, corrupt: &[Hash]) {
        let report = repair(self.e.store, corrupt);
        for (h, err) in &report.not_removed {
            self.progress.line(&format!("  corrupt object {} could not be removed: {err}", h.short()));
        }
        for (_, node, pipeline) in &report.invalidated {
            let which =
                if *pipeline == self.e.pipeline.name { String::new() } else { format!(" (pipeline {pipeline})") };
            self.progress.line(&format!(
                "  invalidated  {node}{which}  a cached result of it was made from a corrupt object: removed, so it is rebuilt when needed"
            ));
        }
        for (key, err) in &report.not_invalidated {
            self.progress
                .line(&format!("  could not invalidate action {} (it read a corrupt object): {err}", key.short()));
        }
    }

    /// A cache hit: put the outputs in the workspace where they are not.
    fn finish_hit(
        &mut self,
        i: usize,
        key: Hash,
        outputs: &BTreeMap<String, OutputRecord>,
        missing: &[PutBack],
        earlier: bool,
    ) {
        let id = self.node_id(i).to_owned();
        if let Err(msg) = self.place(i, missing) {
            self.fail(i, msg);
            return;
        }
        self.refs.set_placed(&self.e.pipeline.nodes[i]);
        learn(&mut self.known, &id, key, outputs);
        self.e.store.touch_action(&key);
        let outcome = if earlier {
            Outcome::Restored("earlier result from the store, no run".to_owned())
        } else if !missing.is_empty() {
            Outcome::Restored(format!(
                "put back {}",
                missing.iter().map(|b| b.path.display().to_string()).collect::<Vec<_>>().join(", ")
            ))
        } else {
            Outcome::Fresh
        };
        match &outcome {
            Outcome::Restored(what) => self.progress.node("restored", &id, &format!("({what})")),
            _ if self.progress.verbose => self.progress.node("fresh", &id, ""),
            _ => {}
        }
        self.refs.set_current(&id, key);
        self.steps[i] = Step::Done(outcome);
    }

    /// Materialise outputs of node `i` at their workspace paths, where
    /// toe-pipe may write (see `guard`).
    fn place(&mut self, i: usize, outputs: &[PutBack]) -> Result<(), String> {
        let node = &self.e.pipeline.nodes[i];
        for b in outputs {
            may_write(self.e, &self.owned, node, &b.output, &b.path)?;
            let target = self.e.pipeline.workspace_path(&b.path);
            materialise(self.e.store, &b.hash, &target)
                .map_err(|err| format!("cannot materialise output `{}` at {}: {err}", b.output, target.display()))?;
            self.owned.insert(&b.path);
        }
        Ok(())
    }

    /// Start queued nodes while there are free slots, in topological order.
    fn dispatch(&mut self) {
        if self.stop_starting {
            return;
        }
        // Once a CPU node does not fit, later CPU nodes wait behind it.
        let mut cpu_blocked = false;
        for idx in 0..self.e.dag.order.len() {
            let i = self.e.dag.order[idx];
            if !matches!(self.steps[i], Step::Queued(_)) {
                continue;
            }
            let node = &self.e.pipeline.nodes[i];
            let gpu = gpu_use(node);
            let asked = node.resources.cpus as usize;
            let on_cpu = self.slots.remote || gpu == GpuUse::None || self.slots.gpus(&mut *self.executor).is_empty();
            if cpu_blocked && on_cpu {
                continue;
            }
            let (slot, cpus) = match self.slots.take(gpu, asked, &mut *self.executor, self.progress) {
                Take::Slot(slot, cpus) => (slot, cpus),
                Take::NoGpu => continue,
                Take::NoCpu => {
                    cpu_blocked = true;
                    continue;
                }
            };
            // On a GPU the node holds no CPU slot but still uses its CPUs
            // (data loading, say), as many as the machine has at most. On a
            // cluster it gets what it asks for.
            let threads = if self.slots.remote {
                asked
            } else if cpus == 0 {
                asked.min(crate::sys::cpus())
            } else {
                cpus
            };
            if !self.slots.remote && cpus > 0 && cpus < asked {
                let id = &node.id;
                self.progress.line(&format!(
                    "note: node {id} asks for {asked} CPUs, more than -j {}; it runs on {cpus}",
                    self.opts.jobs
                ));
            }
            let Step::Queued(res) = std::mem::replace(&mut self.steps[i], Step::Running) else { continue };
            if let Err(err) = self.start(i, res, slot, cpus, threads) {
                self.slots.release(slot, cpus);
                self.fail(i, format!("{err:#}"));
            }
        }
    }

    /// Start node `i` in `slot`, holding `cpus` CPU slots, its process
    /// told to use `threads` threads.
    fn start(&mut self, i: usize, res: Box<Resolved>, slot: Slot, cpus: usize, threads: usize) -> anyhow::Result<()> {
        if self.run_dir.is_none() {
            let d = self.e.store.new_run_dir().context("cannot create a run directory in the store")?;
            self.node_dirs = Some(NodeDirs::new(d.clone()));
            self.run_dir = Some(d);
        }
        let Some(dirs) = self.node_dirs.as_mut() else { anyhow::bail!("no run directory") };
        let node = &self.e.pipeline.nodes[i];
        // Refused before it runs rather than after: its outputs could not
        // be put in place.
        for (name, out) in &node.outputs {
            if let Some(path) = &out.path {
                may_write(self.e, &self.owned, node, name, path).map_err(anyhow::Error::msg)?;
            }
        }
        let dir = dirs.take(&node.id, node.outputs.len()).context("cannot make the node's temporary folder")?;
        let prepared = match exec::prepare(self.e.pipeline, node, &res, self.e.store, &dir, slot, threads) {
            Ok(p) => p,
            Err(e) => {
                dirs.give_back(&dir);
                return Err(e);
            }
        };
        if self.progress.verbose {
            self.progress.node(
                "start",
                &node.id,
                &if slot == Slot::Cpu { String::new() } else { format!("on {}", slot.label()) },
            );
        }
        let (log, dir) = (prepared.log.clone(), prepared.dir.clone());
        self.executor.start(i, &node.id, prepared, slot)?;
        self.running.insert(i, Running { res, slot, cpus, log, dir });
        Ok(())
    }

    fn finished(&mut self, f: Finished, interrupted: bool) {
        let i = f.node;
        let Some(run) = self.running.remove(&i) else { return };
        self.slots.release(run.slot, run.cpus);
        let id = self.node_id(i).to_owned();
        let key = run.res.key;
        // Keep the log of every attempt under its action key.
        let log = self.e.store.log_path(&key);
        if let Some(parent) = log.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::rename(&run.log, &log);
        match self.node_dirs.as_mut() {
            // A local node's processes are gone by now; a cancelled cluster
            // job may still write into its folder for a while.
            Some(dirs) if !self.slots.remote => dirs.give_back(&run.dir),
            _ => {
                let _ = remove_any(&run.dir);
            }
        }
        // The slot is free: start what is ready now, while this node's
        // record is flushed and its outputs are put in place (what is
        // ready cannot depend on this node, which is not done yet). Not
        // with --fail-fast, where a record that cannot be written is the
        // failure that stops the run.
        if f.result.is_ok() && f.corrupt.is_empty() && !interrupted && !self.opts.fail_fast {
            self.dispatch();
        }
        // An input that was not the bytes its key names: nothing made from
        // it is kept.
        self.repair(&f.corrupt);
        match f.result {
            Ok(outputs) => {
                let node = &self.e.pipeline.nodes[i];
                let rec =
                    ActionRecord::of_run(self.e.pipeline, node, &run.res, &outputs, &f.timing, run.slot.label(), f.ran);
                if let Err(err) = self.e.store.write_action_deferred(&rec, &mut self.pending) {
                    self.refs.record_attempt(&id, key, false);
                    self.fail(i, format!("cannot write the action record: {err}"));
                    return;
                }
                if let Err(msg) = self.place(i, &put_back(self.e, node, &rec.outputs)) {
                    self.refs.record_attempt(&id, key, true);
                    self.fail(i, msg);
                    return;
                }
                self.refs.set_placed(node);
                learn(&mut self.known, &id, key, &rec.outputs);
                self.refs.record_attempt(&id, key, true);
                self.refs.set_current(&id, key);
                let seconds = f.timing.seconds;
                let job = rec.ran_on.as_ref().and_then(|r| r.slurm_job.as_ref());
                let place = match job {
                    Some(job) => format!(", Slurm job {job} on {}", rec.host),
                    None if run.slot == Slot::Cpu => String::new(),
                    None => format!(" on {}", run.slot.label()),
                };
                self.progress.node("ran", &id, &format!("({seconds:.2}s{place})"));
                self.steps[i] = Step::Done(Outcome::Ran { seconds, device: run.slot.label() });
            }
            Err(_) if interrupted => {
                self.progress.node("stopped", &id, "");
                self.steps[i] = Step::Done(Outcome::Interrupted);
            }
            Err(msg) => {
                self.refs.record_attempt(&id, key, false);
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

    /// Mark a node failed and skip everything downstream of it.
    fn fail(&mut self, i: usize, msg: String) {
        let id = self.node_id(i).to_owned();
        self.progress.node("FAILED", &id, &msg);
        self.steps[i] = Step::Done(Outcome::Failed(msg));
        let below = self.e.dag.with_descendants(&[i]);
        for (d, &is_below) in below.iter().enumerate() {
            if is_below && d != i && matches!(self.steps[d], Step::Planned(_) | Step::Queued(_)) {
                let did = self.node_id(d).to_owned();
                self.progress.node("skipped", &did, &format!("(needs {id}, which failed)"));
                self.steps[d] = Step::Done(Outcome::Skipped(format!("needs {id}, which failed")));
            }
        }
        if self.opts.fail_fast {
            self.stop_starting = true;
        }
    }

    /// Account for nodes that never started, write the refs, tidy up.
    fn finish(&mut self, interrupted: bool) -> anyhow::Result<()> {
        for step in &mut self.steps {
            if matches!(step, Step::Planned(_) | Step::Queued(_)) {
                *step = Step::Done(if interrupted {
                    Outcome::Interrupted
                } else {
                    Outcome::Skipped("not started (--fail-fast)".into())
                });
            }
        }
        let p = self.e.pipeline;
        let refs = &mut self.refs;
        let before = refs.refs.nodes.len();
        refs.refs.nodes.retain(|id, _| p.node_index(id).is_some());
        if refs.refs.nodes.len() != before || refs.refs.file != p.file || refs.refs.pipeline != p.name {
            refs.dirty = true;
        }
        // The records of this run are on disk; their names are flushed
        // now, before the refs that name them.
        self.pending.flush(&Fsync).context("cannot flush the action records of this run to disk")?;
        if refs.dirty {
            refs.refs.pipeline = p.name.clone();
            refs.refs.file = p.file.clone();
            refs.refs.updated = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
            self.e.store.write_refs(&refs.refs).context("cannot write the pipeline's refs")?;
        }
        self.executor.wind_up(self.progress);
        if let Some(d) = &self.run_dir {
            let _ = remove_any(d);
        }
        Ok(())
    }
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
