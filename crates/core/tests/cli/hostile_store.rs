//! A store whose own folders were replaced by symbolic links (issue 15,
//! item 5): toe-pipe refuses it and never deletes through the link.

use crate::common::Ws;

const ONE: &str = r#"
[[node]]
id = "a"
cmd = "echo a > ${out.o}"
outputs.o = { kind = "text", path = "out/a.txt" }
"#;

/// Replace the store folder `name` by a link to `outside/victim`, which
/// holds a file that must survive.
fn link_store_folder(ws: &Ws, name: &str) -> std::path::PathBuf {
    ws.write("outside/victim/keep.txt", "precious");
    let folder = ws.store().join(name);
    std::fs::remove_dir_all(&folder).unwrap();
    std::os::unix::fs::symlink(ws.path("outside/victim"), &folder).unwrap();
    ws.path("outside/victim/keep.txt")
}

#[test]
fn a_tmp_folder_that_is_a_symlink_is_refused_by_run_and_gc_and_not_emptied() {
    let ws = Ws::new();
    ws.write("p.toml", ONE);
    ws.run("p.toml");
    let victim = link_store_folder(&ws, "tmp");
    for args in [&["run", "p.toml"][..], &["gc", "--keep-recent", "0s"][..], &["verify", "--repair"][..]] {
        let out = ws.toe(args).fails();
        assert!(out.stderr.contains("symbolic link"), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("tmp"), "{args:?}: {}", out.stderr);
        assert!(victim.exists(), "{args:?} deleted through the link");
    }
}

#[test]
fn every_store_folder_that_is_a_symlink_is_refused() {
    for name in ["objects", "actions", "logs", "refs", "statcache", "cache"] {
        let ws = Ws::new();
        ws.write("p.toml", ONE);
        ws.run("p.toml");
        let victim = link_store_folder(&ws, name);
        let out = ws.toe(&["gc", "--keep-recent", "0s"]).fails();
        assert!(out.stderr.contains("symbolic link") && out.stderr.contains(name), "{name}: {}", out.stderr);
        let out = ws.toe(&["run", "p.toml"]).fails();
        assert!(out.stderr.contains("symbolic link") && out.stderr.contains(name), "{name}: {}", out.stderr);
        assert!(victim.exists(), "{name}: deleted through the link");
    }
}

#[test]
fn a_shard_folder_that_is_a_symlink_is_never_followed_by_gc() {
    let ws = Ws::new();
    ws.write("p.toml", ONE);
    ws.run("p.toml");
    // A shard of objects/ named like a real one, pointing outside.
    ws.write("outside/victim/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd", "precious");
    let victim = ws.path("outside/victim/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd");
    std::os::unix::fs::symlink(ws.path("outside/victim"), ws.store().join("objects/ff")).unwrap();
    let out = ws.toe(&["gc", "--keep-recent", "0s"]);
    assert!(victim.exists(), "gc deleted through objects/ff: {}", out.all());
}
