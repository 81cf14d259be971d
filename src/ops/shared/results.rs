//! The results schema: what `evaluate` writes as JSON and `report` reads
//! back (and what other tools may read from a results file).

use serde::{Deserialize, Serialize};

/// One OoD set's metrics (fractions, not percent).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetMetrics {
    pub name: String,
    pub fpr95: f64,
    pub auroc: f64,
    pub aupr: f64,
}

/// One evaluated head: its variant label, ID accuracy, and the metrics per
/// OoD set and on average.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evaluation {
    pub variant: String,
    pub id_accuracy: f64,
    pub sets: Vec<SetMetrics>,
    pub average: SetMetrics,
}

impl Evaluation {
    /// The sets and then the average, as tables list them.
    pub fn sets_and_average(&self) -> impl Iterator<Item = &SetMetrics> {
        self.sets.iter().chain(std::iter::once(&self.average))
    }
}
