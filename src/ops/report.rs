//! `report`: one table comparing every evaluated head, grouped by variant,
//! with mean ± std over the runs of a variant (e.g. seeds).

use serde::Serialize;

use super::prelude::*;
use super::shared::files::write_json;
use super::shared::results::{Evaluation, SetMetrics};
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
    }
}

op_ports! {
    pub struct Outputs {
        /// the comparison table (markdown)
        table: Md,
        /// the same numbers as JSON
        summary: Json,
    }
}

#[derive(Serialize)]
struct VariantSummary {
    variant: String,
    runs: usize,
    /// (set name, [mean, std] of FPR95, AUROC, AUPR)
    sets: Vec<(String, [f64; 6])>,
    id_accuracy: [f64; 2],
}

impl TypedOp for Report {
    const NAME: &'static str = "report";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str =
        "one results table over evaluations: per variant, mean ± std over runs, per OoD set and average";
    type Params = Params;
    type Inputs = Inputs;
    type Outputs = Outputs;

    fn run(&self, ctx: &OpContext, p: Params, i: Inputs, o: Outputs) -> Result<()> {
        let mut evaluations = Vec::new();
        for path in &i.results {
            let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let e: Evaluation = serde_json::from_slice(&bytes)
                .with_context(|| format!("{}: not the results of an evaluate node", path.display()))?;
            evaluations.push(e);
        }
        if evaluations.is_empty() {
            bail!("node {}: no results connected", ctx.node);
        }
        // Variants in first-appearance order.
        let mut variants: Vec<String> = Vec::new();
        for e in &evaluations {
            if !variants.contains(&e.variant) {
                variants.push(e.variant.clone());
            }
        }
        let set_names: Vec<String> =
            evaluations[0].sets.iter().map(|s| s.name.clone()).chain(std::iter::once("average".into())).collect();
        // Gather mean ± std per (variant, set).
        let mut summaries = Vec::new();
        for variant in &variants {
            let runs: Vec<&Evaluation> = evaluations.iter().filter(|e| &e.variant == variant).collect();
            let acc: Vec<f64> = runs.iter().map(|e| e.id_accuracy).collect();
            let mut sets = Vec::new();
            for name in &set_names {
                let pick = |f: &dyn Fn(&SetMetrics) -> f64| -> Result<Vec<f64>> {
                    runs.iter()
                        .map(|e| {
                            e.sets_and_average().find(|s| &s.name == name).map(f).with_context(|| {
                                format!("variant {variant}: a run has no OoD set {name}; every evaluation must cover the same sets")
                            })
                        })
                        .collect()
                };
                sets.push((name.clone(), pick(&|s| s.fpr95)?, pick(&|s| s.auroc)?, pick(&|s| s.aupr)?));
            }
            summaries.push((variant.clone(), acc, sets));
        }
        let mut table = format!(
            "## {}\n\nIn percent; FPR95 lower is better, AUROC and AUPR higher; mean ± std over runs.\n\n| OoD set | variant | runs | FPR95 | AUROC | AUPR | ID acc. |\n|---|---|---:|---:|---:|---:|---:|\n",
            p.title
        );
        for (i, name) in set_names.iter().enumerate() {
            for (variant, acc, sets) in &summaries {
                let (_, fpr, auroc, aupr) = &sets[i];
                let shown = if variant.is_empty() { "-" } else { variant.as_str() };
                table.push_str(&format!(
                    "| {name} | {shown} | {} | {} | {} | {} | {} |\n",
                    acc.len(),
                    percent(fpr),
                    percent(auroc),
                    percent(aupr),
                    percent(acc)
                ));
            }
        }
        let summaries: Vec<VariantSummary> = summaries
            .into_iter()
            .map(|(variant, acc, sets)| {
                let (m, s) = mean_std(&acc);
                VariantSummary {
                    variant,
                    runs: acc.len(),
                    sets: sets
                        .into_iter()
                        .map(|(name, fpr, auroc, aupr)| {
                            let (a, b, c) = (mean_std(&fpr), mean_std(&auroc), mean_std(&aupr));
                            (name, [a.0, a.1, b.0, b.1, c.0, c.1])
                        })
                        .collect(),
                    id_accuracy: [m, s],
                }
            })
            .collect();
        print!("{table}");
        std::fs::write(&o.table, &table).with_context(|| "writing the table")?;
        write_json(&o.summary, &summaries)
    }
}
