//! `report`: one table comparing every evaluation, grouped by variant and
//! score, with mean ± std over the runs of a group (e.g. seeds), as
//! markdown, JSON and a self-contained HTML page ([`page`]) that adds the
//! score densities and the run's DAG with the lineage of every artifact.

mod dag;
mod page;

use serde::Serialize;
use toe_pipe_core::engine::lineage_input::LineageDocument;

use super::prelude::*;
use super::shared::files::write_json;
use super::shared::results::{Evaluation, Score};
use crate::store::Hash;
use crate::toe::report::{mean_std, percent};

pub struct Report;

op_params! {
    pub struct Params {
        /// heading of the table
        title: String = "Results".into(),
    }
}

op_ports! {
    pub struct Inputs {
        /// results of evaluate nodes
        results: Vec<Json>,
        /// the plots folders of the same evaluate nodes, in the same order (the page shows each group's score densities)
        plots: OptVec<Dir>,
        /// "@lineage": the run's action records upstream of the results (the page's DAG and the lineage of every artifact)
        lineage: Option<Json>,
    }
}

op_ports! {
    pub struct Outputs {
        /// the comparison table (markdown)
        table: Md,
        /// the same numbers as JSON
        summary: Json,
        /// one self-contained HTML page: the comparison, ID accuracy, score densities, the run's DAG and lineage
        page: Html,
    }
}

/// One row group of the table: the runs of a variant with one score.
struct Group {
    variant: String,
    score: String,
    /// Per set (the sets, then the average): FPR95, AUROC, AUPR of each run.
    sets: Vec<(String, [Vec<f64>; 3])>,
    /// ID accuracy of each run that has one.
    accuracy: Vec<f64>,
    runs: usize,
    /// Indices of the group's evaluations in the results input.
    members: Vec<usize>,
}

#[derive(Serialize)]
struct GroupSummary {
    variant: String,
    score: String,
    runs: usize,
    /// (set name, [mean, std] of FPR95, AUROC, AUPR)
    sets: Vec<(String, [f64; 6])>,
    /// [mean, std]; absent when no run has an ID accuracy
    #[serde(skip_serializing_if = "Option::is_none")]
    id_accuracy: Option<[f64; 2]>,
}

impl TypedOp for Report {
    const NAME: &'static str = "report";
    // 2: one row group per variant and score, a score column when there are
    // several; the HTML page.
    const VERSION: u32 = 2;
    const SUMMARY: &'static str =
        "one results table over evaluations: per variant and score, mean ± std over runs, per OoD set and average";
    type Params = Params;
    type Inputs = Inputs;
    type Outputs = Outputs;

    fn run(&self, ctx: &OpContext, p: Params, i: Inputs, o: Outputs) -> Result<()> {
        let mut evaluations = Vec::new();
        let mut hashes = Vec::new();
        for path in &i.results {
            let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let e: Evaluation = serde_json::from_slice(&bytes)
                .with_context(|| format!("{}: not the results of an evaluate node", path.display()))?;
            evaluations.push(e);
            hashes.push(Hash::of_bytes(&bytes));
        }
        if evaluations.is_empty() {
            bail!("node {}: no results connected", ctx.node);
        }
        if !i.plots.is_empty() && i.plots.len() != i.results.len() {
            bail!(
                "node {}: {} plots folders for {} results; connect the plots of the same evaluate nodes, in the same order (or none)",
                ctx.node,
                i.plots.len(),
                i.results.len()
            );
        }
        let lineage: Option<LineageDocument> = match &i.lineage {
            Some(path) => {
                let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                Some(serde_json::from_slice(&bytes).with_context(|| {
                    format!("{}: not a lineage document; connect inputs.lineage = \"@lineage\"", path.display())
                })?)
            }
            None => None,
        };
        let groups = group(&evaluations)?;
        let table = markdown_table(&p.title, &groups);
        print!("{table}");
        std::fs::write(&o.table, &table).with_context(|| "writing the table")?;
        write_json(&o.summary, &groups.iter().map(Group::summary).collect::<Vec<_>>())?;
        let html = page::render(&page::Page {
            title: &p.title,
            groups: &groups,
            result_hashes: &hashes,
            plots: &i.plots,
            lineage: lineage.as_ref(),
        })?;
        std::fs::write(&o.page, html).with_context(|| format!("writing {}", o.page.display()))
    }
}

/// The evaluations by (variant, score), in first-appearance order. Every
/// evaluation must cover the same OoD sets.
fn group(evaluations: &[Evaluation]) -> Result<Vec<Group>> {
    let set_names: Vec<String> =
        evaluations[0].sets.iter().map(|s| s.name.clone()).chain(std::iter::once("average".into())).collect();
    let mut groups: Vec<Group> = Vec::new();
    for (index, e) in evaluations.iter().enumerate() {
        for score in e.scores() {
            let at = match groups.iter().position(|g| g.variant == e.variant && g.score == score.score) {
                Some(at) => at,
                None => {
                    groups.push(Group {
                        variant: e.variant.clone(),
                        score: score.score.clone(),
                        sets: set_names.iter().map(|n| (n.clone(), Default::default())).collect(),
                        accuracy: Vec::new(),
                        runs: 0,
                        members: Vec::new(),
                    });
                    groups.len() - 1
                }
            };
            let g = &mut groups[at];
            for (name, [fpr, auroc, aupr]) in &mut g.sets {
                let s = score.sets_and_average().find(|s| &s.name == name).with_context(|| {
                    format!(
                        "variant {}, score {}: a run has no OoD set {name}; every evaluation must cover the same sets",
                        e.variant, score.score
                    )
                })?;
                fpr.push(s.fpr95);
                auroc.push(s.auroc);
                aupr.push(s.aupr);
            }
            g.accuracy.extend(e.id_accuracy);
            g.runs += 1;
            g.members.push(index);
        }
    }
    Ok(groups)
}

impl Group {
    fn summary(&self) -> GroupSummary {
        GroupSummary {
            variant: self.variant.clone(),
            score: self.score.clone(),
            runs: self.runs,
            sets: self
                .sets
                .iter()
                .map(|(name, [fpr, auroc, aupr])| {
                    let (a, b, c) = (mean_std(fpr), mean_std(auroc), mean_std(aupr));
                    (name.clone(), [a.0, a.1, b.0, b.1, c.0, c.1])
                })
                .collect(),
            id_accuracy: (!self.accuracy.is_empty()).then(|| {
                let (m, s) = mean_std(&self.accuracy);
                [m, s]
            }),
        }
    }

    /// The variant as tables show it.
    fn variant_label(&self) -> &str {
        if self.variant.is_empty() {
            "-"
        } else {
            &self.variant
        }
    }

    fn accuracy_text(&self) -> String {
        if self.accuracy.is_empty() {
            "-".into()
        } else {
            percent(&self.accuracy)
        }
    }
}

/// Rows by OoD set, then group. A score column appears when the
/// evaluations have other scores than energy.
fn markdown_table(title: &str, groups: &[Group]) -> String {
    let with_score = groups.iter().any(|g| g.score != Score::Energy.name());
    let (score_head, score_rule) = if with_score { (" score |", "---|") } else { ("", "") };
    let mut table = format!(
        "## {title}\n\nIn percent; FPR95 lower is better, AUROC and AUPR higher; mean ± std over runs.\n\n| OoD set | variant |{score_head} runs | FPR95 | AUROC | AUPR | ID acc. |\n|---|---|{score_rule}---:|---:|---:|---:|---:|\n",
    );
    let set_count = groups.first().map_or(0, |g| g.sets.len());
    for set in 0..set_count {
        for g in groups {
            let (name, [fpr, auroc, aupr]) = &g.sets[set];
            let score = if with_score { format!(" {} |", Score::label_of(&g.score)) } else { String::new() };
            table.push_str(&format!(
                "| {name} | {} |{score} {} | {} | {} | {} | {} |\n",
                g.variant_label(),
                g.runs,
                percent(fpr),
                percent(auroc),
                percent(aupr),
                g.accuracy_text()
            ));
        }
    }
    table
}
