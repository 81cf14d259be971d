//! `toe-pipe check`: everything about a loaded pipeline that needs the
//! whole graph, the op catalog or the file system. Fills in what the file
//! may leave implicit (op output kinds, op param defaults) so the rest of
//! toe-pipe sees a complete, canonical pipeline.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::diag::{suggest, Diagnostic, Diagnostics};
use super::expand::overlaps;
use super::vars;
use super::{Action, ArtifactKind, InputRef, Output, Param, ParamValue, Pipeline, LINEAGE_REF};
use crate::confine::{real_path, RealPath, Resolver};
use crate::graph::Dag;
use crate::ops::{with_article, OpCatalog, ParamProblem};

/// What to check besides the file itself.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Report source paths that do not exist.
    pub sources: bool,
    /// The store directory: outputs must not be materialised inside it.
    pub store: Option<PathBuf>,
}

/// Check `p`, completing op outputs and params on the way. `catalog` may be
/// `None` only for pipelines without op nodes.
pub fn check(p: &mut Pipeline, catalog: Option<&OpCatalog>, opts: &CheckOptions) -> Result<Dag, Diagnostics> {
    let mut diags = Diagnostics::default();
    references(p, &mut diags);
    if let Some(catalog) = catalog {
        ops(p, catalog, &mut diags);
    } else if let Some(n) = p.nodes.iter().find(|n| matches!(n.action, Action::Op { .. })) {
        diags.push(
            p.diagnostic(&n.span, Some(&n.id), "op nodes cannot be checked without the op catalog")
                .with_fix("build toe-pipe-worker (`cargo build --bins`)"),
        );
    }
    outputs_exist(p, catalog, &mut diags);
    commands(p, &mut diags);
    output_paths(p, opts.store.as_deref(), &mut diags);
    if opts.sources {
        sources(p, catalog, &mut diags);
    }
    let dag = Dag::build(p);
    if let Err(cycles) = &dag {
        for cycle in cycles {
            let names: Vec<&str> = cycle.iter().map(|&i| p.nodes[i].id.as_str()).collect();
            let first = &p.nodes[cycle[0]];
            let msg = if cycle.len() == 2 {
                format!("node `{}` reads its own output (cycle: {})", first.id, names.join(" -> "))
            } else {
                format!("the pipeline has a cycle: {}", names.join(" -> "))
            };
            diags.push(
                p.diagnostic(&first.span, Some(&first.id), msg)
                    .with_fix("remove one of these inputs; a pipeline must be a DAG"),
            );
        }
    }
    diags.into_result()?;
    // Cycles were reported just above, so this is the DAG.
    dag.map_err(|_| Diagnostics::default())
}

/// Every `node.output` names an existing node.
fn references(p: &Pipeline, diags: &mut Diagnostics) {
    let by_id: BTreeMap<&str, usize> = p.nodes.iter().enumerate().map(|(i, n)| (n.id.as_str(), i)).collect();
    for node in &p.nodes {
        for (port, input) in &node.inputs {
            for r in &input.refs {
                let InputRef::Node { node: up, .. } = r else { continue };
                match by_id.get(up.as_str()) {
                    None if p.is_broken(up) => {}
                    None => {
                        let hint = suggest(up, "node", p.nodes.iter().map(|n| n.id.as_str()));
                        diags.push(
                            p.diagnostic(&input.span, Some(&node.id), format!("input `{port}` refers to node `{up}`, which does not exist"))
                                .with_fix(format!("{hint} (references are written `node.output`; files outside the store go under sources)")),
                        );
                    }
                    Some(_) => {}
                }
            }
        }
    }
}

/// Every referenced output exists (after `ops` completed op nodes' outputs).
fn outputs_exist(p: &Pipeline, catalog: Option<&OpCatalog>, diags: &mut Diagnostics) {
    for node in &p.nodes {
        for (port, input) in &node.inputs {
            for r in &input.refs {
                let InputRef::Node { node: up, output } = r else { continue };
                let Some(upstream) = p.node_index(up).map(|j| &p.nodes[j]) else { continue };
                let unknown_op = match &upstream.action {
                    Action::Op { name, .. } => catalog.and_then(|c| c.get(name)).is_none(),
                    Action::Cmd { .. } => false,
                };
                if upstream.outputs.contains_key(output) || unknown_op || p.is_broken(up) {
                    continue;
                }
                let hint = suggest(output, "output", upstream.outputs.keys().map(String::as_str));
                diags.push(
                    p.diagnostic(
                        &input.span,
                        Some(&node.id),
                        format!("input `{port}` refers to output `{output}` of node `{up}`, which has no such output"),
                    )
                    .with_fix(hint),
                );
            }
        }
    }
}

/// Op nodes against the catalog: op, params (types, defaults), ports, kinds.
fn ops(p: &mut Pipeline, catalog: &OpCatalog, diags: &mut Diagnostics) {
    // First pass: complete each op node's outputs from its op.
    for i in 0..p.nodes.len() {
        let Action::Op { name, span } = p.nodes[i].action.clone() else { continue };
        let id = p.nodes[i].id.clone();
        let Some(info) = catalog.get(&name) else {
            let hint = suggest(&name, "op", catalog.names());
            diags.push(
                p.diagnostic(&span, Some(&id), format!("unknown op `{name}`"))
                    .with_fix(format!("{hint} (`toe-pipe ops` lists them)")),
            );
            continue;
        };
        let node_span = p.nodes[i].span.clone();

        // Params: known, well typed, defaults filled in, canonical form.
        let mut params = BTreeMap::new();
        for (pname, param) in &p.nodes[i].params {
            match info.param(pname) {
                None => {
                    let hint = suggest(pname, "param", info.params.iter().map(|x| x.name.as_str()));
                    diags.push(
                        p.diagnostic(&param.span, Some(&id), format!("op `{name}` has no param `{pname}`"))
                            .with_fix(hint),
                    );
                }
                // The same check the worker applies before the op runs.
                Some(spec) => match spec.validate(&param.value) {
                    Ok(v) => {
                        params.insert(pname.clone(), Param { value: v, span: param.span.clone() });
                    }
                    Err(problem) => {
                        let fix = match problem {
                            ParamProblem::Type => format!("write {}", with_article(spec.ty.name())),
                            ParamProblem::Range => {
                                format!("write a value in the allowed range ({})", spec.allowed().unwrap_or_default())
                            }
                            ParamProblem::Choice => {
                                let allowed = |s: &&str| spec.choices.iter().any(|c| c == s);
                                let bad = match &param.value {
                                    ParamValue::List(items) => {
                                        items.iter().filter_map(ParamValue::as_str).find(|s| !allowed(s))
                                    }
                                    v => v.as_str(),
                                };
                                suggest(bad.unwrap_or_default(), "value", spec.choices.iter().map(String::as_str))
                            }
                        };
                        let shown =
                            if problem == ParamProblem::Type { String::new() } else { format!(" = {}", param.value) };
                        diags.push(
                            p.diagnostic(
                                &param.span,
                                Some(&id),
                                format!(
                                    "param `{pname}` of op `{name}`{shown} {}",
                                    spec.problem_text(&problem, &param.value)
                                ),
                            )
                            .with_fix(fix),
                        );
                    }
                },
            }
        }
        for spec in &info.params {
            if params.contains_key(&spec.name) || p.nodes[i].params.contains_key(&spec.name) {
                continue;
            }
            match &spec.default {
                Some(d) => {
                    params.insert(spec.name.clone(), Param { value: d.clone(), span: node_span.clone() });
                }
                None => diags.push(
                    p.diagnostic(
                        &node_span,
                        Some(&id),
                        format!("op `{name}` needs param `{}` ({})", spec.name, spec.doc),
                    )
                    .with_fix(format!("add params.{} = <{}>", spec.name, spec.ty.name())),
                ),
            }
        }
        // Inputs that the chosen param values need (a score's inputs, say).
        let values: BTreeMap<String, ParamValue> = params.iter().map(|(k, v)| (k.clone(), v.value.clone())).collect();
        for need in info.unmet_needs(&values, |port| p.nodes[i].inputs.contains_key(port)) {
            let span = params.get(&need.param).map_or(&node_span, |v| &v.span);
            diags.push(p.diagnostic(span, Some(&id), format!("op `{name}`: {}", info.need_text(need))).with_fix(
                format!(
                    "add inputs.{} = \"node.output\" (or sources.{} = \"path\"), or take {:?} out of params.{}",
                    need.input, need.input, need.value, need.param
                ),
            ));
        }
        // A param at its implicit value stays out of the node's params and
        // so out of its action key (the worker reads it back as implicit).
        params.retain(|pname, v| !info.param(pname).is_some_and(|spec| spec.is_implicit(&v.value)));
        p.nodes[i].params = params;

        // Outputs: only the op's, kinds agree; undeclared ones are added
        // (kept in the store only).
        for (oname, out) in p.nodes[i].outputs.iter_mut() {
            match info.output(oname) {
                None => {
                    let hint = suggest(oname, "output", info.outputs.iter().map(|x| x.name.as_str()));
                    diags.push(
                        Diagnostic::at(&p.source, &out.span, Some(&id), format!("op `{name}` has no output `{oname}`"))
                            .with_fix(hint),
                    );
                }
                Some(port) => match out.kind {
                    Some(k) if k != port.kind => diags.push(
                        Diagnostic::at(
                            &p.source,
                            &out.span,
                            Some(&id),
                            format!("output `{oname}` of op `{name}` is a {} file, not {k}", port.kind),
                        )
                        .with_fix(format!("write kind = \"{}\" or leave the kind out", port.kind)),
                    ),
                    _ => out.kind = Some(port.kind),
                },
            }
        }
        for port in &info.outputs {
            p.nodes[i].outputs.entry(port.name.clone()).or_insert(Output {
                kind: Some(port.kind),
                path: None,
                span: node_span.clone(),
            });
        }
    }

    // Second pass: inputs, now that every op output has a kind.
    let kinds: BTreeMap<(String, String), Option<ArtifactKind>> = p
        .nodes
        .iter()
        .flat_map(|n| n.outputs.iter().map(move |(o, out)| ((n.id.clone(), o.clone()), out.kind)))
        .collect();
    for node in &p.nodes {
        let Action::Op { name, .. } = &node.action else { continue };
        let Some(info) = catalog.get(name) else { continue };
        for (port, input) in &node.inputs {
            let Some(spec) = info.input(port) else {
                let hint = suggest(port, "input", info.inputs.iter().map(|x| x.name.as_str()));
                diags.push(
                    p.diagnostic(&input.span, Some(&node.id), format!("op `{name}` has no input `{port}`"))
                        .with_fix(hint),
                );
                continue;
            };
            if !spec.list && input.is_list && input.refs.len() == 1 {
                diags.push(
                    p.diagnostic(
                        &input.span,
                        Some(&node.id),
                        format!("input `{port}` of op `{name}` takes one artifact, not a list"),
                    )
                    .with_fix("write the reference as a string, without [ ]"),
                );
            } else if input.refs.len() != 1 && !spec.list {
                diags.push(
                    p.diagnostic(
                        &input.span,
                        Some(&node.id),
                        format!("input `{port}` of op `{name}` takes one artifact, not {}", input.refs.len()),
                    )
                    .with_fix("connect a single `node.output` (or one source path)"),
                );
            }
            for r in &input.refs {
                match r {
                    InputRef::Node { node: up, output } => match kinds.get(&(up.clone(), output.clone())) {
                        Some(Some(k)) if !k.feeds(spec.kind) => diags.push(
                            p.diagnostic(
                                &input.span,
                                Some(&node.id),
                                format!("input `{port}` of op `{name}` wants {}, but {up}.{output} is {k}", spec.kind),
                            )
                            .with_fix("connect an output of the right kind"),
                        ),
                        _ => {}
                    },
                    InputRef::Lineage if !ArtifactKind::Json.feeds(spec.kind) => diags.push(
                        p.diagnostic(
                            &input.span,
                            Some(&node.id),
                            format!("input `{port}` of op `{name}` wants {}, but {LINEAGE_REF} is json", spec.kind),
                        )
                        .with_fix("connect @lineage to a json input"),
                    ),
                    InputRef::Lineage => {}
                    InputRef::Source { abs, path } => {
                        if abs.exists() && (spec.kind == ArtifactKind::Dir) != abs.is_dir() {
                            let want = if spec.kind == ArtifactKind::Dir { "a directory" } else { "a file" };
                            diags.push(
                                p.diagnostic(
                                    &input.span,
                                    Some(&node.id),
                                    format!("input `{port}` of op `{name}` wants {want}, but {path} is not one"),
                                )
                                .with_fix("point the source at the right path"),
                            );
                        }
                    }
                }
            }
        }
        for spec in &info.inputs {
            if !spec.optional && !node.inputs.contains_key(&spec.name) {
                diags.push(
                    p.diagnostic(
                        &node.span,
                        Some(&node.id),
                        format!("op `{name}` needs input `{}` ({} {})", spec.name, spec.kind, spec.doc),
                    )
                    .with_fix(format!(
                        "add inputs.{} = \"node.output\" or sources.{} = \"path\"",
                        spec.name, spec.name
                    )),
                );
            }
        }
    }
}

/// Placeholders in commands name declared ports and params, and every
/// output is written somewhere in the command.
fn commands(p: &Pipeline, diags: &mut Diagnostics) {
    for node in &p.nodes {
        let Action::Cmd { template, span } = &node.action else { continue };
        let used = match vars::runtime_placeholders(template) {
            Ok(u) => u,
            Err(m) => {
                diags.push(p.diagnostic(span, Some(&node.id), m.message).with_fix(m.fix));
                continue;
            }
        };
        for (ns, name, _) in &used {
            let (known, what): (Vec<&str>, &str) = match ns.as_str() {
                "in" => (node.inputs.keys().map(String::as_str).collect(), "input"),
                "out" => (node.outputs.keys().map(String::as_str).collect(), "output"),
                _ => (node.params.keys().map(String::as_str).collect(), "param"),
            };
            if !known.contains(&name.as_str()) {
                let hint = suggest(name, what, known.iter().copied());
                let table = match what {
                    "input" => "inputs (or sources)",
                    "output" => "outputs",
                    _ => "params",
                };
                diags.push(
                    p.diagnostic(
                        span,
                        Some(&node.id),
                        format!("the command uses `${{{ns}.{name}}}` but the node has no {what} `{name}`"),
                    )
                    .with_fix(format!("{hint} (declare it under {table})")),
                );
            }
        }
        for (oname, out) in &node.outputs {
            if !used.iter().any(|(ns, n, _)| ns == "out" && n == oname) {
                diags.push(
                    Diagnostic::at(&p.source, &out.span, Some(&node.id), format!("output `{oname}` never appears in the command, so the command cannot know where to write it"))
                        .with_fix(format!("write it to `${{out.{oname}}}` in cmd")),
                );
            }
        }
    }
}

/// Declared output paths are unique, do not nest, do not overlap a source
/// path, the pipeline file or the store, and do not lead out of the
/// workspace through a symbolic link.
fn output_paths(p: &Pipeline, store: Option<&Path>, diags: &mut Diagnostics) {
    let mut all: Vec<(&Path, &str, &str, &Output)> = Vec::new();
    for node in &p.nodes {
        for (oname, out) in &node.outputs {
            if let Some(path) = &out.path {
                all.push((path, &node.id, oname, out));
            }
        }
    }
    all.sort_by(|a, b| a.0.cmp(b.0));
    // Sorted by components, a path's descendants follow it directly.
    let mut open: Vec<&(&Path, &str, &str, &Output)> = Vec::new();
    for entry in &all {
        while open.last().is_some_and(|top| !entry.0.starts_with(top.0)) {
            open.pop();
        }
        if let Some(top) = open.last() {
            let msg = if top.0 == entry.0 {
                format!("output path {} is also the path of {}.{}", entry.0.display(), top.1, top.2)
            } else {
                format!(
                    "output path {} is inside {}, the path of {}.{}",
                    entry.0.display(),
                    top.0.display(),
                    top.1,
                    top.2
                )
            };
            diags.push(
                Diagnostic::at(&p.source, &entry.3.span, Some(entry.1), msg).with_fix("give every output its own path"),
            );
        }
        open.push(entry);
    }
    let store_rel = store.and_then(|s| s.strip_prefix(&p.workspace).ok());
    for (path, node, _, out) in &all {
        if let Some(s) = store_rel {
            if overlaps(path, s) {
                diags.push(
                    Diagnostic::at(
                        &p.source,
                        &out.span,
                        Some(node),
                        format!("output path {} overlaps the store ({})", path.display(), s.display()),
                    )
                    .with_fix("materialise outputs outside the store directory"),
                );
            }
        }
    }
    // Where each output really leads, through the links among its folders.
    let mut resolver = Resolver::new(&p.workspace);
    let real: Vec<RealPath> = all.iter().map(|(path, ..)| resolver.resolve(path)).collect();
    let store_real = store.map(real_path);
    let file_real = real_path(&p.file);
    for ((path, node, oname, out), r) in all.iter().zip(&real) {
        let at = |msg: String| Diagnostic::at(&p.source, &out.span, Some(node), msg);
        if let Some(escape) = &r.escape {
            let (msg, fix) = escape.error(oname, path);
            diags.push(at(msg).with_fix(fix));
            continue;
        }
        if let Some(s) = &store_real {
            if overlaps(&r.real, s) && !store_rel.is_some_and(|rel| overlaps(path, rel)) {
                diags.push(
                    at(format!(
                        "output `{oname}` at {} leads into the store ({}) through a symbolic link",
                        path.display(),
                        s.display()
                    ))
                    .with_fix("materialise outputs outside the store directory"),
                );
            }
        }
        if overlaps(&r.real, &file_real) {
            let what = if r.real == file_real { "is the pipeline file itself" } else { "holds the pipeline file" };
            diags.push(
                at(format!("output `{oname}` at {} {what} ({})", path.display(), p.source.display))
                    .with_fix("choose another path; toe-pipe would replace the file it is reading"),
            );
        }
    }
    // Sources against outputs, as written and as resolved: by path, an
    // output at or above a source is one of the source's ancestors, and
    // the outputs below a source sort right after it.
    let mut by_path: BTreeMap<&Path, usize> = BTreeMap::new();
    for (i, ((path, ..), r)) in all.iter().zip(&real).enumerate() {
        by_path.entry(path).or_insert(i);
        by_path.entry(&r.real).or_insert(i);
    }
    let overlapping = |p: &Path| -> Option<usize> {
        p.ancestors()
            .find_map(|a| by_path.get(a).copied())
            .or_else(|| by_path.range(p..).next().filter(|(o, _)| o.starts_with(p)).map(|(_, &i)| i))
    };
    let mut source_real: BTreeMap<&Path, PathBuf> = BTreeMap::new();
    for node in &p.nodes {
        for input in node.inputs.values() {
            for r in &input.refs {
                let InputRef::Source { path, abs } = r else { continue };
                let resolved = source_real.entry(abs).or_insert_with(|| real_path(abs));
                let lexical = abs.strip_prefix(&p.workspace).ok();
                let hit = lexical.and_then(overlapping).or_else(|| overlapping(resolved));
                if let Some((opath, up, oname, _)) = hit.map(|i| &all[i]) {
                    diags.push(
                        p.diagnostic(
                            &input.span,
                            Some(&node.id),
                            format!(
                                "source {path} overlaps {}, which node `{up}` writes (output `{oname}`)",
                                opath.display()
                            ),
                        )
                        .with_fix(format!("read it as a node output: inputs.NAME = \"{up}.{oname}\"")),
                    );
                }
            }
        }
    }
}

/// Every source path exists. All missing ones are listed, each path once
/// (at its first use, naming the other nodes that read it), with the
/// pipeline's `[sources_help]` text for it as the fix.
fn sources(p: &Pipeline, catalog: Option<&OpCatalog>, diags: &mut Diagnostics) {
    struct Missing<'a> {
        abs: &'a Path,
        /// (node, port, path as written, span) of every use, in file order.
        uses: Vec<(&'a str, &'a str, &'a str, &'a super::Span)>,
        /// What the first op port that reads it wants, when known.
        want: Option<&'static str>,
    }
    let mut missing: Vec<Missing> = Vec::new();
    for node in &p.nodes {
        for (port, input) in &node.inputs {
            for r in &input.refs {
                let InputRef::Source { path, abs } = r else { continue };
                if std::fs::symlink_metadata(abs).is_ok() {
                    continue;
                }
                let want =
                    match (&node.action, catalog) {
                        (Action::Op { name, .. }, Some(c)) => c
                            .get(name)
                            .and_then(|info| info.input(port))
                            .map(|spec| if spec.kind == ArtifactKind::Dir { "a directory" } else { "a file" }),
                        _ => None,
                    };
                let entry = match missing.iter_mut().position(|m| m.abs == abs.as_path()) {
                    Some(i) => &mut missing[i],
                    None => {
                        missing.push(Missing { abs, uses: Vec::new(), want: None });
                        missing.last_mut().expect("just pushed")
                    }
                };
                entry.want = entry.want.or(want);
                entry.uses.push((&node.id, port, path, &input.span));
            }
        }
    }
    for m in missing {
        let (node, port, path, span) = m.uses[0];
        let mut msg = format!(
            "source `{port}` = {path} does not exist (looked for {}{})",
            m.want.map(|w| format!("{w} at ")).unwrap_or_default(),
            m.abs.display()
        );
        let mut others: Vec<&str> = Vec::new();
        for &(n, ..) in &m.uses[1..] {
            if n != node && !others.contains(&n) {
                others.push(n);
            }
        }
        if !others.is_empty() {
            let shown: Vec<String> = others.iter().take(6).map(|n| format!("`{n}`")).collect();
            let more = if others.len() > 6 { format!(" and {} more", others.len() - 6) } else { String::new() };
            msg.push_str(&format!("; also read by {}{more}", shown.join(", ")));
        }
        let fix = match p.source_help(m.abs) {
            Some(help) => format!("{help} (or change the path or its variable with --set)"),
            None => "put the data there (data/README.md says where each dataset and checkpoint comes from), or change the path or its variable with --set".to_owned(),
        };
        diags.push(p.diagnostic(span, Some(node), msg).with_fix(fix));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{InputNeed, OpContext, Precision, Registry, TypedOp};
    use crate::spec::{load, LoadOptions, ParamValue};

    crate::op_params! {
        // Only declared: the catalog is what check reads.
        #[allow(dead_code)]
        struct ScaleParams {
            /// by how much
            #[range(above(0.0))]
            factor: f64 = 2.0,
            /// how exactly
            precision: Precision = Precision::Fp32,
            /// further precisions (a param added later)
            #[implicit(vec![Precision::Fp32])]
            also: Vec<Precision> = vec![Precision::Fp32],
        }
    }
    crate::op_ports! {
        // Only declared: the catalog is what check reads.
        #[allow(dead_code)]
        struct ScaleInputs {
            /// numbers
            x: Npy,
            /// numbers in half precision
            half: Option<Npy>,
        }
    }
    crate::op_ports! {
        // Only declared: the catalog is what check reads.
        #[allow(dead_code)]
        struct ScaleOutputs {
            /// scaled
            y: Npy,
            /// notes
            log: Text,
        }
    }

    struct Scale;
    impl TypedOp for Scale {
        const NAME: &'static str = "scale";
        const VERSION: u32 = 1;
        const SUMMARY: &'static str = "multiply";
        type Params = ScaleParams;
        type Inputs = ScaleInputs;
        type Outputs = ScaleOutputs;
        fn needs() -> Vec<InputNeed> {
            vec![InputNeed::new("also", "fp16", "half")]
        }
        fn run(&self, _: &OpContext, _: ScaleParams, _: ScaleInputs, _: ScaleOutputs) -> anyhow::Result<()> {
            Ok(())
        }
    }

    fn checked(text: &str) -> Result<Pipeline, Diagnostics> {
        checked_with(text, &CheckOptions::default())
    }

    fn checked_with(text: &str, opts: &CheckOptions) -> Result<Pipeline, Diagnostics> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, text).unwrap();
        let mut registry = Registry::new();
        registry.register(Box::new(Scale));
        let mut p = load(&path, &LoadOptions::default())?;
        check(&mut p, Some(&registry.catalog()), opts)?;
        Ok(p)
    }

    const BASE: &str = "[[node]]\nid = \"gen\"\ncmd = \"echo > ${out.x}\"\noutputs.x = \"npy\"\n\n[[node]]\nid = \"s\"\nop = \"scale\"\ninputs.x = \"gen.x\"\n";

    #[test]
    fn op_nodes_get_defaults_and_their_outputs() {
        let p = checked(BASE).unwrap();
        let s = &p.nodes[1];
        assert_eq!(s.params["factor"].value, ParamValue::Float(2.0));
        assert_eq!(s.outputs["y"].kind, Some(ArtifactKind::Npy));
        assert_eq!(s.outputs["log"].path, None);
        let p = checked(&format!("{BASE}params.factor = 3\n")).unwrap();
        assert_eq!(p.nodes[1].params["factor"].value, ParamValue::Float(3.0));
    }

    #[test]
    fn op_nodes_are_checked_against_the_catalog() {
        let err = checked(&format!("{BASE}params.factor = \"3\"\n")).unwrap_err().to_string();
        assert!(err.contains("p.toml:10:17: error in node `s`: param `factor` of op `scale` must be a float"), "{err}");
        let err = checked(&format!("{BASE}params.factor = 0\n")).unwrap_err().to_string();
        assert!(err.contains("p.toml:10:17: error in node `s`: param `factor` of op `scale` = 0 is out of range (allowed: more than 0.0)"), "{err}");
        assert!(err.contains("fix: write a value in the allowed range (more than 0.0)"), "{err}");
        let err = checked(&format!("{BASE}params.precision = \"fp8\"\n")).unwrap_err().to_string();
        assert!(err.contains("p.toml:10:20: error in node `s`: param `precision` of op `scale` = \"fp8\" is not allowed (allowed: one of \"fp32\", \"fp16\", \"bf16\")"), "{err}");
        assert!(err.contains("fix: use one of the values: `fp32`, `fp16`, `bf16`"), "{err}");
        let err = checked(&BASE.replace("inputs.x = \"gen.x\"", "inputs.x = [\"gen.x\"]")).unwrap_err().to_string();
        assert!(err.contains("takes one artifact, not a list"), "{err}");
        let err = checked(&BASE.replace("outputs.x = \"npy\"", "outputs.x = \"json\"")).unwrap_err().to_string();
        assert!(err.contains("input `x` of op `scale` wants npy, but gen.x is json"), "{err}");
        let err = checked(&BASE.replace("outputs.x = \"npy\"", "outputs.x = \"file\"")).map(|_| ());
        assert!(err.is_ok(), "a plain file may feed any file port");
    }

    /// A param at its implicit value is left out of the node's params (and
    /// so of its action key); another value stays in.
    #[test]
    fn implicit_values_stay_out_of_the_params() {
        let p = checked(BASE).unwrap();
        assert!(!p.nodes[1].params.contains_key("also"), "{:?}", p.nodes[1].params);
        let p = checked(&format!("{BASE}params.also = [\"fp32\"]\n")).unwrap();
        assert!(!p.nodes[1].params.contains_key("also"), "written out, the implicit value stays out too");
        let p = checked(&format!("{BASE}inputs.half = \"gen.x\"\nparams.also = [\"fp16\"]\n")).unwrap();
        let fp16 = ParamValue::List(vec![ParamValue::Str("fp16".into())]);
        assert_eq!(p.nodes[1].params["also"].value, fp16);
    }

    /// A param value that needs an optional input is an error without it,
    /// naming the node, the value and the input.
    #[test]
    fn a_value_that_needs_an_unconnected_input_fails_check() {
        let err = checked(&format!("{BASE}params.also = [\"fp32\", \"fp16\"]\n")).unwrap_err().to_string();
        assert!(
            err.contains("p.toml:10:15: error in node `s`: op `scale`: param `also` has \"fp16\", which needs input `half` (npy numbers in half precision); it is not connected"),
            "{err}"
        );
        assert!(err.contains("fix: add inputs.half = \"node.output\" (or sources.half = \"path\"), or take \"fp16\" out of params.also"), "{err}");
    }

    #[test]
    fn show_names_an_output_path() {
        let text = "[pipeline]\nshow = [\"out/${name}.npy\"]\n\n[vars]\nname = \"x\"\n\n[[node]]\nid = \"gen\"\ncmd = \"echo > ${out.x}\"\noutputs.x = { kind = \"npy\", path = \"out/x.npy\" }\n";
        let p = checked(text).unwrap();
        assert_eq!(p.show, [std::path::PathBuf::from("out/x.npy")]);
        let err = checked(&text.replace("out/${name}.npy", "out/y.npy")).unwrap_err().to_string();
        assert!(err.contains("show: no node writes \"out/y.npy\""), "{err}");
    }

    #[test]
    fn loop_values_feed_number_params() {
        let text = "[vars]\nfactors = [3, 2]\n\n[[node]]\nid = \"gen\"\ncmd = \"echo > ${out.x}\"\noutputs.x = \"npy\"\n\n[[node]]\nid = \"s_${f}\"\nfor_each.f = \"${factors}\"\nop = \"scale\"\ninputs.x = \"gen.x\"\nparams.factor = \"${f}\"\n";
        let p = checked(text).unwrap();
        assert_eq!(p.nodes[1].params["factor"].value, ParamValue::Float(3.0));
        assert_eq!(p.nodes[2].params["factor"].value, ParamValue::Float(2.0));
        let err = checked(&text.replace("[3, 2]", "[3, \"half\"]")).unwrap_err().to_string();
        assert!(
            err.contains("error in node `s_half`: param `factor` of op `scale` must be a float, found string \"half\""),
            "{err}"
        );
    }

    #[test]
    fn each_missing_source_once_with_its_help() {
        let text = r#"
[vars]
data = "nowhere"

[sources_help]
"${data}/models" = "the models: see data/README.md, section 'Models'"

[[node]]
id = "a"
cmd = "cat ${in.m} ${in.t} > ${out.x}"
sources.m = "${data}/models/clip.pt"
sources.t = "${data}/table.txt"
outputs.x = "npy"

[[node]]
id = "b"
op = "scale"
sources.x = "${data}/models/clip.pt"
"#;
        let opts = CheckOptions { sources: true, store: None };
        let err = checked_with(text, &opts).unwrap_err();
        assert_eq!(err.len(), 2, "{err}");
        let clip = err.0.iter().find(|d| d.message.contains("clip.pt")).unwrap();
        assert_eq!(clip.node.as_deref(), Some("a"));
        assert!(
            clip.message.starts_with("source `m` = nowhere/models/clip.pt does not exist (looked for a file at "),
            "{}",
            clip.message
        );
        assert!(clip.message.ends_with("; also read by `b`"), "{}", clip.message);
        assert_eq!(
            clip.fix.as_deref(),
            Some("the models: see data/README.md, section 'Models' (or change the path or its variable with --set)")
        );
        let table = err.0.iter().find(|d| d.message.contains("table.txt")).unwrap();
        assert!(table.fix.as_deref().unwrap().starts_with("put the data there (data/README.md"), "{table}");
        assert!(checked_with(text, &CheckOptions::default()).is_ok(), "without `sources`, paths are not looked at");
    }
}
