//! Where nodes run. The scheduler decides what runs, when and in which
//! slot; an [`Executor`] starts a prepared node, reports when it is over
//! (with its outputs committed to the store) and stops nodes on an
//! interrupt. [`LocalExecutor`] runs them as processes on this machine;
//! [`super::slurm::SlurmExecutor`] as batch jobs on a Slurm cluster.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::exec::{self, Checked, Prepared, Slot};
use super::progress::Progress;
use super::reaper::Reaper;
use crate::store::records::{Ran, Timing};
use crate::store::{Committed, Hash, Store};

/// A node that is over.
#[derive(Debug)]
pub struct Finished {
    /// Index into `pipeline.nodes`.
    pub node: usize,
    /// Its committed outputs, or why it failed.
    pub result: Result<BTreeMap<String, Committed>, String>,
    pub timing: Timing,
    /// Store objects it read whose bytes did not match their hash (then
    /// `result` is an error): the scheduler removes them.
    pub corrupt: Vec<Hash>,
    /// Where it ran (lineage).
    pub ran: Ran,
}

/// How to stop running nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Ask them to end (SIGTERM): they may clean up.
    Ask,
    /// End them now (SIGKILL), after `Ask` was not enough.
    Kill,
}

pub trait Executor {
    /// The GPUs nodes can be given (`Slot::Gpu`); asked once per run, when
    /// a gpu node first needs one, unless `--gpus` says.
    fn gpus(&mut self) -> Vec<u32>;
    /// Start node `node` (id `id`) in `slot`. An error means it did not
    /// start and nothing will be reported for it; failures after the start
    /// come back through [`Executor::wait`]. A node whose input objects do
    /// not match their hashes (`exec::check_inputs`) must come back as a
    /// failure with them in [`Finished::corrupt`], never as a success.
    fn start(&mut self, node: usize, id: &str, job: Prepared, slot: Slot) -> anyhow::Result<()>;
    /// The next node that is over, waiting at most `timeout`; `None` when
    /// none was within that time.
    fn wait(&mut self, timeout: Duration) -> Option<Finished>;
    /// Stop every node that was started and is not over yet. Once the run
    /// escalates to [`Stop::Kill`] the scheduler calls this at every turn
    /// of its loop, between waits: a repeated call must neither cost much
    /// nor delay what [`Executor::wait`] reports.
    fn cancel(&mut self, how: Stop);
    /// Whether nodes run elsewhere (on a cluster): then `-j` bounds the
    /// nodes in flight, and the cluster gives each its CPUs and GPUs (a gpu
    /// node always gets one there).
    fn remote(&self) -> bool {
        false
    }
    /// Called once the store is locked, before its `tmp/` is cleared: an
    /// executor whose nodes can outlive toe-pipe (cluster jobs) deals with
    /// what a killed run left running, and names the folders under `tmp/`
    /// to keep (those of jobs it may adopt).
    fn recover(&mut self, _progress: &Progress) -> anyhow::Result<Vec<PathBuf>> {
        Ok(Vec::new())
    }
    /// The scheduler decided node `node`: it runs (`runs`) to compute
    /// `key`, or its result is there already. Called once per decided node,
    /// before it starts.
    fn decided(&mut self, _node: usize, _key: Hash, _runs: bool) {}
    /// Called when the run is over, interrupted or not.
    fn wind_up(&mut self, _progress: &Progress) {}
    /// Lines for the user that came up since the last call (warnings,
    /// adopted jobs).
    fn notices(&mut self) -> Vec<String> {
        Vec::new()
    }
}

/// Each node a child process in its own process group (see `exec::spawn`),
/// waited for on its own thread, which commits the outputs after exit 0.
///
/// When a node's leader exits, whatever it left running in its process
/// group is killed before its outputs are committed: a straggler could
/// otherwise write into an output after it was hashed. If toe-pipe dies,
/// the [`Reaper`] kills the groups of the nodes still running.
pub struct LocalExecutor {
    store: Store,
    tx: Sender<Finished>,
    rx: Receiver<Finished>,
    /// Nodes whose process runs, with its pid (= its process group id).
    /// A waiting thread removes its node before it reaps the process, so
    /// `cancel` never signals a group id that may have been reused.
    running: Running,
    /// Input objects checked in this run (see `exec::check_inputs`).
    checked: Checked,
    /// Started with the first node.
    reaper: Option<Arc<Reaper>>,
}

type Running = Arc<Mutex<HashMap<usize, libc::pid_t>>>;

impl LocalExecutor {
    pub fn new(store: Store) -> LocalExecutor {
        let (tx, rx) = mpsc::channel();
        LocalExecutor { store, tx, rx, running: Running::default(), checked: Checked::default(), reaper: None }
    }
}

fn lock(running: &Running) -> std::sync::MutexGuard<'_, HashMap<usize, libc::pid_t>> {
    running.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Executor for LocalExecutor {
    /// The CUDA devices libtorch sees, asked of the worker (none if it
    /// cannot say).
    fn gpus(&mut self) -> Vec<u32> {
        match crate::worker::gpu_count() {
            Ok(n) => (0..n as u32).collect(),
            Err(_) => Vec::new(),
        }
    }

    fn start(&mut self, node: usize, id: &str, job: Prepared, slot: Slot) -> anyhow::Result<()> {
        let reaper = match &self.reaper {
            Some(r) => r.clone(),
            None => {
                let r = Arc::new(Reaper::start().map_err(|e| {
                    anyhow::anyhow!("cannot start the process that stops the nodes if toe-pipe is killed: {e}")
                })?);
                self.reaper = Some(r.clone());
                r
            }
        };
        let (id, store, tx, checked, running) =
            (id.to_owned(), self.store.clone(), self.tx.clone(), self.checked.clone(), self.running.clone());
        // The thread outlives the child: the child's death signal fires
        // when the thread that spawned it exits.
        std::thread::spawn(move || {
            let start = SystemTime::now();
            let t0 = Instant::now();
            let mut corrupt = Vec::new();
            // Listed as it starts, under the lock, so that an interrupt
            // meanwhile still reaches it.
            let spawned = {
                let mut r = lock(&running);
                exec::spawn(&job, &id, slot, Some(reaper.fd())).inspect(|child| {
                    r.insert(node, child.id() as libc::pid_t);
                })
            };
            let result = match spawned {
                Err(e) => Err(exec::start_error(&job, &e)),
                Ok(mut child) => {
                    let pid = child.id() as libc::pid_t;
                    // While the node runs.
                    let bad = exec::check_inputs(&store, &job.objects, &checked);
                    if bad.stop {
                        // Its result would not be kept: stop it now.
                        kill_group(pid);
                    }
                    // Exited, not reaped yet: its group id is still its
                    // own. What it left running goes now.
                    let exited = wait_exited(pid);
                    kill_group(pid);
                    lock(&running).remove(&node);
                    reaper.release(pid);
                    let status = exited.and_then(|()| child.wait());
                    corrupt = bad.corrupt;
                    match status {
                        _ if !bad.problems.is_empty() => Err(bad.problems.join("; ")),
                        Ok(status) if status.success() => exec::collect_outputs(&store, &job.outputs),
                        Ok(status) => Err(exec::describe_status(status)),
                        Err(e) => Err(format!("lost the node's process: {e}")),
                    }
                }
            };
            let timing = Timing { start, end: SystemTime::now(), seconds: t0.elapsed().as_secs_f64() };
            let ran = Ran::here(Some(job.cpus), crate::worker::read_facts(&job.dir));
            let _ = tx.send(Finished { node, result, timing, corrupt, ran });
        });
        Ok(())
    }

    fn wait(&mut self, timeout: Duration) -> Option<Finished> {
        // The executor holds a sender, so the channel never disconnects.
        self.rx.recv_timeout(timeout).ok()
    }

    fn cancel(&mut self, how: Stop) {
        let sig = match how {
            Stop::Ask => libc::SIGTERM,
            Stop::Kill => libc::SIGKILL,
        };
        for &pid in lock(&self.running).values() {
            // SAFETY: signals the process group of a node not reaped yet.
            unsafe {
                libc::kill(-pid, sig);
            }
        }
    }
}

/// SIGKILL to a node's process group.
fn kill_group(pid: libc::pid_t) {
    // SAFETY: signals the process group of a node whose leader is not
    // reaped yet (so the id is still its group's).
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
}

/// Wait until process `pid` has exited, leaving it to be reaped.
fn wait_exited(pid: libc::pid_t) -> std::io::Result<()> {
    loop {
        // SAFETY: waitid fills `info`; WNOWAIT leaves the child waitable.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if rc == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
