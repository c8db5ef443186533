//! Traces stamped with virtual time and node name:
//! `[   1.250000s n2]  INFO heartbeat ok`.
//!
//! Each [`crate::Sim`] has its own `tracing` dispatcher, made the thread's default only
//! while the simulation runs, so parallel simulations never mix their traces and the
//! global subscriber is left alone.

use std::fmt;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use tracing::Dispatch;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use crate::context;

/// The variable that filters traces, in `RUST_LOG` syntax (for example `info` or
/// `sim=trace,cache=debug`).
pub const TRACE_ENV: &str = "SIM_LOG";

/// Where a simulation's `tracing` events go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Trace {
    /// As [`TRACE_ENV`] says; off when it is unset.
    #[default]
    FromEnv,
    /// With this filter, in `RUST_LOG` syntax.
    Filter(String),
    /// With this filter, appended to this file (created if missing).
    File {
        /// The filter, in `RUST_LOG` syntax.
        filter: String,
        /// The file.
        path: std::path::PathBuf,
    },
    /// Nowhere.
    Off,
}

/// Writes the virtual time and the running node's name as the event's timestamp.
#[derive(Clone, Copy, Debug, Default)]
pub struct VirtualTime;

impl FormatTime for VirtualTime {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        let stamp = context::try_with(|shared| {
            let now_ns = shared.now_ns.get();
            (now_ns, shared.node_name(shared.current_node.get()))
        });
        match stamp {
            Some((now_ns, node)) => {
                let seconds = now_ns / 1_000_000_000;
                let micros = (now_ns % 1_000_000_000) / 1_000;
                write!(w, "[{seconds:>4}.{micros:06}s {node}]")
            }
            None => write!(w, "[   -.------s -]"),
        }
    }
}

/// A simulation's dispatcher, and its buffer when the trace is captured.
#[derive(Debug)]
pub(crate) struct TraceSink {
    dispatch: Dispatch,
    buffer: Option<Arc<Mutex<Vec<u8>>>>,
}

impl TraceSink {
    pub(crate) fn enter(&self) -> tracing::dispatcher::DefaultGuard {
        tracing::dispatcher::set_default(&self.dispatch)
    }

    pub(crate) fn take(&self) -> Option<String> {
        let buffer = self.buffer.as_ref()?;
        let bytes = std::mem::take(&mut *buffer.lock().unwrap_or_else(PoisonError::into_inner));
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }
}

struct BufferWriter(Arc<Mutex<Vec<u8>>>);

impl Write for BufferWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The sink for `trace`, or `None` when tracing is off. An invalid filter is reported
/// on stderr and replaced by `info`: a typo in `SIM_LOG` must neither fail a test run
/// nor silently lose its trace.
pub(crate) fn sink(trace: &Trace, capture: bool) -> Option<TraceSink> {
    let (filter, source) = match trace {
        Trace::Off => return None,
        Trace::Filter(filter) | Trace::File { filter, .. } => {
            (Some(filter.clone()), "the trace filter")
        }
        Trace::FromEnv => (std::env::var(TRACE_ENV).ok(), TRACE_ENV),
    };
    let filter = match (filter, capture) {
        (Some(filter), _) => filter,
        (None, true) => "info".to_string(),
        (None, false) => return None,
    };
    let filter = match EnvFilter::try_new(&filter) {
        Ok(filter) => filter,
        Err(error) => {
            eprintln!(
                "sim: ignoring {source} {filter:?}: {error}; tracing at info instead \
                 (expected RUST_LOG syntax, for example info or sim=debug)"
            );
            EnvFilter::new("info")
        }
    };
    let buffer = capture.then(|| Arc::new(Mutex::new(Vec::new())));
    let writer = match (&buffer, trace) {
        (Some(buffer), _) => {
            let buffer = Arc::clone(buffer);
            BoxMakeWriter::new(move || BufferWriter(Arc::clone(&buffer)))
        }
        (None, Trace::File { path, .. }) => {
            let file = std::fs::OpenOptions::new().create(true).append(true).open(path);
            match file {
                Ok(file) => BoxMakeWriter::new(Mutex::new(file)),
                Err(error) => {
                    eprintln!(
                        "sim: cannot open trace file {}: {error}; tracing is off",
                        path.display()
                    );
                    return None;
                }
            }
        }
        (None, _) => BoxMakeWriter::new(tracing_subscriber::fmt::TestWriter::new()),
    };
    keep_interest_per_dispatcher();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_timer(VirtualTime)
        .with_ansi(false)
        .with_target(false)
        .with_writer(writer)
        .finish();
    Some(TraceSink { dispatch: Dispatch::new(subscriber), buffer })
}

/// Keeps a second, inert dispatcher registered for the whole process.
///
/// With exactly one dispatcher registered, `tracing-core` computes a callsite's
/// interest from the dispatcher of whichever thread hits the callsite first; a thread
/// with no simulation running (another test, another simulation's worker) then caches
/// "never" and silences that callsite for the simulation too. With two registered,
/// interest is combined over all of them and each event asks its thread's own
/// dispatcher. The inert dispatcher records nothing and changes no run.
fn keep_interest_per_dispatcher() {
    static INERT: OnceLock<Dispatch> = OnceLock::new();
    INERT.get_or_init(|| Dispatch::new(tracing::subscriber::NoSubscriber::default()));
}
