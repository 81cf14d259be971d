//! `toe-pipe verify`: re-hash stored objects and find the ones whose bytes
//! no longer match their name (disk errors, or someone writing into the
//! store). With repair, corrupt objects are removed, so the actions that
//! produced them become cache misses and run again.

use std::io;

use rayon::prelude::*;

use super::hash::{hash_path, Hash, Symlinks};
use super::Store;

#[derive(Debug, Default)]
pub struct VerifyReport {
    pub checked: usize,
    /// (object, what it hashes to now or the error reading it)
    pub corrupt: Vec<(Hash, String)>,
}

/// Whether the object named `h` still hashes to `h`.
pub fn object_ok(store: &Store, h: &Hash) -> io::Result<bool> {
    Ok(hash_path(&store.object_path(h), Symlinks::Reject)? == *h)
}

/// Re-hash every object (in parallel).
pub fn verify_all(store: &Store) -> VerifyReport {
    let hashes = store.object_hashes();
    let mut corrupt: Vec<(Hash, String)> = hashes
        .par_iter()
        .filter_map(|h| match hash_path(&store.object_path(h), Symlinks::Reject) {
            Ok(actual) if actual == *h => None,
            Ok(actual) => Some((*h, format!("content hashes to {}", actual.short()))),
            Err(e) => Some((*h, format!("cannot read it: {e}"))),
        })
        .collect();
    corrupt.sort_by_key(|(h, _)| *h);
    VerifyReport { checked: hashes.len(), corrupt }
}
