//! List inputs too long for a command line: `check` refuses them and names
//! the fix, `${in.NAME:list}` hands them over as a file, and a node the
//! kernel still refuses to start fails like any other failed node.

use crate::common::{set, Ws};

/// `n` source files whose absolute paths are about 100 bytes each, as a
/// TOML array of their workspace paths; and those absolute paths.
fn parts(ws: &Ws, n: usize) -> (String, Vec<String>) {
    let pad = "x".repeat(64);
    let mut rels = Vec::with_capacity(n);
    let mut abs = Vec::with_capacity(n);
    for i in 0..n {
        let rel = format!("data/part-{i:04}-{pad}.txt");
        ws.write(&rel, &format!("{i}\n"));
        abs.push(ws.path(&rel).display().to_string());
        rels.push(format!("{rel:?}"));
    }
    (format!("[{}]", rels.join(", ")), abs)
}

fn pipeline(sources: &str, sink_cmd: &str) -> String {
    format!(
        r#"
[[node]]
id = "sink"
cmd = "{sink_cmd}"
sources.parts = {sources}
outputs.list = {{ kind = "text", path = "out/list.txt" }}
outputs.all = {{ kind = "text", path = "out/all.txt" }}

[[node]]
id = "other"
cmd = "echo other > ${{out.o}}"
outputs.o = {{ kind = "text", path = "out/other.txt" }}
"#
    )
}

#[test]
fn a_list_too_long_for_a_command_line_is_refused_by_check_and_runs_as_a_list_file() {
    let ws = Ws::new();
    let (sources, abs) = parts(&ws, 1500);
    assert!(abs.iter().map(|p| p.len() + 1).sum::<usize>() > 128 * 1024, "the list must exceed 128 KiB");

    // Written out path by path, the command is about 150 KB.
    ws.write("p.toml", &pipeline(&sources, "printf '%s\\\\n' ${in.parts} > ${out.list}; cat ${in.parts} > ${out.all}"));
    let out = ws.toe(&["check", "p.toml"]).fails();
    let err = out.all();
    assert!(err.contains("p.toml:4:7: error in node `sink`: the command is up to "), "{err}");
    assert!(err.contains("`${in.parts}` (1500 paths)") && err.contains("131072 bytes"), "{err}");
    assert!(err.contains("fix: pass the list as a file: `${in.parts:list}`"), "{err}");
    // `run` says the same before it starts anything.
    let out = ws.toe(&["run", "p.toml"]).fails();
    assert!(out.all().contains("error in node `sink`: the command is up to "), "{}", out.all());
    assert!(out.ran().is_empty() && !ws.path("out/other.txt").exists(), "{}", out.all());

    ws.write(
        "p.toml",
        &pipeline(&sources, "cp ${in.parts:list} ${out.list}; xargs -d '\\\\n' cat < ${in.parts:list} > ${out.all}"),
    );
    ws.toe(&["check", "p.toml"]).ok();
    assert_eq!(ws.run("p.toml").ran(), set(["sink", "other"]));
    let listed: Vec<String> = ws.read("out/list.txt").lines().map(str::to_owned).collect();
    assert_eq!(listed, abs, "the list file holds every path, one per line, in order");
    let all: String = (0..1500).map(|i| format!("{i}\n")).collect();
    assert_eq!(ws.read("out/all.txt"), all);
    // And it stays done.
    let again = ws.run("p.toml");
    assert!(again.ran().is_empty(), "{}", again.all());
}

#[test]
fn a_path_with_a_newline_needs_the_nul_terminated_list() {
    let ws = Ws::new();
    ws.write("in/a\nb.txt", "ab\n");
    ws.write("in/c.txt", "c\n");
    let p = |form: &str| {
        format!(
            r#"
[[node]]
id = "n"
cmd = "cp ${{in.s:{form}}} ${{out.l}}"
sources.s = ["in/a\nb.txt", "in/c.txt"]
outputs.l = {{ kind = "file", path = "l" }}
"#
        )
    };
    ws.write("p.toml", &p("list"));
    let out = ws.toe(&["check", "p.toml"]).fails();
    assert!(
        out.all().contains("p.toml:4:7: error in node `n`: input `s` has a path with a newline in it"),
        "{}",
        out.all()
    );
    assert!(out.all().contains("fix: use `${in.s:list0}`"), "{}", out.all());

    ws.write("p.toml", &p("list0"));
    ws.run("p.toml");
    let want = format!("{}\0{}\0", ws.path("in/a\nb.txt").display(), ws.path("in/c.txt").display());
    assert_eq!(ws.read("l"), want);
}

#[test]
fn a_node_the_kernel_refuses_to_start_fails_alone_and_says_why() {
    // A command under the 128 KiB of one argument, which `check` accepts,
    // can still be refused: arguments and environment together may take a
    // quarter of the stack limit. With `ulimit -s 1024` that is 256 KiB;
    // the environment takes 180 KB of it.
    let ws = Ws::new();
    let (sources, _) = parts(&ws, 1000);
    ws.write(
        "p.toml",
        &format!(
            r#"
[[node]]
id = "wide"
cmd = "cat ${{in.parts}} > ${{out.all}}"
sources.parts = {sources}
outputs.all = "text"

[[node]]
id = "after_wide"
cmd = "cat ${{in.all}} > ${{out.o}}"
inputs.all = "wide.all"
outputs.o = "text"

[[node]]
id = "other"
cmd = "echo other > ${{out.o}}"
outputs.o = {{ kind = "text", path = "other.txt" }}
"#
        ),
    );
    ws.toe(&["check", "p.toml"]).ok();
    let big = "y".repeat(60_000);
    let out = crate::common::Out::from(
        std::process::Command::new("sh")
            .args(["-c", "ulimit -s 1024 && exec \"$0\" run -j 1 p.toml"])
            .arg(crate::common::bin())
            .current_dir(ws.dir.path())
            .env("BIG1", &big)
            .env("BIG2", &big)
            .env("BIG3", &big)
            .output()
            .expect("run toe-pipe"),
    )
    .fails();
    assert_eq!(out.nodes("FAILED"), set(["wide"]), "{}", out.stderr);
    assert_eq!(out.nodes("skipped"), set(["after_wide"]), "{}", out.stderr);
    assert_eq!(out.ran(), set(["other"]), "{}", out.stderr);
    let err = &out.stderr;
    assert!(err.contains("cannot start /bin/sh: the system refused its arguments ("), "{err}");
    assert!(
        err.contains("as too long (E2BIG") && err.contains("fix: give long list inputs as files (`${in.NAME:list}`)"),
        "{err}"
    );
}
