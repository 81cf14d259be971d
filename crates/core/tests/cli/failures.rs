//! A failing node stops its dependants; independent branches finish.

use crate::common::{set, Ws};

const PIPELINE: &str = r#"
[[node]]
id = "bad"
cmd = "echo working; echo boom >&2; exit 3; echo > ${out.o}"
outputs.o = "text"

[[node]]
id = "after_bad"
cmd = "cat ${in.o} > ${out.p}"
inputs.o = "bad.o"
outputs.p = "text"

[[node]]
id = "c"
cmd = "echo c > ${out.o}"
outputs.o = { kind = "text", path = "out/c.txt" }

[[node]]
id = "d"
cmd = "cat ${in.o} > ${out.p}"
inputs.o = "c.o"
outputs.p = { kind = "text", path = "out/d.txt" }
"#;

#[test]
fn a_failure_stops_dependants_and_independent_branches_finish() {
    let ws = Ws::new();
    ws.write("p.toml", PIPELINE);
    let out = ws.toe(&["run", "-j", "1", "p.toml"]).fails();
    assert_eq!(out.code, 1);
    assert_eq!(out.ran(), set(["c", "d"]));
    assert_eq!(out.nodes("FAILED"), set(["bad"]));
    assert_eq!(out.nodes("skipped"), set(["after_bad"]));
    assert!(out.stderr.contains("FAILED bad  exit status 3; full log: toe-pipe log bad"), "{}", out.stderr);
    assert!(out.stderr.contains("| working\n      | boom"), "the log tail is shown: {}", out.stderr);
    assert!(out.stderr.contains("skipped after_bad  (needs bad, which failed)"), "{}", out.stderr);
    assert!(out.stderr.contains("run failed after "), "{}", out.stderr);
    assert_eq!(ws.read("out/d.txt"), "c\n");

    let log = ws.toe(&["log", "bad"]).ok();
    assert!(log.stdout.contains("boom"), "{}", log.stdout);
    assert!(log.stderr.contains("failed"), "{}", log.stderr);

    // Fixed, the next run picks up exactly what is left.
    ws.write("p.toml", &PIPELINE.replace("exit 3; ", ""));
    assert_eq!(ws.run("p.toml").ran(), set(["bad", "after_bad"]));
}

#[test]
fn fail_fast_starts_nothing_new() {
    let ws = Ws::new();
    ws.write("p.toml", PIPELINE);
    let out = ws.toe(&["run", "-j", "1", "--fail-fast", "p.toml"]).fails();
    assert_eq!(out.nodes("FAILED"), set(["bad"]));
    assert!(out.ran().is_empty(), "{}", out.stderr);
    assert!(out.stderr.contains("3 skipped"), "{}", out.stderr);
}

#[test]
fn a_node_that_does_not_write_its_output_fails() {
    let ws = Ws::new();
    // A dir output exists (empty) before the command starts; replacing it
    // with a file is an error.
    ws.write("p.toml", "[[node]]\nid = \"lazy\"\ncmd = \"true ${out.o}\"\noutputs.o = \"text\"\n[[node]]\nid = \"wrongkind\"\ncmd = \"rmdir ${out.d}; echo > ${out.d}\"\noutputs.d = { kind = \"dir\" }\n");
    let out = ws.toe(&["run", "p.toml"]).fails();
    assert!(out.stderr.contains("FAILED lazy  the node finished but did not write output `o`"), "{}", out.stderr);
    assert!(
        out.stderr.contains("FAILED wrongkind  output `d` should be a directory (dir) but is not"),
        "{}",
        out.stderr
    );
    assert!(ws.object_files().is_empty());
}

/// Peak resident memory (KiB) of `toe-pipe ARGS` run in `ws`, with its output.
// The child is reaped by wait4 below, which clippy does not see.
#[allow(clippy::zombie_processes)]
fn peak_rss_kib(ws: &Ws, args: &[&str]) -> (i64, String) {
    let child = std::process::Command::new(crate::common::bin())
        .args(args)
        .current_dir(ws.dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.unwrap(), &mut stderr).unwrap();
    let mut status = 0;
    // SAFETY: plain-old-data out parameters for wait4 on our own child;
    // wait4 (not Child::wait) returns that one child's resource use.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid, "wait4");
    (usage.ru_maxrss, stderr)
}

#[test]
fn a_failing_nodes_log_tail_is_read_from_the_end_not_into_memory() {
    let ws = Ws::new();
    // 200 MB of output, then a last line, then failure.
    ws.write(
        "p.toml",
        r#"
[[node]]
id = "loud"
cmd = "yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 200000000; echo; echo the-last-words; exit 3; echo > ${out.o}"
outputs.o = { kind = "text", path = "out/o.txt" }
"#,
    );
    let (kib, stderr) = peak_rss_kib(&ws, &["run", "p.toml"]);
    assert!(stderr.contains("the-last-words"), "the tail is shown: {stderr}");
    assert!(stderr.contains("FAILED"), "{stderr}");
    assert!(kib < 100 * 1024, "toe-pipe peaked at {kib} KiB for a 200 MB log");
}

#[test]
fn an_output_of_a_node_that_failed_on_another_output_is_not_stored() {
    let ws = Ws::new();
    ws.write(
        "p.toml",
        r#"
[[node]]
id = "a"
cmd = "echo written > ${out.o}; true ${out.p}"
outputs.o = { kind = "text", path = "out/o.txt" }
outputs.p = { kind = "text", path = "out/p.txt" }
"#,
    );
    let out = ws.toe(&["run", "p.toml"]).fails();
    assert!(out.stderr.contains("did not write output `p`"), "{}", out.stderr);
    let left: Vec<_> = ws.object_files();
    assert!(left.is_empty(), "objects left by a failed node: {left:?}");
}
