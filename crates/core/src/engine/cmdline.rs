//! A cmd node's command line: its run-time placeholders filled in, the
//! list files `${in.NAME:list}` names, and the length Linux allows.
//!
//! A command runs as `/bin/sh -c LINE`, so LINE is one argument of
//! `execve`, and Linux refuses an argument longer than `MAX_ARG_STRLEN`
//! (32 pages: 128 KiB with 4 KiB pages) with E2BIG. A list input of a few
//! thousand store paths is longer than that; given as a list file it is one
//! path. `check` works the length out before anything runs (see
//! [`check_lengths`]), with every path as long as a run can make it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::spec::vars::{self, ListForm};
use crate::spec::{Action, Diagnostics, InputRef, Node, ParamValue, Pipeline};
use crate::store::{self, Hash};

use super::exec::{lineage_file, output_path, shell_quote};

/// Longest argument `execve` accepts on Linux (`MAX_ARG_STRLEN`), its
/// terminating NUL included. 32 pages: with 4 KiB pages, 128 KiB.
pub const MAX_ARG_BYTES: usize = 32 * 4096;

/// What the placeholders of a command stand for.
pub struct Values<'a> {
    /// Input port -> its paths, in order.
    pub inputs: &'a BTreeMap<String, Vec<PathBuf>>,
    /// Output name -> where the command writes it.
    pub outputs: &'a BTreeMap<String, PathBuf>,
    pub params: &'a BTreeMap<String, ParamValue>,
    /// The node's temporary directory, where list files go.
    pub dir: &'a Path,
}

/// A list file a command refers to, to be written before it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct ListFile {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

/// Where `${in.PORT:FORM}` is written in the node's directory.
pub fn list_file(dir: &Path, port: &str, form: ListForm) -> PathBuf {
    dir.join(format!("{port}.{}", form.suffix()))
}

/// Why a command could not be filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct FillError {
    pub message: String,
    /// None for what `check` reports by itself (a placeholder without its
    /// port), which a checked pipeline never has.
    pub fix: Option<String>,
}

impl std::fmt::Display for FillError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.fix {
            Some(fix) => write!(f, "{}\n  fix: {fix}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Fill in a command's placeholders: the line, and the list files it
/// names (each once).
pub fn fill(template: &str, v: &Values) -> Result<(String, Vec<ListFile>), FillError> {
    let mut lists: Vec<ListFile> = Vec::new();
    let mut fixable = None;
    let line = vars::fill_runtime(template, |ns, name, form| match (ns, form) {
        ("in", None) => v
            .inputs
            .get(name)
            .map(|ps| ps.iter().map(|p| shell_quote(&p.to_string_lossy())).collect::<Vec<_>>().join(" "))
            .ok_or_else(|| format!("no input `{name}`")),
        ("in", Some(form)) => {
            let paths = v.inputs.get(name).ok_or_else(|| format!("no input `{name}`"))?;
            let path = list_file(v.dir, name, form);
            if !lists.iter().any(|l| l.path == path) {
                match list_bytes(name, paths, form) {
                    Ok(bytes) => lists.push(ListFile { path: path.clone(), bytes }),
                    Err(e) => {
                        let message = e.message.clone();
                        fixable = Some(e);
                        return Err(message);
                    }
                }
            }
            Ok(shell_quote(&path.to_string_lossy()))
        }
        ("out", _) => {
            v.outputs.get(name).map(|p| shell_quote(&p.to_string_lossy())).ok_or_else(|| format!("no output `{name}`"))
        }
        _ => v
            .params
            .get(name)
            .map(|value| match value {
                ParamValue::List(items) => {
                    items.iter().map(|i| shell_quote(&i.to_plain_string())).collect::<Vec<_>>().join(" ")
                }
                other => shell_quote(&other.to_plain_string()),
            })
            .ok_or_else(|| format!("no param `{name}`")),
    })
    .map_err(|message| fixable.take().unwrap_or(FillError { message, fix: None }))?;
    Ok((line, lists))
}

/// The content of a list file: each path followed by the form's
/// terminator. A newline inside a path would read as two paths in a file of
/// lines, so that is an error that points to the NUL-terminated form.
fn list_bytes(port: &str, paths: &[PathBuf], form: ListForm) -> Result<Vec<u8>, FillError> {
    use std::os::unix::ffi::OsStrExt;
    let mut bytes = Vec::with_capacity(paths.iter().map(|p| p.as_os_str().len() + 1).sum());
    for p in paths {
        let raw = p.as_os_str().as_bytes();
        if form == ListForm::Lines && raw.contains(&b'\n') {
            return Err(FillError {
                message: format!(
                    "input `{port}` has a path with a newline in it ({p:?}), which a list of one path per line cannot hold"
                ),
                fix: Some(format!(
                    "use `${{in.{port}:list0}}` (NUL-terminated paths, e.g. `xargs -0 ... < ${{in.{port}:list0}}`), or rename the file"
                )),
            });
        }
        bytes.extend_from_slice(raw);
        bytes.push(form.terminator());
    }
    Ok(bytes)
}

/// Why a filled-in command line cannot be passed to `sh -c`, if it cannot,
/// as (message, fix). `longest`: the line has the longest paths a run can
/// give it, not a run's own.
pub fn too_long(
    template: &str,
    line: &str,
    inputs: &BTreeMap<String, Vec<PathBuf>>,
    longest: bool,
) -> Option<(String, String)> {
    if line.len() < MAX_ARG_BYTES {
        return None;
    }
    // The inputs written out path by path, longest list first: they are
    // what grows with the pipeline.
    let mut lists: Vec<(&str, usize)> = vars::runtime_placeholders(template)
        .unwrap_or_default()
        .into_iter()
        .filter(|(ns, _, form)| ns == "in" && form.is_none())
        .filter_map(|(_, name, _)| inputs.get_key_value(name.as_str()).map(|(k, ps)| (k.as_str(), ps.len())))
        .collect();
    lists.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    lists.dedup();
    let named: Vec<String> = lists.iter().map(|(port, n)| format!("`${{in.{port}}}` ({n} paths)")).collect();
    let message = format!(
        "the command is {}{} bytes once its placeholders are filled in{}, and Linux refuses a command line of {} bytes or more (`sh -c` gets it as one argument; the limit is MAX_ARG_STRLEN, 128 KiB)",
        if longest { "up to " } else { "" },
        line.len(),
        if named.is_empty() { String::new() } else { format!(", most of it {}", named.join(", ")) },
        MAX_ARG_BYTES
    );
    let fix = match lists.first() {
        Some((port, _)) => format!(
            "pass the list as a file: `${{in.{port}:list}}` is the path of a file with one path per line (e.g. `xargs -d '\\n' cat < ${{in.{port}:list}}`, or read it in your script)"
        ),
        None => "shorten the command, or move its text into a script declared as a source".to_owned(),
    };
    Some((message, fix))
}

/// Every cmd node whose command, filled in with the longest paths a run can
/// give it (store `store_root`), would be too long to start, or whose list
/// file could not be written. Reported before anything runs.
pub fn check_lengths(p: &Pipeline, store_root: &Path) -> Diagnostics {
    let mut diags = Diagnostics::default();
    // Every object path has the same length: 64 hex digits.
    let object = store::object_path_in(store_root, &Hash([0; 32]));
    let run_dir = store::longest_run_dir(store_root);
    for node in &p.nodes {
        let Action::Cmd { template, span } = &node.action else { continue };
        let dir = run_dir.join(&node.id);
        let inputs = input_paths(node, &dir, &object);
        let outputs: BTreeMap<String, PathBuf> = node
            .outputs
            .iter()
            .enumerate()
            .map(|(i, (name, out))| (name.clone(), output_path(&dir, i, name, out)))
            .collect();
        let params: BTreeMap<String, ParamValue> =
            node.params.iter().map(|(k, v)| (k.clone(), v.value.clone())).collect();
        let values = Values { inputs: &inputs, outputs: &outputs, params: &params, dir: &dir };
        match fill(template, &values) {
            Ok((line, _)) => {
                if let Some((message, fix)) = too_long(template, &line, &inputs, true) {
                    diags.push(p.diagnostic(span, Some(&node.id), message).with_fix(fix));
                }
            }
            Err(FillError { message, fix: Some(fix) }) => {
                diags.push(p.diagnostic(span, Some(&node.id), message).with_fix(fix))
            }
            // Reported by `check` itself.
            Err(FillError { fix: None, .. }) => {}
        }
    }
    diags
}

/// The paths a node's inputs will have in a run whose node directory is
/// `dir`, with `object` standing for any store object.
fn input_paths(node: &Node, dir: &Path, object: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    node.inputs
        .iter()
        .map(|(port, input)| {
            let paths = input
                .refs
                .iter()
                .map(|r| match r {
                    InputRef::Node { .. } => object.to_path_buf(),
                    InputRef::Source { abs, .. } => abs.clone(),
                    InputRef::Lineage => lineage_file(dir, port),
                })
                .collect();
            (port.clone(), paths)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values<'a>(
        inputs: &'a BTreeMap<String, Vec<PathBuf>>,
        outputs: &'a BTreeMap<String, PathBuf>,
        params: &'a BTreeMap<String, ParamValue>,
    ) -> Values<'a> {
        Values { inputs, outputs, params, dir: Path::new("/s/tmp/run-1-2/n") }
    }

    #[test]
    fn list_forms_name_one_file_each_written_once() {
        let inputs = BTreeMap::from([("m".to_owned(), vec![PathBuf::from("/a b"), PathBuf::from("/c")])]);
        let outputs = BTreeMap::from([("t".to_owned(), PathBuf::from("/o/t"))]);
        let params = BTreeMap::new();
        let (line, lists) =
            fill("cat ${in.m} ${in.m:list} ${in.m:list} ${in.m:list0} > ${out.t}", &values(&inputs, &outputs, &params))
                .unwrap();
        assert_eq!(
            line,
            "cat '/a b' /c /s/tmp/run-1-2/n/m.list /s/tmp/run-1-2/n/m.list /s/tmp/run-1-2/n/m.list0 > /o/t"
        );
        assert_eq!(
            lists,
            vec![
                ListFile { path: "/s/tmp/run-1-2/n/m.list".into(), bytes: b"/a b\n/c\n".to_vec() },
                ListFile { path: "/s/tmp/run-1-2/n/m.list0".into(), bytes: b"/a b\0/c\0".to_vec() },
            ]
        );
    }

    #[test]
    fn a_newline_in_a_path_needs_the_nul_form() {
        let inputs = BTreeMap::from([("m".to_owned(), vec![PathBuf::from("/a\nb")])]);
        let (outputs, params) = (BTreeMap::new(), BTreeMap::new());
        let e = fill("wc -l ${in.m:list}", &values(&inputs, &outputs, &params)).unwrap_err();
        assert!(e.message.contains("newline") && e.fix.as_deref().unwrap().contains("${in.m:list0}"), "{e}");
        let (_, lists) = fill("wc -l ${in.m:list0}", &values(&inputs, &outputs, &params)).unwrap();
        assert_eq!(lists[0].bytes, b"/a\nb\0");
    }

    #[test]
    fn the_limit_is_an_argument_of_128_kib() {
        let long = |n: usize| "x".repeat(n);
        let inputs = BTreeMap::from([("m".to_owned(), vec![PathBuf::new(); 3]), ("s".to_owned(), vec![])]);
        assert!(too_long("${in.m}", &long(MAX_ARG_BYTES - 1), &inputs, false).is_none());
        let (message, fix) = too_long("${in.s} ${in.m} ${in.m:list}", &long(MAX_ARG_BYTES), &inputs, false).unwrap();
        assert!(
            message.contains("131072 bytes") && message.contains("`${in.m}` (3 paths), `${in.s}` (0 paths)"),
            "{message}"
        );
        assert!(fix.contains("${in.m:list}"), "{fix}");
    }
}
