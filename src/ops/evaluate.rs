//! `evaluate`: energy scores of a trained head on the ID validation set and
//! every OoD set; FPR95, AUROC and AUPR per set and on average, ID accuracy,
//! a markdown table and one score-density plot per OoD set.

use super::prelude::*;
use super::shared::files::{check_same_length, read_labels, write_json};
use super::shared::params::NormalizeFeatures;
use super::shared::results::{Evaluation, SetMetrics};
use crate::formats;
use crate::metrics::{accuracy, ood_metrics};
use crate::toe::energy::{head_logits, negative_energy};
use crate::toe::report::score_density_svg;

pub struct Evaluate;

op_params! {
    pub struct Params {
        /// names of the OoD sets, in the order of the ood_features input
        ood_names: Vec<String>,
        /// label of this head in reports (e.g. word, baseline)
        variant: String = String::new(),
        /// energy temperature T
        #[range(above(0.0))]
        temperature: f64 = 1.0,
        normalize: NormalizeFeatures,
    }
}

op_ports! {
    pub struct Inputs {
        /// state dict of nn.Linear(D, C)
        head: Pt,
        /// ID validation image features
        id_features: Npy,
        /// ID validation labels
        id_labels: Npy,
        /// image features of each OoD set
        ood_features: Vec<Npy>,
    }
}

op_ports! {
    pub struct Outputs {
        /// metrics per set and average, ID accuracy
        results: Json,
        /// the same as a markdown table, in percent
        table: Md,
        /// one SVG of ID and OoD score densities per OoD set
        plots: Dir,
    }
}

impl TypedOp for Evaluate {
    const NAME: &'static str = "evaluate";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str =
        "energy-score OoD evaluation of a head: FPR95, AUROC, AUPR per OoD set, ID accuracy, plots";
    type Params = Params;
    type Inputs = Inputs;
    type Outputs = Outputs;

    fn run(&self, ctx: &OpContext, p: Params, i: Inputs, o: Outputs) -> Result<()> {
        let (weight, bias) = read_linear_head(&i.head)?;
        let id_features = p.normalize.read(&i.id_features)?;
        let id_labels = read_labels(&i.id_labels)?;
        check_same_length(&id_features, &i.id_features, &id_labels, &i.id_labels)?;
        let id_logits = head_logits(&id_features, &weight, &bias)?;
        let predictions = Vec::<i64>::try_from(&id_logits.argmax(1, false))?;
        let id_accuracy = accuracy(&predictions, &id_labels)?;
        let id_scores = negative_energy(&id_logits, p.temperature)?;

        if p.ood_names.len() != i.ood_features.len() {
            bail!(
                "node {}: {} ood_names for {} ood_features inputs; give one name per input, in order",
                ctx.node,
                p.ood_names.len(),
                i.ood_features.len()
            );
        }
        let mut sets = Vec::new();
        for (name, path) in p.ood_names.iter().zip(&i.ood_features) {
            let logits = head_logits(&p.normalize.read(path)?, &weight, &bias)?;
            let scores = negative_energy(&logits, p.temperature)?;
            let m = ood_metrics(&id_scores, &scores).with_context(|| format!("metrics of OoD set {name}"))?;
            score_density_svg(
                &o.plots.join(format!("{name}.svg")),
                &format!("{name}: ID vs OoD"),
                &id_scores,
                &scores,
            )?;
            sets.push(SetMetrics { name: name.clone(), fpr95: m.fpr95, auroc: m.auroc, aupr: m.aupr });
        }
        let n = sets.len().max(1) as f64;
        let average = SetMetrics {
            name: "average".into(),
            fpr95: sets.iter().map(|s| s.fpr95).sum::<f64>() / n,
            auroc: sets.iter().map(|s| s.auroc).sum::<f64>() / n,
            aupr: sets.iter().map(|s| s.aupr).sum::<f64>() / n,
        };
        let evaluation = Evaluation { variant: p.variant, id_accuracy, sets, average };
        let table = evaluation_table(&evaluation);
        print!("{table}");
        std::fs::write(&o.table, &table).with_context(|| format!("writing {}", o.table.display()))?;
        write_json(&o.results, &evaluation)
    }
}

/// `weight` and `bias` of a Linear head from a state dict (also accepts
/// keys with a prefix, e.g. `fc.weight`, when there is exactly one pair).
pub fn read_linear_head(path: &std::path::Path) -> Result<(tch::Tensor, tch::Tensor)> {
    let entries = formats::load_state_dict(path)?;
    let find = |suffix: &str| -> Result<tch::Tensor> {
        let hits: Vec<&(String, tch::Tensor)> =
            entries.iter().filter(|(k, _)| k == suffix || k.ends_with(&format!(".{suffix}"))).collect();
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
    let mut out = format!(
        "ID accuracy: {:.2}\n\n| OoD set | FPR95 | AUROC | AUPR |\n|---|---:|---:|---:|\n",
        e.id_accuracy * 100.0
    );
    for s in e.sets_and_average() {
        out.push_str(&format!(
            "| {} | {:.2} | {:.2} | {:.2} |\n",
            s.name,
            s.fpr95 * 100.0,
            s.auroc * 100.0,
            s.aupr * 100.0
        ));
    }
    out
}
