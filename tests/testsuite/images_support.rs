//! Shared by the images tests: running the venv's Python (Pillow,
//! torchvision and OpenAI's CLIP code are the reference implementation).

use std::path::Path;
use std::process::Command;

/// Runs the venv's Python with `args` and returns its standard output;
/// panics with its standard error when it fails.
pub fn run_python<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Vec<u8> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh (the venv holds the Pillow/torchvision reference)",
        python.display()
    );
    let out = Command::new(&python).args(args).output().expect("run the venv's python");
    assert!(
        out.status.success(),
        "python {:?} failed:\n{}",
        args.iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
