//! `toe-pipe status PIPELINE`

use std::process::ExitCode;

use clap::Args;
use serde::Serialize;

use super::{load, Cli, CmdResult, PipelineArgs};
use crate::engine::{plan, Selection, State};
use crate::store::{Hash, Store};

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub p: PipelineArgs,
    /// Re-hash sources and stored outputs instead of trusting the stat cache.
    #[arg(long)]
    pub verify: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Row<'a> {
    node: &'a str,
    state: &'static str,
    reasons: &'a [String],
    key: Option<Hash>,
}

pub fn run(cli: &Cli, a: &StatusArgs) -> CmdResult {
    let loaded = load(cli, &a.p, true)?;
    let store = Store::open_or_create(&loaded.store_dir)?;
    let engine = loaded.engine(&store);
    let p = &loaded.pipeline;
    let statuses = plan(&engine, &Selection::all(p.nodes.len()), a.verify)?.nodes;
    if a.json {
        let rows: Vec<Row> = statuses
            .iter()
            .map(|s| Row { node: &p.nodes[s.node].id, state: s.state().label(), reasons: &s.reasons, key: s.key })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let width = statuses.iter().map(|s| p.nodes[s.node].id.len()).max().unwrap_or(0);
    let mut counts = [0usize; 4];
    for s in &statuses {
        let state = s.state();
        counts[state as usize] += 1;
        if state == State::Fresh && !cli.verbose && statuses.len() > 40 {
            continue;
        }
        println!(
            "{}",
            format!("{:>7}  {:width$}  {}", state.label(), p.nodes[s.node].id, s.reasons.join("; ")).trim_end()
        );
    }
    println!(
        "{}: {} fresh, {} stale, {} waiting on stale nodes, {} to restore from the store",
        p.name,
        counts[State::Fresh as usize],
        counts[State::Stale as usize],
        counts[State::Waiting as usize],
        counts[State::Restore as usize]
    );
    Ok(ExitCode::SUCCESS)
}
