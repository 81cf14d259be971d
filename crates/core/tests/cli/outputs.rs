//! Where outputs may be materialised: inside the workspace, also through
//! symbolic links, and never over a file or folder that toe-pipe did not
//! put there (the pipeline file, a source, the user's own files).

use std::os::unix::fs::symlink;

use crate::common::{set, Ws};

/// A folder beside the workspace holding what must survive.
fn outside() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("precious.txt"), "precious\n").unwrap();
    std::fs::create_dir(dir.path().join("victim_dir")).unwrap();
    std::fs::write(dir.path().join("victim_dir/keep.txt"), "keep\n").unwrap();
    dir
}

fn untouched(dir: &std::path::Path) {
    assert_eq!(std::fs::read_to_string(dir.join("precious.txt")).unwrap(), "precious\n");
    assert_eq!(std::fs::read_to_string(dir.join("victim_dir/keep.txt")).unwrap(), "keep\n");
    assert_eq!(std::fs::read_dir(dir.join("victim_dir")).unwrap().count(), 1);
}

const THROUGH_LINK: &str = r#"
[[node]]
id = "f"
cmd = "echo new > ${out.f}"
outputs.f = { kind = "text", path = "link/precious.txt" }

[[node]]
id = "d"
cmd = "echo new > ${out.d}/x"
outputs.d = { kind = "dir", path = "link/victim_dir" }

[[node]]
id = "fine"
cmd = "echo fine > ${out.o}"
outputs.o = { kind = "text", path = "inner_link/fine.txt" }
"#;

#[test]
fn an_output_path_through_a_symlink_out_of_the_workspace_is_refused() {
    let ws = Ws::new();
    let out_dir = outside();
    symlink(out_dir.path(), ws.path("link")).unwrap();
    // A link that stays inside the workspace is fine.
    std::fs::create_dir(ws.path("real")).unwrap();
    symlink("real", ws.path("inner_link")).unwrap();
    ws.write("p.toml", THROUGH_LINK);

    let check = ws.toe(&["check", "p.toml"]).fails();
    let err = &check.stderr;
    assert!(
        err.contains("p.toml:5:13: error in node `f`: output `f` at link/precious.txt leads out of the workspace: link is a symbolic link to "),
        "{err}"
    );
    assert!(
        err.contains("p.toml:10:13: error in node `d`: output `d` at link/victim_dir leads out of the workspace"),
        "{err}"
    );
    assert!(err.contains("fix: write a path whose folders are inside the workspace"), "{err}");
    assert!(!err.contains("node `fine`"), "{err}");

    let run = ws.toe(&["run", "p.toml"]).fails();
    assert!(run.stderr.contains("leads out of the workspace"), "{}", run.stderr);
    untouched(out_dir.path());
}

#[test]
fn a_symlink_made_during_the_run_is_refused_when_the_output_is_materialised() {
    let ws = Ws::new();
    let out_dir = outside();
    // `mk` makes the link after `check` passed; `f` and `d` would write
    // through it.
    ws.write(
        "p.toml",
        &format!(
            r#"
[[node]]
id = "mk"
cmd = "ln -s {} link; echo > ${{out.o}}"
outputs.o = "text"
{}
"#,
            out_dir.path().display(),
            THROUGH_LINK
                .replace("echo new > ${out.f}", "cat ${in.o} > ${out.f}")
                .replace("echo new > ${out.d}/x", "cat ${in.o} > ${out.d}/x")
                .replace("outputs.f =", "inputs.o = \"mk.o\"\noutputs.f =")
                .replace("outputs.d =", "inputs.o = \"mk.o\"\noutputs.d =")
                .replace("inner_link/", "")
        ),
    );
    ws.toe(&["check", "p.toml"]).ok();
    let run = ws.toe(&["run", "p.toml"]).fails();
    assert_eq!(run.nodes("FAILED"), set(["f", "d"]), "{}", run.stderr);
    assert!(
        run.stderr.contains("error in node `f`: output `f` at link/precious.txt leads out of the workspace"),
        "{}",
        run.stderr
    );
    assert_eq!(run.ran(), set(["mk", "fine"]), "{}", run.stderr);
    untouched(out_dir.path());
}

#[test]
fn the_pipeline_file_and_sources_can_never_be_outputs() {
    let ws = Ws::new();
    ws.write("data/in.txt", "input\n");
    std::fs::create_dir(ws.path("pipelines")).unwrap();
    symlink("data", ws.path("alias")).unwrap();
    let text = r#"
[pipeline]
workspace = ".."

[[node]]
id = "over_me"
cmd = "echo > ${out.o}"
outputs.o = { kind = "text", path = "pipelines/p.toml" }

[[node]]
id = "over_dir"
cmd = "echo > ${out.d}/x"
outputs.d = { kind = "dir", path = "pipelines" }

[[node]]
id = "reader"
cmd = "cat ${in.s} > ${out.o}"
sources.s = "alias/in.txt"
outputs.o = { kind = "text", path = "data/in.txt" }
"#;
    ws.write("pipelines/p.toml", text);
    let err = ws.toe(&["check", "pipelines/p.toml"]).fails().stderr;
    assert!(
        err.contains("pipelines/p.toml:8:13: error in node `over_me`: output `o` at pipelines/p.toml is the pipeline file itself"),
        "{err}"
    );
    assert!(
        err.contains(
            "pipelines/p.toml:13:13: error in node `over_dir`: output `d` at pipelines holds the pipeline file"
        ),
        "{err}"
    );
    assert!(err.contains("error in node `reader`: source alias/in.txt overlaps data/in.txt"), "{err}");
    assert!(ws.toe(&["run", "pipelines/p.toml"]).fails().stderr.contains("is the pipeline file itself"));
    assert_eq!(ws.read("pipelines/p.toml"), text);
    assert_eq!(ws.read("data/in.txt"), "input\n");
}

const OVER_USER_FILES: &str = r#"
[[node]]
id = "d"
cmd = "echo ${param.v} > ${out.d}/made.txt"
params.v = 1
outputs.d = { kind = "dir", path = "data" }

[[node]]
id = "f"
cmd = "echo ${param.v} > ${out.f}"
params.v = 1
outputs.f = { kind = "text", path = "notes.txt" }
"#;

#[test]
fn files_and_folders_toe_pipe_did_not_put_there_are_never_replaced() {
    let ws = Ws::new();
    ws.write("data/mine.txt", "mine\n");
    ws.write("notes.txt", "my notes\n");
    ws.write("p.toml", OVER_USER_FILES);
    let run = ws.toe(&["run", "p.toml"]).fails();
    assert_eq!(run.nodes("FAILED"), set(["d", "f"]), "{}", run.stderr);
    assert!(run.ran().is_empty(), "refused before running: {}", run.stderr);
    assert!(
        run.stderr.contains(
            "p.toml:6:13: error in node `d`: output `d` at data: a folder is there that toe-pipe did not put there"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("error in node `f`: output `f` at notes.txt: a file is there that toe-pipe did not put there"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("fix: move it away (toe-pipe then puts the output there) or choose another path"));
    assert_eq!(ws.read("data/mine.txt"), "mine\n");
    assert_eq!(ws.read("notes.txt"), "my notes\n");

    // Moved away, the outputs go there; toe-pipe's own outputs are then
    // replaced on a re-run, and an edited output is put back.
    std::fs::rename(ws.path("data"), ws.path("data.mine")).unwrap();
    std::fs::rename(ws.path("notes.txt"), ws.path("notes.mine")).unwrap();
    assert_eq!(ws.run("p.toml").ran(), set(["d", "f"]));
    ws.write("p.toml", &OVER_USER_FILES.replace("params.v = 1", "params.v = 2"));
    assert_eq!(ws.run("p.toml").ran(), set(["d", "f"]));
    assert_eq!(ws.read("data/made.txt"), "2\n");
    ws.write("notes.txt", "edited\n");
    std::fs::write(ws.path("data/extra.txt"), "?").unwrap();
    assert_eq!(ws.run("p.toml").nodes("restored"), set(["d", "f"]));
    assert_eq!(ws.read("notes.txt"), "2\n");
    assert!(!ws.path("data/extra.txt").exists());
}

#[test]
fn an_output_whose_bytes_are_in_the_store_is_replaced_after_a_killed_run() {
    // A run killed after materialising but before writing the refs leaves
    // outputs that toe-pipe made but did not record: their bytes are in the
    // store, so replacing them loses nothing.
    let ws = Ws::new();
    ws.write("p.toml", OVER_USER_FILES);
    ws.run("p.toml");
    std::fs::remove_dir_all(ws.store().join("refs")).unwrap();
    std::fs::create_dir(ws.store().join("refs")).unwrap();
    ws.write("p.toml", &OVER_USER_FILES.replace("params.v = 1", "params.v = 3"));
    assert_eq!(ws.run("p.toml").ran(), set(["d", "f"]));
    assert_eq!(ws.read("notes.txt"), "3\n");
}
