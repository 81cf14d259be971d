//! `toe-pipe verify [--repair]`

use std::process::ExitCode;

use clap::Args;

use super::{find_store, Cli, CmdResult};
use crate::store::verify::{repair, verify_all, RepairReport};
use crate::store::Hash;

#[derive(Args)]
pub struct VerifyArgs {
    /// Remove corrupt objects, so the next run rebuilds them.
    #[arg(long)]
    pub repair: bool,
}

pub fn run(cli: &Cli, a: &VerifyArgs) -> CmdResult {
    let store = find_store(cli, None)?;
    let _lock = if a.repair { Some(store.lock("verify --repair")?) } else { None };
    let report = verify_all(&store);
    let corrupt: Vec<Hash> = report.corrupt.iter().map(|(h, _)| *h).collect();
    let repaired = if a.repair { repair(&store, &corrupt) } else { RepairReport::default() };
    for (h, what) in &report.corrupt {
        let outcome = if !a.repair {
            String::new()
        } else if let Some((_, err)) = repaired.not_removed.iter().find(|(x, _)| x == h) {
            format!(", NOT removed: {err}")
        } else {
            ", removed".to_owned()
        };
        println!("corrupt  {h}  ({what}){outcome}");
    }
    for (key, node, pipeline) in &repaired.invalidated {
        println!(
            "invalidated {node} (pipeline {pipeline}): its result was made from a corrupt object (action {})",
            key.short()
        );
    }
    for (key, err) in &repaired.not_invalidated {
        println!("could NOT invalidate action {} (it read a corrupt object): {err}", key.short());
    }
    if report.corrupt.is_empty() {
        println!("ok: {} objects match their hashes", report.checked);
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "{} of {} objects are corrupt{}",
            report.corrupt.len(),
            report.checked,
            if !a.repair {
                "; run `toe-pipe verify --repair` to remove them (and the results made from them) so the next run rebuilds them"
            } else if repaired.not_removed.is_empty() && repaired.not_invalidated.is_empty() {
                "; removed with the results made from them, the next run rebuilds them"
            } else {
                "; some could not be removed (above).\n  fix: make the store writable (or remove those paths by hand) and run `toe-pipe verify --repair` again"
            }
        );
        Ok(ExitCode::FAILURE)
    }
}
