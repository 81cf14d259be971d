//! Content hashes (blake3). A file hashes to blake3 of its bytes, so
//! `b3sum` gives the same value; a directory hashes as a tree: blake3 of a
//! manifest of its relative paths, entry types and file hashes.

use std::fmt;
use std::fs::{self, Metadata};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// A blake3 hash: of file contents, of a tree manifest, or an action key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub fn of_bytes(b: &[u8]) -> Hash {
        Hash(*blake3::hash(b).as_bytes())
    }
    pub fn hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for b in self.0 {
            out.push(DIGITS[(b >> 4) as usize] as char);
            out.push(DIGITS[(b & 15) as usize] as char);
        }
        out
    }
    /// The first 12 hex digits, for listings.
    pub fn short(&self) -> String {
        self.hex()[..12].to_owned()
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.short())
    }
}

impl FromStr for Hash {
    type Err = String;
    fn from_str(s: &str) -> Result<Hash, String> {
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("{s:?} is not a 64-digit hex blake3 hash"));
        }
        fn nibble(c: u8) -> u8 {
            match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                _ => c - b'A' + 10, // checked above to be a hex digit
            }
        }
        let mut out = [0u8; 32];
        for (i, pair) in s.as_bytes().chunks_exact(2).enumerate() {
            out[i] = nibble(pair[0]) << 4 | nibble(pair[1]);
        }
        Ok(Hash(out))
    }
}

impl Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Files at least this large are hashed with blake3's multi-threaded,
/// memory-mapped path; smaller ones are read in one go.
const PARALLEL_THRESHOLD: u64 = 1 << 20;

/// Hash one file's contents.
///
/// Large files are hashed on all cores. A file already in the page cache is
/// memory-mapped (no copy); a file mostly on disk is read sequentially in
/// big blocks by one thread while the others hash the previous block, since
/// page faults spread over a mapping by several threads read a cold file at
/// a fraction of the disk's sequential speed.
pub fn hash_file(path: &Path) -> io::Result<Hash> {
    let mut file = fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut hasher = blake3::Hasher::new();
    if len < PARALLEL_THRESHOLD {
        let mut buf = Vec::with_capacity(len as usize);
        file.read_to_end(&mut buf)?;
        hasher.update(&buf);
    } else if resident_fraction(&file, len) > 0.9 {
        hasher.update_mmap_rayon(path)?;
    } else {
        hash_streaming(&mut file, &mut hasher)?;
    }
    Ok(Hash(*hasher.finalize().as_bytes()))
}

/// The fraction of a file's pages that are in the page cache (`mincore`).
fn resident_fraction(file: &fs::File, len: u64) -> f64 {
    use std::os::unix::io::AsRawFd;
    let Ok(len) = usize::try_from(len) else { return 0.0 };
    // SAFETY: a read-only private mapping that is only passed to mincore
    // and unmapped before returning; no memory is read through it.
    unsafe {
        let ptr = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, file.as_raw_fd(), 0);
        if ptr == libc::MAP_FAILED {
            return 0.0;
        }
        let page = libc::sysconf(libc::_SC_PAGESIZE).max(1) as usize;
        let mut pages = vec![0u8; len.div_ceil(page)];
        let rc = libc::mincore(ptr, len, pages.as_mut_ptr());
        libc::munmap(ptr, len);
        if rc != 0 {
            return 0.0;
        }
        pages.iter().filter(|&&p| p & 1 == 1).count() as f64 / pages.len() as f64
    }
}

/// Read the file in 8 MiB blocks on this thread, hashing each block on the
/// rayon pool while the next one is read.
fn hash_streaming(file: &mut fs::File, hasher: &mut blake3::Hasher) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    const BLOCK: usize = 8 << 20;
    // SAFETY: advisory call on a descriptor we own.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL);
    }
    let read_block = |file: &mut fs::File, buf: &mut Vec<u8>| -> io::Result<usize> {
        buf.resize(BLOCK, 0);
        let mut n = 0;
        while n < BLOCK {
            match file.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    };
    let (mut current, mut next) = (Vec::new(), Vec::new());
    let mut filled = read_block(file, &mut current)?;
    while filled > 0 {
        let (read, ()) = rayon::join(
            || read_block(file, &mut next),
            || {
                hasher.update_rayon(&current[..filled]);
            },
        );
        filled = read?;
        std::mem::swap(&mut current, &mut next);
    }
    Ok(())
}

/// What a tree entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryType {
    File,
    Dir,
}

/// The parts of a `stat` that toe-pipe uses (kept small: a 100k-file
/// folder means 100k of these, sorted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileInfo {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
    pub dev: u64,
    pub nlink: u64,
}

impl FileInfo {
    pub fn of(m: &Metadata) -> FileInfo {
        FileInfo {
            size: m.size(),
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
            ino: m.ino(),
            dev: m.dev(),
            nlink: m.nlink(),
        }
    }

    /// Same file (hard links of one inode).
    pub fn same_inode(&self, other: &FileInfo) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }
}

/// One entry found by [`walk`]. `rel` is relative to the walked root.
#[derive(Debug, Clone)]
pub struct WalkEntry {
    pub rel: PathBuf,
    pub ty: EntryType,
    pub info: FileInfo,
}

/// How to treat symbolic links inside a tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Symlinks {
    /// Hash what they point to (source data often links to other disks).
    Follow,
    /// Refuse them (node outputs are moved into the store, where a link to
    /// a temporary path would dangle).
    Reject,
}

/// All entries below `root` (not `root` itself), sorted by path, walking
/// sub-directories in parallel.
pub fn walk(root: &Path, symlinks: Symlinks) -> io::Result<Vec<WalkEntry>> {
    let root_meta = fs::metadata(root)?;
    let mut out = walk_dir(root, Path::new(""), symlinks, &[(root_meta.dev(), root_meta.ino())])?;
    out.par_sort_unstable_by(|a, b| a.rel.as_os_str().as_bytes().cmp(b.rel.as_os_str().as_bytes()));
    Ok(out)
}

fn walk_dir(abs: &Path, rel: &Path, symlinks: Symlinks, ancestors: &[(u64, u64)]) -> io::Result<Vec<WalkEntry>> {
    let mut entries = Vec::new();
    let mut subdirs = Vec::new();
    for dent in fs::read_dir(abs).map_err(|e| annotate(e, abs))? {
        let dent = dent.map_err(|e| annotate(e, abs))?;
        let path = dent.path();
        let rel_path = rel.join(dent.file_name());
        let ft = dent.file_type().map_err(|e| annotate(e, &path))?;
        let (ty, meta) = if ft.is_symlink() {
            match symlinks {
                Symlinks::Reject => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{} is a symbolic link; outputs must hold real files", path.display()),
                    ));
                }
                Symlinks::Follow => {
                    let meta = fs::metadata(&path).map_err(|e| annotate(e, &path))?;
                    (if meta.is_dir() { EntryType::Dir } else { EntryType::File }, meta)
                }
            }
        } else {
            let meta = dent.metadata().map_err(|e| annotate(e, &path))?;
            (if ft.is_dir() { EntryType::Dir } else { EntryType::File }, meta)
        };
        if ty == EntryType::Dir {
            let id = (meta.dev(), meta.ino());
            if ancestors.contains(&id) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} links back to a folder above it", path.display()),
                ));
            }
            let mut chain = ancestors.to_vec();
            chain.push(id);
            subdirs.push((path, rel_path.clone(), chain));
        } else if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a regular file or folder", path.display()),
            ));
        }
        entries.push(WalkEntry { rel: rel_path, ty, info: FileInfo::of(&meta) });
    }
    let nested: Vec<io::Result<Vec<WalkEntry>>> =
        subdirs.par_iter().map(|(p, r, chain)| walk_dir(p, r, symlinks, chain)).collect();
    for n in nested {
        entries.extend(n?);
    }
    Ok(entries)
}

pub fn annotate(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// The tree hash from entries sorted by path; `file_hash(i)` gives the
/// content hash of entry `i` when it is a file.
pub fn tree_hash(entries: &[WalkEntry], file_hash: impl Fn(usize) -> Hash) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(b"toe-pipe tree v1\0");
    for (i, e) in entries.iter().enumerate() {
        let tag: &[u8] = match e.ty {
            EntryType::File => b"f",
            EntryType::Dir => b"d",
        };
        h.update(tag);
        h.update(&(e.rel.as_os_str().len() as u64).to_le_bytes());
        h.update(e.rel.as_os_str().as_bytes());
        if e.ty == EntryType::File {
            h.update(&file_hash(i).0);
        }
    }
    Hash(*h.finalize().as_bytes())
}

/// Hash a directory from scratch (no stat cache).
pub fn hash_tree(root: &Path, symlinks: Symlinks) -> io::Result<Hash> {
    hash_entries(root, &walk(root, symlinks)?)
}

/// The tree hash of a directory whose entries (from [`walk`]) are known,
/// reading every file.
pub fn hash_entries(root: &Path, entries: &[WalkEntry]) -> io::Result<Hash> {
    let hashes: Vec<Option<Hash>> = entries
        .par_iter()
        .map(|e| match e.ty {
            EntryType::File => hash_file(&root.join(&e.rel)).map(Some),
            _ => Ok(None),
        })
        .collect::<io::Result<_>>()?;
    Ok(tree_hash(entries, |i| hashes[i].unwrap_or(Hash([0; 32]))))
}

/// Hash a file or a directory.
pub fn hash_path(path: &Path, symlinks: Symlinks) -> io::Result<Hash> {
    let meta = fs::metadata(path).map_err(|e| annotate(e, path))?;
    if meta.is_dir() {
        hash_tree(path, symlinks)
    } else {
        hash_file(path).map_err(|e| annotate(e, path))
    }
}

/// Total size in bytes of a file or of every file below a directory.
pub fn disk_size(path: &Path) -> u64 {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => walk(path, Symlinks::Reject)
            .map(|es| es.iter().filter(|e| e.ty == EntryType::File).map(|e| e.info.size).sum())
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_hash_is_plain_blake3() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a");
        fs::write(&f, b"hello").unwrap();
        assert_eq!(hash_file(&f).unwrap().0, *blake3::hash(b"hello").as_bytes());
        let big = dir.path().join("big");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(&big, &data).unwrap();
        assert_eq!(hash_file(&big).unwrap().0, *blake3::hash(&data).as_bytes());
    }

    #[test]
    fn streaming_and_mapped_hashes_agree() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("big");
        let data: Vec<u8> = (0..(17 << 20) + 123u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        fs::write(&f, &data).unwrap();
        let mut streamed = blake3::Hasher::new();
        hash_streaming(&mut fs::File::open(&f).unwrap(), &mut streamed).unwrap();
        assert_eq!(streamed.finalize(), blake3::hash(&data));
        assert_eq!(hash_file(&f).unwrap().0, *blake3::hash(&data).as_bytes());
        let r = resident_fraction(&fs::File::open(&f).unwrap(), data.len() as u64);
        assert!((0.0..=1.0).contains(&r));
    }

    #[test]
    fn tree_hash_depends_on_names_and_contents_only() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for root in [a.path(), b.path()] {
            fs::create_dir_all(root.join("x/y")).unwrap();
            fs::write(root.join("x/y/f.txt"), b"1").unwrap();
            fs::write(root.join("g.txt"), b"2").unwrap();
        }
        let ha = hash_tree(a.path(), Symlinks::Reject).unwrap();
        assert_eq!(ha, hash_tree(b.path(), Symlinks::Reject).unwrap());
        fs::write(b.path().join("g.txt"), b"3").unwrap();
        assert_ne!(ha, hash_tree(b.path(), Symlinks::Reject).unwrap());
        fs::write(b.path().join("g.txt"), b"2").unwrap();
        fs::rename(b.path().join("g.txt"), b.path().join("h.txt")).unwrap();
        assert_ne!(ha, hash_tree(b.path(), Symlinks::Reject).unwrap());
    }

    #[test]
    fn hex_round_trip() {
        let h = Hash::of_bytes(b"x");
        assert_eq!(h.to_string().parse::<Hash>().unwrap(), h);
        assert!("zz".parse::<Hash>().is_err());
        assert_eq!(h.hex().to_uppercase().parse::<Hash>().unwrap(), h);
        assert_eq!(h.hex(), blake3::hash(b"x").to_hex().as_str());
    }
}
