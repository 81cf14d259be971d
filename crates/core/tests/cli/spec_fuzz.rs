//! Property test of the pipeline parser and checker (issue 15): generated
//! files, random TOML-ish text and valid pipelines with random edits, are
//! loaded and checked as `toe-pipe check` does. Nothing may panic, and
//! every error must point at file:line:col inside the file.
//!
//! Cases per run: PROPTEST_CASES (default 300 here, a few seconds), so CI
//! runs a bounded number; set it higher to search longer.

use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use toe_pipe_core::spec::check::{check, CheckOptions};
use toe_pipe_core::spec::{expand, Diagnostics, LoadOptions};

const VALID: [&str; 3] = [
    r#"
[vars]
seeds = [1, 2]
name = "x"

[[node]]
id = "gen_${s}"
for_each.s = "${seeds}"
cmd = "echo ${s} > ${out.o}"
outputs.o = { kind = "text", path = "out/${name}_${s}.txt" }

[[node]]
id = "join"
cmd = "cat ${in.parts} > ${out.all}"
inputs.parts = ["gen_1.o", "gen_2.o"]
outputs.all = { kind = "text", path = "out/all.txt" }
"#,
    r#"
pipeline = "p"
workspace = "."

[[node]]
id = "a"
cmd = "cat ${in.src} > ${out.d}/f.txt"
sources.src = "data/in.txt"
outputs.d = { kind = "dir", path = "out/d" }
doc = "copies"

[[node]]
id = "b"
op = "scale"
inputs.x = "a.d"
params.factor = 2.5
device = "gpu"
"#,
    r#"
[[node]]
id = "n_${i}_${j}"
for_each.i = [1, 2]
for_each.j = ["p", "q"]
cmd = "echo ${i}${j} > ${out.o}"
outputs.o = "text"
"#,
];

/// Pieces that random files are made of: TOML syntax, field names and
/// placeholders the loader treats specially.
const TOKENS: [&str; 40] = [
    "[[node]]\n",
    "[vars]\n",
    "[sources_help]\n",
    "\n",
    " = ",
    "\"",
    "'",
    "[",
    "]",
    "{",
    "}",
    ",",
    ".",
    "=",
    "id",
    "cmd",
    "op",
    "inputs",
    "sources",
    "outputs",
    "params",
    "for_each",
    "kind",
    "path",
    "device",
    "require_gpu",
    "doc",
    "${",
    "${out.o}",
    "${in.x}",
    "${v}",
    "$$",
    "\\u0000",
    "1",
    "-3.5e9",
    "true",
    "\"a.o\"",
    "\"../x\"",
    "\"/abs\"",
    "é\u{0}",
];

/// One edit of a valid file.
#[derive(Debug, Clone)]
enum Edit {
    Delete { at: usize, len: usize },
    Insert { at: usize, token: usize },
    Byte { at: usize, byte: u8 },
    DupLine { line: usize },
    SwapLines { a: usize, b: usize },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1usize..12).prop_map(|(at, len)| Edit::Delete { at, len }),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(at, token)| Edit::Insert { at, token }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Edit::Byte { at, byte }),
        any::<usize>().prop_map(|line| Edit::DupLine { line }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines { a, b }),
    ]
}

fn apply(text: &[u8], e: &Edit) -> Vec<u8> {
    let mut t = text.to_vec();
    let n = t.len().max(1);
    match *e {
        Edit::Delete { at, len } => {
            let at = at % n;
            t.drain(at.min(t.len())..(at + len).min(t.len()));
        }
        Edit::Insert { at, token } => {
            let at = at % (t.len() + 1);
            t.splice(at..at, TOKENS[token].bytes());
        }
        Edit::Byte { at, byte } => {
            if !t.is_empty() {
                t[at % n] = byte;
            }
        }
        Edit::DupLine { line } | Edit::SwapLines { a: line, .. } => {
            let mut lines: Vec<Vec<u8>> = t.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
            let count = lines.len();
            let i = line % count;
            match *e {
                Edit::SwapLines { b, .. } => lines.swap(i, b % count),
                _ => {
                    let copy = lines[i].clone();
                    lines.insert(i, copy);
                }
            }
            t = lines.join(&b'\n');
        }
    }
    t
}

fn file() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Random text from the token alphabet.
        proptest::collection::vec(0..TOKENS.len(), 0..60).prop_map(|ts| ts
            .into_iter()
            .map(|i| TOKENS[i])
            .collect::<String>()
            .into_bytes()),
        // A valid pipeline with a few random edits.
        (0..VALID.len(), proptest::collection::vec(edit(), 1..6))
            .prop_map(|(v, edits)| edits.iter().fold(VALID[v].as_bytes().to_vec(), |t, e| apply(&t, e))),
    ]
}

/// Every diagnostic names the file and a line:col that exists in it.
fn assert_located(diags: &Diagnostics, path: &Path, text: &[u8]) {
    let lines = text.split(|&b| b == b'\n').count();
    for d in &diags.0 {
        assert_eq!(d.file, path.display().to_string(), "{d}");
        assert!(d.line >= 1 && d.line <= lines, "line out of the file ({lines} lines): {d}");
        assert!(d.col >= 1, "{d}");
        assert!(!d.message.is_empty(), "{d}");
    }
}

/// Load and check one file as `toe-pipe check` does (without the op
/// catalog, which needs the worker binary); (diagnostics, loaded at all).
fn load_and_check(dir: &Path, text: &[u8]) -> usize {
    let path = dir.join("p.toml");
    std::fs::write(&path, text).unwrap();
    let mut n = 0;
    match expand(&path, &LoadOptions::default()) {
        Err(diags) => {
            assert!(!diags.0.is_empty(), "a failed load must say why");
            assert_located(&diags, &path, text);
            n += diags.0.len();
        }
        Ok((mut pipeline, diags)) => {
            assert_located(&diags, &path, text);
            n += diags.0.len();
            let opts = CheckOptions { sources: true, store: Some(dir.join("artifacts")) };
            if let Err(diags) = check(&mut pipeline, None, &opts) {
                assert_located(&diags, &path, text);
                n += diags.0.len();
            }
        }
    }
    n
}

#[test]
fn generated_pipeline_files_never_panic_and_every_error_is_located() {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/in.txt"), "x").unwrap();
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let (ran, with_errors) = (std::cell::Cell::new(0u32), std::cell::Cell::new(0u32));
    runner
        .run(&file(), |text| {
            ran.set(ran.get() + 1);
            if load_and_check(dir.path(), &text) > 0 {
                with_errors.set(with_errors.get() + 1);
            }
            Ok(())
        })
        .unwrap();
    let (ran, with_errors) = (ran.get(), with_errors.get());
    eprintln!("spec fuzz: {ran} files, {with_errors} with errors, no panic");
    // The generator must produce both kinds, or it tests little.
    assert!(with_errors > 0 && with_errors < ran, "{with_errors} of {ran} files had errors");
}

#[test]
fn the_valid_seeds_load_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/in.txt"), "x").unwrap();
    // Seed 1 has an op node, which needs the catalog; the others are clean.
    assert_eq!(load_and_check(dir.path(), VALID[0].as_bytes()), 0);
    assert_eq!(load_and_check(dir.path(), VALID[2].as_bytes()), 0);
}
