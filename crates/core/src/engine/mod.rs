//! Running a pipeline: the plan of what is fresh, restored or stale and
//! why ([`plan`]), and the scheduler that carries it out, in parallel,
//! with early cutoff ([`scheduler`]), through an [`executor`].

pub mod cmdline;
pub mod exec;
pub mod executor;
pub mod guard;
pub mod key;
pub mod lineage_input;
pub mod materialise;
pub mod nodedir;
pub mod plan;
pub mod progress;
pub mod reaper;
pub mod scheduler;
pub mod signals;
pub mod slurm;

use std::collections::BTreeSet;
use std::path::PathBuf;

use rayon::prelude::*;

use crate::graph::Dag;
use crate::ops::OpCatalog;
pub use crate::spec::glob_match;
use crate::spec::{InputRef, Pipeline};
use crate::store::Store;
use key::SourceHashes;

pub use plan::{plan, Decision, NodePlan, Plan, Selection, State};
pub use scheduler::{run, run_with, Outcome, RunOptions, RunReport};

/// A checked pipeline with its store: what every engine function needs.
pub struct Engine<'a> {
    pub pipeline: &'a Pipeline,
    pub dag: &'a Dag,
    pub store: &'a Store,
    /// Op declarations (empty for pipelines of cmd nodes only).
    pub catalog: &'a OpCatalog,
}

impl Engine<'_> {
    /// Nodes whose id matches one of the patterns (`*` and `?` wildcards).
    /// Errors name a pattern that matches nothing.
    pub fn matching(&self, patterns: &[String]) -> anyhow::Result<Vec<usize>> {
        let mut out = Vec::new();
        for pat in patterns {
            let hits: Vec<usize> =
                (0..self.pipeline.nodes.len()).filter(|&i| glob_match(pat, &self.pipeline.nodes[i].id)).collect();
            if hits.is_empty() {
                let hint = crate::spec::diag::suggest(pat, "node", self.pipeline.nodes.iter().map(|n| n.id.as_str()));
                anyhow::bail!("no node of pipeline {} matches `{pat}`\n  fix: {hint}", self.pipeline.name);
            }
            out.extend(hits);
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Hash the sources the `selected` nodes read (in parallel, through the
    /// stat cache). Errors list every source that could not be hashed.
    pub fn hash_sources(&self, selected: &[bool], verify: bool) -> anyhow::Result<SourceHashes> {
        let mut paths: BTreeSet<(PathBuf, String, String)> = BTreeSet::new();
        for (i, node) in self.pipeline.nodes.iter().enumerate() {
            if !selected[i] {
                continue;
            }
            for input in node.inputs.values() {
                for r in &input.refs {
                    if let InputRef::Source { abs, path } = r {
                        paths.insert((abs.clone(), path.clone(), node.id.clone()));
                    }
                }
            }
        }
        let unique: BTreeSet<&PathBuf> = paths.iter().map(|(a, ..)| a).collect();
        let cache = self.store.statcache();
        let hash =
            |abs: &PathBuf| (abs.clone(), cache.hash_source(abs, verify).map(|h| h.hash).map_err(|e| e.to_string()));
        // rayon's idle workers spin for a while after a parallel call, which
        // on a small machine costs a no-op run more than it saves.
        let results: Vec<(PathBuf, Result<crate::store::Hash, String>)> = if unique.len() > 1 {
            unique.into_par_iter().map(hash).collect()
        } else {
            unique.into_iter().map(hash).collect()
        };
        let mut hashes = SourceHashes::new();
        let mut errors = Vec::new();
        for (abs, r) in results {
            match r {
                Ok(h) => {
                    hashes.insert(abs, h);
                }
                Err(e) => {
                    let users: Vec<String> =
                        paths.iter().filter(|(a, ..)| *a == abs).map(|(_, p, n)| format!("{p} (node {n})")).collect();
                    errors.push(format!("cannot read source {}: {e}", users.join(", ")));
                }
            }
        }
        if !errors.is_empty() {
            anyhow::bail!(
                "{}\n  fix: check that the sources exist and are readable (`toe-pipe check` lists missing ones)",
                errors.join("\n")
            );
        }
        Ok(hashes)
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("eval_*", "eval_SUN"));
        assert!(glob_match("*", "x"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("eval_*", "train"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exact2"));
    }
}
