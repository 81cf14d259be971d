//! Hashing of source inputs through a stat cache: a file whose (size,
//! mtime, ctime, inode) has not changed since it was hashed keeps its hash,
//! so an unchanged ImageNet-size folder costs one `stat` per file, not a
//! read. `--verify` bypasses the cache.
//!
//! One cache file per source path, in a small binary format (a 100k-file
//! folder loads in milliseconds; JSON would not).

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;

use super::hash::{self, annotate, EntryType, FileInfo, Hash, Symlinks, WalkEntry};

/// A file's identity as far as the cache is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
}

impl Stamp {
    pub fn of(f: &FileInfo) -> Stamp {
        Stamp { size: f.size, mtime_ns: f.mtime_ns, ctime_ns: f.ctime_ns, ino: f.ino }
    }
}

/// Entries changed this close to the moment they were hashed may change
/// again within the file system's timestamp granularity without their
/// stamp changing ("racy" entries, as git calls them); they are hashed
/// again next time rather than trusted.
const RACY_NS: i64 = 2_000_000_000;

/// One row of a cache file; `rel` indexes into the file's bytes. Rows are
/// sorted by `rel` (bytes), as [`hash::walk`] sorts entries, so lookups are
/// a merge of two sorted lists rather than a hash map of 100k keys.
#[derive(Debug, Clone)]
struct Row {
    rel: std::ops::Range<usize>,
    stamp: Stamp,
    hash: Hash,
    trusted: bool,
}

struct CacheFile {
    data: Vec<u8>,
    rows: Vec<Row>,
}

impl CacheFile {
    fn rel(&self, row: &Row) -> &[u8] {
        &self.data[row.rel.clone()]
    }
}

/// The result of hashing one source path.
#[derive(Debug, Clone, Copy)]
pub struct SourceHash {
    pub hash: Hash,
    pub is_dir: bool,
    /// Files looked at, and how many of them had to be read.
    pub files: usize,
    pub rehashed: usize,
}

pub struct StatCache {
    dir: PathBuf,
}

impl StatCache {
    pub fn new(dir: PathBuf) -> StatCache {
        StatCache { dir }
    }

    fn cache_file(&self, abs: &Path) -> PathBuf {
        let key = Hash::of_bytes(abs.as_os_str().as_bytes());
        self.dir.join(&key.hex()[..32])
    }

    /// Hash a source file or directory, reading only what changed since the
    /// last time (everything when `verify`).
    pub fn hash_source(&self, abs: &Path, verify: bool) -> io::Result<SourceHash> {
        let meta = fs::metadata(abs).map_err(|e| annotate(e, abs))?;
        let cache_path = self.cache_file(abs);
        let old = if verify { None } else { read_cache(&cache_path) };
        let now = now_ns();

        let (entries, root_is_dir): (Vec<WalkEntry>, bool) = if meta.is_dir() {
            (hash::walk(abs, Symlinks::Follow)?, true)
        } else {
            (vec![WalkEntry { rel: PathBuf::new(), ty: EntryType::File, info: FileInfo::of(&meta) }], false)
        };

        let mut hashes: Vec<Option<Hash>> = vec![None; entries.len()];
        let mut todo = Vec::new();
        let mut row = 0;
        for (i, e) in entries.iter().enumerate() {
            if e.ty != EntryType::File {
                continue;
            }
            let key = e.rel.as_os_str().as_bytes();
            let cached = old.as_ref().and_then(|c| {
                while row < c.rows.len() && c.rel(&c.rows[row]) < key {
                    row += 1;
                }
                c.rows.get(row).filter(|r| c.rel(r) == key)
            });
            match cached {
                Some(c) if c.trusted && c.stamp == Stamp::of(&e.info) => hashes[i] = Some(c.hash),
                _ => todo.push(i),
            }
        }
        let hash_one = |&i: &usize| {
            let path = if root_is_dir { abs.join(&entries[i].rel) } else { abs.to_path_buf() };
            hash::hash_file(&path).map(|h| (i, h)).map_err(|e| annotate(e, &path))
        };
        // In parallel only when there is more than one file to read (big
        // files are parallel inside `hash_file`).
        let fresh: Vec<(usize, Hash)> = if todo.len() > 1 {
            todo.par_iter().map(hash_one).collect::<io::Result<_>>()?
        } else {
            todo.iter().map(hash_one).collect::<io::Result<_>>()?
        };
        for &(i, h) in &fresh {
            hashes[i] = Some(h);
        }

        let files = entries.iter().filter(|e| e.ty == EntryType::File).count();
        let gone = old.as_ref().map_or(0, |c| c.rows.len()) != files;
        let racy_left =
            entries.iter().any(|e| e.ty == EntryType::File && e.info.mtime_ns.max(e.info.ctime_ns) > now - RACY_NS);
        if !fresh.is_empty() || gone || racy_left {
            let rows: Vec<(&[u8], Stamp, Hash, bool)> = entries
                .iter()
                .zip(&hashes)
                .filter_map(|(e, h)| {
                    let stamp = Stamp::of(&e.info);
                    h.map(|h| {
                        (
                            e.rel.as_os_str().as_bytes(),
                            stamp,
                            h,
                            stamp.mtime_ns <= now - RACY_NS && stamp.ctime_ns <= now - RACY_NS,
                        )
                    })
                })
                .collect();
            // A cache that cannot be written only costs time next run.
            let _ = write_cache(&cache_path, &rows);
        } else {
            // Unchanged: mark it used, since gc drops caches no run has
            // read within its --keep-recent.
            let _ =
                fs::OpenOptions::new().write(true).open(&cache_path).and_then(|f| f.set_modified(SystemTime::now()));
        }

        let hash = if root_is_dir {
            hash::tree_hash(&entries, |i| hashes[i].unwrap_or(Hash([0; 32])))
        } else {
            hashes[0].unwrap_or(Hash([0; 32]))
        };
        Ok(SourceHash { hash, is_dir: root_is_dir, files, rehashed: fresh.len() })
    }

    /// Every cache file (one per source path that was hashed).
    pub fn cache_files(&self) -> Vec<PathBuf> {
        fs::read_dir(&self.dir).map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default()
    }
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

const MAGIC: &[u8; 8] = b"TPSTAT1\n";

fn write_cache(path: &Path, rows: &[(&[u8], Stamp, Hash, bool)]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(16 + rows.len() * 96);
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&(rows.len() as u64).to_le_bytes());
    for (rel, s, h, trusted) in rows {
        buf.extend_from_slice(&(rel.len() as u32).to_le_bytes());
        buf.extend_from_slice(rel);
        buf.extend_from_slice(&s.size.to_le_bytes());
        buf.extend_from_slice(&s.mtime_ns.to_le_bytes());
        buf.extend_from_slice(&s.ctime_ns.to_le_bytes());
        buf.extend_from_slice(&s.ino.to_le_bytes());
        buf.extend_from_slice(&h.0);
        buf.push(u8::from(*trusted));
    }
    super::write_atomic(path, &buf)
}

fn read_cache(path: &Path) -> Option<CacheFile> {
    let data = fs::read(path).ok()?;
    let mut r = Reader { data: &data, pos: 0 };
    if r.take(8)? != MAGIC {
        return None;
    }
    let n = r.u64()? as usize;
    let mut rows = Vec::with_capacity(n.min(1 << 24));
    for _ in 0..n {
        let len = r.u32()? as usize;
        let start = r.pos;
        r.take(len)?;
        let stamp = Stamp { size: r.u64()?, mtime_ns: r.u64()? as i64, ctime_ns: r.u64()? as i64, ino: r.u64()? };
        let hash = Hash(r.take(32)?.try_into().ok()?);
        let trusted = r.take(1)?[0] == 1;
        rows.push(Row { rel: start..start + len, stamp, hash, trusted });
    }
    // Written sorted; a file that is not is treated as no cache.
    if rows.windows(2).any(|w| data[w[0].rel.clone()] >= data[w[1].rel.clone()]) {
        return None;
    }
    Some(CacheFile { data, rows })
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.data.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn age(path: &Path) {
        // Make the file look old enough to be trusted by the cache.
        let t = SystemTime::now() - std::time::Duration::from_secs(60);
        let f = fs::File::options().write(true).open(path).unwrap();
        f.set_modified(t).unwrap();
    }

    #[test]
    fn unchanged_files_are_not_read_again() {
        let store = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let cache = StatCache::new(store.path().to_path_buf());
        for i in 0..5 {
            let p = data.path().join(format!("f{i}"));
            fs::write(&p, format!("{i}")).unwrap();
            age(&p);
        }
        let first = cache.hash_source(data.path(), false).unwrap();
        assert_eq!((first.files, first.rehashed), (5, 5));
        let second = cache.hash_source(data.path(), false).unwrap();
        assert_eq!(second.hash, first.hash);
        // ctime is recent (we just wrote the files), so entries are not yet
        // trusted; the cache must still give the same answer.
        let p = data.path().join("f3");
        fs::write(&p, "changed").unwrap();
        age(&p);
        let third = cache.hash_source(data.path(), false).unwrap();
        assert_ne!(third.hash, first.hash);
        assert_eq!(third.hash, hash::hash_tree(data.path(), Symlinks::Follow).unwrap());
        let verified = cache.hash_source(data.path(), true).unwrap();
        assert_eq!(verified.rehashed, 5);
        assert_eq!(verified.hash, third.hash);
    }

    #[test]
    fn corrupt_cache_is_ignored() {
        let store = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let f = data.path().join("x");
        fs::write(&f, "1").unwrap();
        let cache = StatCache::new(store.path().to_path_buf());
        let h = cache.hash_source(&f, false).unwrap().hash;
        fs::write(cache.cache_file(&f), b"TPSTAT1\n\xff\xff").unwrap();
        assert_eq!(cache.hash_source(&f, false).unwrap().hash, h);
    }
}
