//! A regression corpus (`seeds.txt`): one run record (`PROFILE SEED [KNOB=VALUE ...]`)
//! and an optional `# note` per line. Every seed that ever found a bug is kept there,
//! and [`replay_corpus`] runs them all from a test.

use std::fmt;
use std::path::Path;

use crate::record::Record;
use crate::sweep::replay_command;
use crate::system::{Capture, System, parse_record, run};

/// One corpus line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorpusEntry {
    /// The line number, from 1.
    pub line: usize,
    /// The run.
    pub record: Record,
    /// The note after `#`, if any.
    pub note: String,
}

/// A malformed corpus line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorpusError {
    /// The line number, from 1.
    pub line: usize,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for CorpusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "corpus line {}: {}; expected `PROFILE SEED [KNOB=VALUE ...] [# note]`, for example `swarm 42 # lost write after a crash`",
            self.line, self.problem
        )
    }
}

impl std::error::Error for CorpusError {}

/// Parses a corpus for `system`; blank lines and lines starting with `#` are skipped.
///
/// # Errors
///
/// The first malformed line, with its number and what was expected.
pub fn parse_corpus<S: System + ?Sized>(
    system: &S,
    text: &str,
) -> Result<Vec<CorpusEntry>, CorpusError> {
    let mut entries = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let (content, note) = match raw.split_once('#') {
            Some((content, note)) => (content.trim(), note.trim().to_string()),
            None => (raw.trim(), String::new()),
        };
        if content.is_empty() {
            continue;
        }
        let record = parse_record(system, content)
            .map_err(|e| CorpusError { line, problem: e.to_string() })?;
        entries.push(CorpusEntry { line, record, note });
    }
    Ok(entries)
}

/// Runs every entry of the corpus at `path`; how many passed.
///
/// # Errors
///
/// An unreadable or malformed corpus, or the entries that failed, each with its
/// verdict and the command that replays it.
pub fn replay_corpus<S: System + ?Sized>(system: &S, path: &Path) -> Result<usize, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let entries =
        parse_corpus(system, &text).map_err(|error| format!("{}: {error}", path.display()))?;
    let mut failed = Vec::new();
    for entry in &entries {
        let record = entry.record.for_seed(entry.record.seed);
        let report = run(system, &record, None, Capture::default());
        if !report.verdict.is_pass() {
            failed.push(format!(
                "{} line {} ({}): {}\n  replay: {}",
                path.display(),
                entry.line,
                entry.note,
                report.verdict,
                replay_command(system, &record)
            ));
        }
    }
    if failed.is_empty() {
        return Ok(entries.len());
    }
    Err(format!("{} of {} corpus runs failed:\n{}", failed.len(), entries.len(), failed.join("\n")))
}
