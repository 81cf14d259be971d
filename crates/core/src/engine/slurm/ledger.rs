//! The Slurm jobs a run submitted, recorded in the store (`slurm/ID.json`)
//! from submission until toe-pipe has dealt with their end. A run that was
//! killed leaves its entries behind, so the next run finds every job that
//! could still write into the store's tmp area: it adopts those whose node
//! it runs again with the same action key, and cancels the others.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::spec::ArtifactKind;
use crate::store::{write_atomic, Hash, Store};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The Slurm job id.
    pub job: String,
    pub pipeline: String,
    pub node: String,
    /// The action key it computes.
    pub key: Hash,
    /// The node's directory in the store's tmp area.
    pub dir: PathBuf,
    /// Where Slurm writes its output.
    pub log: PathBuf,
    /// (output name, where the job writes it, kind)
    pub outputs: Vec<(String, PathBuf, ArtifactKind)>,
    pub cpus: usize,
    /// RFC 3339.
    pub submitted: String,
}

pub struct Ledger {
    dir: PathBuf,
}

impl Ledger {
    pub fn of(store: &Store) -> Ledger {
        Ledger { dir: store.root().join("slurm") }
    }

    fn path(&self, job: &str) -> PathBuf {
        self.dir.join(format!("{job}.json"))
    }

    pub fn add(&self, e: &Entry) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(e).map_err(io::Error::other)?;
        write_atomic(&self.path(&e.job), &bytes)
    }

    pub fn remove(&self, job: &str) {
        let _ = fs::remove_file(self.path(job));
    }

    /// Every recorded job; an unreadable entry is reported and skipped.
    pub fn entries(&self) -> Vec<Entry> {
        let Ok(rd) = fs::read_dir(&self.dir) else { return Vec::new() };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let path = e.path();
            if path.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            match fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Entry>(&b).map_err(|e| e.to_string()))
            {
                Ok(entry) => out.push(entry),
                Err(err) => tracing::warn!("ignoring {}: {err}", path.display()),
            }
        }
        out.sort_by_key(|e| (e.job.parse::<u64>().unwrap_or(u64::MAX), e.job.clone()));
        out
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
