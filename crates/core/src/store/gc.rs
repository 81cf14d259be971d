//! `toe-pipe gc`: drop what no pipeline and no recent action needs.
//!
//! Kept: the actions that the last run of each pipeline (whose file still
//! exists) left in its workspace, and every action used within
//! `keep_recent`; the objects those actions produced; their logs; the stat
//! caches of sources read within `keep_recent`. Dropped: every other action
//! record, object, log and stat cache, `tmp/` litter, and the temp files
//! of record writes a killed toe-pipe left (once an hour old). Objects
//! still hard-linked from a workspace are removed from the store but their
//! bytes stay on disk until the workspace file goes; the report counts them
//! apart.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::hash::{walk, EntryType, FileInfo, Hash, Symlinks};
use super::{remove_any, Store};

#[derive(Debug, Clone)]
pub struct GcOptions {
    pub dry_run: bool,
    /// Actions used more recently than this are kept (restores of earlier
    /// params keep working for that long).
    pub keep_recent: Duration,
}

#[derive(Debug, Default)]
pub struct GcReport {
    pub kept_actions: usize,
    pub removed_actions: usize,
    pub removed_objects: usize,
    /// Bytes given back to the file system.
    pub freed_bytes: u64,
    /// Bytes of removed objects that workspace hard links still hold.
    pub linked_bytes: u64,
    pub removed_logs: usize,
    /// Stat-cache files of sources no run read within `keep_recent` (a
    /// source read again later is hashed in full once).
    pub removed_statcaches: usize,
    /// Pipelines whose file is gone; their refs are dropped.
    pub forgotten_pipelines: Vec<String>,
    /// Temp files of record writes that never finished (a killed run).
    pub removed_write_temps: usize,
}

/// A record write lasts milliseconds: a temp file this old is no writer's
/// any more, on this host or another that shares the store.
const WRITE_TEMP_AGE: Duration = Duration::from_secs(3600);

pub fn gc(store: &Store, opts: &GcOptions) -> io::Result<GcReport> {
    let mut report = GcReport::default();
    let now = SystemTime::now();

    let mut keep: BTreeSet<Hash> = BTreeSet::new();
    let mut keep_logs: BTreeSet<Hash> = BTreeSet::new();
    for refs in store.all_refs() {
        if !refs.file.exists() {
            report.forgotten_pipelines.push(refs.pipeline.clone());
            if !opts.dry_run {
                remove_any(&store.root().join("refs").join(format!("{}.json", refs.pipeline)))?;
            }
            continue;
        }
        for r in refs.nodes.values() {
            keep.extend(r.current);
            if let Some(a) = &r.last_attempt {
                keep_logs.insert(a.key);
            }
        }
    }
    let all_actions = store.action_keys();
    for key in &all_actions {
        if modified_within(&store.action_path(key), now, opts.keep_recent) {
            keep.insert(*key);
        }
    }

    let mut live_objects: BTreeSet<Hash> = BTreeSet::new();
    for key in &all_actions {
        if keep.contains(key) {
            if let Some(rec) = store.read_action(key) {
                live_objects.extend(rec.outputs.values().map(|o| o.hash));
                report.kept_actions += 1;
            }
            keep_logs.insert(*key);
        } else {
            report.removed_actions += 1;
            if !opts.dry_run {
                remove_any(&store.action_path(key))?;
            }
        }
    }

    for h in store.object_hashes() {
        if live_objects.contains(&h) {
            continue;
        }
        let (freed, linked) = object_bytes(&store.object_path(&h));
        report.freed_bytes += freed;
        report.linked_bytes += linked;
        report.removed_objects += 1;
        if !opts.dry_run {
            store.remove_object(&h)?;
        }
    }

    for log in list_logs(store) {
        if !keep_logs.contains(&log) {
            report.removed_logs += 1;
            if !opts.dry_run {
                remove_any(&store.log_path(&log))?;
            }
        }
    }
    for path in store.statcache().cache_files() {
        if !modified_within(&path, now, opts.keep_recent) {
            report.removed_statcaches += 1;
            if !opts.dry_run {
                remove_any(&path)?;
            }
        }
    }
    for path in write_temps(store.root()) {
        if !modified_within(&path, now, WRITE_TEMP_AGE) {
            report.removed_write_temps += 1;
            if !opts.dry_run {
                remove_any(&path)?;
            }
        }
    }
    if !opts.dry_run {
        store.clean_tmp()?;
    }
    Ok(report)
}

/// The temp files of record writes ([`super::is_write_temp`]) in the store
/// folder and the folders under it, two levels deep (shards), but not in
/// `objects/` (written by rename of whole outputs) or `tmp/` (emptied
/// anyway). Links are neither followed nor listed.
fn write_temps(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![(root.to_path_buf(), 0)];
    while let Some((dir, depth)) = dirs.pop() {
        for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Ok(ty) = e.file_type() else { continue };
            let name = e.file_name().to_string_lossy().into_owned();
            if ty.is_file() && super::is_write_temp(&name) {
                out.push(e.path());
            } else if ty.is_dir() && depth < 2 && !(depth == 0 && (name == "objects" || name == "tmp")) {
                dirs.push((e.path(), depth + 1));
            }
        }
    }
    out.sort();
    out
}

/// Whether `path` was written (or marked used) within `keep` before `now`;
/// a file that cannot be read counts as old.
fn modified_within(path: &Path, now: SystemTime, keep: Duration) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .map(|t| now.duration_since(t).unwrap_or_default() <= keep)
        .unwrap_or(false)
}

fn list_logs(store: &Store) -> Vec<Hash> {
    let mut out = Vec::new();
    let Ok(shards) = fs::read_dir(store.root().join("logs")) else { return out };
    for shard in shards.flatten() {
        // A link in place of a shard is not followed (see list_sharded).
        if !shard.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let prefix = shard.file_name().to_string_lossy().into_owned();
        for e in fs::read_dir(shard.path()).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(h) = name.strip_suffix(".log").and_then(|s| format!("{prefix}{s}").parse().ok()) {
                out.push(h);
            }
        }
    }
    out
}

/// (bytes freed by removing it, bytes still held by other hard links)
fn object_bytes(path: &Path) -> (u64, u64) {
    let files: Vec<FileInfo> = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => walk(path, Symlinks::Reject)
            .map(|es| es.into_iter().filter(|e| e.ty == EntryType::File).map(|e| e.info).collect())
            .unwrap_or_default(),
        Ok(m) => vec![FileInfo::of(&m)],
        Err(_) => vec![],
    };
    files.iter().fold(
        (0, 0),
        |(freed, linked), f| if f.nlink > 1 { (freed, linked + f.size) } else { (freed + f.size, linked) },
    )
}
