//! Settings users would otherwise repeat on every command line:
//! `toe-pipe.toml` next to the pipeline file, or `config.toml` in the
//! store (the first found wins; command-line options win over both).
//!
//! ```toml
//! executor = "slurm"    # or "local", the default
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::spec::{Diagnostic, Diagnostics, SourceMap};

/// Where nodes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExecutorKind {
    /// Processes on this machine.
    Local,
    /// One Slurm batch job per node.
    Slurm,
}

impl ExecutorKind {
    pub fn name(self) -> &'static str {
        match self {
            ExecutorKind::Local => "local",
            ExecutorKind::Slurm => "slurm",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    executor: Option<Spanned<String>>,
}

/// The settings in effect, and the file they came from.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub executor: Option<ExecutorKind>,
    pub file: Option<PathBuf>,
}

/// The config file for a pipeline and store, if there is one.
pub fn find(pipeline_file: &Path, store_dir: &Path) -> Option<PathBuf> {
    let beside = pipeline_file.parent().map(|d| d.join("toe-pipe.toml"));
    beside.into_iter().chain([store_dir.join("config.toml")]).find(|p| p.is_file())
}

/// Read the config that applies to a pipeline and store (none: defaults).
pub fn load(pipeline_file: &Path, store_dir: &Path) -> Result<Config, Diagnostics> {
    match find(pipeline_file, store_dir) {
        Some(file) => read(&file),
        None => Ok(Config::default()),
    }
}

pub fn read(file: &Path) -> Result<Config, Diagnostics> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        let source = SourceMap::new(file, "");
        Diagnostics(vec![Diagnostic::at(&source, &(0..0), None, format!("cannot read the config file: {e}"))
            .with_fix("make it readable, or remove it")])
    })?;
    let source = SourceMap::new(file, &text);
    let raw: RawConfig = toml::from_str(&text).map_err(|e| {
        Diagnostics(vec![Diagnostic::at(&source, &e.span().unwrap_or(0..0), None, e.message().trim())
            .with_fix("the config file takes `executor = \"local\"` or `executor = \"slurm\"` (docs/core.md, \"On a Slurm cluster\")")])
    })?;
    let executor = match &raw.executor {
        None => None,
        Some(v) => match v.get_ref().as_str() {
            "local" => Some(ExecutorKind::Local),
            "slurm" => Some(ExecutorKind::Slurm),
            other => {
                return Err(Diagnostics(vec![Diagnostic::at(
                    &source,
                    &v.span(),
                    None,
                    format!("executor must be \"local\" or \"slurm\", not {other:?}"),
                )
                .with_fix("write executor = \"slurm\" to run each node as a Slurm job, or remove the line")]))
            }
        },
    };
    Ok(Config { executor, file: Some(file.to_path_buf()) })
}
