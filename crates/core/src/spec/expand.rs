//! From the TOML text to a [`Pipeline`]: parse with spans, resolve
//! variables, expand `for_each` templates, and check each node's own shape.
//! Checks that need the whole graph, the op catalog or the file system are
//! in [`super::check`].

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use toml::Spanned;

use super::diag::{Diagnostic, Diagnostics, SourceMap, Span};
use super::raw::{ForEachItem, ForEachValues, LenientFile, OneOrMany, RawFile, RawNode};
use super::resources;
use super::vars::{self, Scope, VarError, VarValue};
use super::{Action, ArtifactKind, Device, Input, InputRef, Node, Output, Param, ParamValue, Pipeline, SourceHelp};

/// Settings that come from the command line rather than the file.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--set name=value` overrides of `[vars]`.
    pub set: Vec<(String, String)>,
}

/// Load and expand a pipeline file. All problems found are returned
/// together, each with file:line:col, node and fix.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Pipeline, Diagnostics> {
    let (pipeline, diags) = expand(path, opts)?;
    diags.into_result()?;
    Ok(pipeline)
}

/// Like [`load`], but a node with errors only drops that node: the rest of
/// the pipeline comes back with the node-level diagnostics, so that later
/// checks can report their problems in the same pass. The dropped nodes'
/// ids are in `Pipeline::broken`. `Err` when nothing usable could be read.
pub fn expand(path: &Path, opts: &LoadOptions) -> Result<(Pipeline, Diagnostics), Diagnostics> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            let source = SourceMap::new(path, "");
            let fix = if e.kind() == std::io::ErrorKind::NotFound {
                "check the path; pipeline files usually live under pipelines/"
            } else {
                "make the file readable UTF-8 text"
            };
            return Err(Diagnostics(vec![Diagnostic::at(
                &source,
                &(0..0),
                None,
                format!("cannot read the pipeline file: {e}"),
            )
            .with_fix(fix)]));
        }
    };
    let source = SourceMap::new(path, &text);
    let raw: RawFile = toml::from_str(&text).map_err(|e| Diagnostics(vec![toml_error(&source, &e)]))?;
    Expander { source, diags: Diagnostics::default(), broken: Vec::new() }.pipeline(path, raw, opts)
}

/// Turn a toml/serde error into a diagnostic, naming the node it is in.
fn toml_error(source: &SourceMap, e: &toml::de::Error) -> Diagnostic {
    let span = e.span().unwrap_or(0..0);
    let mut message = e.message().trim().to_owned();
    // The toml parser gives no message for some errors (found by the spec
    // property test: a file that ends right after `key =`).
    if message.is_empty() {
        message = if span.start >= source.text().trim_end().len() {
            "the file ends where a value is expected".to_owned()
        } else {
            "this is not valid TOML".to_owned()
        };
    }
    let node = toml::from_str::<LenientFile>(source.text()).ok().and_then(|f| {
        f.node
            .iter()
            .find(|n| n.span().contains(&span.start))
            .and_then(|n| n.get_ref().id.as_ref().and_then(|v| v.as_str().map(str::to_owned)))
    });
    let fix = if message.starts_with("unknown field") {
        "remove the field or correct its spelling (the message lists the allowed ones)"
    } else if message.starts_with("missing field") {
        "add the field"
    } else if ["invalid type", "invalid value", "integer", "dates"].iter().any(|p| message.starts_with(p)) {
        "write the value with the type shown"
    } else {
        "fix the TOML syntax here (quotes, brackets, `key = value`); see https://toml.io"
    };
    Diagnostic::at(source, &span, node.as_deref(), message).with_fix(fix)
}

/// What the pipeline header and `[resources]` say for every node.
struct NodeDefaults {
    /// `require_gpu` of every gpu node.
    require_gpu: bool,
    resources: resources::Defaults,
}

struct Expander {
    source: SourceMap,
    diags: Diagnostics,
    /// Ids (glob patterns for templates) of nodes dropped for errors.
    broken: Vec<String>,
}

impl Expander {
    fn err(&mut self, span: &Span, node: Option<&str>, message: impl Into<String>, fix: impl Into<String>) {
        self.diags.push(Diagnostic::at(&self.source, span, node, message).with_fix(fix));
    }

    fn var_err(&mut self, span: &Span, node: Option<&str>, e: VarError) {
        self.err(span, node, e.message, e.fix);
    }

    fn problems(&mut self, node: Option<&str>, problems: Vec<resources::Problem>) {
        for (span, message, fix) in problems {
            self.err(&span, node, message, fix);
        }
    }

    fn pipeline(
        mut self,
        path: &Path,
        raw: RawFile,
        opts: &LoadOptions,
    ) -> Result<(Pipeline, Diagnostics), Diagnostics> {
        let file = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let file_dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let (header_span, header) = match raw.pipeline {
            Some(h) => (h.span(), Some(h.into_inner())),
            None => (0..0, None),
        };

        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("pipeline").to_owned();
        let name = match header.as_ref().and_then(|h| h.name.as_ref()) {
            Some(n) => {
                if !is_pipeline_name(n.get_ref()) {
                    self.err(
                        &n.span(),
                        None,
                        format!(
                            "pipeline name {:?} has characters other than letters, digits, `_`, `-` and `.`",
                            n.get_ref()
                        ),
                        "use a simple name such as \"imagenet\"",
                    );
                }
                n.get_ref().clone()
            }
            None => {
                if is_pipeline_name(&stem) {
                    stem
                } else {
                    "pipeline".to_owned()
                }
            }
        };

        let workspace = match header.as_ref().and_then(|h| h.workspace.as_ref()) {
            Some(w) => {
                let dir = normalize(&file_dir.join(w.get_ref()));
                if !dir.is_dir() {
                    self.err(&w.span(), None, format!("workspace {:?} is not a directory (resolved to {})", w.get_ref(), dir.display()), "workspace is relative to the pipeline file's directory; pipelines/ files usually say workspace = \"..\"");
                }
                dir
            }
            None => file_dir.clone(),
        };
        let require_gpu_all = header.as_ref().and_then(|h| h.require_gpu).unwrap_or(false);
        let show_raw = header.as_ref().and_then(|h| h.show.clone()).unwrap_or_default();
        let description = header.and_then(|h| h.description);

        // Variables, with command-line overrides applied before resolving so
        // that variables built from an overridden one follow it.
        let mut raw_vars: BTreeMap<String, ParamValue> = BTreeMap::new();
        let mut var_spans: BTreeMap<String, Span> = BTreeMap::new();
        for (k, v) in raw.vars {
            var_spans.insert(k.clone(), v.span());
            raw_vars.insert(k, v.into_inner());
        }
        for (name, value) in &opts.set {
            match raw_vars.get(name) {
                Some(old) => match override_value(old, value) {
                    Ok(v) => {
                        raw_vars.insert(name.clone(), v);
                    }
                    Err(m) => {
                        let span = var_spans.get(name).cloned().unwrap_or(header_span.clone());
                        self.err(
                            &span,
                            None,
                            format!("--set {name}={value}: {m}"),
                            format!("give a {} value", old.type_name()),
                        );
                    }
                },
                None => {
                    let known: Vec<&str> = raw_vars.keys().map(String::as_str).collect();
                    let hint = super::diag::suggest(name, "variable", known.iter().copied());
                    self.err(
                        &header_span,
                        None,
                        format!("--set {name}=...: the pipeline has no variable `{name}`"),
                        format!("{hint} (--set only overrides variables declared under [vars])"),
                    );
                }
            }
        }
        let globals = match vars::resolve_globals(&raw_vars) {
            Ok(scope) => scope,
            Err((name, e)) => {
                let span = var_spans.get(&name).cloned().unwrap_or(0..0);
                self.var_err(&span, None, e);
                return Err(self.finish());
            }
        };

        let sources_help = self.sources_help(raw.sources_help, &globals, &workspace);
        let mut problems = Vec::new();
        let resources = raw.resources.map(|r| resources::defaults(&r, &globals, &mut problems)).unwrap_or_default();
        self.problems(None, problems);
        let defaults = NodeDefaults { require_gpu: require_gpu_all, resources };

        let mut nodes = Vec::new();
        for raw_node in raw.node {
            let span = raw_node.span();
            self.expand_node(raw_node.into_inner(), span, &globals, &workspace, &defaults, &mut nodes);
        }

        // Duplicate ids (templates make them easy to produce).
        let mut seen: BTreeMap<&str, &Node> = BTreeMap::new();
        let mut dup = Vec::new();
        for n in &nodes {
            // The first copy stays in `seen`: every later copy names it.
            let first = *seen.entry(&n.id).or_insert(n);
            if !std::ptr::eq(first, n) {
                let (l, c) = self.source.line_col(first.span.start);
                dup.push((
                    n.span.clone(),
                    n.id.clone(),
                    format!("node id `{}` is used twice (first at line {l}, column {c})", n.id),
                ));
            }
        }
        for (span, id, msg) in dup {
            self.err(&span, Some(&id), msg, "give every node a unique id; in a for_each template put the loop variable in the id, e.g. id = \"eval_${ood}\"");
        }

        let show = self.show_paths(&show_raw, &nodes, &globals);
        let pipeline = Pipeline {
            name,
            description,
            file,
            workspace,
            nodes,
            show,
            source: self.source.clone(),
            broken: self.broken,
            sources_help,
        };
        Ok((pipeline, self.diags))
    }

    /// `show` entries must be the `path` of some node's output, so that a
    /// typo is caught before anything runs.
    fn show_paths(&mut self, raw: &[Spanned<String>], nodes: &[Node], globals: &Scope) -> Vec<PathBuf> {
        let mut paths = Vec::new();
        for entry in raw {
            let text = match vars::scalar(entry.get_ref(), globals) {
                Ok(t) => t,
                Err(e) => {
                    self.var_err(&entry.span(), None, e);
                    continue;
                }
            };
            let path = match workspace_relative(&text) {
                Ok(p) => p,
                Err(m) => {
                    self.err(
                        &entry.span(),
                        None,
                        format!("show: {m}"),
                        "list output paths inside the workspace, e.g. \"results/table.md\"",
                    );
                    continue;
                }
            };
            let written = nodes.iter().any(|n| n.outputs.values().any(|o| o.path.as_deref() == Some(path.as_path())));
            if !written {
                // A node left out for its own errors may be the writer.
                if self.broken.is_empty() {
                    self.err(
                        &entry.span(),
                        None,
                        format!("show: no node writes {text:?}"),
                        "name the `path` of a node's output, e.g. outputs.table = { path = \"results/table.md\" }",
                    );
                }
                continue;
            }
            paths.push(path);
        }
        paths
    }

    /// `[sources_help]` with variables filled in; keys resolved like source
    /// paths, so they follow `--set data=...`.
    fn sources_help(
        &mut self,
        raw: BTreeMap<String, Spanned<String>>,
        globals: &Scope,
        workspace: &Path,
    ) -> Vec<SourceHelp> {
        let mut out = Vec::new();
        for (key, text) in raw {
            let span = text.span();
            match (vars::scalar(&key, globals), vars::scalar(text.get_ref(), globals)) {
                (Ok(path), Ok(text)) if !path.is_empty() => {
                    out.push(SourceHelp { abs: normalize(&workspace.join(path)), text })
                }
                (Ok(_), Ok(_)) => self.err(
                    &span,
                    None,
                    "a [sources_help] key is an empty path",
                    "write the source path the text is about, e.g. \"${data}/datasets/Imagenet\" = \"...\"",
                ),
                (Err(e), _) | (_, Err(e)) => self.var_err(&span, None, e),
            }
        }
        out
    }

    fn finish(self) -> Diagnostics {
        self.diags
    }

    fn expand_node(
        &mut self,
        raw: RawNode,
        node_span: Span,
        globals: &Scope,
        workspace: &Path,
        defaults: &NodeDefaults,
        out: &mut Vec<Node>,
    ) {
        let errors_before = self.diags.len();
        self.expand_template(&raw, node_span, globals, workspace, defaults, out);
        if self.diags.len() > errors_before {
            // Whatever ids this node would have had: `${x}` parts match anything.
            let mut pattern = String::new();
            let mut rest = raw.id.get_ref().as_str();
            while let Some(i) = rest.find("${") {
                pattern.push_str(&rest[..i]);
                pattern.push('*');
                rest = rest[i..].find('}').map_or("", |j| &rest[i + j + 1..]);
            }
            pattern.push_str(rest);
            self.broken.push(pattern);
        }
    }

    fn expand_template(
        &mut self,
        raw: &RawNode,
        node_span: Span,
        globals: &Scope,
        workspace: &Path,
        defaults: &NodeDefaults,
        out: &mut Vec<Node>,
    ) {
        let id_span = raw.id.span();
        let template_id = raw.id.get_ref().clone();
        // The loop variables and their values.
        let mut loops: Vec<(String, Vec<ParamValue>)> = Vec::new();
        let mut ok = true;
        for (name, values) in &raw.for_each {
            let vspan = values.span();
            if !vars::is_var_name(name) {
                self.err(
                    &vspan,
                    Some(&template_id),
                    format!("for_each variable `{name}` is not a valid name"),
                    "use letters, digits and _",
                );
                ok = false;
                continue;
            }
            if globals.contains_key(name) {
                self.err(
                    &vspan,
                    Some(&template_id),
                    format!("for_each variable `{name}` has the same name as a variable under [vars]"),
                    "rename one of them",
                );
                ok = false;
                continue;
            }
            let items: Vec<&ForEachItem> = match values.get_ref() {
                ForEachValues::One(s) => vec![s],
                ForEachValues::Many(v) => v.iter().collect(),
            };
            let mut expanded = Vec::new();
            for item in items {
                let item = match item {
                    // A literal number or bool is a value as it stands,
                    // the same as one from a list variable.
                    ForEachItem::Literal(v) => {
                        expanded.push(v.clone());
                        continue;
                    }
                    ForEachItem::Text(t) => t,
                };
                match vars::list_values(item, globals) {
                    Ok(v) => expanded.extend(v),
                    Err(e) => {
                        self.var_err(&vspan, Some(&template_id), e);
                        ok = false;
                    }
                }
            }
            if expanded.is_empty() && ok {
                self.err(
                    &vspan,
                    Some(&template_id),
                    format!("for_each `{name}` has no values, so this template makes no node"),
                    "give it at least one value, or remove the node",
                );
                ok = false;
            }
            loops.push((name.clone(), expanded));
        }
        if !ok {
            return;
        }
        if !loops.is_empty() && !loops.iter().all(|(name, _)| template_id.contains(&format!("${{{name}}}"))) {
            let missing: Vec<String> = loops
                .iter()
                .filter(|(n, _)| !template_id.contains(&format!("${{{n}}}")))
                .map(|(n, _)| format!("${{{n}}}"))
                .collect();
            self.err(
                &id_span,
                Some(&template_id),
                format!(
                    "the id of a for_each template must contain every loop variable, missing {}",
                    missing.join(", ")
                ),
                format!("e.g. id = \"{}_{}\"", template_id, missing.join("_")),
            );
            return;
        }

        // Cartesian product of the loop values, in declaration order.
        let mut combos: Vec<Scope> = vec![globals.clone()];
        for (name, values) in &loops {
            let mut next = Vec::with_capacity(combos.len() * values.len());
            for scope in &combos {
                for v in values {
                    let mut s = scope.clone();
                    s.insert(name.clone(), VarValue::Scalar(v.clone()));
                    next.push(s);
                }
            }
            combos = next;
        }
        for scope in combos {
            if let Some(node) = self.build_node(raw, &node_span, &scope, workspace, defaults) {
                out.push(node);
            }
        }
    }

    /// One concrete node from a (possibly templated) raw node.
    fn build_node(
        &mut self,
        raw: &RawNode,
        node_span: &Span,
        scope: &Scope,
        workspace: &Path,
        defaults: &NodeDefaults,
    ) -> Option<Node> {
        let id_span = raw.id.span();
        let id = match vars::scalar(raw.id.get_ref(), scope) {
            Ok(id) => id,
            Err(e) => {
                self.var_err(&id_span, Some(raw.id.get_ref()), e);
                return None;
            }
        };
        if !vars::is_port_name(&id) {
            self.err(
                &id_span,
                Some(&id),
                format!("node id {id:?} may only contain letters, digits, `_` and `-`"),
                "rename the node (ids appear in references such as `node.output`, so no dots or slashes)",
            );
        }
        let node = Some(id.as_str());

        let action = match (&raw.op, &raw.cmd) {
            (Some(op), None) => match vars::scalar(op.get_ref(), scope) {
                Ok(name) => Some(Action::Op { name, span: op.span() }),
                Err(e) => {
                    self.var_err(&op.span(), node, e);
                    None
                }
            },
            (None, Some(cmd)) => match vars::command(cmd.get_ref(), scope) {
                Ok(template) if template.contains('\0') => {
                    self.err(&cmd.span(), node, "cmd holds a NUL byte, which no command line can carry", NUL_FIX);
                    None
                }
                Ok(template) => Some(Action::Cmd { template, span: cmd.span() }),
                Err(e) => {
                    self.var_err(&cmd.span(), node, e);
                    None
                }
            },
            (Some(op), Some(_)) => {
                self.err(&op.span(), node, "a node has either `op` or `cmd`, not both", "keep one of them");
                None
            }
            (None, None) => {
                self.err(
                    node_span,
                    node,
                    "the node has neither `op` (a built-in op) nor `cmd` (a shell command)",
                    "add op = \"NAME\" (see `toe-pipe ops`) or cmd = \"...\"",
                );
                None
            }
        };

        let mut params = BTreeMap::new();
        for (name, value) in &raw.params {
            if !vars::is_port_name(name) {
                self.err(
                    &value.span(),
                    node,
                    format!("param name `{name}` may only contain letters, digits, `_` and `-`"),
                    "rename the param",
                );
            }
            match vars::param(value.get_ref(), scope) {
                Ok(v) => {
                    params.insert(name.clone(), Param { value: v, span: value.span() });
                }
                Err(e) => self.var_err(&value.span(), node, e),
            }
        }

        let mut inputs = BTreeMap::new();
        for (port, value) in &raw.inputs {
            // A bad input stays declared (empty), so later checks do not
            // report it a second time as missing.
            let input = self.input(&id, port, value, scope, workspace, false).unwrap_or(Input {
                refs: vec![],
                is_list: false,
                span: value.span(),
            });
            inputs.insert(port.clone(), input);
        }
        for (port, value) in &raw.sources {
            if raw.inputs.contains_key(port) {
                self.err(
                    &value.span(),
                    node,
                    format!("`{port}` is both under inputs and under sources"),
                    "a port is fed either by node outputs (inputs) or by files (sources); rename one",
                );
                continue;
            }
            // A bad input stays declared (empty), so later checks do not
            // report it a second time as missing.
            let input = self.input(&id, port, value, scope, workspace, true).unwrap_or(Input {
                refs: vec![],
                is_list: false,
                span: value.span(),
            });
            inputs.insert(port.clone(), input);
        }

        let mut outputs = BTreeMap::new();
        for (name, value) in &raw.outputs {
            let span = value.span();
            if !vars::is_port_name(name) {
                self.err(
                    &span,
                    node,
                    format!("output name `{name}` may only contain letters, digits, `_` and `-`"),
                    "rename the output",
                );
                continue;
            }
            let raw_out = value.get_ref();
            let kind = match &raw_out.kind {
                Some(k) => {
                    let kspan = if k.span().is_empty() { span.clone() } else { k.span() };
                    match vars::scalar(k.get_ref(), scope).map(|s| ArtifactKind::parse(&s)) {
                        Ok(Some(kind)) => Some(kind),
                        Ok(None) => {
                            let names: Vec<&str> = ArtifactKind::ALL.iter().map(|k| k.name()).collect();
                            self.err(
                                &kspan,
                                node,
                                format!("unknown output kind {:?}", k.get_ref()),
                                format!("use one of: {}", names.join(", ")),
                            );
                            None
                        }
                        Err(e) => {
                            self.var_err(&kspan, node, e);
                            None
                        }
                    }
                }
                None => None,
            };
            let path = match &raw_out.path {
                Some(p) => match vars::scalar(p.get_ref(), scope) {
                    Ok(s) if s.contains('\0') => {
                        self.err(&p.span(), node, format!("the path of output `{name}` holds a NUL byte"), NUL_FIX);
                        None
                    }
                    // A newline in a file name would split the lines of
                    // logs, Slurm job scripts and lineage that name it.
                    Ok(s) if s.chars().any(char::is_control) => {
                        self.err(
                            &p.span(),
                            node,
                            format!("the path of output `{name}`, {s:?}, holds a control character"),
                            "use printable characters only (no newline, tab or escape)",
                        );
                        None
                    }
                    Ok(s) => match workspace_relative(&s) {
                        Ok(rel) => Some(rel),
                        Err(m) => {
                            self.err(
                                &p.span(),
                                node,
                                m,
                                "write a path inside the workspace, e.g. \"results/metrics.json\"",
                            );
                            None
                        }
                    },
                    Err(e) => {
                        self.var_err(&p.span(), node, e);
                        None
                    }
                },
                None => None,
            };
            if kind.is_none() && matches!(action, Some(Action::Cmd { .. })) && raw_out.kind.is_none() {
                self.err(
                    &span,
                    node,
                    format!("output `{name}` of a cmd node needs a kind"),
                    "add kind = \"file\" (or npy, pt, json, text, md, svg, png, dir)",
                );
            }
            outputs.insert(name.clone(), Output { kind, path, span });
        }

        let device = match &raw.device {
            None => Device::Cpu,
            Some(d) => match vars::scalar(d.get_ref(), scope).as_deref() {
                Ok("cpu") => Device::Cpu,
                Ok("gpu") => Device::Gpu,
                Ok(other) => {
                    // Name the value the node got, and where it came from
                    // when a variable gave it (`--set device=cuda`).
                    let written = d.get_ref();
                    let from = if other != written.as_str() { format!(" (from {written:?})") } else { String::new() };
                    self.err(
                        &d.span(),
                        node,
                        format!("device must be \"cpu\" or \"gpu\", not {other:?}{from}"),
                        "write device = \"gpu\" (or --set the variable to gpu) for nodes that should use a GPU when there is one",
                    );
                    Device::Cpu
                }
                Err(e) => {
                    self.var_err(&d.span(), node, e.clone());
                    Device::Cpu
                }
            },
        };
        let require_gpu = match &raw.require_gpu {
            Some(r) => *r.get_ref(),
            None => defaults.require_gpu && device == Device::Gpu,
        };
        if require_gpu && device == Device::Cpu {
            let span = raw.require_gpu.as_ref().map(Spanned::span).unwrap_or(node_span.clone());
            self.err(&span, node, "require_gpu = true on a cpu node", "add device = \"gpu\" or remove require_gpu");
        }
        let mut problems = Vec::new();
        let own = raw
            .resources
            .as_ref()
            .map(|r| resources::node(r, device, node_span, scope, &mut problems))
            .unwrap_or_default();
        self.problems(node, problems);
        let resources = defaults.resources.apply(&own, device);

        // Kept even with errors (the caller knows from the diagnostics), so
        // that references to it still resolve; only a node without a valid
        // action is left out.
        Some(Node {
            id,
            span: id_span,
            action: action?,
            params,
            inputs,
            outputs,
            device,
            require_gpu,
            resources,
            doc: raw.doc.clone(),
        })
    }

    fn input(
        &mut self,
        node: &str,
        port: &str,
        value: &Spanned<OneOrMany>,
        scope: &Scope,
        workspace: &Path,
        is_source: bool,
    ) -> Option<Input> {
        let span = value.span();
        if !vars::is_port_name(port) {
            self.err(
                &span,
                Some(node),
                format!("input name `{port}` may only contain letters, digits, `_` and `-`"),
                "rename the input",
            );
            return None;
        }
        let (texts, is_list): (Vec<String>, bool) = match value.get_ref() {
            OneOrMany::One(s) => match vars::scalar(s, scope) {
                Ok(t) => (vec![t], false),
                Err(e) => {
                    self.var_err(&span, Some(node), e);
                    return None;
                }
            },
            OneOrMany::Many(items) => {
                let mut all = Vec::new();
                for item in items {
                    match vars::list_element(item, scope) {
                        Ok(v) => all.extend(v),
                        Err(e) => {
                            self.var_err(&span, Some(node), e);
                            return None;
                        }
                    }
                }
                (all, true)
            }
        };
        let mut refs = Vec::with_capacity(texts.len());
        for text in texts {
            if is_source {
                if text.is_empty() {
                    self.err(
                        &span,
                        Some(node),
                        format!("source `{port}` is an empty path"),
                        "write the path of a file or directory",
                    );
                    return None;
                }
                if text.contains('\0') {
                    self.err(&span, Some(node), format!("source `{port}` holds a NUL byte"), NUL_FIX);
                    return None;
                }
                let abs = normalize(&workspace.join(&text));
                refs.push(InputRef::Source { path: text, abs });
            } else if text == super::LINEAGE_REF {
                refs.push(InputRef::Lineage);
            } else {
                match text.split_once('.') {
                    Some((n, o)) if vars::is_port_name(n) && vars::is_port_name(o) => {
                        refs.push(InputRef::Node { node: n.to_owned(), output: o.to_owned() })
                    }
                    _ => {
                        let fix = if text.contains('/') || text.contains('\\') {
                            format!("files and folders outside the store go under sources: sources.{port} = {text:?}")
                        } else {
                            "write `node.output`, e.g. inputs.features = \"extract.features\" (or \"@lineage\": the records of the actions the other inputs came from)".to_owned()
                        };
                        self.err(
                            &span,
                            Some(node),
                            format!("input `{port}` = {text:?} is not a reference to a node output"),
                            fix,
                        );
                        return None;
                    }
                }
            }
        }
        Some(Input { refs, is_list, span })
    }
}

fn is_pipeline_name(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('.') && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Parse a `--set` value with the type of the variable it overrides.
fn override_value(old: &ParamValue, value: &str) -> Result<ParamValue, String> {
    Ok(match old {
        ParamValue::Str(_) => ParamValue::Str(value.to_owned()),
        ParamValue::Int(_) => ParamValue::Int(value.parse().map_err(|_| format!("{value:?} is not an integer"))?),
        ParamValue::Float(_) => ParamValue::Float(value.parse().map_err(|_| format!("{value:?} is not a number"))?),
        ParamValue::Bool(_) => ParamValue::Bool(value.parse().map_err(|_| format!("{value:?} is not true or false"))?),
        // Elements take the type the file's list has (all its elements
        // share one), so `--set seeds=1,2` stays a list of integers.
        ParamValue::List(items) => {
            let model = items
                .first()
                .filter(|first| items.iter().all(|i| std::mem::discriminant(i) == std::mem::discriminant(*first)));
            let parts = value.split(',').map(str::trim).filter(|s| !s.is_empty());
            ParamValue::List(match model {
                Some(first @ (ParamValue::Int(_) | ParamValue::Float(_) | ParamValue::Bool(_))) => {
                    parts.map(|s| override_value(first, s)).collect::<Result<_, _>>()?
                }
                _ => parts.map(|s| ParamValue::Str(s.to_owned())).collect(),
            })
        }
        ParamValue::Table(_) => return Err("tables cannot be overridden".into()),
    })
}

/// A declared output path: relative, inside the workspace, not the
/// workspace itself. Returned lexically normalised.
fn workspace_relative(s: &str) -> Result<PathBuf, String> {
    let p = Path::new(s);
    if p.is_absolute() {
        return Err(format!("output path {s:?} is absolute; outputs are materialised inside the workspace"));
    }
    let norm = normalize(p);
    if norm.as_os_str().is_empty() || norm == Path::new(".") {
        return Err(format!("output path {s:?} names the workspace itself"));
    }
    if norm.components().next() == Some(Component::ParentDir) {
        return Err(format!("output path {s:?} leaves the workspace"));
    }
    Ok(norm)
}

/// Lexical normalisation: drop `.`, fold `..` where possible.
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                let last = out.components().next_back();
                match last {
                    Some(Component::Normal(_)) => {
                        out.pop();
                    }
                    Some(Component::RootDir) => {}
                    _ => out.push(".."),
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Paths that overlap: equal, or one inside the other.
pub fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// The fix for a NUL byte in a command or a path.
const NUL_FIX: &str =
    "remove the NUL byte (\\u0000): the operating system ends commands and paths at it, so it cannot be passed on";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_and_relative_paths() {
        assert_eq!(normalize(Path::new("a/./b/../c")), PathBuf::from("a/c"));
        assert_eq!(normalize(Path::new("/x/../../y")), PathBuf::from("/y"));
        assert!(workspace_relative("../x").is_err());
        assert!(workspace_relative("a/../..").is_err());
        assert!(workspace_relative(".").is_err());
        assert!(workspace_relative("/etc/passwd").is_err());
        assert_eq!(workspace_relative("./r/x.npy").unwrap(), PathBuf::from("r/x.npy"));
        assert!(overlaps(Path::new("r/x"), Path::new("r/x/y")));
        assert!(!overlaps(Path::new("r/x"), Path::new("r/xy")));
    }
}
