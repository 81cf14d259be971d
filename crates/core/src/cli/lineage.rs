//! `toe-pipe lineage PATH|HASH [--json]`

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use super::{find_store, Cli, CmdResult};
use crate::lineage::{render, Lineage};

#[derive(Args)]
pub struct LineageArgs {
    /// A materialised output (workspace path) or a hash (prefix) of an
    /// artifact or of an action.
    pub target: String,
    /// Print the tree as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cli: &Cli, a: &LineageArgs) -> CmdResult {
    // Look for the store next to the artifact if it is a path.
    let path = Path::new(&a.target);
    let start: Option<PathBuf> = path.exists().then(|| path.parent().map(Path::to_path_buf).unwrap_or_default());
    let start = start.map(|p| if p.as_os_str().is_empty() { PathBuf::from(".") } else { p });
    let store = find_store(cli, start.as_deref())?;
    let lineage = Lineage::load(&store);
    let tree = lineage.find(&a.target)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&tree)?);
    } else {
        print!("{}", render(&tree));
    }
    Ok(ExitCode::SUCCESS)
}
