//! Op nodes as Slurm jobs: the worker runs on the compute node of a real
//! single-node cluster (scripts/slurm_local.sh) and reports libtorch's
//! details, which lineage keeps with the job id. Skips with the reason
//! where the cluster cannot start.

use crate::common;

use common::cluster::{report, Cluster};
use common::{set, Ws};

const OPS: &str = r#"
[resources.gpu]
partition = "gpu"

[[node]]
id = "classes"
op = "world_classes"
params = { id_classes = ["arrow", "circle"] }
resources.cpus = 2
outputs.class_names = { path = "out/classes.npy" }

[[node]]
id = "on_gpu"
op = "world_classes"
device = "gpu"
params = { id_classes = ["ring", "cross"] }
outputs.class_names = { path = "out/on_gpu.npy" }

[[node]]
id = "copy"
cmd = "cp ${in.x} ${out.y}"
inputs.x = "classes.class_names"
outputs.y = { kind = "npy", path = "out/copy.npy" }
"#;

#[test]
fn op_nodes_run_as_slurm_jobs() {
    let cluster = match Cluster::start() {
        Ok(c) => c,
        Err(why) => {
            report(&format!("skipped: op nodes on Slurm need a cluster: {why}"));
            return;
        }
    };
    let conf = cluster.conf.display().to_string();
    let ws = Ws::new();
    ws.write("p.toml", OPS);
    let out = ws.toe_env(&["run", "--executor", "slurm", "p.toml"], &[("SLURM_CONF", &conf)]).ok();
    assert_eq!(out.ran(), set(["classes", "on_gpu", "copy"]), "{}", out.stderr);
    assert_eq!(std::fs::read(ws.path("out/copy.npy")).unwrap(), std::fs::read(ws.path("out/classes.npy")).unwrap());

    let lineage = ws.toe_env(&["lineage", "out/classes.npy", "--json"], &[("SLURM_CONF", &conf)]).ok();
    let v: serde_json::Value = serde_json::from_str(&lineage.stdout).unwrap();
    let on = &v["produced_by"]["ran_on"];
    assert_eq!(on["executor"], "slurm", "{on}");
    assert!(on["slurm_job"].as_str().is_some_and(|j| j.bytes().all(|b| b.is_ascii_digit())), "{on}");
    assert_eq!(on["cpus"], 2, "{on}");
    assert!(on["libtorch"].as_str().is_some_and(|s| s.starts_with(|c: char| c.is_ascii_digit())), "{on}");
    assert!(on["cpu_capability"].as_str().is_some(), "{on}");
    assert!(on["cpu_model"].as_str().is_some(), "{on}");
    // The gpu node ran on the gpu partition, in a job of its own.
    let lineage = ws.toe_env(&["lineage", "out/on_gpu.npy", "--json"], &[("SLURM_CONF", &conf)]).ok();
    let v: serde_json::Value = serde_json::from_str(&lineage.stdout).unwrap();
    let job = v["produced_by"]["ran_on"]["slurm_job"].as_str().unwrap().to_owned();
    let line = cluster.completion(&job).unwrap_or_default();
    assert!(line.contains("Partition=gpu") && line.contains("JobState=COMPLETED"), "{line}");

    // Nothing to do the second time, and the local executor agrees.
    let again = ws.toe_env(&["run", "--executor", "slurm", "p.toml"], &[("SLURM_CONF", &conf)]).ok();
    assert!(again.stderr.contains("nothing to do: 3 nodes fresh"), "{}", again.stderr);
    assert!(ws.toe(&["run", "p.toml"]).ok().stderr.contains("nothing to do"));
    report(&format!("slurm: op nodes ran as jobs on a real cluster ({}, single node)", cluster.version));
}
