//! Action keys, cache lookups, and the *why* of staleness.
//!
//! A node's action key is blake3 of a canonical JSON document holding what
//! determines its outputs: the op and its version (or the command text with
//! its run-time placeholders still in it), the params with defaults
//! applied, the content hash of every input, and the declared output kinds.
//! Not in it: paths (inputs are identified by content, outputs are only
//! materialised at their paths), the device, the time.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::Serialize;

use crate::ops::OpCatalog;
use crate::spec::{Action, ArtifactKind, InputRef, Node, ParamValue, LINEAGE_REF};
use crate::store::records::{one_line, ActionRecord, InputRecord, RecordedAction};
use crate::store::{Hash, Store};

/// Bump when the key document changes shape, to start a fresh cache.
const KEY_FORMAT: u32 = 1;

/// Everything about a node that is known once its inputs are.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub key: Hash,
    pub action: RecordedAction,
    pub params: BTreeMap<String, ParamValue>,
    pub inputs: BTreeMap<String, Vec<InputRecord>>,
    pub output_kinds: BTreeMap<String, ArtifactKind>,
    /// The `@lineage` document, when the node reads one.
    pub lineage: Option<Vec<u8>>,
}

/// The output hashes of finished nodes, by (node id, output name), with the
/// action that made them.
pub type KnownOutputs = HashMap<(String, String), (Hash, Hash)>;

/// Source paths and their content hashes.
pub type SourceHashes = HashMap<PathBuf, Hash>;

/// What the node does, as recorded (op nodes need the catalog's version).
pub fn recorded_action(node: &Node, catalog: &OpCatalog) -> RecordedAction {
    match &node.action {
        Action::Op { name, .. } => {
            RecordedAction::Op { op: name.clone(), op_version: catalog.get(name).map_or(0, |o| o.version) }
        }
        Action::Cmd { template, .. } => RecordedAction::Cmd { cmd: template.clone() },
    }
}

/// Resolve a node whose inputs are all known; `None` if one is not. An
/// `@lineage` input is the document of the other inputs' upstream actions,
/// made from `store`'s records.
pub fn resolve(
    node: &Node,
    catalog: &OpCatalog,
    known: &KnownOutputs,
    sources: &SourceHashes,
    store: &Store,
) -> Option<Resolved> {
    let mut inputs = BTreeMap::new();
    let mut lineage_ports = Vec::new();
    for (port, input) in &node.inputs {
        let mut recs = Vec::with_capacity(input.refs.len());
        for r in &input.refs {
            recs.push(match r {
                InputRef::Lineage => {
                    lineage_ports.push(port.clone());
                    continue;
                }
                InputRef::Node { node: up, output } => {
                    let (hash, action) = known.get(&(up.clone(), output.clone()))?;
                    InputRecord {
                        hash: *hash,
                        source: None,
                        node: Some(up.clone()),
                        output: Some(output.clone()),
                        action: Some(*action),
                    }
                }
                InputRef::Source { path, abs } => InputRecord {
                    hash: *sources.get(abs)?,
                    source: Some(path.clone()),
                    node: None,
                    output: None,
                    action: None,
                },
            });
        }
        inputs.insert(port.clone(), recs);
    }
    let mut lineage = None;
    if !lineage_ports.is_empty() {
        let doc = super::lineage_input::document(store, known, &inputs)?;
        let hash = Hash::of_bytes(&doc);
        lineage = Some(doc);
        for port in lineage_ports {
            let rec =
                InputRecord { hash, source: Some(LINEAGE_REF.to_owned()), node: None, output: None, action: None };
            inputs.entry(port).or_default().push(rec);
        }
    }
    let action = recorded_action(node, catalog);
    let params: BTreeMap<String, ParamValue> = node.params.iter().map(|(k, p)| (k.clone(), p.value.clone())).collect();
    let output_kinds: BTreeMap<String, ArtifactKind> =
        node.outputs.iter().map(|(k, o)| (k.clone(), o.kind_or_file())).collect();
    let key = action_key(&action, &params, &inputs, &output_kinds);
    Some(Resolved { key, action, params, inputs, output_kinds, lineage })
}

#[derive(Serialize)]
struct KeyDocument<'a> {
    toe_pipe_action: u32,
    action: &'a RecordedAction,
    params: &'a BTreeMap<String, ParamValue>,
    inputs: BTreeMap<&'a str, Vec<&'a Hash>>,
    outputs: &'a BTreeMap<String, ArtifactKind>,
}

pub fn action_key(
    action: &RecordedAction,
    params: &BTreeMap<String, ParamValue>,
    inputs: &BTreeMap<String, Vec<InputRecord>>,
    outputs: &BTreeMap<String, ArtifactKind>,
) -> Hash {
    let doc = KeyDocument {
        toe_pipe_action: KEY_FORMAT,
        action,
        params,
        inputs: inputs.iter().map(|(k, v)| (k.as_str(), v.iter().map(|r| &r.hash).collect())).collect(),
        outputs,
    };
    // Maps are BTreeMaps, so the JSON is canonical.
    let json = serde_json::to_vec(&doc).unwrap_or_default();
    Hash::of_bytes(&json)
}

/// The result of looking a key up in the action cache.
#[derive(Debug)]
pub enum Lookup {
    Hit(Box<ActionRecord>),
    Miss,
    /// The record exists but an output object is gone (gc, repair).
    Incomplete(String),
}

pub fn lookup(store: &Store, key: &Hash) -> Lookup {
    let Some(rec) = store.read_action(key) else { return Lookup::Miss };
    for (name, out) in &rec.outputs {
        if !store.has_object(&out.hash) {
            return Lookup::Incomplete(format!("output `{name}` of the cached result is no longer in the store"));
        }
    }
    Lookup::Hit(Box::new(rec))
}

/// Why a node with this resolution differs from its previous run `prev`.
pub fn why(prev: &ActionRecord, now: &Resolved) -> Vec<String> {
    let mut reasons = Vec::new();
    match (&prev.action, &now.action) {
        (RecordedAction::Op { op: a, op_version: va }, RecordedAction::Op { op: b, op_version: vb }) => {
            if a != b {
                reasons.push(format!("op changed: {a} -> {b}"));
            } else if va != vb {
                reasons.push(format!("op {a} version changed: {va} -> {vb}"));
            }
        }
        (RecordedAction::Cmd { cmd: a }, RecordedAction::Cmd { cmd: b }) => {
            if a != b {
                reasons.push(format!("command changed: `{}` -> `{}`", one_line(a, 50), one_line(b, 50)));
            }
        }
        (a, b) => reasons.push(format!("node changed from {} to {}", a.describe(), b.describe())),
    }
    reasons.extend(param_changes(&prev.params, &now.params));
    let ports: std::collections::BTreeSet<&String> = prev.inputs.keys().chain(now.inputs.keys()).collect();
    for port in ports {
        match (prev.inputs.get(port), now.inputs.get(port)) {
            (None, Some(_)) => reasons.push(format!("input `{port}` added")),
            (Some(_), None) => reasons.push(format!("input `{port}` removed")),
            (Some(a), Some(b)) if a.len() != b.len() => {
                reasons.push(format!("input `{port}` now has {} artifacts (was {})", b.len(), a.len()))
            }
            (Some(a), Some(b)) => {
                for (ra, rb) in a.iter().zip(b) {
                    if ra.hash == rb.hash {
                        continue;
                    }
                    reasons.push(match (&rb.source, &rb.node) {
                        (Some(path), _) if path == LINEAGE_REF => {
                            format!("input `{port}` changed (an upstream action of its other inputs)")
                        }
                        (Some(path), _) if ra.source.as_ref() == Some(path) => format!("source {path} changed"),
                        (Some(path), _) => format!("input `{port}` is now source {path}"),
                        (None, Some(up)) => format!("input `{port}` changed (new output of {up})"),
                        _ => format!("input `{port}` changed"),
                    });
                }
            }
            (None, None) => {}
        }
    }
    let prev_kinds: BTreeMap<String, ArtifactKind> = prev.outputs.iter().map(|(k, o)| (k.clone(), o.kind)).collect();
    if prev_kinds != now.output_kinds {
        reasons.push("declared outputs changed".to_owned());
    }
    reasons
}

fn param_changes(prev: &BTreeMap<String, ParamValue>, now: &BTreeMap<String, ParamValue>) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in now {
        match prev.get(k) {
            None => out.push(format!("param {k} added: {v}")),
            Some(old) if old != v => out.push(format!("param {k}: {old} -> {v}")),
            _ => {}
        }
    }
    for k in prev.keys() {
        if !now.contains_key(k) {
            out.push(format!("param {k} removed"));
        }
    }
    out
}
