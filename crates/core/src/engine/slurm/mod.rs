//! The Slurm executor: each node a batch job (`sbatch`), tracked with
//! `squeue` (and `sacct` or the job completion log once the controller has
//! forgotten a job), cancelled with `scancel`.
//!
//! The job runs the node's command (`toe-pipe-worker run JOB` or `sh -c`)
//! on a compute node and writes its outputs into the store's tmp area, so
//! the store must be on storage the compute nodes see. toe-pipe stays the
//! single writer of the store: it commits a node's outputs only after its
//! job ended and the command returned 0. Every submitted job is recorded
//! in the store ([`ledger`]) until it is dealt with, so a run after a
//! killed toe-pipe adopts or cancels what is still queued or running.

pub mod commands;
pub mod ledger;
pub mod script;
pub mod storage;

use std::collections::VecDeque;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;

use super::exec::{self, BadInputs, Checked, Prepared, Slot, StagedInput};
use super::executor::{Executor, Finished, Stop};
use super::progress::Progress;
use crate::spec::{ArtifactKind, Device, Pipeline, Resources};
use crate::store::records::{Ran, RanOn, Timing};
use crate::store::Store;
use commands::JobState;
use ledger::{Entry, Ledger};

/// Polling: fast while jobs change, slower while they wait or run, so
/// that a long pipeline does not keep the controller busy.
const POLL_MIN: Duration = Duration::from_millis(200);
const POLL_MAX: Duration = Duration::from_secs(2);
/// How long to wait for a job's status file after Slurm says it completed
/// (a shared filesystem may show it late).
const STATUS_GRACE: Duration = Duration::from_secs(10);
/// How long to wait for Slurm to confirm cancelled jobs ended.
const CANCEL_GRACE: Duration = Duration::from_secs(60);

/// What a node asks the cluster for.
struct Request {
    id: String,
    resources: Resources,
    gpu: bool,
}

/// A job this run waits for.
struct Tracked {
    job: String,
    node: usize,
    dir: PathBuf,
    /// Where Slurm writes the job's output.
    log: PathBuf,
    /// Where the scheduler expects the node's log (another path for an
    /// adopted job).
    deliver_log: PathBuf,
    outputs: Vec<(String, PathBuf, ArtifactKind)>,
    cpus: usize,
    submitted: SystemTime,
    /// When Slurm first said it was over but its status file was missing.
    over_since: Option<Instant>,
    /// The check of the store objects it reads (`exec::check_inputs`),
    /// made while it waits and runs.
    check: Check,
}

enum Check {
    Running(std::thread::JoinHandle<BadInputs>),
    Done(BadInputs),
}

impl Check {
    /// Whether the check, if it is over, found the job's result unusable
    /// (it does not wait).
    fn says_stop(&mut self) -> bool {
        if let Check::Running(h) = self {
            if !h.is_finished() {
                return false;
            }
            let done = std::mem::replace(self, Check::Done(BadInputs::default())).outcome();
            *self = Check::Done(done);
        }
        matches!(self, Check::Done(bad) if bad.stop)
    }

    /// What it found, waiting for it.
    fn outcome(self) -> BadInputs {
        match self {
            Check::Done(bad) => bad,
            Check::Running(h) => h.join().unwrap_or_else(|_| BadInputs {
                problems: vec!["the check of its inputs failed".into()],
                ..Default::default()
            }),
        }
    }
}

pub struct SlurmExecutor {
    store: Store,
    pipeline: String,
    requests: Vec<Request>,
    ledger: Ledger,
    jobs: Vec<Tracked>,
    done: VecDeque<Finished>,
    /// Jobs of an earlier run of this pipeline that may be adopted.
    adoptable: Vec<Entry>,
    next_poll: Instant,
    interval: Duration,
    cancelled_at: Option<Instant>,
    killed: bool,
    /// A cancel (or, with `kill_owed`, a SIGKILL) that `scancel` failed to
    /// deliver (a busy controller may not answer in time): sent again at
    /// each poll until it goes through, so that an interrupt never leaves
    /// the jobs running to completion.
    cancel_owed: bool,
    kill_owed: bool,
    /// The last error scancel gave, so that a repeated one is not shown again.
    cancel_error: Option<String>,
    squeue_failing_since: Option<Instant>,
    /// Warnings about storage the compute nodes may not see, shown with
    /// the first submission (a run that submits nothing is not told).
    storage_warnings: Option<Vec<String>>,
    notices: Vec<String>,
    /// Input objects checked in this run.
    checked: Checked,
}

impl SlurmExecutor {
    pub fn new(store: Store, p: &Pipeline) -> SlurmExecutor {
        let store_root = &store.root().to_path_buf();
        let requests = p
            .nodes
            .iter()
            .map(|n| Request { id: n.id.clone(), resources: n.resources.clone(), gpu: n.device == Device::Gpu })
            .collect();
        SlurmExecutor {
            ledger: Ledger::of(&store),
            store,
            pipeline: p.name.clone(),
            requests,
            jobs: Vec::new(),
            done: VecDeque::new(),
            adoptable: Vec::new(),
            next_poll: Instant::now(),
            interval: POLL_MIN,
            cancelled_at: None,
            killed: false,
            cancel_owed: false,
            kill_owed: false,
            cancel_error: None,
            squeue_failing_since: None,
            storage_warnings: Some(storage::local_filesystem_warnings(p, store_root)),
            notices: Vec::new(),
            checked: Checked::default(),
        }
    }

    fn submit(&mut self, node: usize, job: Prepared) -> anyhow::Result<()> {
        if let Some(warnings) = self.storage_warnings.take() {
            self.notices.extend(warnings);
        }
        let req = &self.requests[node];
        let script_path = job.dir.join(script::SCRIPT);
        std::fs::write(&script_path, script::job_script(&job, &req.id, &self.pipeline, req.gpu))
            .with_context(|| format!("cannot write {}", script_path.display()))?;
        std::fs::set_permissions(&script_path, std::fs::Permissions::from_mode(0o755))?;
        let gpus = if req.gpu { req.resources.gpus } else { 0 };
        let name = format!("toe-pipe:{}:{}", self.pipeline, req.id);
        let args = script::sbatch_args(&req.resources, gpus, &name, &job, &script_path);
        let id = commands::sbatch(&args).with_context(|| format!("cannot submit node {} to Slurm", req.id))?;
        let entry = Entry {
            job: id.clone(),
            pipeline: self.pipeline.clone(),
            node: req.id.clone(),
            key: job.key,
            dir: job.dir.clone(),
            log: job.log.clone(),
            outputs: job.outputs.clone(),
            cpus: job.cpus,
            submitted: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        };
        // A job toe-pipe cannot find again after a crash must not run.
        if let Err(e) = self.ledger.add(&entry) {
            let _ = commands::cancel(&[&id], None);
            anyhow::bail!("cannot record Slurm job {id} in {}: {e}; cancelled it", self.ledger.dir().display());
        }
        tracing::info!("node {} is Slurm job {id}", req.id);
        self.track(node, entry, job.log.clone(), job.objects);
        Ok(())
    }

    fn track(&mut self, node: usize, e: Entry, deliver_log: PathBuf, objects: Vec<StagedInput>) {
        let (store, checked) = (self.store.clone(), self.checked.clone());
        let check = std::thread::spawn(move || exec::check_inputs(&store, &objects, &checked));
        self.jobs.push(Tracked {
            job: e.job,
            node,
            dir: e.dir,
            log: e.log,
            deliver_log,
            outputs: e.outputs,
            cpus: e.cpus,
            submitted: SystemTime::now(),
            over_since: None,
            check: Check::Running(check),
        });
        self.interval = POLL_MIN;
        self.next_poll = Instant::now() + POLL_MIN;
    }

    /// Ask Slurm about every job in flight; finish those that are over.
    fn poll(&mut self) {
        self.send_cancels();
        let ids: Vec<&str> = self.jobs.iter().map(|j| j.job.as_str()).collect();
        let states = match commands::states(&ids) {
            Ok(s) => {
                self.squeue_failing_since = None;
                s
            }
            Err(e) => {
                let since = *self.squeue_failing_since.get_or_insert_with(Instant::now);
                tracing::warn!("{e:#} (retrying)");
                self.interval = POLL_MAX;
                self.next_poll = Instant::now() + POLL_MAX;
                if self.cancelled_at.is_some() && since.elapsed() > CANCEL_GRACE {
                    self.give_up("squeue keeps failing after the interrupt");
                }
                return;
            }
        };
        // A job whose inputs turned out corrupt cannot give a result that
        // is kept: stop it now.
        let mut doomed = Vec::new();
        for job in &mut self.jobs {
            let over = states.get(&job.job).is_none_or(JobState::is_over);
            if !over && matches!(job.check, Check::Running(_)) && job.check.says_stop() {
                doomed.push(job.job.clone());
            }
        }
        if !doomed.is_empty() {
            let ids: Vec<&str> = doomed.iter().map(String::as_str).collect();
            if let Err(e) = commands::cancel(&ids, None) {
                tracing::warn!("{e:#}");
            }
        }
        let mut changed = false;
        let mut i = 0;
        while i < self.jobs.len() {
            let state = states.get(&self.jobs[i].job).cloned();
            let over = state.as_ref().is_none_or(JobState::is_over);
            if !over {
                // A glitch that showed it over earlier does not count.
                self.jobs[i].over_since = None;
                i += 1;
                continue;
            }
            // The command's status may show on a shared filesystem later
            // than Slurm's verdict.
            let has_status = script::read_status(&self.jobs[i].dir).is_some();
            let completed = state.as_ref().is_none_or(|s| s.state.starts_with("COMPLETED"));
            let since = *self.jobs[i].over_since.get_or_insert_with(Instant::now);
            if !has_status && completed && since.elapsed() < STATUS_GRACE {
                i += 1;
                continue;
            }
            let job = self.jobs.remove(i);
            let finished = self.finish(job, state);
            self.done.push_back(finished);
            changed = true;
        }
        self.interval = if changed { POLL_MIN } else { (self.interval * 3 / 2).min(POLL_MAX) };
        self.next_poll = Instant::now() + self.interval;
    }

    /// A job that is over: its outputs committed, or why it failed.
    fn finish(&mut self, job: Tracked, state: Option<JobState>) -> Finished {
        let status = script::read_status(&job.dir);
        let bad = job.check.outcome();
        let result = match status {
            _ if !bad.problems.is_empty() => Err(bad.problems.join("; ")),
            Some((0, ..)) => exec::collect_outputs(&self.store, &job.outputs),
            Some((rc, ..)) => Err(format!("Slurm job {}: exit status {rc}", job.job)),
            None => Err(ended_early(&job.job, state.as_ref())),
        };
        let adopted = job.log != job.deliver_log;
        if adopted {
            let _ = std::fs::rename(&job.log, &job.deliver_log);
        }
        let (start, end) = match status {
            Some((_, s, e)) if s > 0.0 && e >= s => (epoch(s), epoch(e)),
            _ => (job.submitted, SystemTime::now()),
        };
        let seconds = end.duration_since(start).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        let ran = where_it_ran(&job.dir, &job.job, job.cpus);
        if adopted {
            // The folder an earlier run made for it (and that run's folder,
            // once empty); the scheduler removes this run's.
            let _ = crate::store::remove_any(&job.dir);
            if let Some(parent) = job.dir.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
        self.ledger.remove(&job.job);
        Finished { node: job.node, result, timing: Timing { start, end, seconds }, corrupt: bad.corrupt, ran }
    }

    /// Stop waiting for jobs Slurm does not confirm ended; they stay in the
    /// ledger, so the next run checks on them again.
    fn give_up(&mut self, why: &str) {
        for job in std::mem::take(&mut self.jobs) {
            let msg = format!("{why}: Slurm job {} may still run; the next run cancels it", job.job);
            let now = SystemTime::now();
            self.done.push_back(Finished {
                node: job.node,
                result: Err(msg),
                timing: Timing { start: job.submitted, end: now, seconds: 0.0 },
                corrupt: Vec::new(),
                ran: Ran::default(),
            });
        }
    }

    /// Deliver the cancel and the SIGKILL still owed to the jobs in flight.
    fn send_cancels(&mut self) {
        let ids: Vec<&str> = self.jobs.iter().map(|j| j.job.as_str()).collect();
        for (owed, signal) in [(&mut self.cancel_owed, None), (&mut self.kill_owed, Some("KILL"))] {
            if !*owed {
                continue;
            }
            match commands::cancel(&ids, signal) {
                Ok(()) => *owed = false,
                Err(e) => {
                    let msg = format!("{e:#}");
                    // Said once: a controller that stays down would repeat it at every poll.
                    if self.cancel_error.as_deref() == Some(msg.as_str()) {
                        tracing::debug!("{msg} (asking again)");
                    } else {
                        tracing::warn!("{msg} (asking again at each poll)");
                        self.cancel_error = Some(msg);
                    }
                }
            }
        }
    }

    /// An earlier run's job for this node and action, if there is one.
    fn claim(&mut self, node: &str, key: &crate::store::Hash) -> Option<Entry> {
        let i = self.adoptable.iter().position(|e| e.node == node && e.key == *key)?;
        Some(self.adoptable.remove(i))
    }
}

impl Executor for SlurmExecutor {
    fn gpus(&mut self) -> Vec<u32> {
        Vec::new()
    }

    fn remote(&self) -> bool {
        true
    }

    fn start(&mut self, node: usize, id: &str, job: Prepared, _slot: Slot) -> anyhow::Result<()> {
        if let Some(entry) = self.claim(id, &job.key) {
            self.notices.push(format!("  adopted  {id}  Slurm job {} of an earlier run", entry.job));
            self.track(node, entry, job.log, job.objects);
            return Ok(());
        }
        self.submit(node, job)
    }

    fn wait(&mut self, timeout: Duration) -> Option<Finished> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(f) = self.done.pop_front() {
                return Some(f);
            }
            if self.jobs.is_empty() {
                // Nothing in flight (the scheduler only waits while it
                // thinks otherwise): do not spin.
                std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                return None;
            }
            if let Some(t) = self.cancelled_at {
                if t.elapsed() > CANCEL_GRACE {
                    self.give_up("Slurm did not confirm the cancelled jobs ended");
                    continue;
                }
            }
            let now = Instant::now();
            if now >= self.next_poll {
                self.poll();
                continue;
            }
            if now >= deadline {
                return None;
            }
            std::thread::sleep(self.next_poll.min(deadline) - now);
        }
    }

    fn cancel(&mut self, how: Stop) {
        let new_request = match how {
            Stop::Ask if self.cancelled_at.is_none() => {
                self.cancelled_at = Some(Instant::now());
                self.cancel_owed = true;
                true
            }
            Stop::Kill if !self.killed => {
                self.killed = true;
                self.kill_owed = true;
                true
            }
            _ => false,
        };
        // The scheduler calls this at every turn once it escalates: only a
        // new request may hurry the next poll, or no poll would ever come.
        if new_request {
            self.send_cancels();
            self.interval = POLL_MIN;
            self.next_poll = Instant::now() + POLL_MIN;
        }
    }

    /// Jobs an earlier run left: those of this pipeline still queued or
    /// running, or ended with exit 0 and their outputs in place, may be
    /// adopted; the others are cancelled (or, if over, forgotten).
    fn recover(&mut self, progress: &Progress) -> anyhow::Result<Vec<PathBuf>> {
        let entries = self.ledger.entries();
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = entries.iter().map(|e| e.job.as_str()).collect();
        let states = commands::states(&ids).context(
            "cannot ask Slurm about the jobs an earlier run submitted (recorded in the store's slurm/ folder)",
        )?;
        let (mut alive, mut finished, mut cancel) = (0, 0, Vec::new());
        let mut keep = Vec::new();
        for e in entries {
            let running = states.get(&e.job).is_some_and(|s| !s.is_over());
            let ok = !running && script::read_status(&e.dir).is_some_and(|(rc, ..)| rc == 0);
            if e.pipeline == self.pipeline && (running || ok) {
                if running {
                    alive += 1;
                } else {
                    finished += 1;
                }
                keep.push(e.dir.clone());
                self.adoptable.push(e);
            } else if running {
                cancel.push(e);
            } else {
                self.ledger.remove(&e.job);
            }
        }
        if !cancel.is_empty() {
            let ids: Vec<&str> = cancel.iter().map(|e| e.job.as_str()).collect();
            commands::cancel(&ids, None)?;
            for e in &cancel {
                progress.line(&format!(
                    "  cancelled Slurm job {} (node {} of pipeline {}, left by an earlier run)",
                    e.job, e.node, e.pipeline
                ));
            }
            // Their directories go with tmp/; the entries stay until a run
            // sees the jobs ended.
        }
        if alive + finished > 0 {
            progress.line(&format!(
                "found {} Slurm job(s) of an earlier run of {} ({alive} queued or running, {finished} finished): each is adopted if its node runs with the same inputs, else cancelled",
                alive + finished,
                self.pipeline
            ));
        }
        Ok(keep)
    }

    /// An earlier run's jobs for a node that will not run them: cancelled
    /// now (or, if over, forgotten) rather than at the end of the run, so
    /// they stop holding the cluster's resources.
    fn decided(&mut self, node: usize, key: crate::store::Hash, runs: bool) {
        let id = &self.requests[node].id;
        let (unwanted, keep): (Vec<Entry>, Vec<Entry>) =
            std::mem::take(&mut self.adoptable).into_iter().partition(|e| e.node == *id && (!runs || e.key != key));
        self.adoptable = keep;
        self.drop_entries(unwanted);
    }

    fn notices(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notices)
    }

    fn wind_up(&mut self, progress: &Progress) {
        let left = std::mem::take(&mut self.adoptable);
        self.drop_entries(left);
        for notice in std::mem::take(&mut self.notices) {
            progress.line(&notice);
        }
    }
}

impl SlurmExecutor {
    /// Earlier runs' jobs this run does not adopt: those still queued or
    /// running are cancelled (their entries stay until a run sees them
    /// over), the others forgotten.
    fn drop_entries(&mut self, entries: Vec<Entry>) {
        let (running, over): (Vec<Entry>, Vec<Entry>) =
            entries.into_iter().partition(|e| script::read_status(&e.dir).is_none());
        for e in over {
            self.ledger.remove(&e.job);
        }
        let ids: Vec<&str> = running.iter().map(|e| e.job.as_str()).collect();
        match commands::cancel(&ids, None) {
            Ok(()) => {
                for e in &running {
                    self.notices.push(format!(
                        "  cancelled Slurm job {} (node {}, left by an earlier run; its result is not needed now)",
                        e.job, e.node
                    ));
                }
            }
            Err(e) => self.notices.push(format!("warning: {e:#}")),
        }
    }
}

/// Why a job ended before its command returned.
fn ended_early(job: &str, state: Option<&JobState>) -> String {
    let (state, detail) = match state {
        Some(s) => (s.state.clone(), s.reason.clone()),
        None => match commands::final_state(job) {
            Some((state, exit)) => (state, format!("exit code {exit}")),
            None => ("over".to_owned(), "Slurm no longer knows it and keeps no accounting".to_owned()),
        },
    };
    let detail = if detail.is_empty() || detail == "None" { String::new() } else { format!(" ({detail})") };
    format!("Slurm job {job} ended as {state}{detail} before its command returned")
}

fn epoch(seconds: f64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs_f64(seconds)
}

/// The compute node, as the job recorded it.
fn where_it_ran(dir: &Path, job: &str, cpus: usize) -> Ran {
    let host = std::fs::read_to_string(dir.join(script::HOST)).map(|s| s.trim().to_owned()).unwrap_or_default();
    let cpuinfo = std::fs::read_to_string(dir.join(script::CPUINFO)).unwrap_or_default();
    Ran {
        host: if host.is_empty() { "unknown".into() } else { host },
        on: RanOn {
            executor: "slurm".into(),
            slurm_job: Some(job.to_owned()),
            cpus: Some(cpus),
            cpu_model: crate::sys::cpu_model_from(&cpuinfo),
            cpu_flags: crate::sys::cpu_flags_from(&cpuinfo),
            libtorch: crate::worker::read_facts(dir),
        },
    }
}
