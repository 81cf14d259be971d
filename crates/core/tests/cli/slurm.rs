//! The Slurm executor against a real Slurm: a single-node cluster that
//! scripts/slurm_local.sh brings up in a temp folder (Debian's slurm-wlm
//! and munge, run as root). One test starts it and runs every scenario in
//! turn, then stops it; where it cannot start, the test says why and
//! skips. It prints how many scenarios ran.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::cluster::{report, Cluster};
use crate::common::{bin, set, Out, Ws};

fn toe(ws: &Ws, c: &Cluster, args: &[&str]) -> Out {
    let env = c.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ws.toe_env(args, &env)
}

/// toe-pipe in the background; `path`, if given, is put before its PATH.
fn spawn(ws: &Ws, c: &Cluster, args: &[&str], path: Option<&Path>) -> Child {
    let mut cmd = Command::new(bin());
    cmd.args(args).current_dir(ws.dir.path()).stderr(Stdio::piped());
    for (k, v) in c.env() {
        cmd.env(k, v);
    }
    if let Some(dir) = path {
        cmd.env("PATH", format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default()));
    }
    cmd.spawn().unwrap()
}

/// The Slurm jobs the store records as submitted and not yet dealt with:
/// `ID.json`, not the temp file an entry is written to first (counting it
/// once made a job id of `.16.json`, which Slurm never cancelled).
fn ledger(ws: &Ws) -> Vec<String> {
    let entry = |p: std::path::PathBuf| {
        let name = p.file_name()?.to_str()?;
        name.strip_suffix(".json")
            .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
            .map(str::to_owned)
    };
    let mut jobs: Vec<String> = std::fs::read_dir(ws.store().join("slurm"))
        .map(|rd| rd.flatten().filter_map(|e| entry(e.path())).collect())
        .unwrap_or_default();
    jobs.sort();
    jobs
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < Duration::from_secs(60), "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The Slurm job id lineage records for a workspace output.
fn job_of(ws: &Ws, c: &Cluster, path: &str) -> String {
    let out = toe(ws, c, &["lineage", path, "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let on = &v["produced_by"]["ran_on"];
    assert_eq!(on["executor"], "slurm", "{on}");
    on["slurm_job"].as_str().expect("a job id").to_owned()
}

const DAG: &str = r#"
[resources]
mem = "100M"
time = "5"

[[node]]
id = "part_${i}"
for_each.i = ["1", "2", "3"]
cmd = "echo ${i} > ${out.o}"
outputs.o = { kind = "text", path = "out/part_${i}.txt" }

[[node]]
id = "join"
cmd = "cat ${in.parts} > ${out.o}; echo $TOE_PIPE_CPUS $SLURM_CPUS_PER_TASK >> ${out.o}"
inputs.parts = ["part_1.o", "part_2.o", "part_3.o"]
resources.cpus = 2
outputs.o = { kind = "text", path = "out/join.txt" }
"#;

fn a_cmd_dag_runs_as_jobs(c: &Cluster) {
    let ws = Ws::new();
    ws.write("p.toml", DAG);
    // The executor from the config file beside the pipeline.
    ws.write("toe-pipe.toml", "executor = \"slurm\"\n");
    let out = toe(&ws, c, &["run", "p.toml"]).ok();
    assert_eq!(out.ran(), set(["part_1", "part_2", "part_3", "join"]));
    assert!(out.stderr.contains("Slurm job "), "{}", out.stderr);
    // The node got the CPUs it asked for, from Slurm too.
    assert_eq!(ws.read("out/join.txt"), "1\n2\n3\n2 2\n");
    // Lineage names the job, and Slurm knows it completed.
    let job = job_of(&ws, c, "out/join.txt");
    let done = c.completion(&job).or_else(|| c.state(&job)).unwrap_or_default();
    assert!(done.contains("COMPLETED"), "job {job}: {done}");
    assert!(ledger(&ws).is_empty(), "every job dealt with");

    // A second run submits nothing: an sbatch that fails comes first on
    // PATH.
    let fake = ws.path("fakebin");
    std::fs::create_dir_all(&fake).unwrap();
    ws.write("fakebin/sbatch", "#!/bin/sh\necho 'sbatch must not be called' >&2\nexit 1\n");
    std::process::Command::new("chmod").args(["+x", &fake.join("sbatch").display().to_string()]).status().unwrap();
    let path = format!("{}:{}", fake.display(), std::env::var("PATH").unwrap_or_default());
    // (How fast that is, is measured by benches/slurm_compare.sh.)
    let again = ws.toe_env(&["run", "p.toml"], &[("PATH", &path), ("SLURM_CONF", &c.conf.display().to_string())]).ok();
    assert!(again.stderr.contains("nothing to do: 4 nodes fresh"), "{}", again.stderr);

    // The same results are cache hits with the local executor.
    assert!(toe(&ws, c, &["run", "--executor", "local", "p.toml"]).ok().stderr.contains("nothing to do"));

    // The store is on a filesystem local to this machine: check says so.
    let check = toe(&ws, c, &["check", "p.toml"]).ok();
    assert!(check.stderr.contains("warning: the store"), "{}", check.stderr);
    assert!(check.stderr.contains("a filesystem local to this machine"), "{}", check.stderr);
    let local = toe(&ws, c, &["check", "--executor", "local", "p.toml"]).ok();
    assert!(!local.stderr.contains("warning"), "{}", local.stderr);

    // A bad config file is an error with its line and column.
    ws.write("toe-pipe.toml", "executor = \"slurn\"\n");
    let err = toe(&ws, c, &["run", "p.toml"]).fails().stderr;
    assert!(err.contains("toe-pipe.toml:1:12: error: executor must be \"local\" or \"slurm\", not \"slurn\""), "{err}");
    ws.write("toe-pipe.toml", "executer = \"slurm\"\n");
    let err = toe(&ws, c, &["run", "p.toml"]).fails().stderr;
    assert!(err.contains("toe-pipe.toml:1:1: error: unknown field `executer`"), "{err}");
}

const GPU: &str = r#"
[resources.gpu]
partition = "gpu"

[[node]]
id = "gpu_${i}"
for_each.i = ["1", "2", "3"]
device = "gpu"
cmd = "echo [$CUDA_VISIBLE_DEVICES] $TOE_PIPE_DEVICE $SLURM_JOB_PARTITION > ${out.o}; sleep 1"
outputs.o = { kind = "text", path = "out/gpu_${i}.txt" }

[[node]]
id = "cpu"
cmd = "echo [$CUDA_VISIBLE_DEVICES] $TOE_PIPE_DEVICE $SLURM_JOB_PARTITION > ${out.o}"
outputs.o = { kind = "text", path = "out/cpu.txt" }
"#;

fn gpu_nodes_land_on_the_gpu_partition_with_one_device_each(c: &Cluster) {
    let ws = Ws::new();
    ws.write("p.toml", GPU);
    let out = toe(&ws, c, &["run", "--executor", "slurm", "p.toml"]).ok();
    assert_eq!(out.ran().len(), 4, "{}", out.stderr);
    let mut devices = Vec::new();
    for i in 1..=3 {
        let text = ws.read(&format!("out/gpu_{i}.txt"));
        let (dev, rest) = text.split_once(' ').unwrap();
        assert_eq!(rest, "cuda gpu\n", "{text}");
        assert!(["[0]", "[1]"].contains(&dev), "one GPU each: {text}");
        devices.push(dev.to_owned());
    }
    // Two fake GPUs; the first two overlap (sleep 1), so they differ.
    devices.sort();
    assert!(devices.contains(&"[0]".to_owned()) && devices.contains(&"[1]".to_owned()), "{devices:?}");
    assert_eq!(ws.read("out/cpu.txt"), "[] cpu cpu\n");
}

const FAILING: &str = r#"
[[node]]
id = "bad"
cmd = "echo about to fail; echo oops >&2; exit 3; echo > ${out.o}"
outputs.o = { kind = "text", path = "out/bad.txt" }

[[node]]
id = "after"
cmd = "cat ${in.x} > ${out.o}"
inputs.x = "bad.o"
outputs.o = { kind = "text", path = "out/after.txt" }

[[node]]
id = "other"
cmd = "echo ok > ${out.o}"
outputs.o = { kind = "text", path = "out/other.txt" }
"#;

fn a_failing_job_is_reported_with_its_log_and_its_dependants_skipped(c: &Cluster) {
    let ws = Ws::new();
    ws.write("p.toml", FAILING);
    let out = toe(&ws, c, &["run", "--executor", "slurm", "p.toml"]).fails();
    assert!(out.stderr.contains("FAILED bad  Slurm job "), "{}", out.stderr);
    assert!(out.stderr.contains(": exit status 3; full log: toe-pipe log bad"), "{}", out.stderr);
    assert!(out.stderr.contains("| about to fail\n      | oops"), "{}", out.stderr);
    assert!(out.stderr.contains("skipped after  (needs bad, which failed)"), "{}", out.stderr);
    assert_eq!(out.ran(), set(["other"]));
    let log = toe(&ws, c, &["log", "bad"]).ok();
    assert!(log.stdout.contains("# toe-pipe: node bad in Slurm job "), "{}", log.stdout);
    assert!(log.stdout.contains("oops"), "{}", log.stdout);
    assert!(ledger(&ws).is_empty());
    assert!(!ws.path("out/bad.txt").exists());
}

/// Three slow nodes; on 2 CPUs two run and one waits in the queue.
const SLOW: &str = r#"
[[node]]
id = "slow_${i}"
for_each.i = ["1", "2", "3"]
cmd = "echo partial > ${out.o}; sleep ${param.s}; echo done >> ${out.o}"
params.s = 30
outputs.o = { kind = "text", path = "out/slow_${i}.txt" }
"#;

fn no_object_holds(ws: &Ws, content: &str) {
    for f in ws.object_files() {
        assert_ne!(std::fs::read_to_string(&f).unwrap_or_default(), content, "partial object {}", f.display());
    }
}

/// What Slurm last said of a job: squeue's state while the controller
/// keeps it, then the completion log's line.
fn slurm_says(c: &Cluster, job: &str) -> String {
    c.state(job).or_else(|| c.completion(job)).unwrap_or_default()
}

/// Wait until Slurm records each job as cancelled; on a timeout, say what
/// it recorded and what toe-pipe printed.
fn wait_until_cancelled(c: &Cluster, jobs: &[String], toe_stderr: &str) {
    for job in jobs {
        let t0 = Instant::now();
        while !slurm_says(c, job).contains("CANCELLED") {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "Slurm job {job} not recorded as cancelled after 60 s; Slurm says {:?}; toe-pipe printed:\n{toe_stderr}",
                slurm_says(c, job)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Start the slow pipeline, interrupt toe-pipe once a job runs, and check
/// that it asked Slurm to cancel every job and kept nothing. `path` is
/// put before the PATH toe-pipe gets.
fn interrupt_cancels_the_jobs(c: &Cluster, path: Option<&Path>) -> String {
    let ws = Ws::new();
    ws.write("p.toml", SLOW);
    let child = spawn(&ws, c, &["run", "--executor", "slurm", "p.toml"], path);
    wait_until("three jobs are submitted", || ledger(&ws).len() == 3);
    let jobs = ledger(&ws);
    wait_until("a job runs", || jobs.iter().any(|j| c.state(j).as_deref() == Some("RUNNING")));
    let t0 = Instant::now();
    // SAFETY: signals the child we started.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(t0.elapsed() < Duration::from_secs(60), "{:?}", t0.elapsed());
    // scancel returns before slurmctld records the state; toe-pipe's part
    // is to have asked, which it did before exiting.
    wait_until_cancelled(c, &jobs, &stderr);
    assert!(ledger(&ws).is_empty(), "{:?}", ledger(&ws));
    no_object_holds(&ws, "partial\n");
    assert!(!ws.path("out/slow_1.txt").exists());
    stderr
}

fn ctrl_c_cancels_the_jobs(c: &Cluster) {
    interrupt_cancels_the_jobs(c, None);
}

/// A folder holding an `scancel` that fails as one does when the
/// controller is too busy to answer, where `fails` (a shell condition on
/// its arguments `$*` and on `$n`, the number of its calls so far, this
/// one included) holds, and otherwise runs Slurm's. It writes its
/// arguments to `calls`, a line each.
fn failing_scancel(fails: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let real = Command::new("sh").args(["-c", "command -v scancel"]).output().unwrap().stdout;
    let script = r#"#!/bin/sh
calls="$(dirname "$0")/calls"
echo "$*" >> "$calls"
n=$(wc -l < "$calls")
if FAILS; then
    echo 'scancel: error: Socket timed out on send/recv operation' >&2
    exit 1
fi
exec REAL "$@"
"#;
    let script = script.replace("FAILS", fails).replace("REAL", String::from_utf8(real).unwrap().trim());
    let path = dir.path().join("scancel");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    dir
}

/// A busy controller may not answer scancel in time: toe-pipe asks again
/// rather than leave the jobs running to their end.
fn ctrl_c_cancels_the_jobs_when_scancel_fails_at_first(c: &Cluster) {
    let bin = failing_scancel("[ \"$n\" -eq 1 ]");
    let stderr = interrupt_cancels_the_jobs(c, Some(bin.path()));
    assert!(stderr.contains("Socket timed out") && stderr.contains("asking again"), "{stderr}");
    let calls = std::fs::read_to_string(bin.path().join("calls")).unwrap();
    assert!(calls.lines().filter(|l| !l.contains("--signal")).count() >= 2, "asked once only: {calls}");
}

/// Where cancelling keeps failing, the SIGKILL that follows five seconds
/// later ends the jobs, and toe-pipe sees them end (it once stopped
/// polling then, and gave up only after a minute).
fn ctrl_c_kills_the_jobs_when_scancel_keeps_failing(c: &Cluster) {
    let bin = failing_scancel("case \"$*\" in *--signal=KILL*) false;; *) true;; esac");
    let t0 = Instant::now();
    let stderr = interrupt_cancels_the_jobs(c, Some(bin.path()));
    assert!(t0.elapsed() < Duration::from_secs(40), "{:?}\n{stderr}", t0.elapsed());
    assert!(!stderr.contains("did not confirm"), "{stderr}");
}

/// SIGKILL toe-pipe once its jobs are submitted; returns their ids.
fn kill_after_submission(ws: &Ws, c: &Cluster) -> Vec<String> {
    let mut child = spawn(ws, c, &["run", "--executor", "slurm", "p.toml"], None);
    wait_until("three jobs are submitted", || ledger(ws).len() == 3);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    ledger(ws)
}

fn a_sigkilled_runs_jobs_are_adopted_by_the_next_run(c: &Cluster) {
    let ws = Ws::new();
    ws.write("p.toml", &SLOW.replace("params.s = 30", "params.s = 2"));
    let jobs = kill_after_submission(&ws, c);
    assert!(jobs.iter().any(|j| c.state(j).is_some_and(|s| s != "CANCELLED")), "the jobs outlive toe-pipe");
    no_object_holds(&ws, "partial\n");

    let out = toe(&ws, c, &["run", "--executor", "slurm", "p.toml"]).ok();
    assert_eq!(out.ran(), set(["slow_1", "slow_2", "slow_3"]));
    assert_eq!(out.stderr.matches("  adopted  slow_").count(), 3, "{}", out.stderr);
    for i in 1..=3 {
        assert_eq!(ws.read(&format!("out/slow_{i}.txt")), "partial\ndone\n");
        assert!(jobs.contains(&job_of(&ws, c, &format!("out/slow_{i}.txt"))), "the adopted job made it");
    }
    no_object_holds(&ws, "partial\n");
    assert!(ledger(&ws).is_empty());
    let status = toe(&ws, c, &["status", "p.toml"]).ok();
    assert_eq!(status.stdout.lines().filter(|l| l.trim_start().starts_with("fresh ")).count(), 3, "{}", status.stdout);
}

fn jobs_a_run_no_longer_needs_are_cancelled(c: &Cluster) {
    let ws = Ws::new();
    ws.write("p.toml", SLOW);
    let old = kill_after_submission(&ws, c);
    // The pipeline changed meanwhile: the old jobs compute other keys.
    ws.write("p.toml", &SLOW.replace("params.s = 30", "params.s = 0"));
    let out = toe(&ws, c, &["run", "--executor", "slurm", "p.toml"]).ok();
    assert_eq!(out.ran(), set(["slow_1", "slow_2", "slow_3"]));
    assert_eq!(out.stderr.matches("  cancelled Slurm job ").count(), 3, "{}", out.stderr);
    wait_until_cancelled(c, &old, &out.stderr);
    for i in 1..=3 {
        let job = job_of(&ws, c, &format!("out/slow_{i}.txt"));
        assert!(!old.contains(&job), "a new job made it");
    }
    no_object_holds(&ws, "partial\n");
    // Their entries go once a run sees them over.
    toe(&ws, c, &["run", "--executor", "slurm", "p.toml"]).ok();
    assert!(ledger(&ws).is_empty(), "{:?}", ledger(&ws));
}

fn resources_reach_sbatch(c: &Cluster) {
    let ws = Ws::new();
    // More memory than the node has: sbatch refuses, and says why.
    ws.write(
        "p.toml",
        "[[node]]\nid = \"big\"\ncmd = \"echo > ${out.o}\"\nresources = { mem = \"64G\" }\noutputs.o = \"text\"\n",
    );
    let out = toe(&ws, c, &["run", "--executor", "slurm", "p.toml"]).fails();
    assert!(out.stderr.contains("FAILED big  cannot submit node big to Slurm: sbatch failed: "), "{}", out.stderr);
    assert!(ledger(&ws).is_empty());
    // Extra flags and the time limit arrive.
    ws.write(
        "p.toml",
        "[[node]]\nid = \"small\"\ncmd = \"scontrol show job $SLURM_JOB_ID > ${out.o}\"\nresources = { time = \"7\", sbatch = [\"--comment=from-toe\"] }\noutputs.o = { kind = \"text\", path = \"job.txt\" }\n",
    );
    toe(&ws, c, &["run", "--executor", "slurm", "p.toml"]).ok();
    let job = ws.read("job.txt");
    assert!(job.contains("TimeLimit=00:07:00"), "{job}");
    assert!(job.contains("Comment=from-toe"), "{job}");
}

/// a -> b, as in tests/cli/corruption.rs.
const CHAIN: &str = r#"
[[node]]
id = "a"
cmd = "cat ${in.src} > ${out.x}; echo a >> ${out.x}"
sources.src = "data/in.txt"
outputs.x = { kind = "text", path = "out/a.txt" }

[[node]]
id = "b"
cmd = "echo ${param.n} | cat - ${in.x} > ${out.y}"
inputs.x = "a.x"
params.n = 1
outputs.y = { kind = "text", path = "out/b.txt" }
"#;

fn a_job_never_keeps_a_result_made_from_a_corrupt_input(c: &Cluster) {
    use std::os::unix::fs::PermissionsExt;
    let ws = Ws::new();
    ws.write("data/in.txt", "good\n");
    ws.write("p.toml", CHAIN);
    toe(&ws, c, &["run", "--executor", "slurm", "p.toml"]).ok();
    // A byte of a's stored output flips; b re-runs for another reason.
    let h = blake3::hash(b"good\na\n").to_hex().to_string();
    let object = ws.store().join("objects").join(&h[..2]).join(&h[2..]);
    std::fs::set_permissions(&object, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&object, "Good\na\n").unwrap();
    ws.write("p.toml", &CHAIN.replace("params.n = 1", "params.n = 2"));
    let out = toe(&ws, c, &["run", "--executor", "slurm", "p.toml"]).fails();
    assert_eq!(out.nodes("FAILED"), set(["b"]), "{}", out.stderr);
    assert!(out.stderr.contains("input `x` (output x of node a) is corrupt in the store"), "{}", out.stderr);
    assert_ne!(ws.read("out/b.txt"), "2\nGood\na\n", "no result from corrupt bytes");
    assert!(ledger(&ws).is_empty());
    // The corrupt object went, so the next run rebuilds a, then b.
    let out = toe(&ws, c, &["run", "--executor", "slurm", "p.toml"]).ok();
    assert_eq!(out.ran(), set(["a", "b"]), "{}", out.stderr);
    assert_eq!(ws.read("out/b.txt"), "2\ngood\na\n");
}

type Scenario = fn(&Cluster);

#[test]
fn on_a_real_slurm_cluster() {
    let cluster = match Cluster::start() {
        Ok(c) => c,
        Err(why) => {
            report(&format!("skipped: the Slurm executor's tests need a cluster: {why}"));
            return;
        }
    };
    let scenarios: [(&str, Scenario); 10] = [
        ("a_cmd_dag_runs_as_jobs", a_cmd_dag_runs_as_jobs),
        (
            "gpu_nodes_land_on_the_gpu_partition_with_one_device_each",
            gpu_nodes_land_on_the_gpu_partition_with_one_device_each,
        ),
        (
            "a_failing_job_is_reported_with_its_log_and_its_dependants_skipped",
            a_failing_job_is_reported_with_its_log_and_its_dependants_skipped,
        ),
        ("ctrl_c_cancels_the_jobs", ctrl_c_cancels_the_jobs),
        ("ctrl_c_cancels_the_jobs_when_scancel_fails_at_first", ctrl_c_cancels_the_jobs_when_scancel_fails_at_first),
        ("ctrl_c_kills_the_jobs_when_scancel_keeps_failing", ctrl_c_kills_the_jobs_when_scancel_keeps_failing),
        ("a_sigkilled_runs_jobs_are_adopted_by_the_next_run", a_sigkilled_runs_jobs_are_adopted_by_the_next_run),
        ("jobs_a_run_no_longer_needs_are_cancelled", jobs_a_run_no_longer_needs_are_cancelled),
        ("resources_reach_sbatch", resources_reach_sbatch),
        ("a_job_never_keeps_a_result_made_from_a_corrupt_input", a_job_never_keeps_a_result_made_from_a_corrupt_input),
    ];
    let mut failed = Vec::new();
    for (name, scenario) in scenarios {
        let t0 = Instant::now();
        match std::panic::catch_unwind(|| scenario(&cluster)) {
            Ok(()) => report(&format!("slurm: {name} ... ok ({:.1}s)", t0.elapsed().as_secs_f64())),
            Err(_) => {
                report(&format!("slurm: {name} ... FAILED"));
                failed.push(name);
            }
        }
    }
    report(&format!(
        "slurm: {} of {} scenarios passed on a real cluster ({}, single node, {})",
        scenarios.len() - failed.len(),
        scenarios.len(),
        cluster.version,
        Path::new(&cluster.conf).display()
    ));
    assert!(failed.is_empty(), "failed: {failed:?}");
}
