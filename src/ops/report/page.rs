//! The report's HTML page: one self-contained file (inline CSS, the plots
//! as data URIs, no script, nothing fetched), so it opens anywhere and
//! travels as one artifact. Sections: the comparison table (variant × score
//! × OoD set, mean ± std over runs, with the ID accuracy), the score
//! densities of each group's first run (the SVGs `evaluate` drew with
//! plotters), and the run's DAG with the lineage of every artifact
//! ([`super::dag`], from the `@lineage` input).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use toe_pipe_core::engine::lineage_input::LineageDocument;

use super::{dag, Group};
use crate::ops::shared::results::Score;
use crate::store::Hash;
use crate::toe::report::{mean_std, percent};

pub struct Page<'a> {
    pub title: &'a str,
    pub groups: &'a [Group],
    /// Content hash of each results input, in input order.
    pub result_hashes: &'a [Hash],
    /// Plots folder of each results input (empty: none connected).
    pub plots: &'a [PathBuf],
    pub lineage: Option<&'a LineageDocument>,
}

const STYLE: &str = "
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 6px; vertical-align: top; }
.wide { overflow-x: auto; } #comparison-table td { white-space: nowrap; }
th { background: #f3f3f3; } td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.best { font-weight: bold; background: #eaf5ea; }
tr:target { background: #fff6d5; }
code { font-size: 12px; } .muted { color: #777; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 12px; }
figure { margin: 0; } figure img { width: 100%; border: 1px solid #eee; } figcaption { font-size: 12px; text-align: center; }
.dag { overflow-x: auto; border: 1px solid #eee; }
details summary { cursor: pointer; color: #555; }
";

/// The page as HTML text.
pub fn render(p: &Page) -> Result<String> {
    let producers = producers(p.lineage);
    let mut out = String::new();
    let title = escape(p.title);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title><style>{STYLE}</style></head><body>\n<h1>{title}</h1>\n"
    );
    let runs: usize = p.result_hashes.len();
    let _ = writeln!(
        out,
        "<p class=\"muted\">{runs} evaluations in {} groups (variant × score), written by toe-pipe's <code>report</code> op. The page is one file; it loads nothing.</p>",
        p.groups.len()
    );
    comparison(&mut out, p, &producers);
    densities(&mut out, p)?;
    out.push_str("<h2 id=\"run\">The run</h2>\n");
    match p.lineage {
        Some(doc) => {
            out.push_str("<p>Every node upstream of these results, in run order, with the action that made its outputs: when it ran, for how long, where, its params, and the content hash of every input and output (sources with their paths). Click a node or an input to follow it; <code>toe-pipe lineage HASH</code> prints the same from the store.</p>\n");
            out.push_str(&dag::svg(doc));
            out.push_str(&dag::table(doc));
        }
        None => out.push_str(
            "<p class=\"muted\">No lineage: connect <code>inputs.lineage = \"@lineage\"</code> to the report node to show the run's DAG here.</p>\n",
        ),
    }
    out.push_str("</body></html>\n");
    Ok(out)
}

/// Node that wrote each artifact, by hash (from the lineage).
fn producers(lineage: Option<&LineageDocument>) -> HashMap<Hash, String> {
    let mut out = HashMap::new();
    for action in lineage.map(|d| d.actions.as_slice()).unwrap_or_default() {
        for o in action.outputs.values() {
            out.insert(o.hash, action.node.clone());
        }
    }
    out
}

/// The comparison table: one row per group, a column group per OoD set;
/// the best mean of each column in bold.
fn comparison(out: &mut String, p: &Page, producers: &HashMap<Hash, String>) {
    out.push_str("<h2 id=\"comparison\">Comparison</h2>\n<p>In percent, mean ± std over runs. FPR95: lower is better; AUROC, AUPR: higher is better. ID acc.: accuracy on the ID set of the evaluation's classifier (the head; without one, CLIP's zero-shot classifier with the class prompts).</p>\n<div class=\"wide\"><table id=\"comparison-table\">\n<thead><tr><th rowspan=\"2\">variant</th><th rowspan=\"2\">score</th><th rowspan=\"2\">runs</th><th rowspan=\"2\">ID acc.</th>");
    let Some(first) = p.groups.first() else { return };
    for (name, _) in &first.sets {
        let _ = write!(out, "<th colspan=\"3\">{}</th>", escape(name));
    }
    out.push_str("</tr>\n<tr>");
    for _ in &first.sets {
        out.push_str("<th>FPR95</th><th>AUROC</th><th>AUPR</th>");
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    // Best mean per (set, metric): FPR95 lowest, the others highest.
    let mean = |g: &Group, set: usize, metric: usize| mean_std(&g.sets[set].1[metric]).0;
    let best = |set: usize, metric: usize| -> f64 {
        let values = p.groups.iter().map(|g| mean(g, set, metric)).filter(|v| v.is_finite());
        if metric == 0 {
            values.fold(f64::INFINITY, f64::min)
        } else {
            values.fold(f64::NEG_INFINITY, f64::max)
        }
    };
    for g in p.groups {
        // The runs open to the evaluate nodes, each linked to its row in the run.
        let links: Vec<String> = g
            .members
            .iter()
            .map(|&m| match producers.get(&p.result_hashes[m]) {
                Some(node) => format!("<a href=\"#node-{0}\">{0}</a>", escape(node)),
                None => format!("<code>{}</code>", p.result_hashes[m].short()),
            })
            .collect();
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"num\"><details><summary>{}</summary>{}</details></td><td class=\"num\">{}</td>",
            escape(g.variant_label()),
            escape(&Score::label_of(&g.score)),
            g.runs,
            links.join("<br>"),
            escape(&g.accuracy_text())
        );
        for set in 0..g.sets.len() {
            for metric in 0..3 {
                let class = if mean(g, set, metric) == best(set, metric) { "num best" } else { "num" };
                let _ = write!(out, "<td class=\"{class}\">{}</td>", escape(&percent(&g.sets[set].1[metric])));
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table></div>\n");
}

/// Per OoD set, the score densities of each group's first run.
fn densities(out: &mut String, p: &Page) -> Result<()> {
    if p.plots.is_empty() {
        return Ok(());
    }
    out.push_str("<h2 id=\"densities\">Score densities</h2>\n<p>ID (blue) against OoD (red) scores of the first run of each group; the more apart, the better the score separates them.</p>\n");
    let Some(first) = p.groups.first() else { return Ok(()) };
    // The last "set" is the average, which has no plot.
    for (name, _) in first.sets.iter().take(first.sets.len().saturating_sub(1)) {
        let _ = writeln!(out, "<h3>{}</h3>\n<div class=\"grid\">", escape(name));
        for g in p.groups {
            let dir = &p.plots[g.members[0]];
            let file = match Score::from_spelling(&g.score) {
                Some(Score::Energy) => format!("{name}.svg"),
                _ => format!("{name}.{}.svg", g.score),
            };
            let path = dir.join(&file);
            if !path.is_file() {
                continue;
            }
            let svg = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let caption = format!("{} · {}", g.variant_label(), Score::label_of(&g.score));
            let _ = writeln!(
                out,
                "<figure><img alt=\"{name}: {alt}\" src=\"data:image/svg+xml;base64,{data}\"><figcaption>{alt}</figcaption></figure>",
                name = escape(name),
                alt = escape(&caption),
                data = base64(&svg)
            );
        }
        out.push_str("</div>\n");
    }
    Ok(())
}

/// Text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Standard base64 with padding (RFC 4648), for data URIs: an `<img>` with
/// an SVG data URI shows the plot without running anything in it.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_escape() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xff, 0xfe, 0x00, 0x01]), "//4AAQ==");
        assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }
}
