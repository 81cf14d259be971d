//! Where nodes run. The scheduler decides what runs, when and in which
//! slot; an [`Executor`] starts a prepared node, reports when it is over
//! (with its outputs committed to the store) and stops nodes on an
//! interrupt. [`LocalExecutor`] runs them as processes on this machine;
//! [`super::slurm::SlurmExecutor`] as batch jobs on a Slurm cluster.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime};

use super::exec::{self, Prepared, Slot};
use super::progress::Progress;
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
    /// come back through [`Executor::wait`].
    fn start(&mut self, node: usize, id: &str, job: Prepared, slot: Slot) -> anyhow::Result<()>;
    /// The next node that is over, waiting at most `timeout`; `None` when
    /// none was within that time.
    fn wait(&mut self, timeout: Duration) -> Option<Finished>;
    /// Stop every node that was started and is not over yet.
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

enum Msg {
    Started { node: usize, pid: u32 },
    Finished(Finished),
}

/// Each node a child process in its own process group (see `exec::spawn`),
/// waited for on its own thread, which commits the outputs after exit 0.
pub struct LocalExecutor {
    store: Store,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    /// Started nodes not over yet, with their process id once known.
    running: HashMap<usize, Option<u32>>,
}

impl LocalExecutor {
    pub fn new(store: Store) -> LocalExecutor {
        let (tx, rx) = mpsc::channel();
        LocalExecutor { store, tx, rx, running: HashMap::new() }
    }
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
        let (id, store, tx) = (id.to_owned(), self.store.clone(), self.tx.clone());
        self.running.insert(node, None);
        // The thread outlives the child: the child's death signal fires
        // when the thread that spawned it exits.
        std::thread::spawn(move || {
            let start = SystemTime::now();
            let t0 = Instant::now();
            let result = match exec::spawn(&job, &id, slot) {
                Err(e) => Err(format!("cannot start {}: {e}", job.program.display())),
                Ok(mut child) => {
                    let _ = tx.send(Msg::Started { node, pid: child.id() });
                    match child.wait() {
                        Ok(status) if status.success() => exec::collect_outputs(&store, &job.outputs),
                        Ok(status) => Err(exec::describe_status(status)),
                        Err(e) => Err(format!("lost the node's process: {e}")),
                    }
                }
            };
            let timing = Timing { start, end: SystemTime::now(), seconds: t0.elapsed().as_secs_f64() };
            let ran = Ran::here(Some(job.cpus), crate::worker::read_facts(&job.dir));
            let _ = tx.send(Msg::Finished(Finished { node, result, timing, ran }));
        });
        Ok(())
    }

    fn wait(&mut self, timeout: Duration) -> Option<Finished> {
        match self.rx.recv_timeout(timeout) {
            Ok(Msg::Started { node, pid }) => {
                if let Some(p) = self.running.get_mut(&node) {
                    *p = Some(pid);
                }
                None
            }
            Ok(Msg::Finished(f)) => {
                self.running.remove(&f.node);
                Some(f)
            }
            // The executor holds a sender, so the channel never disconnects.
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }

    fn cancel(&mut self, how: Stop) {
        let sig = match how {
            Stop::Ask => libc::SIGTERM,
            Stop::Kill => libc::SIGKILL,
        };
        for pid in self.running.values().flatten() {
            // SAFETY: signals the node's own process group.
            unsafe {
                libc::kill(-(*pid as libc::pid_t), sig);
            }
        }
    }
}
