//! The plan: for each node, whether it is fresh, gets its outputs back from
//! the store, runs (and why), or waits on a node that runs. `status` and
//! `run --dry-run` print it; `run` executes it.
//!
//! The cache decision is made in one place, [`decide`]: the plan calls it
//! for every node whose inputs are known up front, and `run` calls it for
//! the nodes that waited, once the nodes they read from have finished
//! (their action key depends on the content of those outputs).
//!
//! Planning is pure: it reads the store and the workspace and starts and
//! writes nothing (the stat cache, a memo of source hashes, aside).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::key::{lookup, resolve, why, KnownOutputs, Lookup, Resolved, SourceHashes};
use super::materialise::{placement, Placement};
use super::Engine;
use crate::spec::{Device, Node};
use crate::store::records::{ActionRecord, OutputRecord, PipelineRefs};
use crate::store::verify::object_ok;
use crate::store::Hash;

/// The nodes a run covers (`--only` and what they need) and the ones it
/// runs even if cached (`--force`), worked out once from the patterns.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Indexed like `pipeline.nodes`.
    pub selected: Vec<bool>,
    pub forced: Vec<bool>,
}

impl Selection {
    /// Every node, none forced (`status`, `run --dry-run`).
    pub fn all(n: usize) -> Selection {
        Selection { selected: vec![true; n], forced: vec![false; n] }
    }

    pub fn count(&self) -> usize {
        self.selected.iter().filter(|&&s| s).count()
    }
}

impl Engine<'_> {
    /// The selection for `--only` and `--force` patterns (empty `only`:
    /// every node). Errors name a pattern that matches nothing.
    pub fn select(&self, only: &[String], force: &[String]) -> anyhow::Result<Selection> {
        let n = self.pipeline.nodes.len();
        let selected = if only.is_empty() { vec![true; n] } else { self.dag.with_ancestors(&self.matching(only)?) };
        let mut forced = vec![false; n];
        for i in self.matching(force)? {
            forced[i] = true;
        }
        Ok(Selection { selected, forced })
    }
}

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

/// An output whose workspace path does not hold the stored object.
#[derive(Debug, Clone)]
pub struct PutBack {
    pub output: String,
    /// As declared (relative to the workspace).
    pub path: PathBuf,
    pub hash: Hash,
    /// `Missing` or `Differs`.
    pub found: Placement,
}

/// What happens to a node.
#[derive(Debug, Clone)]
pub enum Decision {
    /// A cache hit whose outputs are all in place. `outputs`: the cached
    /// result's (only they are kept: a plan holds every node's).
    Fresh { outputs: BTreeMap<String, OutputRecord> },
    /// A cache hit: put these outputs (back) in the workspace, no run.
    /// `earlier`: the hit is not the result the workspace holds now (an
    /// edit was reverted).
    Restore { outputs: BTreeMap<String, OutputRecord>, put_back: Vec<PutBack>, earlier: bool },
    /// Runs, as `resolved`. `corrupt`: stored outputs of the cached result
    /// that no longer match their hash (`--verify`); the run removes them
    /// first.
    Run { resolved: Box<Resolved>, corrupt: Vec<Hash> },
    /// Its inputs are not known until the nodes it reads from have run.
    Wait,
}

/// Whether a node wants a GPU when it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuUse {
    None,
    /// `device = "gpu"`: a GPU slot, else a CPU slot.
    Wanted,
    /// `require_gpu = true`: a GPU slot or an error before anything runs.
    Required,
}

#[derive(Debug, Clone)]
pub struct NodePlan {
    /// Index into `pipeline.nodes`.
    pub node: usize,
    pub decision: Decision,
    /// Why, in words (`status` prints them).
    pub reasons: Vec<String>,
    /// Its action key; `None` while it waits (its inputs are not known).
    pub key: Option<Hash>,
    pub gpu: GpuUse,
}

impl NodePlan {
    pub fn state(&self) -> State {
        match self.decision {
            Decision::Fresh { .. } => State::Fresh,
            Decision::Restore { .. } => State::Restore,
            Decision::Run { .. } => State::Stale,
            Decision::Wait => State::Waiting,
        }
    }

    /// The outputs of the cached result a hit uses.
    pub fn cached(&self) -> Option<&BTreeMap<String, OutputRecord>> {
        match &self.decision {
            Decision::Fresh { outputs } | Decision::Restore { outputs, .. } => Some(outputs),
            Decision::Run { .. } | Decision::Wait => None,
        }
    }
}

pub struct Plan {
    /// The selected nodes, in topological order.
    pub nodes: Vec<NodePlan>,
    /// Content hashes of the sources the selected nodes read.
    pub sources: SourceHashes,
    /// The pipeline's refs the plan was made against.
    pub refs: PipelineRefs,
}

impl Plan {
    /// Nodes that require a GPU and will or may run.
    pub fn requiring_gpu(&self) -> impl Iterator<Item = usize> + '_ {
        self.nodes
            .iter()
            .filter(|n| n.gpu == GpuUse::Required && matches!(n.state(), State::Stale | State::Waiting))
            .map(|n| n.node)
    }
}

/// Plan the selected nodes. `verify` re-hashes sources and the stored
/// outputs of cache hits.
pub fn plan(e: &Engine, sel: &Selection, verify: bool) -> anyhow::Result<Plan> {
    let p = e.pipeline;
    let sources = e.hash_sources(&sel.selected, verify)?;
    let refs = e.store.read_refs(&p.name);
    let mut known = KnownOutputs::new();
    let mut states: Vec<Option<State>> = vec![None; p.nodes.len()];
    let mut nodes = Vec::with_capacity(sel.count());
    for &i in &e.dag.order {
        if !sel.selected[i] {
            continue;
        }
        let node = &p.nodes[i];
        let current = refs.nodes.get(&node.id).and_then(|r| r.current);
        let planned = match resolve(node, e.catalog, &known, &sources, e.store) {
            Some(res) => decide(e, i, res, current, sel.forced[i], verify),
            None => {
                let after: Vec<&str> = e
                    .dag
                    .parents(i)
                    .into_iter()
                    .filter(|&j| matches!(states[j], Some(State::Stale | State::Waiting)))
                    .map(|j| p.nodes[j].id.as_str())
                    .collect();
                let mut reasons = vec![format!("after {}", after.join(", "))];
                if let Some(prev) = current.and_then(|k| e.store.read_action(&k)) {
                    reasons.extend(own_changes(&prev, node, e));
                }
                NodePlan { node: i, decision: Decision::Wait, reasons, key: None, gpu: gpu_use(node) }
            }
        };
        if let (Some(outputs), Some(key)) = (planned.cached(), planned.key) {
            learn(&mut known, &node.id, key, outputs);
        }
        states[i] = Some(planned.state());
        nodes.push(planned);
    }
    Ok(Plan { nodes, sources, refs })
}

/// The cache decision for one node whose inputs are known. `current`: the
/// action whose outputs the workspace holds now (from the refs).
pub fn decide(e: &Engine, i: usize, res: Resolved, current: Option<Hash>, forced: bool, verify: bool) -> NodePlan {
    let node = &e.pipeline.nodes[i];
    let previous = || current.and_then(|k| e.store.read_action(&k));
    // Err(corrupt outputs): the node runs (it takes `res` below).
    let (decision, reasons): (Result<Decision, Vec<Hash>>, Vec<String>) = if forced {
        (Err(vec![]), vec!["forced (--force)".to_owned()])
    } else {
        match lookup(e.store, &res.key) {
            Lookup::Hit(rec) => {
                let corrupt: Vec<(&String, Hash)> = if verify {
                    rec.outputs
                        .iter()
                        .filter(|(_, o)| !object_ok(e.store, &o.hash).unwrap_or(false))
                        .map(|(n, o)| (n, o.hash))
                        .collect()
                } else {
                    vec![]
                };
                if !corrupt.is_empty() {
                    let reasons = corrupt
                        .iter()
                        .map(|(n, _)| format!("stored output `{n}` is corrupt (run with --verify to replace it)"))
                        .collect();
                    (Err(corrupt.into_iter().map(|(_, h)| h).collect()), reasons)
                } else {
                    let put_back = put_back(e, node, &rec.outputs);
                    if current == Some(res.key) {
                        if put_back.is_empty() {
                            (Ok(Decision::Fresh { outputs: rec.outputs }), vec![])
                        } else {
                            let reasons = put_back
                                .iter()
                                .map(|b| match b.found {
                                    Placement::Missing => format!("{} is missing from the workspace", b.path.display()),
                                    _ => format!("{} differs from the stored output", b.path.display()),
                                })
                                .collect();
                            (Ok(Decision::Restore { outputs: rec.outputs, put_back, earlier: false }), reasons)
                        }
                    } else {
                        let mut reasons =
                            vec!["an earlier result for these inputs and params is in the store".to_owned()];
                        if let Some(prev) = previous() {
                            reasons.extend(why(&prev, &res));
                        }
                        (Ok(Decision::Restore { outputs: rec.outputs, put_back, earlier: true }), reasons)
                    }
                }
            }
            Lookup::Incomplete(why_incomplete) => (Err(vec![]), vec![why_incomplete]),
            Lookup::Miss => {
                let reasons = match previous() {
                    None if current.is_some() => vec!["its previous result was removed from the store".to_owned()],
                    None => vec!["never ran".to_owned()],
                    Some(prev) => {
                        let r = why(&prev, &res);
                        if r.is_empty() {
                            vec!["no cached result for these inputs".to_owned()]
                        } else {
                            r
                        }
                    }
                };
                (Err(vec![]), reasons)
            }
        }
    };
    let key = Some(res.key);
    let decision = decision.unwrap_or_else(|corrupt| Decision::Run { resolved: Box::new(res), corrupt });
    NodePlan { node: i, decision, reasons, key, gpu: gpu_use(node) }
}

/// The declared outputs whose workspace path does not hold `outputs`'
/// objects: what a hit or a finished run puts in place.
pub fn put_back(e: &Engine, node: &Node, outputs: &BTreeMap<String, OutputRecord>) -> Vec<PutBack> {
    node.outputs
        .iter()
        .filter_map(|(name, o)| {
            let path = o.path.as_ref()?;
            let hash = outputs.get(name)?.hash;
            match placement(e.store, &hash, &e.pipeline.workspace_path(path)) {
                Placement::InPlace => None,
                found => Some(PutBack { output: name.clone(), path: path.clone(), hash, found }),
            }
        })
        .collect()
}

/// Record the output hashes of a node's result (action `key`), so the
/// nodes reading them resolve.
pub fn learn(known: &mut KnownOutputs, node: &str, key: Hash, outputs: &BTreeMap<String, OutputRecord>) {
    for (name, out) in outputs {
        known.insert((node.to_owned(), name.clone()), (out.hash, key));
    }
}

pub fn gpu_use(node: &Node) -> GpuUse {
    match (node.device, node.require_gpu) {
        (Device::Gpu, true) => GpuUse::Required,
        (Device::Gpu, false) => GpuUse::Wanted,
        (Device::Cpu, _) => GpuUse::None,
    }
}

/// What changed in a node itself (op, command, params), for nodes whose
/// inputs are not known yet.
fn own_changes(prev: &ActionRecord, node: &Node, e: &Engine) -> Vec<String> {
    let res = Resolved {
        key: prev.key,
        action: super::key::recorded_action(node, e.catalog),
        params: node.params.iter().map(|(k, p)| (k.clone(), p.value.clone())).collect(),
        inputs: prev.inputs.clone(),
        output_kinds: node.outputs.iter().map(|(k, o)| (k.clone(), o.kind_or_file())).collect(),
        lineage: None,
    };
    why(prev, &res)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::SystemTime;

    use super::*;
    use crate::engine::materialise::materialise;
    use crate::graph::Dag;
    use crate::ops::OpCatalog;
    use crate::spec::check::{check, CheckOptions};
    use crate::spec::{expand, LoadOptions, Pipeline};
    use crate::store::records::{NodeRef, Timing};
    use crate::store::Store;

    /// a -> b, each writing a text file in out/.
    const PIPELINE: &str = r#"
[pipeline]
name = "planned"

[[node]]
id = "a"
cmd = "echo a > ${out.x}"
outputs.x = { kind = "text", path = "out/a.txt" }

[[node]]
id = "b"
cmd = "cat ${in.x} > ${out.y}"
inputs.x = "a.x"
outputs.y = { kind = "text", path = "out/b.txt" }
"#;

    struct World {
        dir: tempfile::TempDir,
        pipeline: Pipeline,
        dag: Dag,
        store: Store,
        catalog: OpCatalog,
    }

    impl World {
        /// A workspace where node a has run (by hand: output committed,
        /// record and refs written, output materialised) and b has not.
        fn new() -> World {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("p.toml");
            std::fs::write(&file, PIPELINE).unwrap();
            let (mut pipeline, diags) = expand(&file, &LoadOptions::default()).unwrap();
            assert!(diags.is_empty());
            let dag = check(&mut pipeline, None, &CheckOptions::default()).unwrap();
            let store = Store::open_or_create(&dir.path().join("artifacts")).unwrap();
            let catalog = OpCatalog::default();

            let a = &pipeline.nodes[0];
            let res = resolve(a, &catalog, &KnownOutputs::new(), &SourceHashes::new(), &store).unwrap();
            let written = dir.path().join("written.txt");
            std::fs::write(&written, "a\n").unwrap();
            let outputs = BTreeMap::from([("x".to_owned(), store.commit(&written).unwrap())]);
            let now = SystemTime::now();
            let rec = ActionRecord::of_run(
                &pipeline,
                a,
                &res,
                &outputs,
                &Timing { start: now, end: now, seconds: 0.0 },
                "cpu".into(),
                Default::default(),
            );
            store.write_action(&rec).unwrap();
            let mut refs =
                PipelineRefs { pipeline: pipeline.name.clone(), file: pipeline.file.clone(), ..Default::default() };
            refs.nodes.insert("a".into(), NodeRef { current: Some(res.key), last_attempt: None, placed: None });
            store.write_refs(&refs).unwrap();
            materialise(&store, &outputs["x"].hash, &dir.path().join("out/a.txt")).unwrap();
            World { dir, pipeline, dag, store, catalog }
        }

        fn engine(&self) -> Engine<'_> {
            Engine { pipeline: &self.pipeline, dag: &self.dag, store: &self.store, catalog: &self.catalog }
        }

        /// (node, state, reasons) per planned node.
        fn plan(&self, sel: &Selection) -> Vec<(String, State, Vec<String>)> {
            let plan = plan(&self.engine(), sel, false).unwrap();
            plan.nodes.iter().map(|n| (self.pipeline.nodes[n.node].id.clone(), n.state(), n.reasons.clone())).collect()
        }

        /// Every path under the temp dir with its size, to see that
        /// planning writes nothing.
        fn listing(&self) -> Vec<(PathBuf, u64)> {
            fn walk(dir: &Path, out: &mut Vec<(PathBuf, u64)>) {
                for e in std::fs::read_dir(dir).unwrap().flatten() {
                    let meta = e.metadata().unwrap();
                    out.push((e.path(), meta.len()));
                    if meta.is_dir() {
                        walk(&e.path(), out);
                    }
                }
            }
            let mut out = Vec::new();
            walk(self.dir.path(), &mut out);
            out.sort();
            out
        }
    }

    fn row(id: &str, state: State, reasons: &[&str]) -> (String, State, Vec<String>) {
        (id.to_owned(), state, reasons.iter().map(|r| r.to_string()).collect())
    }

    #[test]
    fn a_ran_node_is_fresh_and_its_reader_never_ran() {
        let w = World::new();
        let all = Selection::all(2);
        assert_eq!(w.plan(&all), vec![row("a", State::Fresh, &[]), row("b", State::Stale, &["never ran"])]);
    }

    #[test]
    fn a_deleted_output_plans_as_restore_and_planning_writes_nothing() {
        let w = World::new();
        std::fs::remove_file(w.dir.path().join("out/a.txt")).unwrap();
        let before = w.listing();
        let plan = plan(&w.engine(), &Selection::all(2), false).unwrap();
        assert_eq!(w.listing(), before, "planning changed the workspace or the store");
        let a = &plan.nodes[0];
        assert_eq!(
            (a.state(), a.reasons.clone()),
            (State::Restore, vec!["out/a.txt is missing from the workspace".to_owned()])
        );
        let Decision::Restore { put_back, earlier, .. } = &a.decision else { panic!("{:?}", a.decision) };
        assert!(!earlier);
        assert_eq!(
            put_back.iter().map(|b| (b.output.as_str(), b.path.as_path(), b.found)).collect::<Vec<_>>(),
            vec![("x", Path::new("out/a.txt"), Placement::Missing)]
        );
        // Its outputs are known from the store, so b's key is too.
        assert_eq!(plan.nodes[1].state(), State::Stale);
        assert!(plan.nodes[1].key.is_some());
    }

    #[test]
    fn a_forced_node_plans_as_stale_and_its_reader_waits() {
        let w = World::new();
        let sel = w.engine().select(&[], &["a".to_owned()]).unwrap();
        assert_eq!(
            w.plan(&sel),
            vec![row("a", State::Stale, &["forced (--force)"]), row("b", State::Waiting, &["after a"])]
        );
        let plan = plan(&w.engine(), &sel, false).unwrap();
        assert!(plan.nodes[0].key.is_some());
        assert_eq!(plan.nodes[1].key, None);
    }

    #[test]
    fn only_plans_the_selected_nodes_and_what_they_need() {
        let w = World::new();
        let sel = w.engine().select(&["a".to_owned()], &[]).unwrap();
        assert_eq!(sel.count(), 1);
        assert_eq!(w.plan(&sel), vec![row("a", State::Fresh, &[])]);
        let sel = w.engine().select(&["b".to_owned()], &[]).unwrap();
        assert_eq!(w.plan(&sel).len(), 2);
        assert!(w
            .engine()
            .select(&["c*".to_owned()], &[])
            .unwrap_err()
            .to_string()
            .contains("no node of pipeline planned matches `c*`"));
    }
}
