//! Incremental runs through the CLI, on pipelines of `cmd` nodes.

use crate::common::{set, Ws};

/// a -> b -> c, and d beside them; b's output depends on n / div only.
const PIPELINE: &str = r#"
[pipeline]
name = "inc"

[[node]]
id = "a"
cmd = "cat ${in.src} > ${out.x}; echo a >> ${out.x}"
sources.src = "data/input.txt"
outputs.x = { kind = "text", path = "out/a.txt" }

[[node]]
id = "b"
cmd = "echo $(( ${param.n} / ${param.div} )) > ${out.y}; cat ${in.x} >> ${out.y}"
inputs.x = "a.x"
params = { n = 1, div = 1 }
outputs.y = { kind = "text", path = "out/b.txt" }

[[node]]
id = "c"
cmd = "cat ${in.y} ${in.y} > ${out.z}"
inputs.y = "b.y"
outputs.z = { kind = "text", path = "out/c.txt" }

[[node]]
id = "d"
cmd = "wc -c < ${in.src} > ${out.w}"
sources.src = "data/input.txt"
outputs.w = { kind = "text", path = "out/d.txt" }
"#;

fn workspace(params: &str) -> Ws {
    let ws = Ws::new();
    ws.write("data/input.txt", "hello\n");
    ws.write("p.toml", &PIPELINE.replace("n = 1, div = 1", params));
    ws
}

fn set_params(ws: &Ws, params: &str) {
    ws.write("p.toml", &PIPELINE.replace("n = 1, div = 1", params));
}

#[test]
fn first_run_runs_every_node_and_the_second_none() {
    let ws = workspace("n = 1, div = 1");
    let first = ws.run("p.toml");
    assert_eq!(first.ran(), set(["a", "b", "c", "d"]));
    assert_eq!(ws.read("out/c.txt"), "1\nhello\na\n1\nhello\na\n");
    assert_eq!(ws.read("out/d.txt").trim(), "6");

    let second = ws.run("p.toml");
    assert!(second.ran().is_empty(), "{}", second.stderr);
    assert!(second.stderr.contains("nothing to do: 4 nodes fresh"), "{}", second.stderr);
}

#[test]
fn editing_a_param_reruns_exactly_that_node_and_its_dependants() {
    let ws = workspace("n = 1, div = 1");
    ws.run("p.toml");
    set_params(&ws, "n = 2, div = 1");

    let status = ws.toe(&["status", "p.toml"]).ok();
    assert!(status.stdout.contains("stale  b  param n: 1 -> 2"), "{}", status.stdout);
    assert!(status.stdout.contains("waits  c  after b"), "{}", status.stdout);
    assert!(status.stdout.contains("fresh  a"), "{}", status.stdout);

    let out = ws.run("p.toml");
    assert_eq!(out.ran(), set(["b", "c"]));
    assert_eq!(ws.read("out/b.txt"), "2\nhello\na\n");
}

#[test]
fn byte_identical_output_stops_propagation() {
    let ws = workspace("n = 11, div = 10");
    ws.run("p.toml");
    set_params(&ws, "n = 12, div = 10"); // 12 / 10 == 11 / 10
    let out = ws.run("p.toml");
    assert_eq!(out.ran(), set(["b"]), "{}", out.stderr);
    assert!(ws.toe(&["status", "p.toml"]).ok().stdout.contains("4 fresh"));
}

#[test]
fn reverting_a_param_restores_without_running() {
    let ws = workspace("n = 1, div = 1");
    ws.run("p.toml");
    set_params(&ws, "n = 2, div = 1");
    assert_eq!(ws.run("p.toml").ran(), set(["b", "c"]));
    set_params(&ws, "n = 1, div = 1");

    let status = ws.toe(&["status", "p.toml"]).ok();
    assert!(status.stdout.contains("restore  b  an earlier result"), "{}", status.stdout);

    let out = ws.run("p.toml");
    assert!(out.ran().is_empty(), "{}", out.stderr);
    assert_eq!(out.nodes("restored"), set(["b", "c"]));
    assert_eq!(ws.read("out/b.txt"), "1\nhello\na\n");
    assert_eq!(ws.read("out/c.txt"), "1\nhello\na\n1\nhello\na\n");
}

#[test]
fn a_changed_source_reruns_its_readers_and_says_why() {
    let ws = workspace("n = 1, div = 1");
    ws.run("p.toml");
    ws.write("data/input.txt", "changed\n");
    let status = ws.toe(&["status", "p.toml"]).ok();
    assert!(status.stdout.contains("stale  a  source data/input.txt changed"), "{}", status.stdout);
    assert_eq!(ws.run("p.toml").ran(), set(["a", "b", "c", "d"]));
}

#[test]
fn a_deleted_workspace_output_is_put_back_without_running() {
    let ws = workspace("n = 1, div = 1");
    ws.run("p.toml");
    std::fs::remove_file(ws.path("out/b.txt")).unwrap();
    let status = ws.toe(&["status", "p.toml"]).ok();
    assert!(status.stdout.contains("out/b.txt is missing from the workspace"), "{}", status.stdout);
    let out = ws.run("p.toml");
    assert!(out.ran().is_empty());
    assert_eq!(out.nodes("restored"), set(["b"]));
    assert_eq!(ws.read("out/b.txt"), "1\nhello\na\n");
}

#[test]
fn only_runs_a_node_and_what_it_needs_and_force_reruns() {
    let ws = workspace("n = 1, div = 1");
    assert_eq!(ws.toe(&["run", "p.toml", "--only", "b"]).ok().ran(), set(["a", "b"]));
    assert_eq!(ws.run("p.toml").ran(), set(["c", "d"]));
    // Forcing a deterministic node: it runs, its outputs are unchanged, so
    // its dependants stay fresh.
    assert_eq!(ws.toe(&["run", "p.toml", "--force", "a"]).ok().ran(), set(["a"]));
    let bad = ws.toe(&["run", "p.toml", "--only", "bb"]).fails();
    assert!(bad.stderr.contains("no node of pipeline inc matches `bb`"), "{}", bad.stderr);
    assert!(bad.stderr.contains("did you mean `b`?"), "{}", bad.stderr);
}

#[test]
fn dry_run_says_what_would_run_and_runs_nothing() {
    let ws = workspace("n = 1, div = 1");
    ws.run("p.toml");
    set_params(&ws, "n = 2, div = 1");
    let out = ws.toe(&["run", "--dry-run", "p.toml"]).ok();
    assert!(out.stdout.contains("would run  b"), "{}", out.stdout);
    assert!(out.stdout.contains("may run  c"), "{}", out.stdout);
    assert_eq!(ws.read("out/b.txt"), "1\nhello\na\n");
    assert_eq!(ws.run("p.toml").ran(), set(["b", "c"]));
}

#[test]
fn templates_dir_outputs_and_list_inputs() {
    let ws = Ws::new();
    ws.write(
        "p.toml",
        r#"
[pipeline]
name = "tpl"

[vars]
sets = ["sun", "places"]
root = "results/${size}"
size = 3

[[node]]
id = "make"
cmd = "mkdir -p ${out.d}/sub; for i in $(seq ${param.k}); do echo $i > ${out.d}/f$i.txt; done; echo x > ${out.d}/sub/y"
params.k = "${size}"
outputs.d = { kind = "dir", path = "${root}/data" }

[[node]]
id = "eval_${set}"
for_each.set = "${sets}"
cmd = "ls ${in.d} | wc -l > ${out.m}; echo ${set} >> ${out.m}"
inputs.d = "make.d"
outputs.m = { kind = "text", path = "${root}/${set}.txt" }

[[node]]
id = "table"
cmd = "cat ${in.parts} > ${out.t}"
inputs.parts = ["eval_${sets}.m"]
outputs.t = { kind = "md", path = "${root}/table.md" }
"#,
    );
    let out = ws.run("p.toml");
    assert_eq!(out.ran(), set(["make", "eval_sun", "eval_places", "table"]));
    assert_eq!(ws.read("results/3/data/f2.txt"), "2\n");
    assert_eq!(ws.read("results/3/data/sub/y"), "x\n");
    assert_eq!(ws.read("results/3/table.md"), "4\nsun\n4\nplaces\n");

    // A file added by hand inside a dir output is noticed and removed.
    std::fs::write(ws.path("results/3/data/extra"), "?").unwrap();
    let out = ws.run("p.toml");
    assert_eq!(out.nodes("restored"), set(["make"]));
    assert!(!ws.path("results/3/data/extra").exists());

    // --set overrides a variable, and variables built from it follow.
    let out = ws.toe(&["run", "p.toml", "--set", "size=2"]).ok();
    assert_eq!(out.ran(), set(["make", "eval_sun", "eval_places", "table"]));
    assert_eq!(ws.read("results/2/table.md"), "3\nsun\n3\nplaces\n");

    // Stored directories are sealed read-only; gc can still remove them.
    let objects = ws.store().join("objects");
    let dirs: Vec<_> = std::fs::read_dir(&objects)
        .unwrap()
        .flatten()
        .flat_map(|s| std::fs::read_dir(s.path()).unwrap().flatten())
        .filter(|e| e.path().is_dir())
        .collect();
    assert_eq!(dirs.len(), 2, "one dir object per size");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(dirs[0].metadata().unwrap().permissions().mode() & 0o777, 0o555);
    let gc = ws.toe(&["gc", "--keep-recent", "0s"]).ok();
    assert!(gc.stdout.contains("removed 4 objects"), "{}", gc.stdout); // size 3: dir, two evals, table
    assert_eq!(
        std::fs::read_dir(&objects)
            .unwrap()
            .flatten()
            .flat_map(|s| std::fs::read_dir(s.path()).unwrap().flatten())
            .filter(|e| e.path().is_dir())
            .count(),
        1
    );
    ws.toe(&["verify"]).ok();

    let dag = ws.toe(&["dag", "p.toml", "--format", "json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&dag.stdout).unwrap();
    let ids: Vec<&str> = v["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["make", "eval_sun", "eval_places", "table"]);
    assert_eq!(v["edges"].as_array().unwrap().len(), 4);
    let dot = ws.toe(&["dag", "p.toml", "--format", "dot"]).ok();
    assert!(dot.stdout.contains("\"eval_sun\" -> \"table\""), "{}", dot.stdout);
}

#[test]
fn parallel_nodes_run_at_the_same_time() {
    let ws = Ws::new();
    // Each node waits until both have started: only a parallel run ends.
    ws.write(
        "p.toml",
        r#"
[[node]]
id = "left_${side}"
for_each.side = ["a", "b"]
cmd = "touch ${param.dir}/${side}; for i in $(seq 100); do [ -e ${param.dir}/a ] && [ -e ${param.dir}/b ] && break; sleep 0.05; done; [ -e ${param.dir}/a ] && [ -e ${param.dir}/b ] && echo ok > ${out.o}"
params.dir = "sync"
outputs.o = "text"
"#,
    );
    std::fs::create_dir(ws.path("sync")).unwrap();
    let out = ws.toe(&["run", "-j", "2", "p.toml"]).ok();
    assert_eq!(out.ran(), set(["left_a", "left_b"]));
}
