//! Shared by the decoder tests: running Python reference code from the
//! project venv (transformers, sentencepiece, torch) at test time.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The venv's Python, if it has every module in `modules`; otherwise
/// prints why the calling test is skipped and returns `None`.
pub fn python_with(modules: &[&str]) -> Option<PathBuf> {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if !py.exists() {
        eprintln!("SKIP: {} not found (run scripts/setup.sh)", py.display());
        return None;
    }
    let probe = format!("import {}", modules.join(", "));
    let ok = Command::new(&py).args(["-c", &probe]).output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        eprintln!("SKIP: the venv lacks one of {modules:?} (scripts/requirements.txt lists them)");
        return None;
    }
    Some(py)
}

/// Run `script` with `args`; panics with its stderr if it fails.
pub fn run_python(py: &Path, script: &str, args: &[&str]) -> String {
    let out = Command::new(py)
        .arg("-c")
        .arg(script)
        .args(args)
        .env("TRANSFORMERS_VERBOSITY", "error")
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("running python");
    if !out.status.success() {
        panic!("python failed:\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    String::from_utf8(out.stdout).expect("utf-8 output")
}
