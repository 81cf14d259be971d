//! Helpers for the CLI tests: a workspace in a temp dir and a way to run
//! `toe-pipe` in it. The root crate's tests use them too (its
//! tests/common/mod.rs includes this file).
#![allow(dead_code)]

pub mod cluster;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `toe-pipe` binary. Cargo names it to this crate's tests; the root
/// crate's tests are not told (cargo sets CARGO_BIN_EXE_ only for a
/// package's own binaries, and does not build them for other packages'
/// tests), so they look where cargo puts it for the same profile:
/// target/PROFILE/, above the deps/ folder of the test executable.
pub fn bin() -> PathBuf {
    if let Some(bin) = option_env!("CARGO_BIN_EXE_toe-pipe") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let deps = exe.parent().expect("test executables live in target/PROFILE/deps/");
    let bin = deps.parent().expect("test executables live in target/PROFILE/deps/").join("toe-pipe");
    let fix = "fix: cargo build --release --bins (scripts/test.sh, the whole suite, builds it too)";
    // Not checked: whether the binary is older than the engine's sources.
    // Its file time says little (cargo keeps several builds of the library,
    // for other feature sets, and leaves a binary whose build is unchanged
    // untouched), so `cargo test --test testsuite` alone after an engine
    // edit needs `cargo build --release --bins` first.
    if !bin.is_file() {
        panic!("{} is missing: these tests run the toe-pipe binary of crates/core, which cargo does not build for the root crate's tests.\n  {fix}", bin.display())
    }
    bin
}

pub struct Ws {
    pub dir: tempfile::TempDir,
}

/// What one `toe-pipe` invocation did.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn from(o: Output) -> Out {
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Nodes reported with `verb` (e.g. "ran", "restored", "FAILED").
    pub fn nodes(&self, verb: &str) -> BTreeSet<String> {
        self.stderr
            .lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                (words.next() == Some(verb)).then(|| words.next().map(str::to_owned)).flatten()
            })
            .collect()
    }

    pub fn ran(&self) -> BTreeSet<String> {
        self.nodes("ran")
    }

    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    #[track_caller]
    pub fn ok(self) -> Out {
        assert_eq!(self.code, 0, "toe-pipe failed:\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr);
        self
    }

    #[track_caller]
    pub fn fails(self) -> Out {
        assert_ne!(
            self.code, 0,
            "toe-pipe should have failed:\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "toe-pipe panicked:\n{}", self.stderr);
        self
    }
}

pub fn set<const N: usize>(items: [&str; N]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

impl Ws {
    pub fn new() -> Ws {
        Ws { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        // Stored objects are read-only and materialised by hard link; write
        // through a fresh file, as an editor would.
        let _ = std::fs::remove_file(&p);
        std::fs::write(&p, content).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
    }

    pub fn toe(&self, args: &[&str]) -> Out {
        self.toe_env(args, &[])
    }

    pub fn toe_env(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let mut cmd = Command::new(bin());
        cmd.args(args).current_dir(self.dir.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Out::from(cmd.output().expect("run toe-pipe"))
    }

    pub fn run(&self, pipeline: &str) -> Out {
        self.toe(&["run", pipeline]).ok()
    }

    pub fn store(&self) -> PathBuf {
        self.path("artifacts")
    }

    /// Every file under the store's objects/.
    pub fn object_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(&self.store().join("objects"), &mut out);
        out
    }
}

impl Drop for Ws {
    /// Stored directories are read-only; make them removable again so the
    /// temp dir can be deleted when the tests do not run as root.
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        fn unseal(dir: &Path) {
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    unseal(&e.path());
                }
            }
        }
        unseal(self.dir.path());
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}
