//! `toe-pipe verify`: re-hash stored objects and find the ones whose bytes
//! no longer match their name (disk errors, or someone writing into the
//! store). With repair, corrupt objects are removed, so the actions that
//! produced them become cache misses and run again; and the records of the
//! actions that read a corrupt object are removed too, since when the
//! bytes changed is not known: a result made from them would otherwise be
//! kept (its key names the good hash) and reused for good.

use std::collections::BTreeSet;
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

/// What [`repair`] did.
#[derive(Debug, Default)]
pub struct RepairReport {
    /// Corrupt objects removed.
    pub removed: Vec<Hash>,
    /// (object, error) for those that could not be removed.
    pub not_removed: Vec<(Hash, String)>,
    /// (action key, node, pipeline) of the records removed because the
    /// action read a corrupt object.
    pub invalidated: Vec<(Hash, String, String)>,
    /// (action key, error) for records that could not be removed.
    pub not_invalidated: Vec<(Hash, String)>,
}

/// Remove corrupt objects and the records of every action that read one,
/// so that the next run rebuilds both. Call with the store lock held.
pub fn repair(store: &Store, corrupt: &[Hash]) -> RepairReport {
    let mut report = RepairReport::default();
    if corrupt.is_empty() {
        return report;
    }
    for h in corrupt {
        match store.remove_object(h) {
            Ok(()) => report.removed.push(*h),
            Err(e) => report.not_removed.push((*h, e.to_string())),
        }
    }
    let bad: BTreeSet<&Hash> = corrupt.iter().collect();
    for key in store.action_keys() {
        let Some(rec) = store.read_action(&key) else { continue };
        if !rec.inputs.values().flatten().any(|i| bad.contains(&i.hash)) {
            continue;
        }
        match store.remove_action(&key) {
            Ok(()) => report.invalidated.push((key, rec.node, rec.pipeline)),
            Err(e) => report.not_invalidated.push((key, e.to_string())),
        }
    }
    report
}
