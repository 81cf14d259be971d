//! The `@lineage` input. A node that declares `inputs.NAME = "@lineage"`
//! reads one JSON document: for every node upstream of its other inputs,
//! transitively, the record of the node's action in this run (op or
//! command, params, input and output hashes, start, duration, device,
//! host). A report node renders the run's DAG and the provenance of its
//! numbers from it without reading the store.
//!
//! The upstream nodes are followed by name, each to the action that holds
//! its outputs now, not through the action keys a cached record remembers:
//! after an upstream node re-runs and writes the same bytes, its readers
//! stay cached (early cutoff) and their records still name the earlier
//! action, but the run's DAG has the new one.
//!
//! The document is an input like any other: its content hash is part of the
//! node's action key, so the node re-runs when an upstream action changes,
//! a forced re-run's new timing included, and its cached result always
//! shows the lineage it was made from. It is made from the store's records
//! when the node's other inputs are known (the plan, or the scheduler once
//! they have run), and written next to the node's job when it runs.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use super::key::KnownOutputs;
use crate::store::records::{ActionRecord, InputRecord};
use crate::store::{Hash, Store};

/// Bump when the document changes shape.
pub const LINEAGE_FORMAT: u32 = 1;

/// The `@lineage` document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LineageDocument {
    pub format: u32,
    /// Every upstream action once, each after the actions it read from.
    pub actions: Vec<ActionRecord>,
}

/// The document (canonical JSON) for a node whose other inputs resolved to
/// `inputs`, with `known` the actions of the run's finished nodes; `None`
/// if an upstream action's record is not in the store.
pub fn document(store: &Store, known: &KnownOutputs, inputs: &BTreeMap<String, Vec<InputRecord>>) -> Option<Vec<u8>> {
    let mut walk = Walk { store, known, seen: HashSet::new(), actions: Vec::new() };
    for rec in inputs.values().flatten() {
        walk.input(rec)?;
    }
    // Records hold BTreeMaps only, so the JSON is canonical.
    serde_json::to_vec(&LineageDocument { format: LINEAGE_FORMAT, actions: walk.actions }).ok()
}

struct Walk<'a> {
    store: &'a Store,
    known: &'a KnownOutputs,
    seen: HashSet<Hash>,
    actions: Vec<ActionRecord>,
}

impl Walk<'_> {
    /// The action behind an input: its node's action in this run, else the
    /// one the record names.
    fn input(&mut self, rec: &InputRecord) -> Option<()> {
        let now = match (&rec.node, &rec.output) {
            (Some(node), Some(output)) => self.known.get(&(node.clone(), output.clone())).map(|(_, key)| *key),
            _ => None,
        };
        match now.or(rec.action) {
            Some(key) => self.action(key),
            None => Some(()),
        }
    }

    /// Depth-first, upstream first. Pipelines are DAGs, so the depth is
    /// that of the pipeline.
    fn action(&mut self, key: Hash) -> Option<()> {
        if !self.seen.insert(key) {
            return Some(());
        }
        let record = self.store.read_action(&key)?;
        for rec in record.inputs.values().flatten() {
            self.input(rec)?;
        }
        self.actions.push(record);
        Some(())
    }
}
