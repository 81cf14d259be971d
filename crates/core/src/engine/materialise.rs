//! Putting store objects at their declared workspace paths: a hard link
//! per file (instant, no extra space; objects are read-only, so an edit in
//! place fails instead of corrupting the store), a copy where links are not
//! possible (another file system).

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::store::hash::{walk, EntryType, Hash, Symlinks};
use crate::store::{remove_any, Store};

/// Whether the workspace path holds the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    InPlace,
    Missing,
    Differs,
}

pub fn placement(store: &Store, hash: &Hash, target: &Path) -> Placement {
    let Ok(tmeta) = fs::symlink_metadata(target) else { return Placement::Missing };
    let object = store.object_path(hash);
    let Ok(ometa) = fs::symlink_metadata(&object) else { return Placement::Differs };
    if ometa.is_dir() != tmeta.is_dir() || tmeta.file_type().is_symlink() {
        return Placement::Differs;
    }
    let linked = if ometa.is_dir() { same_tree_links(&object, target) } else { same_inode(&ometa, &tmeta) };
    if linked {
        return Placement::InPlace;
    }
    // A copy (no hard links across file systems): compare contents, through
    // the stat cache so an unchanged copy is read once.
    match store.statcache().hash_source(target, false) {
        Ok(h) if h.hash == *hash => Placement::InPlace,
        _ => Placement::Differs,
    }
}

fn same_inode(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    a.dev() == b.dev() && a.ino() == b.ino()
}

/// Every entry of `target` is a hard link of the same entry of `object`,
/// and nothing else is there.
fn same_tree_links(object: &Path, target: &Path) -> bool {
    let (Ok(a), Ok(b)) = (walk(object, Symlinks::Reject), walk(target, Symlinks::Reject)) else { return false };
    a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|(x, y)| x.rel == y.rel && x.ty == y.ty && (x.ty == EntryType::Dir || x.info.same_inode(&y.info)))
}

/// Replace whatever is at `target` with the object.
pub fn materialise(store: &Store, hash: &Hash, target: &Path) -> io::Result<()> {
    let object = store.object_path(hash);
    remove_any(target)?;
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent)?;
    }
    if fs::metadata(&object)?.is_dir() {
        fs::create_dir(target)?;
        for e in walk(&object, Symlinks::Reject)? {
            let dest = target.join(&e.rel);
            match e.ty {
                EntryType::Dir => fs::create_dir_all(&dest)?,
                EntryType::File => link_or_copy(&object.join(&e.rel), &dest)?,
            }
        }
        Ok(())
    } else {
        link_or_copy(&object, target)
    }
}

fn link_or_copy(from: &Path, to: &Path) -> io::Result<()> {
    if fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    fs::copy(from, to)?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o444))
}
