//! `toe-pipe ops [--json]`

use std::process::ExitCode;

use clap::Args;

use super::{Cli, CmdResult};

#[derive(Args)]
pub struct OpsArgs {
    /// Print the catalog as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cli: &Cli, a: &OpsArgs) -> CmdResult {
    let cache = cli.store.as_ref().map(|s| s.join("cache")).filter(|c| c.is_dir());
    let catalog = crate::worker::catalog(cache.as_deref())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&catalog)?);
        return Ok(ExitCode::SUCCESS);
    }
    if catalog.ops.is_empty() {
        println!("no built-in ops in this build (cmd nodes work everywhere)");
    }
    for op in catalog.ops.values() {
        println!("{} v{}: {}", op.name, op.version, op.summary);
        for p in &op.params {
            let default = p.default.as_ref().map(|d| format!(" = {d}")).unwrap_or_else(|| " (required)".into());
            let allowed = p.allowed().map(|a| format!(" [{a}]")).unwrap_or_default();
            let implicit =
                p.implicit.as_ref().map(|v| format!(" (left out of action keys at {v})")).unwrap_or_default();
            println!("    param  {}: {}{default}{allowed}{implicit}  {}", p.name, p.ty.name(), p.doc);
        }
        for i in &op.inputs {
            let extra = match (i.optional, i.list) {
                (true, true) => " (optional list)",
                (true, false) => " (optional)",
                (false, true) => " (list)",
                _ => "",
            };
            let needed = op.needed_by(&i.name).map(|by| format!(" (needed by {by})")).unwrap_or_default();
            println!("    in     {}: {}{extra}{needed}  {}", i.name, i.kind, i.doc);
        }
        for o in &op.outputs {
            println!("    out    {}: {}  {}", o.name, o.kind, o.doc);
        }
    }
    Ok(ExitCode::SUCCESS)
}
