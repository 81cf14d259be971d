//! `toe-pipe verify [--repair]`

use std::process::ExitCode;

use clap::Args;

use super::{find_store, Cli, CmdResult};
use crate::store::verify::verify_all;

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
    for (h, what) in &report.corrupt {
        println!("corrupt  {h}  ({what}){}", if a.repair { ", removed" } else { "" });
        if a.repair {
            store.remove_object(h)?;
        }
    }
    if report.corrupt.is_empty() {
        println!("ok: {} objects match their hashes", report.checked);
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "{} of {} objects are corrupt{}",
            report.corrupt.len(),
            report.checked,
            if a.repair {
                "; removed, the next run rebuilds them"
            } else {
                "; run `toe-pipe verify --repair` to remove them so the next run rebuilds them"
            }
        );
        Ok(ExitCode::FAILURE)
    }
}
