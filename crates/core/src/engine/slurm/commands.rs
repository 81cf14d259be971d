//! The Slurm commands toe-pipe runs (`sbatch`, `squeue`, `scancel`,
//! `sacct`, `scontrol`) and the parsing of what they print.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output};

use anyhow::{bail, Context};

fn run(program: &str, args: &[String]) -> anyhow::Result<Output> {
    Command::new(program).args(args).output().with_context(|| {
        format!("cannot run `{program}`\n  fix: run toe-pipe where the Slurm commands are on PATH (a login node), or use --executor local")
    })
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_owned()
}

/// Submit a batch job; its id.
pub fn sbatch(args: &[String]) -> anyhow::Result<String> {
    let out = run("sbatch", args)?;
    if !out.status.success() {
        bail!("sbatch failed: {}", stderr(&out));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    parse_job_id(&text).with_context(|| format!("sbatch --parsable printed {:?}, not a job id", text.trim()))
}

/// `--parsable` prints `ID` or `ID;CLUSTER`.
fn parse_job_id(text: &str) -> Option<String> {
    let id = text.trim().split(';').next()?.trim();
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then(|| id.to_owned())
}

/// What squeue says about a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    /// PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, ...
    pub state: String,
    /// Why it waits or how it ended (`Resources`, `NonZeroExitCode`, ...).
    pub reason: String,
}

impl JobState {
    /// Whether the job is over: no process of it runs any more.
    pub fn is_over(&self) -> bool {
        is_over(&self.state)
    }
}

/// Slurm's end states (COMPLETING is not one: processes may still run).
pub fn is_over(state: &str) -> bool {
    let base = state.split_whitespace().next().unwrap_or("");
    matches!(
        base,
        "COMPLETED"
            | "FAILED"
            | "CANCELLED"
            | "TIMEOUT"
            | "OUT_OF_MEMORY"
            | "NODE_FAIL"
            | "PREEMPTED"
            | "BOOT_FAIL"
            | "DEADLINE"
            | "REVOKED"
            | "SPECIAL_EXIT"
    )
}

/// The controller's view of these jobs, ended ones included while it keeps
/// them (`MinJobAge`). A job missing from the answer has left the
/// controller: it is over.
pub fn states(ids: &[&str]) -> anyhow::Result<HashMap<String, JobState>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let args = vec![
        "--noheader".to_owned(),
        "--states=all".to_owned(),
        format!("--jobs={}", ids.join(",")),
        "--format=%i|%T|%r".to_owned(),
    ];
    let out = run("squeue", &args)?;
    // squeue fails when it knows none of the ids.
    if !out.status.success() {
        let err = stderr(&out);
        if err.contains("Invalid job id") {
            return Ok(HashMap::new());
        }
        bail!("squeue failed: {err}");
    }
    Ok(parse_states(&String::from_utf8_lossy(&out.stdout)))
}

fn parse_states(text: &str) -> HashMap<String, JobState> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.trim().splitn(3, '|');
            let (id, state) = (parts.next()?, parts.next()?);
            let reason = parts.next().unwrap_or("").trim();
            Some((id.trim().to_owned(), JobState { state: state.trim().to_owned(), reason: reason.to_owned() }))
        })
        .collect()
}

/// Cancel jobs (`scancel`; with `signal`, send it to every process of
/// them).
pub fn cancel(ids: &[&str], signal: Option<&str>) -> anyhow::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut args: Vec<String> = Vec::new();
    if let Some(sig) = signal {
        args.push("--full".to_owned());
        args.push(format!("--signal={sig}"));
    }
    args.extend(ids.iter().map(|s| s.to_string()));
    let out = run("scancel", &args)?;
    // Ids of jobs that already ended are reported, a line each, and
    // harmless; any other line is a failure (of the others, maybe).
    let err = stderr(&out);
    let harmless = |line: &str| {
        ["already completing or completed", "already completed", "Invalid job id"].iter().any(|h| line.contains(h))
    };
    if !out.status.success() && (err.is_empty() || !err.lines().all(harmless)) {
        bail!("scancel failed: {err}");
    }
    Ok(())
}

/// How an ended job ended, once squeue no longer knows it: from the
/// accounting database (`sacct`) or, where there is none, the job
/// completion log of `JobCompType=jobcomp/filetxt`.
pub fn final_state(id: &str) -> Option<(String, String)> {
    let args = ["-n", "-X", "-P", "-j", id, "-o", "State,ExitCode"].map(str::to_owned);
    if let Ok(out) = run("sacct", &args) {
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            if let Some((state, exit)) = text.lines().next().and_then(|l| l.split_once('|')) {
                return Some((state.trim().to_owned(), exit.trim().to_owned()));
            }
        }
    }
    let log = jobcomp_log()?;
    let text = std::fs::read_to_string(log).ok()?;
    parse_jobcomp(&text, id)
}

/// The job completion log, when the cluster keeps one as text.
fn jobcomp_log() -> Option<PathBuf> {
    let out = run("scontrol", &["show".to_owned(), "config".to_owned()]).ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let value = |key: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().to_owned())
        })
    };
    (value("JobCompType")? == "jobcomp/filetxt").then(|| value("JobCompLoc").map(PathBuf::from)).flatten()
}

/// `JobState` and `ExitCode` of the last line about job `id`.
fn parse_jobcomp(text: &str, id: &str) -> Option<(String, String)> {
    let line = text.lines().rev().find(|l| l.split_whitespace().next() == Some(&format!("JobId={id}")))?;
    let field =
        |name: &str| line.split_whitespace().find_map(|w| w.strip_prefix(&format!("{name}=")).map(str::to_owned));
    Some((field("JobState")?, field("ExitCode").unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_slurm_prints() {
        assert_eq!(parse_job_id("1234\n").as_deref(), Some("1234"));
        assert_eq!(parse_job_id("77;cluster\n").as_deref(), Some("77"));
        assert_eq!(parse_job_id("Submitted batch job 5"), None);
        let states = parse_states("5|PENDING|Resources\n6|COMPLETED|None\n");
        assert_eq!(states["5"], JobState { state: "PENDING".into(), reason: "Resources".into() });
        assert!(states["6"].is_over() && !states["5"].is_over());
        assert!(is_over("CANCELLED by 0") && !is_over("COMPLETING"));
        let log = "JobId=4 UserId=root(0) JobState=COMPLETED ExitCode=0:0 \nJobId=5 UserId=root(0) GroupId=root(0) Name=j.sh JobState=FAILED Partition=cpu ExitCode=3:0 \n";
        assert_eq!(parse_jobcomp(log, "5"), Some(("FAILED".into(), "3:0".into())));
        assert_eq!(parse_jobcomp(log, "50"), None);
    }
}
