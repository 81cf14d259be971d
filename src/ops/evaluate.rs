//! `evaluate`: energy scores of a trained head on the ID validation set and
//! every OoD set; FPR95, AUROC and AUPR per set and on average, ID accuracy,
//! a markdown table and one score-density plot per OoD set.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::io::{check_same_length, head_features, normalize_param, read_labels, write_json};
use super::{Op, OpContext, ParamSpec, ParamType, PortSpec};
use crate::formats;
use crate::metrics::{accuracy, ood_metrics};
use crate::spec::{ArtifactKind, ParamValue};
use crate::toe::energy::{head_logits, negative_energy};
use crate::toe::report::score_density_svg;

pub struct Evaluate;

/// One OoD set's metrics (fractions, not percent).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetMetrics {
    pub name: String,
    pub fpr95: f64,
    pub auroc: f64,
    pub aupr: f64,
}

/// What `evaluate` writes as JSON; `report` reads it back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evaluation {
    pub variant: String,
    pub id_accuracy: f64,
    pub sets: Vec<SetMetrics>,
    pub average: SetMetrics,
}

impl Op for Evaluate {
    fn name(&self) -> &'static str {
        "evaluate"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "energy-score OoD evaluation of a head: FPR95, AUROC, AUPR per OoD set, ID accuracy, plots"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::required("ood_names", ParamType::StrList, "names of the OoD sets, in the order of the ood_features input"),
            ParamSpec::with_default("variant", ParamType::Str, ParamValue::Str(String::new()), "label of this head in reports (e.g. word, baseline)"),
            ParamSpec::with_default("temperature", ParamType::Float, ParamValue::Float(1.0), "energy temperature T"),
            normalize_param(),
        ]
    }
    fn inputs(&self) -> Vec<PortSpec> {
        vec![
            PortSpec::new("head", ArtifactKind::Pt, "state dict of nn.Linear(D, C)"),
            PortSpec::new("id_features", ArtifactKind::Npy, "ID validation image features"),
            PortSpec::new("id_labels", ArtifactKind::Npy, "ID validation labels"),
            PortSpec::new("ood_features", ArtifactKind::Npy, "image features of each OoD set").list(),
        ]
    }
    fn outputs(&self) -> Vec<PortSpec> {
        vec![
            PortSpec::new("results", ArtifactKind::Json, "metrics per set and average, ID accuracy"),
            PortSpec::new("table", ArtifactKind::Md, "the same as a markdown table, in percent"),
            PortSpec::new("plots", ArtifactKind::Dir, "one SVG of ID and OoD score densities per OoD set"),
        ]
    }
    fn run(&self, ctx: &OpContext) -> Result<()> {
        let (weight, bias) = read_linear_head(ctx.input("head")?)?;
        let temperature = ctx.param_f64("temperature")?;
        if temperature <= 0.0 {
            bail!("node {}: temperature must be positive", ctx.node);
        }
        let id_features = head_features(ctx, ctx.input("id_features")?)?;
        let id_labels = read_labels(ctx.input("id_labels")?)?;
        check_same_length(&id_features, ctx.input("id_features")?, &id_labels, ctx.input("id_labels")?)?;
        let id_logits = head_logits(&id_features, &weight, &bias)?;
        let predictions = Vec::<i64>::try_from(&id_logits.argmax(1, false))?;
        let id_accuracy = accuracy(&predictions, &id_labels)?;
        let id_scores = negative_energy(&id_logits, temperature)?;

        let names = ctx.param_str_list("ood_names")?;
        let ood_paths = ctx.input_list("ood_features");
        if names.len() != ood_paths.len() {
            bail!("node {}: {} ood_names for {} ood_features inputs; give one name per input, in order", ctx.node, names.len(), ood_paths.len());
        }
        let plots = ctx.output("plots")?;
        let mut sets = Vec::new();
        for (name, path) in names.iter().zip(ood_paths) {
            let logits = head_logits(&head_features(ctx, path)?, &weight, &bias)?;
            let scores = negative_energy(&logits, temperature)?;
            let m = ood_metrics(&id_scores, &scores).with_context(|| format!("metrics of OoD set {name}"))?;
            score_density_svg(&plots.join(format!("{name}.svg")), &format!("{name}: ID vs OoD"), &id_scores, &scores)?;
            sets.push(SetMetrics { name: name.clone(), fpr95: m.fpr95, auroc: m.auroc, aupr: m.aupr });
        }
        let n = sets.len().max(1) as f64;
        let average = SetMetrics {
            name: "average".into(),
            fpr95: sets.iter().map(|s| s.fpr95).sum::<f64>() / n,
            auroc: sets.iter().map(|s| s.auroc).sum::<f64>() / n,
            aupr: sets.iter().map(|s| s.aupr).sum::<f64>() / n,
        };
        let evaluation = Evaluation { variant: ctx.param_str("variant")?.to_string(), id_accuracy, sets, average };
        let table = evaluation_table(&evaluation);
        print!("{table}");
        std::fs::write(ctx.output("table")?, &table).with_context(|| format!("writing {}", ctx.output("table").unwrap().display()))?;
        write_json(ctx.output("results")?, &evaluation)
    }
}

/// `weight` and `bias` of a Linear head from a state dict (also accepts
/// keys with a prefix, e.g. `fc.weight`, when there is exactly one pair).
pub fn read_linear_head(path: &std::path::Path) -> Result<(tch::Tensor, tch::Tensor)> {
    let entries = formats::load_state_dict(path)?;
    let find = |suffix: &str| -> Result<tch::Tensor> {
        let hits: Vec<&(String, tch::Tensor)> = entries.iter().filter(|(k, _)| k == suffix || k.ends_with(&format!(".{suffix}"))).collect();
        match hits.as_slice() {
            [(_, t)] => Ok(t.shallow_clone()),
            [] => bail!("{}: no `{suffix}` tensor; expected the state dict of an nn.Linear head", path.display()),
            _ => bail!("{}: several `{suffix}` tensors; expected the state dict of one nn.Linear head", path.display()),
        }
    };
    let (weight, bias) = (find("weight")?, find("bias")?);
    if weight.dim() != 2 || bias.dim() != 1 || bias.size()[0] != weight.size()[0] {
        bail!("{}: weight {:?} and bias {:?} do not form a Linear layer", path.display(), weight.size(), bias.size());
    }
    Ok((weight, bias))
}

fn evaluation_table(e: &Evaluation) -> String {
    let mut out = format!("ID accuracy: {:.2}\n\n| OoD set | FPR95 | AUROC | AUPR |\n|---|---:|---:|---:|\n", e.id_accuracy * 100.0);
    for s in e.sets.iter().chain(std::iter::once(&e.average)) {
        out.push_str(&format!("| {} | {:.2} | {:.2} | {:.2} |\n", s.name, s.fpr95 * 100.0, s.auroc * 100.0, s.aupr * 100.0));
    }
    out
}
