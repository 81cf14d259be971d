//! `evaluate`: OoD scores of the ID validation set and every OoD set, from
//! the same cached features in one pass; per score FPR95, AUROC and AUPR per
//! set and on average, the ID accuracy, a markdown table and one
//! score-density plot per OoD set and score.
//!
//! The scores (`scores`, default energy alone; formulas and papers in
//! `crate::toe::scores`):
//!
//! * on the trained head: `energy` (TOE's), `msp`, `maxlogit`;
//! * zero-shot on CLIP, no training: `mcm` (the class prompts' text
//!   features, `class_text`) and `neglabel` (also a word list's text
//!   features, `word_text`, from which the negative labels are mined: the
//!   `neglabel_count` words farthest from every class prompt, by the
//!   `neglabel_percentile` of their negated cosines to the prompts);
//! * in the feature space: `mahalanobis` (`class_means` and `precision` from
//!   `class_stats`) and `knn` (the ID train features, `knn_k`).
//!
//! A score whose input is not connected is an error at `toe-pipe check`.
//! Without a head (zero-shot and feature-space scores only) the ID accuracy
//! is CLIP's zero-shot accuracy with `class_text`, when connected.

use tch::Tensor;

use super::prelude::*;
use super::shared::files::{check_same_length, read_features, read_labels, write_json};
use super::shared::params::NormalizeFeatures;
use super::shared::results::{Evaluation, Score, ScoreMetrics, SetMetrics};
use crate::formats;
use crate::metrics::{accuracy, ood_metrics};
use crate::toe::energy::head_logits;
use crate::toe::report::score_density_svg;
use crate::toe::scores;
use toe_pipe_core::ops::InputNeed;

pub struct Evaluate;

// The params after `normalize` came with the other scores: each is implicit
// at its default, so evaluate nodes from before them keep their action keys
// (and their cached results, which energy alone still writes byte for byte).
op_params! {
    pub struct Params {
        /// names of the OoD sets, in the order of the ood_features input
        ood_names: Vec<String>,
        /// label of this evaluation in reports (e.g. word, baseline)
        variant: String = String::new(),
        /// energy temperature T
        #[range(above(0.0))]
        temperature: f64 = 1.0,
        normalize: NormalizeFeatures,
        /// OoD scores, each with its own rows: energy, msp, maxlogit (need head); mcm (class_text); neglabel (class_text, word_text); mahalanobis (class_means, precision); knn (train_features)
        #[implicit(vec![Score::Energy])]
        scores: Vec<Score> = vec![Score::Energy],
        /// MCM's softmax temperature (the paper's 1)
        #[range(above(0.0))]
        #[implicit(1.0)]
        mcm_temperature: f64 = 1.0,
        /// NegLabel: how many negative labels to mine from word_text (the paper's 10000 for ImageNet)
        #[range(1..)]
        #[implicit(10000)]
        neglabel_count: usize = 10000,
        /// NegLabel: a word's distance to the ID labels is this percentile of its negated cosines to them (the paper's 0.05)
        #[range(0.0..=1.0)]
        #[implicit(0.05)]
        neglabel_percentile: f64 = 0.05,
        /// NegLabel's softmax temperature (the paper's 0.01)
        #[range(above(0.0))]
        #[implicit(0.01)]
        neglabel_temperature: f64 = 0.01,
        /// NegLabel: groups of negative labels whose scores are averaged (the paper's 100 for ImageNet; 1 = none)
        #[range(1..)]
        #[implicit(1)]
        neglabel_groups: usize = 1,
        /// KNN: which nearest ID train feature (the paper's 50 for CIFAR-10, 1000 for all of ImageNet)
        #[range(1..)]
        #[implicit(50)]
        knn_k: usize = 50,
    }
}

op_ports! {
    pub struct Inputs {
        /// state dict of nn.Linear(D, C) (energy, msp, maxlogit)
        head: Option<Pt>,
        /// ID validation image features
        id_features: Npy,
        /// ID validation labels
        id_labels: Npy,
        /// image features of each OoD set
        ood_features: Vec<Npy>,
        /// CLIP text features [C, D] of the ID class prompts in label order, e.g. "a photo of a <class>." (mcm, neglabel; without a head also the zero-shot ID accuracy)
        class_text: Option<Npy>,
        /// CLIP text features [W, D] of a word list, NegLabel's candidate negative labels
        word_text: Option<Npy>,
        /// class means [C, D] from class_stats (mahalanobis)
        class_means: Option<Pt>,
        /// precision [D, D] from class_stats (mahalanobis)
        precision: Option<Pt>,
        /// ID train image features [N, D] (knn)
        train_features: Option<Npy>,
    }
}

op_ports! {
    pub struct Outputs {
        /// metrics per score, per set and average, ID accuracy
        results: Json,
        /// the same as a markdown table, in percent
        table: Md,
        /// SVGs of ID and OoD score densities: <set>.svg for energy, <set>.<score>.svg for the others
        plots: Dir,
    }
}

impl TypedOp for Evaluate {
    const NAME: &'static str = "evaluate";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str =
        "OoD evaluation with energy, MSP, MaxLogit, MCM, NegLabel, Mahalanobis or KNN scores: FPR95, AUROC, AUPR per OoD set, ID accuracy, plots";
    type Params = Params;
    type Inputs = Inputs;
    type Outputs = Outputs;

    fn needs() -> Vec<InputNeed> {
        let mut needs = Vec::new();
        for score in [Score::Energy, Score::Msp, Score::MaxLogit] {
            needs.push(InputNeed::new("scores", score, "head"));
        }
        needs.push(InputNeed::new("scores", Score::Mcm, "class_text"));
        needs.push(InputNeed::new("scores", Score::NegLabel, "class_text"));
        needs.push(InputNeed::new("scores", Score::NegLabel, "word_text"));
        needs.push(InputNeed::new("scores", Score::Mahalanobis, "class_means"));
        needs.push(InputNeed::new("scores", Score::Mahalanobis, "precision"));
        needs.push(InputNeed::new("scores", Score::Knn, "train_features"));
        needs
    }

    fn run(&self, ctx: &OpContext, p: Params, i: Inputs, o: Outputs) -> Result<()> {
        if p.ood_names.len() != i.ood_features.len() {
            bail!(
                "node {}: {} ood_names for {} ood_features inputs; give one name per input, in order",
                ctx.node,
                p.ood_names.len(),
                i.ood_features.len()
            );
        }
        if p.scores.is_empty() {
            bail!("node {}: params.scores is empty; name at least one score", ctx.node);
        }
        if let Some(s) = p.scores.iter().enumerate().find(|(k, s)| p.scores[..*k].contains(s)).map(|(_, s)| s) {
            bail!("node {}: score {s} is listed twice in params.scores", ctx.node);
        }
        let scorer = Scorer::load(ctx, &p, &i)?;
        let id_features = read_features(&i.id_features)?;
        let id_labels = read_labels(&i.id_labels)?;
        check_same_length(&id_features, &i.id_features, &id_labels, &i.id_labels)?;
        let id_accuracy = scorer.accuracy(&id_features, &id_labels)?;
        let id_scores = scorer.scores(&p.scores, &id_features)?;

        let mut per_score: Vec<Vec<SetMetrics>> = vec![Vec::new(); p.scores.len()];
        for (name, path) in p.ood_names.iter().zip(&i.ood_features) {
            let ood_scores = scorer.scores(&p.scores, &read_features(path)?)?;
            for (k, &score) in p.scores.iter().enumerate() {
                let (id, ood) = (&id_scores[k], &ood_scores[k]);
                let m = ood_metrics(id, ood).with_context(|| match score {
                    Score::Energy => format!("metrics of OoD set {name}"),
                    other => format!("metrics of OoD set {name}, score {other}"),
                })?;
                let (file, title, x_label) = match score {
                    Score::Energy => (
                        format!("{name}.svg"),
                        format!("{name}: ID vs OoD"),
                        "score (-energy, higher = more ID)".into(),
                    ),
                    other => (
                        format!("{name}.{other}.svg"),
                        format!("{name}: ID vs OoD, {}", other.label()),
                        format!("{} score (higher = more ID)", other.label()),
                    ),
                };
                score_density_svg(&o.plots.join(file), &title, &x_label, id, ood)?;
                per_score[k].push(SetMetrics { name: name.clone(), fpr95: m.fpr95, auroc: m.auroc, aupr: m.aupr });
            }
        }
        let metrics = p.scores.iter().zip(per_score).map(|(&s, sets)| ScoreMetrics::from_sets(s, sets)).collect();
        let evaluation = Evaluation::new(p.variant, id_accuracy, metrics);
        let table = evaluation_table(&evaluation);
        print!("{table}");
        std::fs::write(&o.table, &table).with_context(|| format!("writing {}", o.table.display()))?;
        write_json(&o.results, &evaluation)
    }
}

/// What the chosen scores read, loaded once: the head, the text features
/// (with NegLabel's negatives mined), the class statistics, the train
/// features.
struct Scorer {
    head: Option<(Tensor, Tensor)>,
    normalize: NormalizeFeatures,
    temperature: f64,
    mcm_temperature: f64,
    class_text: Option<Tensor>,
    negatives: Option<Tensor>,
    neglabel_temperature: f64,
    neglabel_groups: usize,
    stats: Option<(Tensor, Tensor)>,
    train: Option<Tensor>,
    knn_k: usize,
}

impl Scorer {
    fn load(ctx: &OpContext, p: &Params, i: &Inputs) -> Result<Scorer> {
        let wants = |f: &dyn Fn(Score) -> bool| p.scores.iter().any(|&s| f(s));
        // toe-pipe check and the worker have made sure what a score needs is connected.
        let missing = |input: &str| anyhow::anyhow!("node {}: input `{input}` is not connected", ctx.node);
        let head = match (&i.head, wants(&Score::uses_head)) {
            (Some(path), true) => Some(read_linear_head(path)?),
            (None, true) => return Err(missing("head")),
            _ => None,
        };
        let zero_shot = wants(&|s| matches!(s, Score::Mcm | Score::NegLabel));
        // Without a head, the class prompts give the ID accuracy (zero-shot).
        let class_text = match &i.class_text {
            Some(path) if zero_shot || head.is_none() => Some(read_features(path)?),
            None if zero_shot => return Err(missing("class_text")),
            _ => None,
        };
        let negatives = match (&i.word_text, &class_text, wants(&|s| s == Score::NegLabel)) {
            (Some(path), Some(class_text), true) => {
                let words = read_features(path)?;
                let mined = scores::neglabel_mine(class_text, &words, p.neglabel_count, p.neglabel_percentile)?;
                println!("NegLabel: {} of {} words mined as negative labels", mined.len(), words.size()[0]);
                Some(words.index_select(0, &Tensor::from_slice(&mined)))
            }
            (_, _, true) => return Err(missing("word_text")),
            _ => None,
        };
        let stats = match (&i.class_means, &i.precision, wants(&|s| s == Score::Mahalanobis)) {
            (Some(m), Some(pr), true) => Some((formats::load_tensor_pt(m)?, formats::load_tensor_pt(pr)?)),
            (None, _, true) => return Err(missing("class_means")),
            (_, None, true) => return Err(missing("precision")),
            _ => None,
        };
        let train = match (&i.train_features, wants(&|s| s == Score::Knn)) {
            (Some(path), true) => Some(read_features(path)?),
            (None, true) => return Err(missing("train_features")),
            _ => None,
        };
        Ok(Scorer {
            head,
            normalize: p.normalize.clone(),
            temperature: p.temperature,
            mcm_temperature: p.mcm_temperature,
            class_text,
            negatives,
            neglabel_temperature: p.neglabel_temperature,
            neglabel_groups: p.neglabel_groups,
            stats,
            train,
            knn_k: p.knn_k,
        })
    }

    fn logits(&self, features: &Tensor) -> Result<Option<Tensor>> {
        match &self.head {
            Some((weight, bias)) => {
                Ok(Some(head_logits(&self.normalize.apply(features.shallow_clone()), weight, bias)?))
            }
            None => Ok(None),
        }
    }

    /// The ID accuracy of the head, else of the zero-shot classifier.
    fn accuracy(&self, features: &Tensor, labels: &[i64]) -> Result<Option<f64>> {
        let predictions = match (self.logits(features)?, &self.class_text) {
            (Some(logits), _) => Vec::<i64>::try_from(&logits.argmax(1, false))?,
            (None, Some(text)) => {
                let classes = text.size()[0];
                if let Some(bad) = labels.iter().find(|&&l| l < 0 || l >= classes) {
                    bail!(
                        "label {bad} has no class prompt: class_text has {classes} rows, one per class in label order"
                    );
                }
                scores::zero_shot_predictions(features, text)?
            }
            (None, None) => return Ok(None),
        };
        Ok(Some(accuracy(&predictions, labels)?))
    }

    /// Each score of `features`, in the order of `which`.
    fn scores(&self, which: &[Score], features: &Tensor) -> Result<Vec<Vec<f32>>> {
        let logits = self.logits(features)?;
        let need =
            |what: &str| anyhow::anyhow!("{what} is not loaded (a bug: Scorer::load loads what the scores need)");
        which
            .iter()
            .map(|score| {
                let logits = || logits.as_ref().ok_or_else(|| need("the head"));
                let class_text = || self.class_text.as_ref().ok_or_else(|| need("class_text"));
                match score {
                    Score::Energy => scores::energy(logits()?, self.temperature),
                    Score::Msp => scores::msp(logits()?),
                    Score::MaxLogit => scores::max_logit(logits()?),
                    Score::Mcm => scores::mcm(features, class_text()?, self.mcm_temperature),
                    Score::NegLabel => scores::neglabel(
                        features,
                        class_text()?,
                        self.negatives.as_ref().ok_or_else(|| need("the negative labels"))?,
                        self.neglabel_temperature,
                        self.neglabel_groups,
                    ),
                    Score::Mahalanobis => {
                        let (means, precision) = self.stats.as_ref().ok_or_else(|| need("the class statistics"))?;
                        scores::mahalanobis(features, means, precision)
                    }
                    Score::Knn => scores::knn(
                        features,
                        self.train.as_ref().ok_or_else(|| need("the train features"))?,
                        self.knn_k,
                    ),
                }
                .with_context(|| format!("score {score}"))
            })
            .collect()
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

/// The evaluation in percent. Energy alone gives the table evaluate wrote
/// before it had other scores; several scores get a score column.
fn evaluation_table(e: &Evaluation) -> String {
    let accuracy = e.id_accuracy.map_or("-".to_owned(), |a| format!("{:.2}", a * 100.0));
    let scores = e.scores();
    let legacy = scores.len() == 1 && scores[0].score == Score::Energy.name();
    let mut out = if legacy {
        format!("ID accuracy: {accuracy}\n\n| OoD set | FPR95 | AUROC | AUPR |\n|---|---:|---:|---:|\n")
    } else {
        format!("ID accuracy: {accuracy}\n\n| OoD set | score | FPR95 | AUROC | AUPR |\n|---|---|---:|---:|---:|\n")
    };
    for score in &scores {
        let label = Score::label_of(&score.score);
        for s in score.sets_and_average() {
            let column = if legacy { String::new() } else { format!(" {label} |") };
            out.push_str(&format!(
                "| {} |{column} {:.2} | {:.2} | {:.2} |\n",
                s.name,
                s.fpr95 * 100.0,
                s.auroc * 100.0,
                s.aupr * 100.0
            ));
        }
    }
    out
}
