//! When toe-pipe is killed (SIGKILL, which it cannot catch), nothing of
//! its nodes keeps running: not the node's shell, and not the processes
//! the shell started, which would otherwise write on after the run.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{bin, Ws};

/// Three ways a node's work outlives its shell: a subshell, a pipeline,
/// and a plain command (which `sh` forks rather than execs). Each node
/// writes its process group id to pg_NODE first.
const LATE: &str = r#"
[[node]]
id = "sub"
cmd = "cut -d' ' -f5 /proc/self/stat > pg_sub.tmp && mv pg_sub.tmp pg_sub; (sleep 2; echo late >> late_sub.txt); echo x > ${out.f}"
outputs.f = "text"

[[node]]
id = "pipe"
cmd = "cut -d' ' -f5 /proc/self/stat > pg_pipe.tmp && mv pg_pipe.tmp pg_pipe; (sleep 2; echo late >> late_pipe.txt) | cat > ${out.f}"
outputs.f = "text"

[[node]]
id = "plain"
cmd = "cut -d' ' -f5 /proc/self/stat > pg_plain.tmp && mv pg_plain.tmp pg_plain; sleep 8 > ${out.f}"
outputs.f = "text"
"#;

const NODES: [&str; 3] = ["sub", "pipe", "plain"];

fn wait_for(path: &Path) {
    let t0 = Instant::now();
    while !path.exists() {
        assert!(t0.elapsed() < Duration::from_secs(20), "timed out waiting for {}", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Live (not zombie) processes in process group `pg`.
fn alive_in_group(pg: i32) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        // pid (comm) state ppid pgrp ...; comm may hold spaces.
        let Some(close) = stat.rfind(')') else { continue };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        if fields.len() > 2 && fields[2] == pg.to_string() && fields[0] != "Z" {
            out.push(stat[..=close].to_owned());
        }
    }
    out
}

#[test]
fn sigkill_of_toe_pipe_kills_every_process_of_its_nodes() {
    let ws = Ws::new();
    ws.write("p.toml", LATE);
    let mut child = Command::new(bin())
        .args(["run", "-j", "3", "p.toml"])
        .current_dir(ws.dir.path())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let groups: Vec<i32> = NODES
        .iter()
        .map(|n| {
            let f = ws.path(&format!("pg_{n}"));
            wait_for(&f);
            std::fs::read_to_string(&f).unwrap().trim().parse().unwrap()
        })
        .collect();
    // Each node's work is under way (its subshell, pipeline or sleep).
    std::thread::sleep(Duration::from_millis(200));
    for (n, &pg) in NODES.iter().zip(&groups) {
        assert!(!alive_in_group(pg).is_empty(), "node {n} should be running");
    }
    let killed = Instant::now();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // Gone within a second...
    loop {
        let left: Vec<(&str, Vec<String>)> = NODES
            .iter()
            .zip(&groups)
            .map(|(n, &pg)| (*n, alive_in_group(pg)))
            .filter(|(_, procs)| !procs.is_empty())
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(killed.elapsed() < Duration::from_secs(1), "still running 1 s after the kill: {left:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // ... and nothing wrote after the kill (the subshells would have, a
    // two seconds after they started).
    std::thread::sleep(Duration::from_millis(2500).saturating_sub(killed.elapsed()));
    for n in ["sub", "pipe"] {
        assert!(!ws.path(&format!("late_{n}.txt")).exists(), "node {n}'s subshell wrote after toe-pipe was killed");
    }
    ws.toe(&["verify"]).ok();
}

#[test]
fn what_a_node_leaves_running_ends_with_it() {
    // A background job would otherwise write on after the node's outputs
    // were hashed and stored.
    let ws = Ws::new();
    ws.write(
        "p.toml",
        "[[node]]\nid = \"bg\"\ncmd = \"(sleep 1; echo late >> late.txt) & echo x > ${out.f}\"\noutputs.f = \"text\"\n",
    );
    let done = Instant::now();
    ws.run("p.toml");
    std::thread::sleep(Duration::from_millis(1500).saturating_sub(done.elapsed()));
    assert!(!ws.path("late.txt").exists(), "the node's background job ran on after it");
}

/// Processes whose environment names this workspace: every node process
/// and what it started (they inherit TOE_PIPE_WORKSPACE).
fn processes_of(ws: &Ws) -> Vec<String> {
    let marker = format!("TOE_PIPE_WORKSPACE={}", ws.dir.path().display());
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(env) = std::fs::read(e.path().join("environ")) else { continue };
        if env.split(|&b| b == 0).any(|v| v == marker.as_bytes()) {
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            // Zombies wait for their new parent to reap them; they run no more.
            let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next().map(str::to_owned));
            if state.as_deref() != Some("Z") {
                out.push(stat);
            }
        }
    }
    out
}

/// a -> b, c -> d, each with work in a subshell, a pipeline or a forked
/// command that writes the time to late.txt when it is done; `v` changes
/// every output, so each run runs every node.
const DAG: &str = r#"
[vars]
v = 0

[[node]]
id = "a"
cmd = "(sleep 0.3; date +%s%N >> late.txt); echo a ${v} > ${out.x}"
outputs.x = { kind = "text", path = "out/a.txt" }

[[node]]
id = "b"
cmd = "(sleep 0.3; date +%s%N >> late.txt) | cat > /dev/null; cat ${in.x} > ${out.y}; echo b >> ${out.y}"
inputs.x = "a.x"
outputs.y = { kind = "text", path = "out/b.txt" }

[[node]]
id = "c"
cmd = "sleep 0.3 > /dev/null; date +%s%N >> late.txt; cat ${in.x} > ${out.z}; echo c >> ${out.z}"
inputs.x = "a.x"
outputs.z = { kind = "text", path = "out/c.txt" }

[[node]]
id = "d"
cmd = "(sleep 0.1; cat ${in.y} ${in.z}) > ${out.w}"
inputs.y = "b.y"
inputs.z = "c.z"
outputs.w = { kind = "text", path = "out/d.txt" }
"#;

fn now_ns() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

#[test]
fn twenty_sigkills_at_random_points_leave_nothing_running_and_the_store_consistent() {
    let ws = Ws::new();
    ws.write("p.toml", DAG);
    let mut seed = now_ns() as u64;
    let mut random_ms = |below: u64| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) % below
    };
    let mut kills = Vec::new();
    let mut seen = 0;
    for v in 0..20 {
        let set = format!("v={v}");
        let mut child = Command::new(bin())
            .args(["run", "-j", "2", "p.toml", "--set", &set])
            .current_dir(ws.dir.path())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let at = random_ms(900);
        kills.push(at);
        std::thread::sleep(Duration::from_millis(at));
        child.kill().unwrap();
        let killed_ns = now_ns();
        child.wait().unwrap();
        let killed = Instant::now();
        loop {
            let left = processes_of(&ws);
            if left.is_empty() {
                break;
            }
            assert!(killed.elapsed() < Duration::from_secs(1), "killed at {at} ms (v={v}); 1 s later: {left:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Nothing of the run did anything 100 ms after the kill (time
        // enough for the helper that kills the nodes to be scheduled).
        let late = std::fs::read_to_string(ws.path("late.txt")).unwrap_or_default();
        let times: Vec<u128> = late.lines().map(|l| l.trim().parse().unwrap()).collect();
        for &t in &times[seen..] {
            assert!(
                t <= killed_ns + 100_000_000,
                "killed at {at} ms (v={v}): a node process wrote {} ms after the kill",
                (t - killed_ns) / 1_000_000
            );
        }
        seen = times.len();
        ws.toe(&["verify"]).ok();
    }
    // Resumed, the last run's outputs are a clean run's.
    ws.toe(&["run", "p.toml", "--set", "v=19"]).ok();
    let clean = Ws::new();
    clean.write("p.toml", DAG);
    clean.toe(&["run", "p.toml", "--set", "v=19"]).ok();
    for f in ["out/a.txt", "out/b.txt", "out/c.txt", "out/d.txt"] {
        assert_eq!(ws.read(f), clean.read(f), "{f} (kills at {kills:?} ms)");
    }
    ws.toe(&["verify"]).ok();
}
