//! `toe-pipe log NODE`

use std::process::ExitCode;

use clap::Args;

use super::{find_store, Cli, CmdResult};

#[derive(Args)]
pub struct LogArgs {
    /// Node id, or PIPELINE:NODE when several pipelines share the store.
    pub node: String,
}

pub fn run(cli: &Cli, a: &LogArgs) -> CmdResult {
    let store = find_store(cli, None)?;
    let (pipeline, node) = match a.node.split_once(':') {
        Some((p, n)) => (Some(p), n),
        None => (None, a.node.as_str()),
    };
    let mut hits = Vec::new();
    for refs in store.all_refs() {
        if pipeline.is_some_and(|p| p != refs.pipeline) {
            continue;
        }
        if let Some(r) = refs.nodes.get(node) {
            if let Some(attempt) = &r.last_attempt {
                hits.push((refs.pipeline.clone(), attempt.clone()));
            } else if let Some(key) = r.current {
                hits.push((
                    refs.pipeline.clone(),
                    crate::store::records::Attempt { key, ok: true, at: "(cached)".into() },
                ));
            }
        }
    }
    match hits.as_slice() {
        [] => Err(anyhow::anyhow!(
            "no run of node `{}` is recorded in {}\n  fix: check the node id (`toe-pipe dag PIPELINE` lists them)",
            a.node,
            store.root().display()
        )
        .into()),
        [(pipeline, attempt)] => {
            let path = store.log_path(&attempt.key);
            let text =
                std::fs::read(&path).map_err(|e| anyhow::anyhow!("cannot read the log {}: {e}", path.display()))?;
            eprintln!(
                "log of {pipeline}:{node} ({}, {}; {})",
                if attempt.ok { "succeeded" } else { "failed" },
                attempt.at,
                path.display()
            );
            print!("{}", String::from_utf8_lossy(&text));
            Ok(ExitCode::SUCCESS)
        }
        many => {
            let names: Vec<String> = many.iter().map(|(p, _)| format!("{p}:{node}")).collect();
            Err(anyhow::anyhow!("node `{node}` exists in several pipelines; name one: {}", names.join(", ")).into())
        }
    }
}
