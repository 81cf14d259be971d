//! One node as a Slurm batch job: the `sbatch` flags its resources ask
//! for, and the script that runs its command on the compute node.
//!
//! The script records, beside the node's outputs in the store's tmp area,
//! what toe-pipe needs once the job is over: `status` (exit code, start and
//! end time; written only when the command returned) and, for lineage, the
//! compute node's `host` and `cpuinfo`. Slurm writes the job's output to the
//! node's log.

use std::path::Path;

use crate::engine::exec::{shell_quote, Prepared};
use crate::spec::Resources;

/// Files the job writes into the node's directory.
pub const STATUS: &str = "status";
pub const HOST: &str = "host";
pub const CPUINFO: &str = "cpuinfo";
pub const SCRIPT: &str = "job.sh";

/// `sbatch` arguments for a node (`gpus`: how many GPUs, 0 for a cpu node).
pub fn sbatch_args(r: &Resources, gpus: u32, name: &str, prep: &Prepared, script: &Path) -> Vec<String> {
    let mut args = vec![
        "--parsable".to_owned(),
        format!("--job-name={name}"),
        format!("--output={}", prep.log.display()),
        format!("--chdir={}", prep.cwd.display()),
        // A requeued job would run its command a second time into the same
        // outputs; toe-pipe resubmits failed nodes itself.
        "--no-requeue".to_owned(),
        "--ntasks=1".to_owned(),
        format!("--cpus-per-task={}", r.cpus),
    ];
    if gpus > 0 {
        args.push(format!("--gres=gpu:{gpus}"));
    }
    let named =
        [("partition", &r.partition), ("mem", &r.mem), ("time", &r.time), ("account", &r.account), ("qos", &r.qos)];
    for (flag, value) in named {
        if let Some(v) = value {
            args.push(format!("--{flag}={v}"));
        }
    }
    args.extend(r.sbatch.iter().cloned());
    args.push(script.display().to_string());
    args
}

/// The batch script of a prepared node. `gpu`: the job's GPUs are the ones
/// Slurm hands it, so CUDA_VISIBLE_DEVICES is left as Slurm sets it.
pub fn job_script(prep: &Prepared, node: &str, pipeline: &str, gpu: bool) -> String {
    let q = |p: &Path| shell_quote(&p.to_string_lossy());
    let d = q(&prep.dir);
    let command: Vec<String> =
        std::iter::once(prep.program.to_string_lossy().into_owned()).chain(prep.args.iter().cloned()).collect();
    let command = command.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ");
    let mut s = String::new();
    s.push_str("#!/bin/bash\n");
    s.push_str(&format!(
        "# toe-pipe: node {node} of pipeline {pipeline}, as a Slurm batch job. Its outputs go to the\n\
         # store's tmp area; toe-pipe moves them into the store after the job ended with exit 0.\n"
    ));
    s.push_str(&format!("d={d}\n"));
    s.push_str(&format!("hostname > \"$d/{HOST}\" 2>/dev/null\n"));
    s.push_str(&format!("sed '/^$/q' /proc/cpuinfo > \"$d/{CPUINFO}\" 2>/dev/null\n"));
    s.push_str(&format!(
        "echo \"# toe-pipe: node {node} in Slurm job ${{SLURM_JOB_ID:-?}} on $(hostname){}\"\n",
        if gpu { ", GPUs ${CUDA_VISIBLE_DEVICES:-none}" } else { "" }
    ));
    s.push_str(&format!("echo {}\n", shell_quote(&format!("# $ {command}"))));
    for (k, v) in &prep.env {
        if gpu && k == "CUDA_VISIBLE_DEVICES" {
            continue;
        }
        s.push_str(&format!("export {k}={}\n", shell_quote(v)));
    }
    s.push_str("start=$(date +%s.%N)\n");
    s.push_str(&format!("{command} < /dev/null\n"));
    s.push_str("rc=$?\n");
    s.push_str(&format!(
        "echo \"$rc $start $(date +%s.%N)\" > \"$d/{STATUS}.tmp\" && mv \"$d/{STATUS}.tmp\" \"$d/{STATUS}\"\n"
    ));
    s.push_str("exit $rc\n");
    s
}

/// `status`: the command's exit code and its start and end (seconds since
/// the epoch), once it returned.
pub fn read_status(dir: &Path) -> Option<(i32, f64, f64)> {
    let text = std::fs::read_to_string(dir.join(STATUS)).ok()?;
    let mut parts = text.split_whitespace();
    let rc = parts.next()?.parse().ok()?;
    let start = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let end = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
    Some((rc, start, end))
}
