//! `toe-pipe status`: each node fresh or stale, and why, without running
//! anything.

use std::collections::BTreeMap;

use super::key::{lookup, resolve, why, KnownOutputs, Lookup, Resolved};
use super::materialise::{placement, Placement};
use super::Engine;
use crate::store::records::ActionRecord;
use crate::store::verify::object_ok;
use crate::store::Hash;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Cached, and the workspace holds its outputs.
    Fresh,
    /// Cached; the workspace gets those outputs back without running.
    Restore,
    /// Will run.
    Stale,
    /// Reads from a stale node: runs unless that node's outputs come out
    /// byte-identical (early cutoff).
    Waiting,
}

impl State {
    pub fn label(self) -> &'static str {
        match self {
            State::Fresh => "fresh",
            State::Restore => "restore",
            State::Stale => "stale",
            State::Waiting => "waits",
        }
    }
}

#[derive(Debug, Clone)]
pub struct NodeStatus {
    pub node: usize,
    pub state: State,
    pub reasons: Vec<String>,
    pub key: Option<Hash>,
}

/// Assess every node. `verify` re-hashes sources and stored outputs.
pub fn status(e: &Engine, verify: bool) -> anyhow::Result<Vec<NodeStatus>> {
    let p = e.pipeline;
    let all = vec![true; p.nodes.len()];
    let sources = e.hash_sources(&all, verify)?;
    let refs = e.store.read_refs(&p.name);
    let mut known = KnownOutputs::new();
    let mut result: BTreeMap<usize, NodeStatus> = BTreeMap::new();

    for &i in &e.dag.order {
        let node = &p.nodes[i];
        let current = refs.nodes.get(&node.id).and_then(|r| r.current);
        let previous: Option<ActionRecord> = current.and_then(|k| e.store.read_action(&k));
        let Some(res) = resolve(node, e.catalog, &known, &sources) else {
            let stale_parents: Vec<&str> = e
                .dag
                .parents(i)
                .into_iter()
                .filter(|j| result.get(j).is_some_and(|s| matches!(s.state, State::Stale | State::Waiting)))
                .map(|j| p.nodes[j].id.as_str())
                .collect();
            let mut reasons = vec![format!("after {}", stale_parents.join(", "))];
            if let Some(prev) = &previous {
                reasons.extend(own_changes(prev, node, e));
            }
            result.insert(i, NodeStatus { node: i, state: State::Waiting, reasons, key: None });
            continue;
        };
        let key = res.key;
        let status = match lookup(e.store, &key) {
            Lookup::Hit(rec) => {
                let corrupt: Vec<&String> = if verify {
                    rec.outputs.iter().filter(|(_, o)| !object_ok(e.store, &o.hash).unwrap_or(false)).map(|(n, _)| n).collect()
                } else {
                    vec![]
                };
                if !corrupt.is_empty() {
                    NodeStatus { node: i, state: State::Stale, reasons: corrupt.iter().map(|n| format!("stored output `{n}` is corrupt (run with --verify to replace it)")).collect(), key: Some(key) }
                } else {
                    for (name, out) in &rec.outputs {
                        known.insert((node.id.clone(), name.clone()), (out.hash, key));
                    }
                    if current == Some(key) {
                        let misplaced: Vec<String> = node
                            .outputs
                            .iter()
                            .filter_map(|(name, o)| {
                                let path = o.path.as_ref()?;
                                let h = rec.outputs.get(name)?.hash;
                                match placement(e.store, &h, &p.workspace_path(path)) {
                                    Placement::InPlace => None,
                                    Placement::Missing => Some(format!("{} is missing from the workspace", path.display())),
                                    Placement::Differs => Some(format!("{} differs from the stored output", path.display())),
                                }
                            })
                            .collect();
                        if misplaced.is_empty() {
                            NodeStatus { node: i, state: State::Fresh, reasons: vec![], key: Some(key) }
                        } else {
                            NodeStatus { node: i, state: State::Restore, reasons: misplaced, key: Some(key) }
                        }
                    } else {
                        let mut reasons = vec!["an earlier result for these inputs and params is in the store".to_owned()];
                        if let Some(prev) = &previous {
                            reasons.extend(why(prev, &res));
                        }
                        NodeStatus { node: i, state: State::Restore, reasons, key: Some(key) }
                    }
                }
            }
            Lookup::Incomplete(why_incomplete) => NodeStatus { node: i, state: State::Stale, reasons: vec![why_incomplete], key: Some(key) },
            Lookup::Miss => {
                let reasons = match &previous {
                    None if current.is_some() => vec!["its previous result was removed from the store".to_owned()],
                    None => vec!["never ran".to_owned()],
                    Some(prev) => {
                        let r = why(prev, &res);
                        if r.is_empty() { vec!["no cached result for these inputs".to_owned()] } else { r }
                    }
                };
                NodeStatus { node: i, state: State::Stale, reasons, key: Some(key) }
            }
        };
        result.insert(i, status);
    }
    Ok(e.dag.order.iter().filter_map(|i| result.remove(i)).collect())
}

/// What changed in a node itself (op, command, params), for nodes whose
/// inputs are not known yet.
fn own_changes(prev: &ActionRecord, node: &crate::spec::Node, e: &Engine) -> Vec<String> {
    let res = Resolved {
        key: prev.key,
        action: super::key::recorded_action(node, e.catalog),
        params: node.params.iter().map(|(k, p)| (k.clone(), p.value.clone())).collect(),
        inputs: prev.inputs.clone(),
        output_kinds: node.outputs.iter().map(|(k, o)| (k.clone(), o.kind_or_file())).collect(),
    };
    why(prev, &res)
}
