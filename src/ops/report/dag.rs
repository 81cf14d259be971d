//! The run on the report page, from the `@lineage` document: a picture of
//! the DAG (nodes in columns by depth, each a link to its row) and a table
//! with one row per node: what it ran, when, for how long, where, its
//! params, and every input and output with its content hash, each input
//! linked to the row of the node that wrote it.
//!
//! The picture is SVG written here rather than drawn with plotters: it is
//! boxes, labels and links between them (`<a href>`), which a plotting
//! crate does not do, in about forty lines.

use std::collections::HashMap;
use std::fmt::Write as _;

use toe_pipe_core::engine::lineage_input::LineageDocument;
use toe_pipe_core::store::records::{ActionRecord, RecordedAction};

use super::page::escape;

const BOX_W: usize = 170;
const BOX_H: usize = 22;
const GAP_X: usize = 50;
const GAP_Y: usize = 6;
const MARGIN: usize = 8;

/// Depth of each action (0: reads no other node), in document order.
fn depths(doc: &LineageDocument) -> Vec<usize> {
    let mut by_node: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::with_capacity(doc.actions.len());
    // Upstream first, so every parent is placed before its readers.
    for a in &doc.actions {
        let depth = upstream(a).filter_map(|up| by_node.get(up)).map(|d| d + 1).max().unwrap_or(0);
        by_node.insert(&a.node, depth);
        out.push(depth);
    }
    out
}

/// The nodes an action read from.
fn upstream(a: &ActionRecord) -> impl Iterator<Item = &str> {
    a.inputs.values().flatten().filter_map(|r| r.node.as_deref())
}

/// A soft colour per op (or for commands), stable across runs.
fn colour(a: &ActionRecord) -> String {
    let name = match &a.action {
        RecordedAction::Op { op, .. } => op.as_str(),
        RecordedAction::Cmd { .. } => "cmd",
    };
    let hue = name.bytes().fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b))) % 360;
    format!("hsl({hue}, 55%, 86%)")
}

/// The DAG as an inline SVG.
pub fn svg(doc: &LineageDocument) -> String {
    let depths = depths(doc);
    let mut rows: Vec<usize> = Vec::new();
    let mut place: HashMap<&str, (usize, usize)> = HashMap::new();
    for (a, &d) in doc.actions.iter().zip(&depths) {
        if rows.len() <= d {
            rows.resize(d + 1, 0);
        }
        let x = MARGIN + d * (BOX_W + GAP_X);
        let y = MARGIN + rows[d] * (BOX_H + GAP_Y);
        rows[d] += 1;
        place.insert(&a.node, (x, y));
    }
    let width = MARGIN * 2 + rows.len() * (BOX_W + GAP_X);
    let height = MARGIN * 2 + rows.iter().max().copied().unwrap_or(0) * (BOX_H + GAP_Y);
    let mut out = format!(
        "<div class=\"dag\"><svg width=\"{width}\" height=\"{height}\" font-family=\"monospace\" font-size=\"11\">\n"
    );
    for a in &doc.actions {
        let (x2, y2) = place[a.node.as_str()];
        let mut ups: Vec<&str> = upstream(a).collect();
        ups.sort_unstable();
        ups.dedup();
        for up in ups {
            let Some(&(x1, y1)) = place.get(up) else { continue };
            let (sx, sy, ex, ey) = (x1 + BOX_W, y1 + BOX_H / 2, x2, y2 + BOX_H / 2);
            let mid = (sx + ex) / 2;
            let _ = writeln!(
                out,
                "<path d=\"M{sx},{sy} C{mid},{sy} {mid},{ey} {ex},{ey}\" fill=\"none\" stroke=\"#9aa\" stroke-width=\"0.8\"/>"
            );
        }
    }
    for a in &doc.actions {
        let (x, y) = place[a.node.as_str()];
        let id = escape(&a.node);
        let label: String = if a.node.chars().count() > 23 {
            a.node.chars().take(22).chain(std::iter::once('…')).collect()
        } else {
            a.node.clone()
        };
        let _ = writeln!(
            out,
            "<a href=\"#node-{id}\"><title>{id}: {} ({})</title><rect x=\"{x}\" y=\"{y}\" width=\"{BOX_W}\" height=\"{BOX_H}\" rx=\"4\" fill=\"{}\" stroke=\"#678\"/><text x=\"{}\" y=\"{}\">{}</text></a>",
            escape(&a.action.describe()),
            duration(a.duration_s),
            colour(a),
            x + 5,
            y + 15,
            escape(&label)
        );
    }
    out.push_str("</svg></div>\n");
    out
}

fn duration(seconds: f64) -> String {
    if seconds >= 60.0 {
        format!("{}m {:02}s", (seconds / 60.0).floor(), (seconds % 60.0).round() as u64)
    } else {
        format!("{seconds:.2}s")
    }
}

/// One row per node, column by column of the picture (by depth, then in
/// document order): an order in which the nodes can run.
pub fn table(doc: &LineageDocument) -> String {
    let depths = depths(doc);
    let mut order: Vec<usize> = (0..doc.actions.len()).collect();
    order.sort_by_key(|&i| (depths[i], i));
    let mut out = String::from(
        "<table id=\"lineage\">\n<thead><tr><th>node</th><th>action</th><th>state</th><th>ran</th><th>duration</th><th>device</th><th>inputs</th><th>outputs</th></tr></thead>\n<tbody>\n",
    );
    for a in order.iter().map(|&i| &doc.actions[i]) {
        let id = escape(&a.node);
        let params: Vec<String> =
            a.params.iter().map(|(k, v)| format!("{} = {}", escape(k), escape(&v.to_string()))).collect();
        let params = if params.is_empty() {
            String::new()
        } else {
            format!("<details><summary>params</summary><code>{}</code></details>", params.join("<br>"))
        };
        let mut inputs = Vec::new();
        for (port, recs) in &a.inputs {
            for r in recs {
                let what = match (&r.node, &r.output, &r.source) {
                    (Some(node), Some(output), _) => {
                        format!("<a href=\"#node-{0}\">{0}.{1}</a>", escape(node), escape(output))
                    }
                    (_, _, Some(path)) => format!("source {}", escape(path)),
                    _ => String::from("?"),
                };
                inputs.push(format!(
                    "{}: {what} <code title=\"{}\">{}</code>",
                    escape(port),
                    r.hash.hex(),
                    r.hash.short()
                ));
            }
        }
        let outputs: Vec<String> = a
            .outputs
            .iter()
            .map(|(name, o)| {
                let path =
                    o.path.as_ref().map(|p| format!(" → {}", escape(&p.display().to_string()))).unwrap_or_default();
                format!(
                    "{} ({}) <code id=\"artifact-{}\" title=\"{}\">{}</code>{path}",
                    escape(name),
                    o.kind,
                    o.hash.hex(),
                    o.hash.hex(),
                    o.hash.short()
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "<tr id=\"node-{id}\"><td><b>{id}</b></td><td>{}<br><code class=\"muted\" title=\"action key\">{}</code>{params}</td><td>done</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&a.action.describe()),
            a.key.short(),
            escape(&a.start),
            duration(a.duration_s),
            escape(&a.device),
            inputs.join("<br>"),
            outputs.join("<br>")
        );
    }
    out.push_str("</tbody></table>\n<p class=\"muted\">state: every node upstream of a report has finished; \"ran\" says when its result was made (a result made by an earlier run is reused from the store).</p>\n");
    out
}
