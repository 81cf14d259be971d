//! The content-addressed store (`artifacts/` by default).
//!
//! ```text
//! STORE                    marker and format version
//! lock                     flock held by the one run allowed at a time
//! objects/ab/cdef…         artifacts by blake3 hash (read-only; a
//!                          directory output is a tree)
//! actions/ab/cdef….json    action cache + lineage: one record per action key
//! logs/ab/cdef….log        stdout+stderr of the last attempt of an action
//! refs/PIPELINE.json       last run of each node of a pipeline
//! statcache/…              stat cache of source inputs
//! cache/ops-….json         op catalog reported by toe-pipe-worker
//! tmp/RUN/NODE/…           outputs being written; never read as results
//! ```
//!
//! Every write that others may read is atomic (write elsewhere, rename), so
//! a process killed at any moment leaves either the old state or the new
//! one, plus litter under `tmp/` that the next run removes. The data is
//! flushed to disk before the rename, so a power cut cannot leave a
//! renamed-but-empty object or record behind either.

pub mod durable;
pub mod gc;
pub mod hash;
pub mod lock;
pub mod records;
pub mod statcache;
pub mod verify;

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Context};

pub use durable::Pending;
use durable::{Fsync, Syncer};
pub use hash::Hash;
use hash::{annotate, EntryType, Symlinks};
pub use lock::{LockError, StoreLock};
use records::{ActionRecord, PipelineRefs};
use statcache::StatCache;

const MARKER: &str = "STORE";
const MARKER_TEXT: &str = "toe-pipe store, format 1\n";
/// Files a directory may hold and still become a store (the repository's
/// `artifacts/` ships a README).
const ALLOWED_BEFORE_INIT: [&str; 3] = ["README.md", ".gitignore", ".gitkeep"];
/// The store's own folders. `run`, `gc` and `verify --repair` delete
/// inside them, so each must be a real directory: through a symbolic link
/// they would empty whatever it points to.
const FOLDERS: [&str; 7] = ["objects", "actions", "logs", "refs", "statcache", "tmp", "cache"];

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// An output moved into the store.
#[derive(Debug, Clone, Copy)]
pub struct Committed {
    pub hash: Hash,
    pub size: u64,
    pub is_dir: bool,
}

impl Store {
    /// Open the store at `root`, creating it if needed.
    pub fn open_or_create(root: &Path) -> anyhow::Result<Store> {
        if !root.join(MARKER).exists() {
            if root.exists() {
                let foreign: Vec<String> = fs::read_dir(root)
                    .with_context(|| format!("cannot read {}", root.display()))?
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !ALLOWED_BEFORE_INIT.contains(&n.as_str()))
                    // The marker being written by another toe-pipe that
                    // creates this store at the same moment (write_atomic's
                    // temp file): that one is a store in the making, and
                    // the lock below says "in use" if it is still running.
                    .filter(|n| !n.starts_with(&format!(".{MARKER}.tmp-")))
                    .collect();
                // Another toe-pipe may have made this a store since the
                // check above (its marker is renamed in before any folder
                // is made, so whatever we saw of it, the marker is there
                // now).
                if !foreign.is_empty() && !root.join(MARKER).is_file() {
                    bail!(
                        "{} exists but is not a toe-pipe store (it holds {}); refusing to use it.\n  fix: pass --store with an empty or new directory",
                        root.display(),
                        foreign.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
                    );
                }
            }
            durable::create_dirs(&Fsync, root)
                .with_context(|| format!("cannot create the store at {}", root.display()))?;
            write_atomic(&root.join(MARKER), MARKER_TEXT.as_bytes())?;
        }
        let store = Store { root: root.to_path_buf() };
        for dir in FOLDERS {
            let path = store.root.join(dir);
            // Flushed in the store's folder: an object is only as durable
            // as the path to it. An existing link is left for check_folders
            // to refuse, not taken for the folder.
            durable::create_dirs(&Fsync, &path).with_context(|| format!("cannot create {}", path.display()))?;
        }
        store.check_folders()?;
        Ok(store)
    }

    /// Refuse a store whose folders are not real directories (a symbolic
    /// link in their place is never followed).
    fn check_folders(&self) -> anyhow::Result<()> {
        for dir in FOLDERS {
            let path = self.root.join(dir);
            match fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_symlink() => bail!(
                    "{} is a symbolic link; a store's own folders must be real directories (toe-pipe deletes inside them, and would delete what the link points to).\n  fix: remove the link (`rm {}`; what it points to is left alone) and run again, or point --store at a store on the other disk",
                    path.display(),
                    path.display()
                ),
                Ok(m) if !m.is_dir() => bail!(
                    "{} is not a directory; the store is damaged.\n  fix: move it aside and run again",
                    path.display()
                ),
                // A store from a run that had not made every folder yet:
                // the folders are made by the next run.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
                Ok(_) => {}
            }
        }
        Ok(())
    }

    /// Open an existing store (commands that only read).
    pub fn open_existing(root: &Path) -> anyhow::Result<Store> {
        if !root.join(MARKER).is_file() {
            bail!("{} is not a toe-pipe store (no {MARKER} file).\n  fix: run a pipeline first, or point --store at the store", root.display());
        }
        let store = Store { root: root.to_path_buf() };
        store.check_folders()?;
        Ok(store)
    }

    /// The nearest `artifacts/` store at or above `start`.
    pub fn discover(start: &Path) -> Option<PathBuf> {
        let start = fs::canonicalize(start).ok()?;
        start.ancestors().map(|d| d.join("artifacts")).find(|s| s.join(MARKER).is_file())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn sharded(&self, dir: &str, h: &Hash, ext: &str) -> PathBuf {
        sharded(&self.root, dir, h, ext)
    }

    pub fn object_path(&self, h: &Hash) -> PathBuf {
        object_path_in(&self.root, h)
    }
    pub fn action_path(&self, key: &Hash) -> PathBuf {
        self.sharded("actions", key, ".json")
    }
    pub fn log_path(&self, key: &Hash) -> PathBuf {
        self.sharded("logs", key, ".log")
    }
    pub fn has_object(&self, h: &Hash) -> bool {
        fs::symlink_metadata(self.object_path(h)).is_ok()
    }

    pub fn read_action(&self, key: &Hash) -> Option<ActionRecord> {
        let text = fs::read(self.action_path(key)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    pub fn write_action(&self, rec: &ActionRecord) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(rec).map_err(io::Error::other)?;
        write_atomic(&self.action_path(&rec.key), &json)
    }

    /// [`Store::write_action`], leaving the flush of the record's folder
    /// (and of a shard folder made for it) to `pending`: the record is
    /// complete on disk, but a power cut before `pending` is flushed may
    /// lose its name, and the node then runs again. A run flushes them when
    /// it ends, before it writes the refs.
    pub fn write_action_deferred(&self, rec: &ActionRecord, pending: &mut Pending) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(rec).map_err(io::Error::other)?;
        let path = self.action_path(&rec.key);
        let parent = path.parent().unwrap_or(&self.root);
        for made in durable::create_dirs_unflushed(parent)? {
            pending.add(made.parent().unwrap_or(&self.root));
        }
        replace_file(&path, &json)?;
        pending.add(parent);
        Ok(())
    }

    /// Mark an action as used now, so `gc` counts it as recent.
    pub fn touch_action(&self, key: &Hash) {
        if let Ok(f) = fs::File::options().write(true).open(self.action_path(key)) {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
    }

    /// Every action key in the store.
    pub fn action_keys(&self) -> Vec<Hash> {
        list_sharded(&self.root.join("actions"), ".json")
    }

    /// Every object hash in the store.
    pub fn object_hashes(&self) -> Vec<Hash> {
        list_sharded(&self.root.join("objects"), "")
    }

    fn refs_path(&self, pipeline: &str) -> PathBuf {
        self.root.join("refs").join(format!("{pipeline}.json"))
    }

    pub fn read_refs(&self, pipeline: &str) -> PipelineRefs {
        fs::read(self.refs_path(pipeline)).ok().and_then(|t| serde_json::from_slice(&t).ok()).unwrap_or_default()
    }

    pub fn write_refs(&self, refs: &PipelineRefs) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(refs).map_err(io::Error::other)?;
        write_atomic(&self.refs_path(&refs.pipeline), &json)
    }

    /// The refs of every pipeline that ran with this store.
    pub fn all_refs(&self) -> Vec<PipelineRefs> {
        let mut out: Vec<PipelineRefs> = fs::read_dir(self.root.join("refs"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                    .filter_map(|e| fs::read(e.path()).ok())
                    .filter_map(|t| serde_json::from_slice(&t).ok())
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a: &PipelineRefs, b| a.pipeline.cmp(&b.pipeline));
        out
    }

    pub fn statcache(&self) -> StatCache {
        StatCache::new(self.root.join("statcache"))
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }

    pub fn tmp_root(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// A fresh directory for one run's in-flight outputs.
    pub fn new_run_dir(&self) -> io::Result<PathBuf> {
        let stamp =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        let dir = self.tmp_root().join(run_dir_name(std::process::id(), stamp as u64));
        fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Remove what killed runs left under `tmp/`. Call with the lock held.
    pub fn clean_tmp(&self) -> io::Result<()> {
        self.clean_tmp_keeping(&[])
    }

    /// [`Store::clean_tmp`], but keep the run folders that hold one of
    /// `keep` (those of cluster jobs a run may still adopt).
    pub fn clean_tmp_keeping(&self, keep: &[PathBuf]) -> io::Result<()> {
        if let Ok(rd) = fs::read_dir(self.tmp_root()) {
            for e in rd.flatten() {
                if !keep.iter().any(|k| k.starts_with(e.path())) {
                    remove_any(&e.path())?;
                }
            }
        }
        Ok(())
    }

    /// Take the store lock (see [`StoreLock`]).
    pub fn lock(&self, what: &str) -> Result<StoreLock, LockError> {
        StoreLock::acquire(&self.root, what)
    }

    /// Move a finished output into the store under its content hash. The
    /// files become read-only first, so the object is never writable once
    /// it is visible. Its files and folders are flushed to disk before the
    /// rename, its shard folder after (see [`durable`]).
    pub fn commit(&self, tmp: &Path) -> io::Result<Committed> {
        self.commit_with(tmp, &Fsync)
    }

    fn commit_with(&self, tmp: &Path, sync: &dyn Syncer) -> io::Result<Committed> {
        let meta = fs::symlink_metadata(tmp).map_err(|e| annotate(e, tmp))?;
        if meta.file_type().is_symlink() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is a symbolic link; write a real file", tmp.display()),
            ));
        }
        let is_dir = meta.is_dir();
        // One walk of a directory output serves the hash, the modes and
        // the flush.
        let entries = if is_dir { Some(hash::walk(tmp, Symlinks::Reject)?) } else { None };
        let (hash, size) = match &entries {
            Some(entries) => {
                let size = entries.iter().filter(|e| e.ty == EntryType::File).map(|e| e.info.size).sum();
                (hash::hash_entries(tmp, entries)?, size)
            }
            None => (hash::hash_file(tmp)?, meta.len()),
        };
        let dest = self.object_path(&hash);
        if fs::symlink_metadata(&dest).is_ok() {
            remove_any(tmp)?;
            return Ok(Committed { hash, size, is_dir });
        }
        make_read_only(tmp, entries.as_deref())?;
        let parent = dest.parent().unwrap_or(&self.root);
        // A new shard folder is flushed in objects/ at the same time as the
        // output: both must be on disk before the rename, in any order.
        let new_shards: Vec<PathBuf> =
            durable::create_dirs_unflushed(parent)?.iter().filter_map(|d| d.parent().map(Path::to_path_buf)).collect();
        match &entries {
            None => durable::sync_each(sync, &[new_shards, vec![tmp.to_path_buf()]].concat())?,
            Some(entries) => {
                durable::sync_each(sync, &new_shards)?;
                durable::sync_output(sync, tmp, Some(entries))?;
            }
        }
        match fs::rename(tmp, &dest) {
            // Directories are sealed only now: moving a read-only
            // directory to another parent is not allowed.
            Ok(()) if is_dir => set_dir_modes(&dest, entries.as_deref().unwrap_or_default(), 0o555)?,
            Ok(()) => {}
            // Another node committed the same content first.
            Err(_) if fs::symlink_metadata(&dest).is_ok() => remove_any(tmp)?,
            Err(e) => return Err(annotate(e, &dest)),
        }
        sync.sync(parent)?;
        Ok(Committed { hash, size, is_dir })
    }

    /// Remove an action record: its key becomes a cache miss.
    pub fn remove_action(&self, key: &Hash) -> io::Result<()> {
        remove_any(&self.action_path(key))
    }

    /// Remove an object (gc, or a corrupt one found by verify).
    pub fn remove_object(&self, h: &Hash) -> io::Result<()> {
        let path = self.object_path(h);
        if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            unseal(&path).map_err(|e| annotate(e, &path))?;
        }
        remove_any(&path)
    }
}

fn sharded(root: &Path, dir: &str, h: &Hash, ext: &str) -> PathBuf {
    let hex = h.hex();
    root.join(dir).join(&hex[..2]).join(format!("{}{ext}", &hex[2..]))
}

/// Where the store at `root` keeps object `h` (whether or not the store
/// exists yet: `check` works out command lengths before a first run).
pub fn object_path_in(root: &Path, h: &Hash) -> PathBuf {
    sharded(root, "objects", h, "")
}

fn run_dir_name(pid: u32, stamp_ms: u64) -> String {
    format!("run-{pid}-{stamp_ms}")
}

/// A run directory of the store at `root` whose name is as long as any
/// [`Store::new_run_dir`] can make, for working out the longest paths a
/// node can be given.
pub fn longest_run_dir(root: &Path) -> PathBuf {
    root.join("tmp").join(run_dir_name(u32::MAX, u64::MAX))
}

fn list_sharded(dir: &Path, ext: &str) -> Vec<Hash> {
    let mut out = Vec::new();
    let Ok(shards) = fs::read_dir(dir) else { return out };
    for shard in shards.flatten() {
        // Not followed: a link here is not the store's (and gc would
        // delete through it).
        if !shard.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let prefix = shard.file_name().to_string_lossy().into_owned();
        let Ok(rd) = fs::read_dir(shard.path()) else { continue };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(ext) {
                if let Ok(h) = format!("{prefix}{stem}").parse() {
                    out.push(h);
                }
            }
        }
    }
    out.sort();
    out
}

/// Set the mode of a directory and every directory below it (`entries`,
/// from `hash::walk`).
fn set_dir_modes(root: &Path, entries: &[hash::WalkEntry], mode: u32) -> io::Result<()> {
    for e in entries {
        if e.ty == EntryType::Dir {
            fs::set_permissions(root.join(&e.rel), fs::Permissions::from_mode(mode))?;
        }
    }
    fs::set_permissions(root, fs::Permissions::from_mode(mode))
}

/// Make a sealed object directory and the directories below it writable,
/// so it can be removed. Unlike `set_dir_modes` this accepts what a
/// damaged object may hold (symbolic links, devices) and follows none of
/// it: a corrupt object must stay removable.
fn unseal(dir: &Path) -> io::Result<()> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    for e in fs::read_dir(dir)? {
        let e = e?;
        // DirEntry::file_type does not follow links.
        if e.file_type()?.is_dir() {
            unseal(&e.path())?;
        }
    }
    Ok(())
}

/// Make the files of an output read-only (directories are sealed after
/// they are moved into place, see `commit`). `entries`: a directory's, from
/// `hash::walk`; `None` for a file.
fn make_read_only(path: &Path, entries: Option<&[hash::WalkEntry]>) -> io::Result<()> {
    match entries {
        Some(entries) => {
            for e in entries {
                if e.ty == EntryType::File {
                    fs::set_permissions(path.join(&e.rel), fs::Permissions::from_mode(0o444))?;
                }
            }
            Ok(())
        }
        None => fs::set_permissions(path, fs::Permissions::from_mode(0o444)),
    }
}

/// Remove a file or a directory tree; a missing path is fine.
pub fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
    }
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Write a file so that readers see the old or the new content, never a
/// mix, and so that after a power cut the name holds the old content or
/// the whole new one: the data is flushed before the rename, the folder
/// after it (and a folder made for it, in its parent).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    durable::create_dirs(&Fsync, parent)?;
    replace_file(path, bytes)?;
    Fsync.sync(parent)
}

/// The name of [`replace_file`]'s temporary file for `name`.
fn write_temp_name(name: &str, pid: u32, n: u64) -> String {
    format!(".{name}.tmp-{pid}-{n}")
}

/// Whether a file name is that of [`replace_file`]'s temporary file,
/// `.NAME.tmp-PID-N`: what a write leaves when toe-pipe is killed in it.
pub fn is_write_temp(name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    name.starts_with('.')
        && name
            .rsplit_once(".tmp-")
            .is_some_and(|(_, tail)| tail.split_once('-').is_some_and(|(pid, n)| digits(pid) && digits(n)))
}

/// Write `bytes` to a temporary file beside `path` (`.NAME.tmp-PID-N`, see
/// [`is_write_temp`]), flush it, and rename it over `path`; the folder is
/// the caller's to flush.
fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = parent.join(write_temp_name(&name, std::process::id(), n));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| annotate(e, path))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::durable::Recorder;
    use super::*;

    #[test]
    fn write_temp_names() {
        assert!(is_write_temp(&write_temp_name("refs.json", std::process::id(), 17)));
        assert!(is_write_temp(".a.b.tmp-.tmp-1-2"));
        for name in
            ["refs.json", ".refs.json", "x.tmp-1-2", ".x.tmp-1", ".x.tmp-1-", ".x.tmp--2", ".x.tmp-a-2", ".x.tmp-1-2-3"]
        {
            assert!(!is_write_temp(name), "{name}");
        }
    }

    /// What `commit` flushes: every file and folder of a directory output
    /// before the rename, and the folders whose entries changed.
    #[test]
    fn committing_a_directory_output_flushes_each_of_its_files() {
        let ws = tempfile::tempdir().unwrap();
        let store = Store::open_or_create(&ws.path().join("artifacts")).unwrap();
        let out = store.new_run_dir().unwrap().join("n/out/0/d");
        let mut parts = BTreeSet::from([out.clone()]);
        fs::create_dir_all(out.join("sub")).unwrap();
        parts.insert(out.join("sub"));
        for i in 0..40 {
            let f = out.join(if i % 2 == 0 { format!("f{i}") } else { format!("sub/f{i}") });
            fs::write(&f, format!("{i}")).unwrap();
            parts.insert(f);
        }
        let rec = Recorder::default();
        let c = store.commit_with(&out, &rec).unwrap();
        let dest = store.object_path(&c.hash);
        let shard = dest.parent().unwrap().to_path_buf();
        let synced = rec.synced();
        // The shard folder was new: flushed in objects/ first; the output's
        // parts before the rename; the shard after it.
        assert_eq!(synced.first(), Some(&store.root().join("objects")));
        assert_eq!(synced.last(), Some(&shard));
        let middle: BTreeSet<PathBuf> = synced[1..synced.len() - 1].iter().cloned().collect();
        assert_eq!(middle, parts);
        assert_eq!(synced.len(), parts.len() + 2, "each once: {synced:?}");
        assert!(dest.join("sub/f1").is_file() && !out.exists());

        // A file output: the file and objects/ together (its shard is new
        // as well: the two hashes differ in their first byte), then the
        // shard.
        let f = store.new_run_dir().unwrap().join("f");
        fs::write(&f, "content").unwrap();
        let rec = Recorder::default();
        let c = store.commit_with(&f, &rec).unwrap();
        let shard = store.object_path(&c.hash).parent().unwrap().to_path_buf();
        let synced = rec.synced();
        let first: BTreeSet<PathBuf> = synced[..2].iter().cloned().collect();
        assert_eq!(first, BTreeSet::from([store.root().join("objects"), f]));
        assert_eq!(synced[2..], [shard]);
    }

    /// A record written with its folder flush left for later: the folder
    /// (and objects/ for a new shard) is in `pending`, the file complete.
    #[test]
    fn a_deferred_record_leaves_its_folders_pending() {
        let ws = tempfile::tempdir().unwrap();
        let store = Store::open_or_create(&ws.path().join("artifacts")).unwrap();
        let rec = ActionRecord {
            format: 1,
            key: Hash::of_bytes(b"key"),
            pipeline: "p".into(),
            pipeline_file: "p.toml".into(),
            node: "n".into(),
            action: records::RecordedAction::Cmd { cmd: "true".into() },
            params: Default::default(),
            inputs: Default::default(),
            outputs: Default::default(),
            start: String::new(),
            end: String::new(),
            duration_s: 0.0,
            device: "cpu".into(),
            toe_pipe_version: String::new(),
            host: String::new(),
            ran_on: None,
        };
        let mut pending = Pending::default();
        store.write_action_deferred(&rec, &mut pending).unwrap();
        assert_eq!(store.read_action(&rec.key).map(|r| r.key), Some(rec.key));
        let flushed = Recorder::default();
        pending.flush(&flushed).unwrap();
        let path = store.action_path(&rec.key);
        let mut synced = flushed.synced();
        synced.sort();
        assert_eq!(synced, vec![store.root().join("actions"), path.parent().unwrap().to_path_buf()]);
    }
}
