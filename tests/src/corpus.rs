//! The regression corpus, `seeds.txt`: one run record ([`RunRecord`]: `PROFILE SEED
//! [KNOB=VALUE ...]`) and an optional `# note` per line. Every seed that ever found a
//! bug is kept there and replayed by `cargo test`.

use std::fmt;

use crate::record::RunRecord;

/// One corpus line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorpusEntry {
    /// The line number, from 1.
    pub line: usize,
    /// The run.
    pub record: RunRecord,
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
            "seeds.txt line {}: {}; expected `PROFILE SEED [KNOB=VALUE ...] [# note]`, for example `swarm 42 # lost write after a crash`",
            self.line, self.problem
        )
    }
}

impl std::error::Error for CorpusError {}

/// Parses the corpus; blank lines and lines starting with `#` are skipped.
///
/// # Errors
///
/// The first malformed line, with its number and what was expected.
pub fn parse_corpus(text: &str) -> Result<Vec<CorpusEntry>, CorpusError> {
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
        let error = |problem: String| CorpusError { line, problem };
        let record = RunRecord::parse(content).map_err(|e| error(e.to_string()))?;
        entries.push(CorpusEntry { line, record, note });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries_notes_and_comments() {
        let text = "# the corpus\n\nswarm 42 # lost write\npartitions 7\n";
        let entries = parse_corpus(text).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!((entries[0].line, entries[0].record.to_string()), (3, "swarm 42".into()));
        assert_eq!(entries[0].note, "lost write");
        assert_eq!(
            (entries[1].line, entries[1].record.profile, entries[1].note.as_str()),
            (4, crate::Profile::Partitions, "")
        );
        let entries = parse_corpus("swarm 9 quiet=0 liveness=majority # a minority").unwrap();
        assert_eq!(entries[0].record.quiet_seconds, 0);
    }

    #[test]
    fn malformed_lines_name_their_number_and_the_format() {
        let error = parse_corpus("swarm 1\nswarm x\n").unwrap_err();
        assert_eq!(error.line, 2);
        assert!(error.to_string().contains("line 2: run record word 2: seed \"x\""), "{error}");
        assert!(error.to_string().contains("expected `PROFILE SEED [KNOB=VALUE ...]"), "{error}");
        let error = parse_corpus("chaos 1").unwrap_err();
        assert!(error.to_string().contains("unknown profile \"chaos\""), "{error}");
        let error = parse_corpus("swarm 1 2").unwrap_err();
        assert!(error.to_string().contains("\"2\" is not a knob"), "{error}");
    }
}
