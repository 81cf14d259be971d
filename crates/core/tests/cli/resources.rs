//! `resources`: a node's CPUs take that many `-j` slots and its process is
//! told so; pipeline-wide defaults; errors in the table.

use crate::common::{set, Ws};

/// Each node prints the thread counts it was told.
const THREADS: &str = r#"
[resources]
cpus = 1

[resources.gpu]
cpus = 3

[[node]]
id = "plain"
cmd = "echo $TOE_PIPE_CPUS $OMP_NUM_THREADS $MKL_NUM_THREADS $OPENBLAS_NUM_THREADS > ${out.o}"
outputs.o = { kind = "text", path = "out/plain.txt" }

[[node]]
id = "wide"
resources = { cpus = "${n}" }
cmd = "echo $TOE_PIPE_CPUS $OMP_NUM_THREADS $MKL_NUM_THREADS $OPENBLAS_NUM_THREADS > ${out.o}"
outputs.o = { kind = "text", path = "out/wide.txt" }

[[node]]
id = "gpu"
device = "gpu"
cmd = "echo $TOE_PIPE_CPUS $OMP_NUM_THREADS > ${out.o}"
outputs.o = { kind = "text", path = "out/gpu.txt" }

[vars]
n = 2
"#;

#[test]
fn a_process_is_told_its_cpus() {
    let ws = Ws::new();
    ws.write("p.toml", THREADS);
    let out = ws.toe(&["run", "-j", "2", "--gpus", "none", "p.toml"]).ok();
    assert_eq!(ws.read("out/plain.txt"), "1 1 1 1\n");
    assert_eq!(ws.read("out/wide.txt"), "2 2 2 2\n");
    // A gpu node without a GPU takes CPU slots: its [resources.gpu] 3,
    // at most the 2 of -j.
    assert_eq!(ws.read("out/gpu.txt"), "2 2\n");
    assert!(out.stderr.contains("note: node gpu asks for 3 CPUs, more than -j 2; it runs on 2"), "{}", out.stderr);

    // Not part of the action key: another -j or another CPU count runs
    // nothing again.
    ws.write("p.toml", &THREADS.replace("n = 2", "n = 1"));
    assert!(ws.toe(&["run", "-j", "1", "--gpus", "none", "p.toml"]).ok().ran().is_empty());

    // Lineage says how many CPUs the node had.
    let lineage = ws.toe(&["lineage", "out/wide.txt", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&lineage.stdout).unwrap();
    assert_eq!(v["produced_by"]["ran_on"]["cpus"], 2);
}

/// Three independent nodes that note who else is running while they do.
const OVERLAP: &str = r#"
[[node]]
id = "n_${i}"
for_each.i = ["1", "2"]
cmd = "mkdir -p running; touch running/n_${i}; sleep 0.4; ls running > ${out.o}; rm running/n_${i}"
outputs.o = { kind = "text", path = "out/n_${i}.txt" }

[[node]]
id = "wide"
resources.cpus = 2
cmd = "mkdir -p running; touch running/wide; sleep 0.4; ls running > ${out.o}; rm running/wide"
outputs.o = { kind = "text", path = "out/wide.txt" }
"#;

#[test]
fn a_node_takes_as_many_slots_as_it_asks_cpus() {
    let ws = Ws::new();
    ws.write("p.toml", OVERLAP);
    let out = ws.toe(&["run", "-j", "2", "p.toml"]).ok();
    assert_eq!(out.ran(), set(["n_1", "n_2", "wide"]));
    // With 2 slots, the 2-CPU node runs alone.
    assert_eq!(ws.read("out/wide.txt"), "wide\n");
    assert!(!ws.read("out/n_1.txt").contains("wide") && !ws.read("out/n_2.txt").contains("wide"));

    // 1-CPU nodes run side by side: each waits (up to 10 s) for the other.
    let ws = Ws::new();
    let wait = "i=0; while [ $(ls running | wc -l) -lt 2 ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done";
    let pair = OVERLAP.split("\n[[node]]\nid = \"wide\"").next().unwrap();
    ws.write("p.toml", &pair.replace("sleep 0.4", wait).replace("; rm running/n_${i}", ""));
    ws.toe(&["run", "-j", "2", "p.toml"]).ok();
    assert_eq!(ws.read("out/n_1.txt"), "n_1\nn_2\n");
    assert_eq!(ws.read("out/n_2.txt"), "n_1\nn_2\n");
}

#[test]
fn resources_are_checked() {
    let ws = Ws::new();
    let node = "[[node]]\nid = \"a\"\ncmd = \"echo > ${out.o}\"\noutputs.o = \"text\"\n";
    ws.write("p.toml", &format!("{node}resources = {{ cpu = 2 }}\n"));
    let err = ws.toe(&["check", "p.toml"]).fails().stderr;
    assert!(err.contains("p.toml:5:15: error in node `a`: unknown field `cpu`, expected"), "{err}");
    assert!(err.contains("fix: remove the field or correct its spelling"), "{err}");

    ws.write("p.toml", &format!("{node}resources.cpus = 0\n"));
    let err = ws.toe(&["check", "p.toml"]).fails().stderr;
    assert!(
        err.contains("p.toml:5:18: error in node `a`: resources `cpus` must be a whole number of at least 1, not 0"),
        "{err}"
    );
    assert!(err.contains("fix: write e.g. cpus = 4"), "{err}");

    ws.write("p.toml", &format!("[resources]\ncpus = \"${{nope}}\"\n\n{node}"));
    let err = ws.toe(&["check", "p.toml"]).fails().stderr;
    assert!(err.contains("p.toml:2:8: error: unknown variable `${nope}`"), "{err}");

    ws.write("p.toml", &format!("{node}resources.gpu = {{ cpus = 2 }}\n"));
    let err = ws.toe(&["check", "p.toml"]).fails().stderr;
    assert!(
        err.contains("error in node `a`: `gpu` defaults belong in the pipeline-wide [resources.gpu] table"),
        "{err}"
    );

    ws.write("p.toml", &format!("{node}resources.cpus = 2\n"));
    ws.toe(&["check", "p.toml"]).ok();
}
