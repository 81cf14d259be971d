//! Where nodes run. The scheduler decides what runs, when and in which
//! slot; an [`Executor`] starts a prepared node, reports when it is over
//! (with its outputs committed to the store) and stops nodes on an
//! interrupt. [`LocalExecutor`] runs them as processes on this machine; a
//! cluster executor (one batch job per node, polled, cancelled on Ctrl-C)
//! implements the same three calls.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime};

use super::exec::{self, Checked, Prepared, Slot};
use crate::store::records::Timing;
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
    /// Input objects checked in this run (see `exec::check_inputs`).
    checked: Checked,
}

impl LocalExecutor {
    pub fn new(store: Store) -> LocalExecutor {
        let (tx, rx) = mpsc::channel();
        LocalExecutor { store, tx, rx, running: HashMap::new(), checked: Checked::default() }
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
        let (id, store, tx, checked) = (id.to_owned(), self.store.clone(), self.tx.clone(), self.checked.clone());
        self.running.insert(node, None);
        // The thread outlives the child: the child's death signal fires
        // when the thread that spawned it exits.
        std::thread::spawn(move || {
            let start = SystemTime::now();
            let t0 = Instant::now();
            let mut corrupt = Vec::new();
            let result = match exec::spawn(&job, &id, slot) {
                Err(e) => Err(format!("cannot start {}: {e}", job.program.display())),
                Ok(mut child) => {
                    let _ = tx.send(Msg::Started { node, pid: child.id() });
                    // While the node runs.
                    let bad = exec::check_inputs(&store, &job.objects, &checked);
                    if !bad.problems.is_empty() {
                        // Its result would not be kept: stop it now. Not
                        // reaped yet, so its group id is still its own.
                        // SAFETY: signals the node's own process group.
                        unsafe {
                            libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
                        }
                    }
                    let status = child.wait();
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
            let _ = tx.send(Msg::Finished(Finished { node, result, timing, corrupt }));
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
