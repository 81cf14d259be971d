//! `toe-pipe lineage`: where an artifact came from, as a tree of the
//! actions that produced it and their inputs, down to source files.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde::Serialize;

use crate::spec::{ArtifactKind, ParamValue};
use crate::store::records::{ActionRecord, InputRecord, RanOn, RecordedAction};
use crate::store::{Hash, Store};

/// One artifact in the tree.
#[derive(Debug, Clone, Serialize)]
pub struct Artifact {
    pub hash: Hash,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<ArtifactKind>,
    /// A source path (for sources) or the workspace path it was declared at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<bool>,
    /// For node outputs: `node.output` that produced it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub produced_by: Option<Box<Production>>,
    /// Why the tree stops here, if it does early.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The action that produced an artifact.
#[derive(Debug, Clone, Serialize)]
pub struct Production {
    pub action: Hash,
    pub node: String,
    pub pipeline: String,
    /// Which output of the action the artifact is.
    pub output: String,
    #[serde(flatten)]
    pub what: RecordedAction,
    pub params: BTreeMap<String, ParamValue>,
    pub start: String,
    pub duration_s: f64,
    pub device: String,
    pub host: String,
    /// Executor, CPU, libtorch, GPU (absent for runs recorded before
    /// toe-pipe kept them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ran_on: Option<RanOn>,
    pub toe_pipe_version: String,
    pub inputs: BTreeMap<String, Vec<Artifact>>,
}

/// Index of the store's action records.
pub struct Lineage<'s> {
    store: &'s Store,
    records: HashMap<Hash, ActionRecord>,
    /// object -> actions that produced it, latest first
    producers: HashMap<Hash, Vec<Hash>>,
}

impl<'s> Lineage<'s> {
    pub fn load(store: &'s Store) -> Lineage<'s> {
        let mut records = HashMap::new();
        let mut producers: HashMap<Hash, Vec<(String, Hash)>> = HashMap::new();
        for key in store.action_keys() {
            if let Some(rec) = store.read_action(&key) {
                for out in rec.outputs.values() {
                    producers.entry(out.hash).or_default().push((rec.end.clone(), key));
                }
                records.insert(key, rec);
            }
        }
        let producers = producers
            .into_iter()
            .map(|(h, mut v)| {
                v.sort_by(|a, b| b.0.cmp(&a.0));
                (h, v.into_iter().map(|(_, k)| k).collect())
            })
            .collect();
        Lineage { store, records, producers }
    }

    /// Resolve what the user typed: a path, an object hash, or a hash
    /// prefix (of an object or an action key).
    pub fn find(&self, target: &str) -> anyhow::Result<Artifact> {
        let path = Path::new(target);
        if path.exists() {
            let h = self.store.statcache().hash_source(&std::fs::canonicalize(path)?, false)?.hash;
            if !self.producers.contains_key(&h) {
                anyhow::bail!(
                    "{target} (blake3 {}) was not produced by any action recorded in {}.\n  fix: it may be a source, or have been edited since it was materialised; `toe-pipe status` shows which",
                    h.short(),
                    self.store.root().display()
                );
            }
            // The same bytes may come from several actions (a copy, say);
            // prefer the one that declared this path.
            let abs = std::fs::canonicalize(path)?;
            let declared = self.producers[&h].iter().copied().find(|k| {
                self.records.get(k).is_some_and(|r| {
                    r.outputs.values().any(|o| o.hash == h && o.path.as_ref().is_some_and(|p| abs.ends_with(p)))
                })
            });
            let producer = declared.or_else(|| self.producers[&h].first().copied());
            let mut a = self.with_producer(h, producer, None, &mut HashSet::new());
            a.path = Some(target.to_owned());
            return Ok(a);
        }
        let prefix = target.to_ascii_lowercase();
        if prefix.len() < 6 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            anyhow::bail!("{target} is neither an existing path nor a hash (at least 6 hex digits)");
        }
        let objects: Vec<Hash> = self.producers.keys().filter(|h| h.hex().starts_with(&prefix)).copied().collect();
        match objects.as_slice() {
            [one] => return Ok(self.artifact(*one, &mut HashSet::new())),
            [] => {}
            many => anyhow::bail!("{target} matches {} artifacts; give more digits", many.len()),
        }
        let actions: Vec<&ActionRecord> = self.records.values().filter(|r| r.key.hex().starts_with(&prefix)).collect();
        match actions.as_slice() {
            [rec] => {
                // The action's first output stands for the action.
                let (name, out) =
                    rec.outputs.iter().next().ok_or_else(|| anyhow::anyhow!("action {target} has no outputs"))?;
                let mut a = self.artifact(out.hash, &mut HashSet::new());
                if let Some(p) = a.produced_by.as_mut() {
                    p.output = name.clone();
                }
                Ok(a)
            }
            [] => anyhow::bail!("no artifact or action in {} starts with {target}", self.store.root().display()),
            many => anyhow::bail!("{target} matches {} actions; give more digits", many.len()),
        }
    }

    /// The tree for an object, through its latest producer.
    fn artifact(&self, hash: Hash, seen: &mut HashSet<Hash>) -> Artifact {
        let producer = self.producers.get(&hash).and_then(|v| v.first()).copied();
        self.with_producer(hash, producer, None, seen)
    }

    fn with_producer(
        &self,
        hash: Hash,
        producer: Option<Hash>,
        input: Option<&InputRecord>,
        seen: &mut HashSet<Hash>,
    ) -> Artifact {
        let from = input.and_then(|i| Some(format!("{}.{}", i.node.as_deref()?, i.output.as_deref()?)));
        let mut a = Artifact { hash, kind: None, path: None, source: None, from, produced_by: None, note: None };
        let Some(key) = producer else {
            a.note = Some("no record of the action that produced it".into());
            return a;
        };
        let Some(rec) = self.records.get(&key) else {
            a.note = Some(format!("the record of action {} was removed (gc)", key.short()));
            return a;
        };
        let output = rec.outputs.iter().find(|(_, o)| o.hash == hash);
        if let Some((_, o)) = output {
            a.kind = Some(o.kind);
            a.path = o.path.as_ref().map(|p| p.display().to_string());
        }
        if !seen.insert(key) {
            a.note = Some("shown above".to_owned());
            return a;
        }
        let mut inputs = BTreeMap::new();
        for (port, recs) in &rec.inputs {
            let children = recs
                .iter()
                .map(|r| match &r.source {
                    Some(path) => Artifact {
                        hash: r.hash,
                        kind: None,
                        path: Some(path.clone()),
                        source: Some(true),
                        from: None,
                        produced_by: None,
                        note: None,
                    },
                    None => {
                        let prod = r.action.or_else(|| self.producers.get(&r.hash).and_then(|v| v.first()).copied());
                        self.with_producer(r.hash, prod, Some(r), seen)
                    }
                })
                .collect();
            inputs.insert(port.clone(), children);
        }
        a.produced_by = Some(Box::new(Production {
            action: key,
            node: rec.node.clone(),
            pipeline: rec.pipeline.clone(),
            output: output.map(|(n, _)| n.clone()).unwrap_or_default(),
            what: rec.action.clone(),
            params: rec.params.clone(),
            start: rec.start.clone(),
            duration_s: rec.duration_s,
            device: rec.device.clone(),
            host: rec.host.clone(),
            ran_on: rec.ran_on.clone(),
            toe_pipe_version: rec.toe_pipe_version.clone(),
            inputs,
        }));
        a
    }
}

/// The tree as text.
pub fn render(a: &Artifact) -> String {
    let mut out = String::new();
    let label = a.path.clone().unwrap_or_else(|| "artifact".into());
    let kind = a.kind.map(|k| format!("{k}, ")).unwrap_or_default();
    out.push_str(&format!("{label}  ({kind}{})\n", a.hash.short()));
    render_production(a, "", &mut out);
    out
}

fn render_production(a: &Artifact, prefix: &str, out: &mut String) {
    if let Some(note) = &a.note {
        out.push_str(&format!("{prefix}└── ({note})\n"));
        return;
    }
    let Some(p) = &a.produced_by else { return };
    let what = match &p.what {
        RecordedAction::Op { op, op_version } => format!("op {op} v{op_version}"),
        RecordedAction::Cmd { cmd } => format!("cmd `{}`", crate::store::records::one_line(cmd, 60)),
    };
    out.push_str(&format!(
        "{prefix}└── node {}.{} [{what}]  ran {} for {:.2}s on {} at {}  (pipeline {}, action {})\n",
        p.node,
        p.output,
        p.start,
        p.duration_s,
        p.device,
        p.host,
        p.pipeline,
        p.action.short()
    ));
    let inner = format!("{prefix}    ");
    if let Some(on) = &p.ran_on {
        out.push_str(&format!("{inner}on: {}\n", on.describe()));
    }
    if !p.params.is_empty() {
        let params: Vec<String> = p.params.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        out.push_str(&format!("{inner}params: {}\n", params.join(", ")));
    }
    let all: Vec<(&String, &Artifact)> =
        p.inputs.iter().flat_map(|(port, v)| v.iter().map(move |a| (port, a))).collect();
    for (idx, (port, child)) in all.iter().enumerate() {
        let last = idx + 1 == all.len();
        let (branch, cont) = if last { ("└── ", "    ") } else { ("├── ", "│   ") };
        let desc = if child.source == Some(true) {
            format!("source {}", child.path.as_deref().unwrap_or("?"))
        } else {
            let from =
                child.from.clone().or_else(|| child.produced_by.as_ref().map(|p| format!("{}.{}", p.node, p.output)));
            from.map_or("node output".to_owned(), |f| format!("from {f}"))
        };
        match (&child.note, child.source) {
            (Some(note), _) => {
                out.push_str(&format!("{inner}{branch}in {port}: {desc}  ({}, {note})\n", child.hash.short()))
            }
            (None, Some(true)) => {
                out.push_str(&format!("{inner}{branch}in {port}: {desc}  ({})\n", child.hash.short()))
            }
            (None, _) => {
                out.push_str(&format!("{inner}{branch}in {port}: {desc}  ({})\n", child.hash.short()));
                render_production(child, &format!("{inner}{cont}"), out);
            }
        }
    }
}
