//! The store under stress: killed runs, corrupted objects, concurrent
//! runs, gc, lineage and logs.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{bin, set, Ws};

fn wait_for(path: &std::path::Path) {
    let t0 = Instant::now();
    while !path.exists() {
        assert!(t0.elapsed() < Duration::from_secs(20), "timed out waiting for {}", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

const SLOW: &str = r#"
[[node]]
id = "slow"
cmd = "echo partial > ${out.o}; if [ ! -e gate ]; then touch started; while [ ! -e gate ]; do sleep 0.05; done; fi; echo done >> ${out.o}"
outputs.o = { kind = "text", path = "out/o.txt" }

[[node]]
id = "after"
cmd = "cat ${in.o} > ${out.p}"
inputs.o = "slow.o"
outputs.p = { kind = "text", path = "out/p.txt" }
"#;

fn no_object_holds(ws: &Ws, content: &str) {
    for f in ws.object_files() {
        assert_ne!(std::fs::read_to_string(&f).unwrap_or_default(), content, "partial object {}", f.display());
    }
}

#[test]
fn sigkill_mid_node_leaves_no_partial_object_and_the_next_run_completes() {
    let ws = Ws::new();
    ws.write("p.toml", SLOW);
    let mut child =
        Command::new(bin()).args(["run", "p.toml"]).current_dir(ws.dir.path()).stderr(Stdio::null()).spawn().unwrap();
    wait_for(&ws.path("started"));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    no_object_holds(&ws, "partial\n");
    assert!(!ws.path("out/o.txt").exists());
    assert!(std::fs::read_dir(ws.store().join("actions")).unwrap().next().is_none(), "no action may be recorded");

    std::fs::write(ws.path("gate"), "").unwrap();
    let out = ws.run("p.toml");
    assert_eq!(out.ran(), set(["slow", "after"]));
    assert_eq!(ws.read("out/p.txt"), "partial\ndone\n");
    assert!(std::fs::read_dir(ws.store().join("tmp")).unwrap().next().is_none(), "tmp/ is cleaned");
}

#[test]
fn ctrl_c_stops_the_run_cleanly() {
    let ws = Ws::new();
    ws.write("p.toml", SLOW);
    let child =
        Command::new(bin()).args(["run", "p.toml"]).current_dir(ws.dir.path()).stderr(Stdio::piped()).spawn().unwrap();
    wait_for(&ws.path("started"));
    // SAFETY: signals the child we started.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    no_object_holds(&ws, "partial\n");
    std::fs::write(ws.path("gate"), "").unwrap();
    assert_eq!(ws.run("p.toml").ran(), set(["slow", "after"]));
}

#[test]
fn a_second_run_on_the_same_store_is_refused_with_a_clear_message() {
    let ws = Ws::new();
    ws.write("p.toml", SLOW);
    let first =
        Command::new(bin()).args(["run", "p.toml"]).current_dir(ws.dir.path()).stderr(Stdio::piped()).spawn().unwrap();
    wait_for(&ws.path("started"));

    let second = ws.toe(&["run", "p.toml"]).fails();
    assert!(second.stderr.contains("is in use by another toe-pipe process (pid"), "{}", second.stderr);
    assert!(second.stderr.contains("run "), "{}", second.stderr);
    assert!(
        second.stderr.contains("fix: wait for it to finish, or give this run its own store with --store DIR"),
        "{}",
        second.stderr
    );
    // Reading is fine while a run holds the lock.
    ws.toe(&["status", "p.toml"]).ok();

    std::fs::write(ws.path("gate"), "").unwrap();
    let out = first.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(ws.run("p.toml").ran().is_empty());
}

const TWO: &str = r#"
[[node]]
id = "a"
cmd = "cat ${in.src} > ${out.x}; echo a >> ${out.x}; echo a >&2"
sources.src = "data/in.txt"
outputs.x = { kind = "text", path = "out/a.txt" }

[[node]]
id = "b"
cmd = "echo ${param.n} | cat - ${in.x} > ${out.y}; echo hello from b >&2"
inputs.x = "a.x"
params.n = 1
outputs.y = { kind = "text", path = "out/b.txt" }
"#;

fn two(ws: &Ws, n: i64) {
    ws.write("p.toml", &TWO.replace("params.n = 1", &format!("params.n = {n}")));
}

fn flip_a_byte(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    bytes[0] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

fn object_of(ws: &Ws, content: &str) -> std::path::PathBuf {
    let h = blake3::hash(content.as_bytes()).to_hex().to_string();
    ws.store().join("objects").join(&h[..2]).join(&h[2..])
}

#[test]
fn a_flipped_byte_in_a_stored_object_is_detected() {
    let ws = Ws::new();
    ws.write("data/in.txt", "x\n");
    two(&ws, 1);
    ws.run("p.toml");
    assert!(ws.toe(&["verify"]).ok().stdout.contains("ok: 2 objects match their hashes"));

    let obj = object_of(&ws, "1\nx\na\n");
    assert!(obj.exists());
    flip_a_byte(&obj);
    let out = ws.toe(&["verify"]).fails();
    assert!(out.stdout.contains("corrupt"), "{}", out.stdout);
    assert!(out.stdout.contains("1 of 2 objects are corrupt"), "{}", out.stdout);
    let out = ws.toe(&["verify", "--repair"]).fails();
    assert!(out.stdout.contains("removed"), "{}", out.stdout);
    // The action whose output is gone runs again.
    let status = ws.toe(&["status", "p.toml"]).ok();
    assert!(
        status.stdout.contains("stale  b  output `y` of the cached result is no longer in the store"),
        "{}",
        status.stdout
    );
    assert_eq!(ws.run("p.toml").ran(), set(["b"]));
    assert_eq!(ws.read("out/b.txt"), "1\nx\na\n");
    ws.toe(&["verify"]).ok();

    // `run --verify` finds it too, and rebuilds.
    flip_a_byte(&obj);
    let out = ws.toe(&["run", "--verify", "p.toml"]).ok();
    assert!(out.stderr.contains("corrupt  b"), "{}", out.stderr);
    assert_eq!(out.ran(), set(["b"]));
    assert_eq!(ws.read("out/b.txt"), "1\nx\na\n");
}

#[test]
fn lineage_returns_the_tree_down_to_the_sources() {
    let ws = Ws::new();
    ws.write("data/in.txt", "x\n");
    two(&ws, 7);
    ws.run("p.toml");
    let out = ws.toe(&["lineage", "out/b.txt", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let b = &v["produced_by"];
    assert_eq!(v["hash"], blake3::hash(b"7\nx\na\n").to_hex().as_str());
    assert_eq!(v["path"], "out/b.txt");
    assert_eq!(b["node"], "b");
    assert_eq!(b["output"], "y");
    assert_eq!(b["kind"], "cmd");
    assert_eq!(b["params"]["n"], 7);
    assert_eq!(b["device"], "cpu");
    // Where it ran: this machine, its CPU; no libtorch for a cmd node.
    let on = &b["ran_on"];
    assert_eq!(on["executor"], "local");
    assert_eq!(on["cpus"], 1);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let model = on["cpu_model"].as_str().expect("a CPU model");
    assert!(cpuinfo.lines().any(|l| l.split_whitespace().collect::<Vec<_>>().join(" ").contains(model)), "{model}");
    assert!(on.get("libtorch").is_none() && on.get("slurm_job").is_none(), "{on}");
    let a_out = &b["inputs"]["x"][0];
    assert_eq!(a_out["hash"], blake3::hash(b"x\na\n").to_hex().as_str());
    assert_eq!(a_out["from"], "a.x");
    let a = &a_out["produced_by"];
    assert_eq!(a["node"], "a");
    let src = &a["inputs"]["src"][0];
    assert_eq!(src["source"], true);
    assert_eq!(src["path"], "data/in.txt");
    assert_eq!(src["hash"], blake3::hash(b"x\n").to_hex().as_str());
    assert!(src.get("produced_by").is_none());

    let text = ws.toe(&["lineage", "out/b.txt"]).ok().stdout;
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("out/b.txt  (text, "), "{text}");
    assert!(lines[1].starts_with("└── node b.y [cmd `echo ${param.n} | cat - ${in.x} > ${out.y};"), "{text}");
    assert!(lines[2].starts_with("    on: local, 1 cpu, "), "{text}");
    assert_eq!(lines[3], "    params: n = 7", "{text}");
    assert!(lines[4].starts_with("    └── in x: from a.x  ("), "{text}");
    assert!(
        lines[5].starts_with("        └── node a.x [cmd `cat ${in.src} > ${out.x}; echo a >> ${out.x}; echo a >&2`]"),
        "{text}"
    );
    assert!(lines[6].starts_with("            on: local"), "{text}");
    assert!(lines[7].starts_with("            └── in src: source data/in.txt  ("), "{text}");
    assert_eq!(lines.len(), 8, "{text}");

    // By hash prefix too, and from another directory with --store.
    let h = blake3::hash(b"x\na\n").to_hex().to_string();
    let by_hash = ws.toe(&["lineage", &h[..10]]).ok().stdout;
    assert!(by_hash.contains("└── node a.x"), "{by_hash}");
    let elsewhere = Command::new(bin())
        .args(["--store", &ws.store().display().to_string(), "lineage", &h[..10]])
        .current_dir("/")
        .output()
        .unwrap();
    assert!(elsewhere.status.success());
    let unknown = ws.toe(&["lineage", "data/in.txt"]).fails();
    assert!(unknown.stderr.contains("was not produced by any action"), "{}", unknown.stderr);
}

#[test]
fn records_from_before_ran_on_still_read() {
    let ws = Ws::new();
    ws.write("data/in.txt", "x\n");
    two(&ws, 7);
    ws.run("p.toml");
    // Records as toe-pipe wrote them before it recorded where nodes ran.
    let mut records = Vec::new();
    for dir in std::fs::read_dir(ws.store().join("actions")).unwrap() {
        for f in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            records.push(f.unwrap().path());
        }
    }
    assert_eq!(records.len(), 2);
    for path in &records {
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert!(v.as_object_mut().unwrap().remove("ran_on").is_some(), "{v}");
        std::fs::write(path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    }
    let text = ws.toe(&["lineage", "out/b.txt"]).ok().stdout;
    assert!(text.contains("└── node b.y") && text.contains("└── node a.x"), "{text}");
    assert!(!text.contains(" on: "), "{text}");
    let json = ws.toe(&["lineage", "out/b.txt", "--json"]).ok().stdout;
    assert!(!json.contains("ran_on"), "{json}");
    // Still cache entries.
    assert!(ws.run("p.toml").ran().is_empty());
}

#[test]
fn log_shows_a_nodes_output() {
    let ws = Ws::new();
    ws.write("data/in.txt", "x\n");
    two(&ws, 1);
    ws.run("p.toml");
    let out = ws.toe(&["log", "b"]).ok();
    assert!(out.stdout.contains("hello from b"), "{}", out.stdout);
    assert!(out.stderr.contains("log of p:b (succeeded"), "{}", out.stderr);
    assert!(ws.toe(&["log", "p:a"]).ok().stdout.contains("a\n"));
    let bad = ws.toe(&["log", "zz"]).fails();
    assert!(bad.stderr.contains("no run of node `zz`"), "{}", bad.stderr);
}

#[test]
fn gc_drops_what_nothing_needs() {
    let ws = Ws::new();
    ws.write("data/in.txt", "x\n");
    two(&ws, 1);
    ws.run("p.toml");
    two(&ws, 2);
    ws.run("p.toml");

    // Everything is recent: nothing to drop by default.
    let out = ws.toe(&["gc", "--dry-run"]).ok();
    assert!(out.stdout.contains("would remove 0 objects"), "{}", out.stdout);

    let out = ws.toe(&["gc", "--dry-run", "--keep-recent", "0s"]).ok();
    assert!(out.stdout.contains("would remove 1 objects, 1 action records, 1 logs"), "{}", out.stdout);
    assert!(object_of(&ws, "1\nx\na\n").exists());

    let out = ws.toe(&["gc", "--keep-recent", "0s"]).ok();
    assert!(out.stdout.contains("removed 1 objects, 1 action records, 1 logs; freed 6 B"), "{}", out.stdout);
    assert!(!object_of(&ws, "1\nx\na\n").exists());
    assert!(object_of(&ws, "2\nx\na\n").exists());
    ws.toe(&["verify"]).ok();
    assert!(ws.run("p.toml").ran().is_empty());

    // The earlier version is gone, so switching back runs again.
    two(&ws, 1);
    assert_eq!(ws.run("p.toml").ran(), set(["b"]));

    // A pipeline whose file is gone keeps nothing.
    std::fs::remove_file(ws.path("p.toml")).unwrap();
    let out = ws.toe(&["gc", "--keep-recent", "0s"]).ok();
    assert!(out.stdout.contains("pipeline p: its file is gone"), "{}", out.stdout);
    assert!(out.stdout.contains("removed 3 objects"), "{}", out.stdout);
    assert!(out.stdout.contains("still linked from workspace files"), "{}", out.stdout);
    assert!(out.stdout.contains("removed the stat caches of "), "{}", out.stdout);
    assert_eq!(std::fs::read_dir(ws.store().join("statcache")).unwrap().count(), 0);
}

#[test]
fn gc_keeps_the_stat_caches_of_sources_read_recently() {
    let ws = Ws::new();
    ws.write("data/in.txt", "x\n");
    two(&ws, 1);
    // Past the stat cache's two-second window for just-written files, which
    // are hashed again each run rather than trusted.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    ws.run("p.toml");
    // Age every cache file; a run that reads the source marks its cache used.
    let caches: Vec<_> = std::fs::read_dir(ws.store().join("statcache")).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(!caches.is_empty());
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    for c in &caches {
        std::fs::File::options().write(true).open(c).unwrap().set_modified(two_hours_ago).unwrap();
    }
    let out = ws.toe(&["gc", "--dry-run", "--keep-recent", "1h"]).ok();
    assert!(out.stdout.contains("would remove the stat caches of"), "{}", out.stdout);
    assert!(ws.run("p.toml").ran().is_empty());
    let out = ws.toe(&["gc", "--keep-recent", "1h"]).ok();
    assert!(!out.stdout.contains("stat caches"), "{}", out.stdout);
    assert_eq!(std::fs::read_dir(ws.store().join("statcache")).unwrap().count(), caches.len());
}

#[test]
fn gc_removes_the_temp_files_that_writes_of_a_killed_run_left() {
    let ws = Ws::new();
    ws.write("data/in.txt", "x\n");
    two(&ws, 1);
    ws.run("p.toml");
    let store = ws.store();
    let shard = std::fs::read_dir(store.join("actions")).unwrap().next().unwrap().unwrap().path();
    std::fs::create_dir_all(store.join("slurm")).unwrap();
    let left = [
        store.join("refs/.p.json.tmp-4242-0"),
        shard.join(".ab.json.tmp-4242-1"),
        store.join("slurm/.16.json.tmp-7-2"),
        store.join("cache/.ops-1a.json.tmp-7-3"),
    ];
    // A write that may still be under way, and files of other names: kept.
    let fresh = store.join("refs/.p.json.tmp-4243-0");
    let others = [store.join("refs/.p.json.tmp-x"), store.join("refs/notes.tmp-1-2")];
    // A link with such a name is not followed to what it names.
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("precious");
    std::fs::write(&target, "keep").unwrap();
    let link = store.join("refs/.q.json.tmp-1-1");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    for f in left.iter().chain(&others).chain([&fresh]) {
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, "{\"half\": ").unwrap();
        if f != &fresh {
            std::fs::File::options().write(true).open(f).unwrap().set_modified(two_hours_ago).unwrap();
        }
    }
    std::fs::File::options().write(true).open(&target).unwrap().set_modified(two_hours_ago).unwrap();

    let out = ws.toe(&["gc", "--dry-run"]).ok();
    assert!(out.stdout.contains("would remove 4 temp files of record writes"), "{}", out.stdout);
    assert!(left.iter().all(|f| f.exists()));
    let out = ws.toe(&["gc"]).ok();
    assert!(out.stdout.contains("removed 4 temp files of record writes"), "{}", out.stdout);
    for f in &left {
        assert!(!f.exists(), "{} is left", f.display());
    }
    for f in others.iter().chain([&fresh, &link, &target]) {
        assert!(f.exists(), "{} was removed", f.display());
    }
    ws.toe(&["verify"]).ok();
    assert!(ws.run("p.toml").ran().is_empty());
}

#[test]
fn a_custom_store_location() {
    let ws = Ws::new();
    ws.write("data/in.txt", "x\n");
    two(&ws, 1);
    let out = ws.toe(&["--store", "elsewhere/store", "run", "p.toml"]).ok();
    assert_eq!(out.ran(), set(["a", "b"]));
    assert!(ws.path("elsewhere/store/STORE").exists());
    assert!(!ws.path("artifacts").exists());
    assert!(ws.toe(&["--store", "elsewhere/store", "run", "p.toml"]).ok().ran().is_empty());
    // A directory that is not a store is not taken over.
    ws.write("notastore/file.txt", "mine");
    let bad = ws.toe(&["--store", "notastore", "run", "p.toml"]).fails();
    assert!(bad.stderr.contains("is not a toe-pipe store"), "{}", bad.stderr);
}

#[test]
fn runs_started_together_on_a_new_workspace_either_run_or_say_in_use() {
    for round in 0..15 {
        let ws = Ws::new();
        ws.write(
            "p.toml",
            r#"
[[node]]
id = "a"
cmd = "sleep 0.2; echo a > ${out.o}"
outputs.o = { kind = "text", path = "out/a.txt" }
"#,
        );
        let children: Vec<_> = (0..4)
            .map(|_| {
                Command::new(bin())
                    .args(["run", "p.toml"])
                    .current_dir(ws.dir.path())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut ran = 0;
        for child in children {
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            if out.status.success() {
                ran += 1;
            } else {
                assert!(stderr.contains("in use by another toe-pipe"), "round {round}: {stderr}");
            }
        }
        assert!(ran >= 1, "round {round}: one run must win");
        assert_eq!(ws.read("out/a.txt"), "a\n");
    }
}

#[test]
fn a_store_that_cannot_be_locked_prints_the_os_error_once() {
    let ws = Ws::new();
    ws.write("p.toml", SLOW);
    std::fs::write(ws.path("gate"), "").unwrap();
    ws.run("p.toml");
    // The lock file replaced by a folder: opening it fails for root too.
    std::fs::remove_file(ws.store().join("lock")).unwrap();
    std::fs::create_dir(ws.store().join("lock")).unwrap();
    for args in [&["run", "p.toml"][..], &["gc"][..], &["verify", "--repair"][..]] {
        let out = ws.toe(args).fails();
        assert!(out.stderr.contains("cannot lock the store"), "{args:?}: {}", out.stderr);
        assert_eq!(out.stderr.matches("os error").count(), 1, "{args:?}: {}", out.stderr);
    }
}
