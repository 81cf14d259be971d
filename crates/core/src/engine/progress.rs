//! What a run prints: one line per node that did something, and on a
//! terminal a progress bar with the nodes running now (indicatif).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    pub verbose: bool,
    pub quiet: bool,
}

impl Progress {
    pub fn new(total: usize, verbose: bool, quiet: bool) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{pos}/{len}] {elapsed} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress { bar, verbose, quiet }
    }

    /// A progress reporter that prints nothing (status, dry runs, tests).
    pub fn hidden() -> Progress {
        Progress { bar: None, verbose: false, quiet: true }
    }

    /// One line above the bar.
    pub fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    /// A line about a node: `verb node detail`.
    pub fn node(&self, verb: &str, node: &str, detail: &str) {
        let line = if detail.is_empty() { format!("{verb:>9} {node}") } else { format!("{verb:>9} {node}  {detail}") };
        self.line(&line);
    }

    /// Whether a live progress bar is drawn (on a terminal).
    pub fn is_live(&self) -> bool {
        self.bar.is_some()
    }

    /// The bar's state: nodes finished, nodes running, and the newest log
    /// line of the running node when there is one.
    pub fn set_state(&self, finished: usize, running: &[&str], latest: Option<&str>) {
        if let Some(bar) = &self.bar {
            bar.set_position(finished as u64);
            let message = match (running, latest) {
                ([], _) => String::new(),
                ([one], Some(line)) => format!("running {one}: {line}"),
                _ => format!("running {}", running.join(", ")),
            };
            bar.set_message(message);
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
