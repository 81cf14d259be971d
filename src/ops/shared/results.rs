//! The results schema: what `evaluate` writes as JSON and `report` reads
//! back (and what other tools may read from a results file), and the OoD
//! scores that name its rows.

use serde::{Deserialize, Serialize};
use toe_pipe_core::param_enum;

param_enum! {
    /// An OoD score `evaluate` computes (formulas and papers: `crate::toe::scores`).
    pub enum Score {
        /// -energy of the head's logits (TOE's score)
        Energy = "energy",
        /// maximum softmax probability of the head
        Msp = "msp",
        /// maximum logit of the head
        MaxLogit = "maxlogit",
        /// zero-shot: maximum concept matching with the class prompts
        Mcm = "mcm",
        /// zero-shot: share of similarity to the class prompts against mined negative labels
        NegLabel = "neglabel",
        /// Mahalanobis distance to the nearest class mean
        Mahalanobis = "mahalanobis",
        /// distance to the k-th nearest ID train feature
        Knn = "knn",
    }
}

impl Score {
    /// As tables print it.
    pub fn label(self) -> &'static str {
        match self {
            Score::Energy => "energy",
            Score::Msp => "MSP",
            Score::MaxLogit => "MaxLogit",
            Score::Mcm => "MCM",
            Score::NegLabel => "NegLabel",
            Score::Mahalanobis => "Mahalanobis",
            Score::Knn => "KNN",
        }
    }

    /// Whether the score reads a trained head's logits.
    pub fn uses_head(self) -> bool {
        matches!(self, Score::Energy | Score::Msp | Score::MaxLogit)
    }

    /// The table label of a score name from a results file (unknown names,
    /// from a later version, are shown as written).
    pub fn label_of(name: &str) -> String {
        Score::from_spelling(name).map_or_else(|| name.to_owned(), |s| s.label().to_owned())
    }

    pub fn from_spelling(name: &str) -> Option<Score> {
        <Score as toe_pipe_core::ops::ParamValueType>::from_value(&crate::spec::ParamValue::Str(name.to_owned()))
    }
}

/// One OoD set's metrics (fractions, not percent).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetMetrics {
    pub name: String,
    pub fpr95: f64,
    pub auroc: f64,
    pub aupr: f64,
}

/// One score's metrics per OoD set and on average.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScoreMetrics {
    /// A [`Score`] spelling (`energy`, `mcm`, ...).
    pub score: String,
    pub sets: Vec<SetMetrics>,
    pub average: SetMetrics,
}

/// One evaluation: its variant label, ID accuracy, and per score the
/// metrics per OoD set and on average. The first score's metrics are the
/// top-level `sets` and `average` and the others follow in `more_scores`,
/// so the results of the energy score alone keep the layout (and the
/// bytes) `evaluate` wrote before it had other scores, and files written
/// then still read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evaluation {
    pub variant: String,
    /// Accuracy on the ID set of the evaluation's classifier: the head, or
    /// without one CLIP's zero-shot classifier with the class prompts;
    /// absent when there is neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_accuracy: Option<f64>,
    pub sets: Vec<SetMetrics>,
    pub average: SetMetrics,
    /// The score of `sets` and `average`; left out for energy, the score of
    /// every results file from before there were others.
    #[serde(default = "energy_name", skip_serializing_if = "is_energy")]
    pub score: String,
    /// The other scores, in the order they were asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more_scores: Vec<ScoreMetrics>,
}

fn energy_name() -> String {
    Score::Energy.name().to_owned()
}

fn is_energy(score: &str) -> bool {
    score == Score::Energy.name()
}

impl Evaluation {
    /// An evaluation of `scores` (at least one), in order.
    pub fn new(variant: String, id_accuracy: Option<f64>, mut scores: Vec<ScoreMetrics>) -> Evaluation {
        assert!(!scores.is_empty(), "an evaluation has at least one score");
        let first = scores.remove(0);
        Evaluation {
            variant,
            id_accuracy,
            sets: first.sets,
            average: first.average,
            score: first.score,
            more_scores: scores,
        }
    }

    /// The first score's sets and then its average, as tables list them.
    pub fn sets_and_average(&self) -> impl Iterator<Item = &SetMetrics> {
        self.sets.iter().chain(std::iter::once(&self.average))
    }

    /// Every score's metrics, the first score first.
    pub fn scores(&self) -> Vec<ScoreMetrics> {
        let first = ScoreMetrics { score: self.score.clone(), sets: self.sets.clone(), average: self.average.clone() };
        std::iter::once(first).chain(self.more_scores.iter().cloned()).collect()
    }
}

impl ScoreMetrics {
    /// From the metrics per set: the average is their mean.
    pub fn from_sets(score: Score, sets: Vec<SetMetrics>) -> ScoreMetrics {
        let n = sets.len().max(1) as f64;
        let average = SetMetrics {
            name: "average".into(),
            fpr95: sets.iter().map(|s| s.fpr95).sum::<f64>() / n,
            auroc: sets.iter().map(|s| s.auroc).sum::<f64>() / n,
            aupr: sets.iter().map(|s| s.aupr).sum::<f64>() / n,
        };
        ScoreMetrics { score: score.name().to_owned(), sets, average }
    }

    /// The sets and then the average.
    pub fn sets_and_average(&self) -> impl Iterator<Item = &SetMetrics> {
        self.sets.iter().chain(std::iter::once(&self.average))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `evaluate` wrote before it had several scores.
    const OLD: &str = r#"{
  "variant": "word",
  "id_accuracy": 0.95,
  "sets": [
    {
      "name": "near",
      "fpr95": 0.5,
      "auroc": 0.75,
      "aupr": 0.8
    }
  ],
  "average": {
    "name": "average",
    "fpr95": 0.5,
    "auroc": 0.75,
    "aupr": 0.8
  }
}"#;

    #[test]
    fn old_results_read_and_energy_alone_writes_them_byte_for_byte() {
        let e: Evaluation = serde_json::from_str(OLD).unwrap();
        assert_eq!((e.score.as_str(), e.id_accuracy, e.more_scores.len()), ("energy", Some(0.95), 0));
        assert_eq!(serde_json::to_string_pretty(&e).unwrap(), OLD);
        let near = SetMetrics { name: "near".into(), fpr95: 0.5, auroc: 0.75, aupr: 0.8 };
        let again =
            Evaluation::new("word".into(), Some(0.95), vec![ScoreMetrics::from_sets(Score::Energy, vec![near])]);
        assert_eq!(serde_json::to_string_pretty(&again).unwrap(), OLD);
    }

    #[test]
    fn several_scores_round_trip_in_order() {
        let set = |f: f64| vec![SetMetrics { name: "near".into(), fpr95: f, auroc: 0.5, aupr: 0.5 }];
        let e = Evaluation::new(
            "no head".into(),
            None,
            vec![ScoreMetrics::from_sets(Score::Mcm, set(0.3)), ScoreMetrics::from_sets(Score::Knn, set(0.2))],
        );
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains(r#""score":"mcm""#) && !json.contains("id_accuracy"), "{json}");
        let back: Evaluation = serde_json::from_str(&json).unwrap();
        let scores: Vec<(String, f64)> = back.scores().into_iter().map(|s| (s.score, s.average.fpr95)).collect();
        assert_eq!(scores, [("mcm".to_owned(), 0.3), ("knn".to_owned(), 0.2)]);
        assert_eq!(Score::label_of("knn"), "KNN");
        assert_eq!(Score::label_of("future"), "future");
    }
}
