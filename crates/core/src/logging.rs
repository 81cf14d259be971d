//! Diagnostics through `tracing`, for both binaries: the `toe-pipe` CLI
//! (level from `-q`/`-v`) and the workers (info). `RUST_LOG` overrides the
//! level when set (`RUST_LOG=debug`, `RUST_LOG=toe_pipe::decoder=debug`).
//!
//! Events go to stderr as plain lines, without colours or timestamps: a
//! worker's stderr is its node's log, which already says when it ran, and
//! a warning reads as before (`warning: ...`). User-facing output (the
//! per-node lines, summaries, tables, an op's own progress) is printed
//! directly, not through here, so no filter can hide it.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the subscriber; `default` is the level when `RUST_LOG` is unset
/// or empty. A second call (a test binary that is a worker, say) keeps the
/// first subscriber.
pub fn init(default: LevelFilter) {
    // `Targets` reads RUST_LOG's common form (`debug`,
    // `toe_pipe::decoder=debug,warn`) without the regex engine that
    // `EnvFilter` brings: that engine made the CLI binary 2 MB larger and
    // every command slower to start.
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => match directives.parse::<Targets>() {
            Ok(targets) => targets,
            Err(e) => {
                eprintln!("warning: RUST_LOG={directives:?} is not understood ({e}); using the default level");
                Targets::new().with_default(default)
            }
        },
        _ => Targets::new().with_default(default),
    };
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(false).event_format(Plain))
        .with(filter)
        .try_init();
}

/// `warning: MESSAGE`, `error: MESSAGE`; info events bare, as the lines a
/// node log has always had; debug and trace events also name where they
/// come from (their target, the module path), since they are for whoever
/// reads the code.
struct Plain;

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        match *meta.level() {
            Level::ERROR => write!(writer, "error: ")?,
            Level::WARN => write!(writer, "warning: ")?,
            Level::INFO => {}
            Level::DEBUG => write!(writer, "debug: {}: ", meta.target())?,
            Level::TRACE => write!(writer, "trace: {}: ", meta.target())?,
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_plain_and_filtered_by_level() {
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(Level::DEBUG)
            .with_writer(move || out.clone())
            .with_ansi(false)
            .event_format(Plain)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!("cannot read {}", "x.npy");
            tracing::warn!("worker is older");
            tracing::info!("toe-pipe-worker: op a v1");
            tracing::debug!(epoch = 3, "decoder training epoch");
            tracing::trace!("not shown at debug");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "error: cannot read x.npy\nwarning: worker is older\ntoe-pipe-worker: op a v1\ndebug: toe_pipe_core::logging::tests: decoder training epoch epoch=3\n"
        );
    }
}
