//! The numerical core of TOE, independent of files and pipelines: class
//! statistics, Mahalanobis selection, textual-outlier text, outlier-exposure
//! training of the linear head, and the OoD scores (energy and the
//! baselines TOE is compared with). The ops in `crate::ops`
//! are thin wrappers that read inputs, call these and write outputs.

pub mod class_stats;
pub mod energy;
pub mod mahalanobis;
pub mod outlier_text;
pub mod prompts;
pub mod report;
pub mod scores;
pub mod train_head;
pub mod vos;
