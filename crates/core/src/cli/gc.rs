//! `toe-pipe gc [--dry-run]`

use std::process::ExitCode;

use clap::Args;

use super::{find_store, human_bytes, Cli, CmdResult};
use crate::store::gc::{gc, GcOptions};

#[derive(Args)]
pub struct GcArgs {
    /// Say what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep actions used within this time (e.g. 7d, 12h, 0s), so that
    /// switching back to recent params still restores without running.
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    pub keep_recent: std::time::Duration,
}

pub fn run(cli: &Cli, a: &GcArgs) -> CmdResult {
    let store = find_store(cli, None)?;
    let _lock = if a.dry_run { None } else { Some(store.lock("gc")?) };
    let r = gc(&store, &GcOptions { dry_run: a.dry_run, keep_recent: a.keep_recent })?;
    let verb = if a.dry_run { "would remove" } else { "removed" };
    for p in &r.forgotten_pipelines {
        println!("pipeline {p}: its file is gone, its results are no longer kept");
    }
    println!(
        "{verb} {} objects, {} action records, {} logs; {} {} ({} more still linked from workspace files); kept {} actions",
        r.removed_objects,
        r.removed_actions,
        r.removed_logs,
        if a.dry_run { "would free" } else { "freed" },
        human_bytes(r.freed_bytes),
        human_bytes(r.linked_bytes),
        r.kept_actions
    );
    if r.removed_write_temps > 0 {
        println!(
            "{verb} {} temp files of record writes that a killed run left unfinished (over an hour old)",
            r.removed_write_temps
        );
    }
    if r.removed_statcaches > 0 {
        println!("{verb} the stat caches of {} sources that no run read within --keep-recent", r.removed_statcaches);
    }
    Ok(ExitCode::SUCCESS)
}
