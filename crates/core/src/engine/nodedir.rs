//! The temporary folders of a run's nodes, reused from one node to the
//! next.
//!
//! A node runs in `RUN/NODE/` (under the store's `tmp/`), which holds its
//! log, its list and job files, an empty `scratch/`, and `out/I/` for its
//! I-th output (so outputs keep their declared file names without
//! clashing). Making four folders per node and deleting them afterwards
//! cost more than a trivial node itself: ext4 without a journal does not
//! hand out an inode again for a minute after it was freed and, to skip
//! them, looks at every such inode each time it allocates one, so every
//! folder deleted makes the next ones slower to make (half of toe-pipe's
//! time on 300 `echo` nodes). A finished node's folder is emptied instead,
//! and becomes the next node's by a rename.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::store::remove_any;

/// The node folders of one run.
#[derive(Debug)]
pub struct NodeDirs {
    run: PathBuf,
    /// Emptied folders, each with `scratch/` and `out/`.
    spare: Vec<PathBuf>,
    /// Spare folders named so far (each name used once).
    named: usize,
}

/// What a node's folder holds besides files: the scratch folder and the
/// folder of output holders.
pub const SCRATCH: &str = "scratch";
pub const OUT: &str = "out";

impl NodeDirs {
    pub fn new(run: PathBuf) -> NodeDirs {
        NodeDirs { run, spare: Vec::new(), named: 0 }
    }

    /// `RUN/id/`, with an empty `scratch/` and an empty `out/I/` for each
    /// of `outputs` outputs.
    pub fn take(&mut self, id: &str, outputs: usize) -> io::Result<PathBuf> {
        let dir = self.run.join(id);
        // A folder left by an earlier attempt is not reused as it is.
        remove_any(&dir)?;
        match self.spare.pop() {
            Some(spare) => fs::rename(&spare, &dir).map_err(|e| annotate(e, &dir))?,
            None => {
                for d in [dir.clone(), dir.join(SCRATCH), dir.join(OUT)] {
                    fs::create_dir(&d).map_err(|e| annotate(e, &d))?;
                }
            }
        }
        for i in 0..outputs {
            let holder = holder(&dir, i);
            match fs::create_dir(&holder) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(annotate(e, &holder)),
                _ => {}
            }
        }
        Ok(dir)
    }

    /// Done with a node's folder: emptied and kept for the next node (or
    /// removed, if it cannot be emptied). A missing folder is fine.
    pub fn give_back(&mut self, dir: &Path) {
        if fs::symlink_metadata(dir).is_err() {
            return;
        }
        let spare = self.run.join(format!(".spare-{}", self.named));
        self.named += 1;
        match empty(dir).and_then(|()| fs::rename(dir, &spare)) {
            Ok(()) => self.spare.push(spare),
            Err(_) => {
                let _ = remove_any(dir);
            }
        }
    }
}

/// Where the `i`-th output's file or folder goes in a node's folder.
pub fn holder(dir: &Path, i: usize) -> PathBuf {
    dir.join(OUT).join(i.to_string())
}

/// Remove everything in a node's folder but `scratch/`, `out/` and the
/// holders in `out/`, which are emptied.
fn empty(dir: &Path) -> io::Result<()> {
    let mut kept = 0;
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let is_dir = e.file_type()?.is_dir();
        if is_dir && (name == SCRATCH || name == OUT) {
            kept += 1;
            for inner in fs::read_dir(e.path())? {
                let inner = inner?;
                if name == OUT && inner.file_type()?.is_dir() {
                    empty_folder(&inner.path())?;
                } else {
                    remove_any(&inner.path())?;
                }
            }
        } else {
            remove_any(&e.path())?;
        }
    }
    if kept == 2 {
        Ok(())
    } else {
        Err(io::Error::other("a node folder without scratch/ or out/"))
    }
}

/// Remove what a folder holds, keeping the folder.
fn empty_folder(dir: &Path) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        remove_any(&e?.path())?;
    }
    Ok(())
}

fn annotate(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("cannot create {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path().strip_prefix(dir).unwrap().display().to_string())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_finished_nodes_folder_comes_back_empty_as_the_next_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let mut dirs = NodeDirs::new(tmp.path().to_path_buf());
        let a = dirs.take("a", 2).unwrap();
        assert_eq!(names(&a), ["out", "scratch"]);
        assert_eq!(names(&a.join("out")), ["0", "1"]);
        let inode = fs::metadata(&a).unwrap().ino();
        // What a node leaves behind: a log, files in scratch, an output it
        // failed after writing, a folder output.
        fs::write(a.join("log"), "x").unwrap();
        fs::create_dir_all(a.join("scratch/deep/er")).unwrap();
        fs::write(a.join("scratch/deep/er/f"), "x").unwrap();
        fs::write(a.join("out/0/o.txt"), "x").unwrap();
        fs::create_dir_all(a.join("out/1/d/e")).unwrap();
        dirs.give_back(&a);
        assert!(!a.exists());

        let b = dirs.take("b", 3).unwrap();
        assert_eq!(b, tmp.path().join("b"));
        assert_eq!(fs::metadata(&b).unwrap().ino(), inode, "the same folder, renamed");
        assert_eq!(names(&b), ["out", "scratch"]);
        assert!(names(&b.join("scratch")).is_empty());
        assert_eq!(names(&b.join("out")), ["0", "1", "2"]);
        for i in 0..3 {
            assert!(names(&holder(&b, i)).is_empty());
        }
        // None spare: a new one.
        let c = dirs.take("c", 0).unwrap();
        assert_ne!(fs::metadata(&c).unwrap().ino(), inode);
        assert_eq!(names(tmp.path()), ["b", "c"]);
    }

    #[test]
    fn a_folder_that_cannot_be_reused_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let mut dirs = NodeDirs::new(tmp.path().to_path_buf());
        let a = dirs.take("a", 1).unwrap();
        fs::remove_dir(a.join("scratch")).unwrap();
        dirs.give_back(&a);
        assert!(names(tmp.path()).is_empty());
        dirs.give_back(&a);
        let b = dirs.take("b", 1).unwrap();
        assert_eq!(names(&b), ["out", "scratch"]);
    }
}
