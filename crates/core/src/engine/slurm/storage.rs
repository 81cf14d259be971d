//! What Slurm jobs must see: the store (they write outputs into its tmp
//! area and read inputs from its objects), the sources, and for op nodes
//! the worker binary. Warns about each that is on a filesystem local to
//! this machine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::spec::{Action, InputRef, Pipeline};
use crate::sys::filesystem;

/// One warning per kind of path (store, sources, worker) on a local
/// filesystem, with its fix.
pub fn local_filesystem_warnings(p: &Pipeline, store: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let fix = "put it on a filesystem the compute nodes mount (NFS, Lustre, GPFS, BeeGFS, CephFS); on a single-node cluster this is fine";
    if let Some(fs) = local(store) {
        out.push(format!(
            "warning: the store {} is on {fs}, a filesystem local to this machine: Slurm jobs on other nodes cannot read their inputs or write their outputs there\n  fix: {fix} (--store DIR)",
            store.display()
        ));
    }
    let mut sources: BTreeMap<&'static str, Vec<&PathBuf>> = BTreeMap::new();
    for node in &p.nodes {
        for r in node.inputs.values().flat_map(|i| &i.refs) {
            if let InputRef::Source { abs, .. } = r {
                if let Some(fs) = local(abs) {
                    let paths = sources.entry(fs).or_default();
                    if !paths.contains(&abs) {
                        paths.push(abs);
                    }
                }
            }
        }
    }
    for (fs, paths) in sources {
        let shown: Vec<String> = paths.iter().take(3).map(|p| p.display().to_string()).collect();
        let more = if paths.len() > 3 { format!(" and {} more", paths.len() - 3) } else { String::new() };
        out.push(format!(
            "warning: source{} {}{more} {} on {fs}, a filesystem local to this machine: Slurm jobs on other nodes cannot read {}\n  fix: {fix}",
            if paths.len() == 1 { "" } else { "s" },
            shown.join(", "),
            if paths.len() == 1 { "is" } else { "are" },
            if paths.len() == 1 { "it" } else { "them" },
        ));
    }
    if p.nodes.iter().any(|n| matches!(n.action, Action::Op { .. })) {
        if let Ok(worker) = crate::worker::worker_exe() {
            if let Some(fs) = local(&worker) {
                out.push(format!(
                    "warning: the worker {} is on {fs}, a filesystem local to this machine: op nodes' jobs on other nodes cannot start it\n  fix: {fix} (or set TOE_PIPE_WORKER to a copy there)",
                    worker.display()
                ));
            }
        }
    }
    out
}

fn local(path: &Path) -> Option<&'static str> {
    filesystem(path).filter(|f| f.shared == Some(false)).map(|f| f.name)
}
