//! Shared by the CLIP conformance tests: running the Python reference
//! (`tests/clip_reference.py`, OpenAI's code from the project venv).

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `tests/clip_reference.py ARGS...` with the venv's Python; panics
/// with the reference's stderr when it fails (a test set-up error).
pub fn run_reference(args: &[&str]) {
    let python = manifest_dir().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh to create the venv with the CLIP reference",
        python.display()
    );
    let script = manifest_dir().join("tests/clip_reference.py");
    let output = Command::new(&python).arg(&script).args(args).output().expect("starting the venv's Python");
    assert!(
        output.status.success(),
        "the CLIP reference ({} {}) failed:\n{}",
        script.display(),
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}
