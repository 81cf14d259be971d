//! Before toe-pipe writes an output at its workspace path. The path must
//! still lead into the workspace (its folders are resolved again: a node
//! may have made a link since `check`), and whatever is there now must be
//! toe-pipe's to replace:
//!
//! * nothing;
//! * an output toe-pipe put there, as the refs record (`placed`), even if
//!   it was edited since (the stored version is put back, as documented);
//! * bytes the store holds, so replacing them loses nothing (outputs of a
//!   run killed before it wrote the refs, or a copy of an output).
//!
//! Anything else belongs to the user and is never replaced: the node fails
//! with a message that says to move it away or choose another path.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::Engine;
use crate::confine::{real_path, Resolver};
use crate::spec::Node;
use crate::store::records::PipelineRefs;
use crate::store::Store;

/// Workspace paths (relative) where toe-pipe put an output, and the
/// workspace's real path (resolved once per run).
#[derive(Debug, Default)]
pub struct Owned {
    paths: HashSet<PathBuf>,
    workspace_real: PathBuf,
}

impl Owned {
    /// From a pipeline's refs. Refs written before they recorded `placed`
    /// have the paths in the record of the node's current action.
    pub fn from_refs(store: &Store, refs: &PipelineRefs, workspace: &Path) -> Owned {
        let mut owned = HashSet::new();
        for r in refs.nodes.values() {
            match (&r.placed, r.current) {
                (Some(placed), _) => owned.extend(placed.values().cloned()),
                (None, Some(key)) => {
                    if let Some(rec) = store.read_action(&key) {
                        owned.extend(rec.outputs.values().filter_map(|o| o.path.clone()));
                    }
                }
                (None, None) => {}
            }
        }
        Owned { paths: owned, workspace_real: real_path(workspace) }
    }

    pub fn insert(&mut self, rel: &Path) {
        if !self.paths.contains(rel) {
            self.paths.insert(rel.to_path_buf());
        }
    }

    fn contains(&self, rel: &Path) -> bool {
        self.paths.contains(rel)
    }
}

/// Whether toe-pipe may write output `output` of `node` at its declared
/// path `rel` now; the error is a diagnostic (file:line:col, node, fix).
pub fn may_write(e: &Engine, owned: &Owned, node: &Node, output: &str, rel: &Path) -> Result<(), String> {
    let p = e.pipeline;
    let refuse = |msg: String, fix: String| {
        let span = node.outputs.get(output).map(|o| o.span.clone()).unwrap_or_else(|| node.span.clone());
        Err(p.diagnostic(&span, Some(&node.id), msg).with_fix(fix).to_string())
    };
    // Resolved again each time: a node may have made a link meanwhile.
    let mut resolver = Resolver::with_real(&p.workspace, owned.workspace_real.clone());
    if let Some(escape) = resolver.resolve(rel).escape {
        let (msg, fix) = escape.error(output, rel);
        return refuse(msg, fix);
    }
    let target = p.workspace_path(rel);
    let Ok(meta) = fs::symlink_metadata(&target) else { return Ok(()) };
    if owned.contains(rel) {
        return Ok(());
    }
    let what = if meta.file_type().is_symlink() {
        "a symbolic link"
    } else if meta.is_dir() {
        "a folder"
    } else {
        "a file"
    };
    // Links are never toe-pipe's (it materialises hard links and copies).
    if !meta.file_type().is_symlink() {
        if let Ok(h) = e.store.statcache().hash_source(&target, false) {
            if e.store.has_object(&h.hash) {
                return Ok(());
            }
        }
    }
    refuse(
        format!("output `{output}` at {}: {what} is there that toe-pipe did not put there", rel.display()),
        format!(
            "move it away (toe-pipe then puts the output there) or choose another path for outputs.{output}; toe-pipe never replaces what it did not make"
        ),
    )
}
