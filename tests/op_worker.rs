//! Op nodes through the worker protocol, and GPU slots.
//!
//! This test binary is its own worker: started with TOE_PIPE_TEST_WORKER=1
//! (which `toe-pipe` passes on to the processes it starts), it serves
//! `describe`, `gpus` and `run` with the test ops below, and pretends to
//! have $TEST_FAKE_GPUS GPUs. It has no libtest harness (`harness = false`),
//! so `main` runs the tests.

mod common;
use std::process::ExitCode;

use common::{set, Ws};
use toe_pipe::ops::{OpContext, Registry, TypedOp};
use toe_pipe::{op_params, op_ports, param_enum};

param_enum! {
    /// What `concat` does to letters.
    enum Case {
        Keep = "keep",
        Upper = "upper",
    }
}

op_params! {
    struct ConcatParams {
        /// separator
        sep: String = "\n".into(),
        /// how many times
        repeat: i64,
        /// unused number
        #[range(above(0.0))]
        scale: f64 = 1.0,
        /// letter case of the result
        case: Case = Case::Keep,
    }
}

op_ports! {
    struct ConcatInputs {
        /// files to join
        parts: Vec<Text>,
    }
}

op_ports! {
    struct ConcatOutputs {
        /// the result
        joined: Text,
    }
}

/// Joins its list input with a separator, `repeat` times.
struct Concat;

impl TypedOp for Concat {
    const NAME: &'static str = "concat";
    const VERSION: u32 = 2;
    const SUMMARY: &'static str = "join text files";
    type Params = ConcatParams;
    type Inputs = ConcatInputs;
    type Outputs = ConcatOutputs;

    fn run(&self, _: &OpContext, p: ConcatParams, i: ConcatInputs, o: ConcatOutputs) -> anyhow::Result<()> {
        let mut parts = Vec::new();
        for path in &i.parts {
            parts.push(std::fs::read_to_string(path)?.trim().to_owned());
        }
        let one = parts.join(&p.sep);
        // No declared range, so that a run can fail inside the op.
        if p.repeat < 0 {
            anyhow::bail!("repeat must not be negative");
        }
        let joined = vec![one; p.repeat as usize].join("|");
        std::fs::write(&o.joined, if p.case == Case::Upper { joined.to_uppercase() } else { joined })?;
        Ok(())
    }
}

op_params! {
    struct ProbeParams {
        /// makes nodes differ
        tag: String = String::new(),
    }
}

op_ports! {
    struct ProbeOutputs {
        /// device report
        r#where: Json,
    }
}

/// Writes where it ran.
struct Probe;

impl TypedOp for Probe {
    const NAME: &'static str = "probe";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "report the device";
    type Params = ProbeParams;
    type Inputs = ();
    type Outputs = ProbeOutputs;

    fn run(&self, ctx: &OpContext, _: ProbeParams, _: (), o: ProbeOutputs) -> anyhow::Result<()> {
        let report = serde_json::json!({
            "device": ctx.device,
            "cuda_visible_devices": std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_default(),
            "threads": tch::get_num_threads(),
        });
        std::fs::write(&o.r#where, report.to_string())?;
        // Hold the slot a moment so that two probes overlap.
        std::thread::sleep(std::time::Duration::from_millis(300));
        Ok(())
    }
}

fn fake_gpus() -> usize {
    std::env::var("TEST_FAKE_GPUS").ok().and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn worker_env(gpus: &str) -> Vec<(&'static str, String)> {
    let me = std::env::current_exe().unwrap().display().to_string();
    vec![("TOE_PIPE_WORKER", me), ("TOE_PIPE_TEST_WORKER", "1".into()), ("TEST_FAKE_GPUS", gpus.into())]
}

fn toe(ws: &Ws, args: &[&str], gpus: &str) -> common::Out {
    let env = worker_env(gpus);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ws.toe_env(args, &env)
}

const OPS: &str = r#"
[[node]]
id = "part_${p}"
for_each.p = ["x", "y"]
cmd = "echo ${p} > ${out.o}"
outputs.o = "text"

[[node]]
id = "join"
op = "concat"
inputs.parts = ["part_x.o", "part_y.o"]
params = { repeat = 2, sep = "+" }
outputs.joined = { path = "out/joined.txt" }

[[node]]
id = "after"
cmd = "cat ${in.j} > ${out.o}"
inputs.j = "join.joined"
outputs.o = { kind = "text", path = "out/after.txt" }
"#;

fn op_nodes_run_in_the_worker() {
    let ws = Ws::new();
    ws.write("p.toml", OPS);
    let out = toe(&ws, &["run", "p.toml"], "0").ok();
    assert_eq!(out.ran(), set(["part_x", "part_y", "join", "after"]));
    assert_eq!(ws.read("out/joined.txt"), "x+y|x+y");
    assert_eq!(ws.read("out/after.txt"), "x+y|x+y");
    assert!(toe(&ws, &["run", "p.toml"], "0").ok().ran().is_empty());

    // Writing a default out explicitly (and a float as an integer) is the
    // same action: canonical params.
    ws.write("p.toml", &OPS.replace("repeat = 2, sep = \"+\"", "repeat = 2, sep = \"+\", scale = 1"));
    assert!(toe(&ws, &["run", "p.toml"], "0").ok().ran().is_empty());

    ws.write("p.toml", &OPS.replace("repeat = 2", "repeat = 3"));
    let status = toe(&ws, &["status", "p.toml"], "0").ok();
    assert!(status.stdout.contains("stale  join    param repeat: 2 -> 3"), "{}", status.stdout);
    assert_eq!(toe(&ws, &["run", "p.toml"], "0").ok().ran(), set(["join", "after"]));

    let lineage = toe(&ws, &["lineage", "out/joined.txt", "--json"], "0").ok();
    let v: serde_json::Value = serde_json::from_str(&lineage.stdout).unwrap();
    assert_eq!(v["produced_by"]["kind"], "op");
    assert_eq!(v["produced_by"]["op"], "concat");
    assert_eq!(v["produced_by"]["op_version"], 2);
    assert_eq!(v["produced_by"]["params"]["scale"], 1.0);
    // Where and on what it ran, as the worker reported it.
    let on = &v["produced_by"]["ran_on"];
    assert_eq!(on["executor"], "local");
    assert!(on["libtorch"].as_str().is_some_and(|s| s.starts_with(|c: char| c.is_ascii_digit())), "{on}");
    assert!(on["cpu_capability"].as_str().is_some(), "{on}");
    let text = toe(&ws, &["lineage", "out/joined.txt"], "0").ok().stdout;
    assert!(text.contains(&format!("libtorch {}", on["libtorch"].as_str().unwrap())), "{text}");

    // A failing op reports the worker's error.
    ws.write("p.toml", &OPS.replace("repeat = 2", "repeat = -1"));
    let out = toe(&ws, &["run", "p.toml"], "0").fails();
    assert!(out.stderr.contains("FAILED join"), "{}", out.stderr);
    assert!(out.stderr.contains("op concat failed in node join: repeat must not be negative"), "{}", out.stderr);

    // An enum param reaches the op as its value.
    ws.write("p.toml", &OPS.replace("repeat = 2", "repeat = 1, case = \"upper\""));
    toe(&ws, &["run", "p.toml"], "0").ok();
    assert_eq!(ws.read("out/joined.txt"), "X+Y");

    let ops = toe(&ws, &["ops"], "0").ok();
    assert!(ops.stdout.contains("concat v2: join text files"), "{}", ops.stdout);
    assert!(ops.stdout.contains("param  repeat: integer (required)"), "{}", ops.stdout);
    assert!(ops.stdout.contains("in     parts: text (list)"), "{}", ops.stdout);
    assert!(ops.stdout.contains("param  scale: float = 1.0 [more than 0.0]  unused number"), "{}", ops.stdout);
    assert!(
        ops.stdout.contains("param  case: string = \"keep\" [one of \"keep\", \"upper\"]  letter case of the result"),
        "{}",
        ops.stdout
    );
}

/// The worker itself reads and checks a job before the op does any work:
/// a job that `toe-pipe check` would have refused (here written by hand)
/// fails naming the node, the param and what is allowed.
fn the_worker_checks_params_before_any_work() {
    let ws = Ws::new();
    ws.write("a.txt", "a");
    let job = serde_json::json!({
        "op": "concat",
        "ctx": {
            "node": "join",
            "params": { "repeat": 1, "scale": 0.0, "case": "title", "sepp": "+" },
            "inputs": { "parts": [ws.path("a.txt")] },
            "outputs": { "joined": ws.path("out.txt") },
            "device": "cpu",
            "scratch": ws.path("."),
        }
    });
    ws.write("job.json", &job.to_string());
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["run", ws.path("job.json").to_str().unwrap()])
        .env("TOE_PIPE_TEST_WORKER", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("node join: param scale = 0.0 is out of range (allowed: more than 0.0)"), "{stderr}");
    assert!(
        stderr.contains("node join: param case = \"title\" is not allowed (allowed: one of \"keep\", \"upper\")"),
        "{stderr}"
    );
    assert!(stderr.contains("node join: unknown param `sepp` (the op's params: sep, repeat, scale, case)"), "{stderr}");
    assert!(!ws.path("out.txt").exists(), "the op must not have started");

    // A missing input is caught the same way.
    let mut job = job;
    job["ctx"]["params"] = serde_json::json!({ "repeat": 1 });
    job["ctx"]["inputs"] = serde_json::json!({});
    job["ctx"]["outputs"] = serde_json::json!({});
    ws.write("job.json", &job.to_string());
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["run", ws.path("job.json").to_str().unwrap()])
        .env("TOE_PIPE_TEST_WORKER", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("node join: the job gives no path for output `joined`"), "{stderr}");
}

fn op_params_and_ports_are_checked() {
    let ws = Ws::new();
    let check = |text: &str| -> String {
        ws.write("p.toml", text);
        toe(&ws, &["check", "p.toml"], "0").fails().stderr
    };
    let err = check(&OPS.replace("repeat = 2, sep = \"+\"", "repeat = \"2\", sepp = \"+\""));
    assert!(
        err.contains(
            "p.toml:12:21: error in node `join`: param `repeat` of op `concat` must be an integer, found string \"2\""
        ),
        "{err}"
    );
    assert!(err.contains("error in node `join`: op `concat` has no param `sepp`"), "{err}");
    assert!(err.contains("fix: did you mean `sep`?"), "{err}");

    // Declared ranges and allowed values are checked before anything runs,
    // with the place in the file, the node, the param and what is allowed.
    let err = check(&OPS.replace("sep = \"+\"", "sep = \"+\", scale = 0"));
    assert!(err.contains("p.toml:12:43: error in node `join`: param `scale` of op `concat` = 0 is out of range (allowed: more than 0.0)"), "{err}");
    assert!(err.contains("fix: write a value in the allowed range (more than 0.0)"), "{err}");
    let err = check(&OPS.replace("sep = \"+\"", "sep = \"+\", case = \"title\""));
    assert!(err.contains("p.toml:12:42: error in node `join`: param `case` of op `concat` = \"title\" is not allowed (allowed: one of \"keep\", \"upper\")"), "{err}");
    assert!(err.contains("fix: use one of the values: `keep`, `upper`"), "{err}");
    let err = check(&OPS.replace("sep = \"+\"", "sep = \"+\", case = \"uper\""));
    assert!(err.contains("fix: did you mean `upper`?"), "{err}");

    let err = check(&OPS.replace("repeat = 2, sep = \"+\"", "sep = \"+\""));
    assert!(
        err.contains("p.toml:9:6: error in node `join`: op `concat` needs param `repeat` (how many times)"),
        "{err}"
    );

    let err = check(&OPS.replace("op = \"concat\"", "op = \"concatt\""));
    assert!(err.contains("p.toml:10:6: error in node `join`: unknown op `concatt`"), "{err}");
    assert!(err.contains("did you mean `concat`?"), "{err}");

    let err = check(&OPS.replace("inputs.parts =", "inputs.pieces ="));
    assert!(err.contains("error in node `join`: op `concat` has no input `pieces`"), "{err}");
    assert!(err.contains("error in node `join`: op `concat` needs input `parts`"), "{err}");

    let err = check(&OPS.replace("outputs.joined = { path", "outputs.joined = { kind = \"npy\", path"));
    assert!(err.contains("error in node `join`: output `joined` of op `concat` is a text file, not npy"), "{err}");

    let err = check(&OPS.replace(
        "cmd = \"echo ${p} > ${out.o}\"\noutputs.o = \"text\"",
        "cmd = \"echo ${p} > ${out.o}\"\noutputs.o = \"npy\"",
    ));
    assert!(err.contains("input `parts` of op `concat` wants text, but part_x.o is npy"), "{err}");

    let err = check(&OPS.replace("inputs.j = \"join.joined\"", "inputs.j = \"join.joind\""));
    assert!(err.contains("input `j` refers to output `joind` of node `join`, which has no such output"), "{err}");
}

const GPU: &str = r#"
[[node]]
id = "probe_${t}"
for_each.t = ["a", "b"]
op = "probe"
device = "gpu"
params.tag = "${t}"
outputs.where = { path = "out/${t}.json" }

[[node]]
id = "shell"
device = "gpu"
cmd = "echo \"[$CUDA_VISIBLE_DEVICES] $TOE_PIPE_DEVICE\" > ${out.o}"
outputs.o = { kind = "text", path = "out/shell.txt" }
"#;

fn gpu_nodes_get_one_gpu_each_or_fall_back_to_the_cpu() {
    // Two fake GPUs: each gpu node sees its own device.
    let ws = Ws::new();
    ws.write("p.toml", GPU);
    let out = toe(&ws, &["run", "p.toml"], "2").ok();
    assert_eq!(out.ran(), set(["probe_a", "probe_b", "shell"]));
    let a: serde_json::Value = serde_json::from_str(&ws.read("out/a.json")).unwrap();
    let b: serde_json::Value = serde_json::from_str(&ws.read("out/b.json")).unwrap();
    assert_eq!(a["device"], "cuda");
    let mut devices = vec![
        a["cuda_visible_devices"].as_str().unwrap().to_owned(),
        b["cuda_visible_devices"].as_str().unwrap().to_owned(),
    ];
    devices.sort();
    assert_eq!(devices, ["0", "1"], "the two probes overlap, so they hold different GPUs");
    assert!(out.stderr.contains("on cuda:"), "{}", out.stderr);

    // The device is not part of the action key: a CPU machine reuses them.
    let again = toe(&ws, &["run", "p.toml"], "0").ok();
    assert!(again.ran().is_empty(), "{}", again.stderr);

    // No GPU: gpu nodes run on CPU slots, with one notice.
    let ws = Ws::new();
    ws.write("p.toml", GPU);
    let out = toe(&ws, &["run", "p.toml"], "0").ok();
    assert_eq!(out.ran(), set(["probe_a", "probe_b", "shell"]));
    assert_eq!(out.stderr.matches("note: no GPU available; gpu nodes run on CPU slots").count(), 1, "{}", out.stderr);
    let a: serde_json::Value = serde_json::from_str(&ws.read("out/a.json")).unwrap();
    assert_eq!(a["device"], "cpu");
    assert_eq!(a["cuda_visible_devices"], "");
    // libtorch's threads: the node's CPUs (1 unless it asks for more).
    assert_eq!(a["threads"], 1);
    let ws = Ws::new();
    ws.write("p.toml", &GPU.replace("params.tag = \"${t}\"", "params.tag = \"${t}\"\nresources.cpus = 2"));
    toe(&ws, &["run", "-j", "2", "p.toml"], "0").ok();
    let a: serde_json::Value = serde_json::from_str(&ws.read("out/a.json")).unwrap();
    assert_eq!(a["threads"], 2);
    assert_eq!(ws.read("out/shell.txt"), "[] cpu\n");

    // --gpus picks devices explicitly.
    let ws = Ws::new();
    ws.write("p.toml", GPU);
    let out = toe(&ws, &["run", "--gpus", "3", "p.toml"], "0").ok();
    assert_eq!(ws.read("out/shell.txt"), "[3] cuda\n", "{}", out.stderr);
}

fn require_gpu_is_an_error_before_anything_runs() {
    let ws = Ws::new();
    ws.write(
        "p.toml",
        &GPU.replace("op = \"probe\"\ndevice = \"gpu\"", "op = \"probe\"\ndevice = \"gpu\"\nrequire_gpu = true"),
    );
    let out = toe(&ws, &["run", "p.toml"], "0").fails();
    assert!(out.stderr.contains("node probe_a, probe_b requires a GPU (require_gpu = true) but none is available (libtorch sees no CUDA device)"), "{}", out.stderr);
    assert!(out.ran().is_empty());
    assert!(ws.object_files().is_empty());
    // With a GPU it runs; afterwards a CPU machine may reuse the results.
    toe(&ws, &["run", "p.toml"], "1").ok();
    assert!(toe(&ws, &["run", "p.toml"], "0").ok().ran().is_empty());

    let dag = toe(&ws, &["dag", "p.toml"], "0").ok();
    assert!(dag.stdout.contains("probe_a  [op probe, gpu required]"), "{}", dag.stdout);
}

fn main() -> ExitCode {
    if std::env::var_os("TOE_PIPE_TEST_WORKER").is_some() {
        let mut registry = Registry::new();
        registry.register(Box::new(Concat));
        registry.register(Box::new(Probe));
        let runtime = toe_pipe::worker::Runtime { gpu_count: fake_gpus, ..toe_pipe::runtime::runtime() };
        return toe_pipe::worker::main(registry, runtime);
    }
    let tests: [(&str, fn()); 5] = [
        ("op_nodes_run_in_the_worker", op_nodes_run_in_the_worker),
        ("op_params_and_ports_are_checked", op_params_and_ports_are_checked),
        ("the_worker_checks_params_before_any_work", the_worker_checks_params_before_any_work),
        ("gpu_nodes_get_one_gpu_each_or_fall_back_to_the_cpu", gpu_nodes_get_one_gpu_each_or_fall_back_to_the_cpu),
        ("require_gpu_is_an_error_before_anything_runs", require_gpu_is_an_error_before_anything_runs),
    ];
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let mut failed = 0;
    for (name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        match std::panic::catch_unwind(test) {
            Ok(()) => println!("test {name} ... ok"),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        println!("{failed} failed");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
