//! Helpers shared by the formats and metrics tests: the venv's Python, the
//! reference folder, scratch directories.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The project venv's Python (made by scripts/setup.sh).
pub fn python() -> PathBuf {
    let p = manifest_dir().join(".venv/bin/python");
    assert!(p.exists(), "{} is missing: run scripts/setup.sh first", p.display());
    p
}

/// Runs `script` with the venv's Python and `args`; panics with its output
/// if it fails, returns its stdout otherwise.
pub fn run_python(script: &str, args: &[&Path]) -> String {
    let out = Command::new(python()).arg("-c").arg(script).args(args).output().expect("cannot start the venv's Python");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "Python failed:\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    stdout
}

/// The original release's reference files, or None (with a message saying
/// the test is skipped) when the folder is absent.
pub fn reference_dir(test: &str) -> Option<PathBuf> {
    let dir = manifest_dir().join("../shared/reference/toe");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIPPED {test}: reference folder {} is absent", dir.display());
        None
    }
}

pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().expect("cannot create a temporary directory")
}
