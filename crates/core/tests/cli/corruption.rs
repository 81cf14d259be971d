//! A corrupt store object never becomes part of a result: a node does not
//! consume an input whose bytes differ from the hash in its key, and
//! repairing the store rebuilds what consumed a corrupt object.

use crate::common::{set, Ws};

/// a -> b; b's output depends on a's bytes and on n.
const PIPELINE: &str = r#"
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

fn workspace(n: i64) -> Ws {
    let ws = Ws::new();
    ws.write("data/in.txt", "good\n");
    set_n(&ws, n);
    ws
}

fn set_n(ws: &Ws, n: i64) {
    ws.write("p.toml", &PIPELINE.replace("params.n = 1", &format!("params.n = {n}")));
}

fn object_of(ws: &Ws, content: &str) -> std::path::PathBuf {
    let h = blake3::hash(content.as_bytes()).to_hex().to_string();
    ws.store().join("objects").join(&h[..2]).join(&h[2..])
}

/// Change the first byte of a stored object in place ("good" -> "Good").
fn corrupt(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    bytes[0] ^= 0x20;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_node_never_consumes_a_corrupt_input_and_the_result_is_rebuilt() {
    // The issue's scenario: a byte flips in a's stored output; b re-runs
    // for an unrelated reason (its param), then the store is repaired.
    let ws = workspace(1);
    ws.run("p.toml");
    corrupt(&object_of(&ws, "good\na\n"));
    set_n(&ws, 2);

    let out = ws.toe(&["run", "p.toml"]).fails();
    assert_eq!(out.nodes("FAILED"), set(["b"]), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("input `x` (output x of node a) is corrupt in the store: its bytes no longer match its hash"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("the next run rebuilds it"), "{}", out.stderr);
    assert_ne!(ws.read("out/b.txt"), "2\nGood\na\n", "no result from corrupt bytes");

    ws.toe(&["verify", "--repair"]);
    let out = ws.toe(&["run", "--verify", "p.toml"]).ok();
    assert_eq!(out.ran(), set(["a", "b"]), "{}", out.stderr);
    assert_eq!(ws.read("out/a.txt"), "good\na\n");
    assert_eq!(ws.read("out/b.txt"), "2\ngood\na\n");
    assert!(ws.toe(&["verify"]).ok().stdout.contains("ok: "));
    assert!(ws.toe(&["run", "--verify", "p.toml"]).ok().ran().is_empty());
    // Going back to n = 1 restores the result made from good bytes.
    set_n(&ws, 1);
    ws.run("p.toml");
    assert_eq!(ws.read("out/b.txt"), "1\ngood\na\n");
}

#[test]
fn verify_repair_invalidates_the_actions_that_consumed_a_corrupt_object() {
    let ws = workspace(1);
    ws.run("p.toml");
    corrupt(&object_of(&ws, "good\na\n"));

    let out = ws.toe(&["verify", "--repair"]).fails();
    assert!(out.stdout.contains("1 of 2 objects are corrupt"), "{}", out.stdout);
    assert!(
        out.stdout.contains("invalidated b (pipeline p): its result was made from a corrupt object"),
        "{}",
        out.stdout
    );
    // a's output is gone and b's record with it: both run again, though a
    // writes the same bytes as before (no early cutoff past a corrupt input).
    let out = ws.run("p.toml");
    assert_eq!(out.ran(), set(["a", "b"]), "{}", out.stderr);
    assert_eq!(ws.read("out/b.txt"), "1\ngood\na\n");
    ws.toe(&["verify"]).ok();
}

#[test]
fn run_verify_rebuilds_the_readers_of_a_corrupt_output() {
    let ws = workspace(1);
    ws.run("p.toml");
    corrupt(&object_of(&ws, "good\na\n"));
    let out = ws.toe(&["run", "--verify", "p.toml"]).ok();
    assert!(out.stderr.contains("corrupt  a"), "{}", out.stderr);
    assert_eq!(out.ran(), set(["a", "b"]), "{}", out.stderr);
    assert_eq!(ws.read("out/a.txt"), "good\na\n");
    assert_eq!(ws.read("out/b.txt"), "1\ngood\na\n");
    ws.toe(&["verify"]).ok();
}

/// The stored object of a directory output, found by the file it holds.
fn dir_object_holding(ws: &Ws, file: &str) -> std::path::PathBuf {
    let f = ws.object_files().into_iter().find(|f| f.ends_with(file)).expect("the object file");
    let mut dir = f.parent().unwrap().to_path_buf();
    while dir.parent().unwrap().parent().unwrap() != ws.store().join("objects") {
        dir = dir.parent().unwrap().to_path_buf();
    }
    dir
}

#[test]
fn verify_repair_removes_an_object_folder_holding_a_symlink_and_says_only_what_it_did() {
    use std::os::unix::fs::PermissionsExt;
    let ws = Ws::new();
    ws.write(
        "p.toml",
        r#"
[[node]]
id = "d"
cmd = "mkdir -p ${out.d}/sub && echo one > ${out.d}/sub/one.txt"
outputs.d = { kind = "dir", path = "out/d" }
"#,
    );
    ws.run("p.toml");
    ws.write("outside/target.txt", "keep me");
    let obj = dir_object_holding(&ws, "sub/one.txt");
    let sub = obj.join("sub");
    std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(ws.path("outside/target.txt"), sub.join("link")).unwrap();

    let out = ws.toe(&["verify", "--repair"]);
    let gone = std::fs::symlink_metadata(&obj).is_err();
    for line in out.stdout.lines().filter(|l| l.starts_with("corrupt")) {
        assert_eq!(line.ends_with(", removed"), gone, "the report must match the store: {line}");
    }
    assert!(gone, "the object should be removed: {}", out.all());
    assert_eq!(ws.read("outside/target.txt"), "keep me", "the link's target is left alone");
    ws.toe(&["verify"]).ok();
    assert_eq!(ws.run("p.toml").ran(), set(["d"]));
    assert_eq!(ws.read("out/d/sub/one.txt"), "one\n");
}
