//! The regression corpus, `seeds.txt`: one `profile seed [# note]` per line. Every seed
//! that ever found a bug is kept there and replayed by `cargo test`.

use std::fmt;

use crate::faults::Profile;

/// One corpus line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorpusEntry {
    /// The line number, from 1.
    pub line: usize,
    /// The fault profile.
    pub profile: Profile,
    /// The seed.
    pub seed: u64,
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
            "seeds.txt line {}: {}; expected `PROFILE SEED [# note]`, for example `swarm 42 # lost write after a crash`",
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
        let words: Vec<&str> = content.split_whitespace().collect();
        let [profile, seed] = words[..] else {
            return Err(error(format!("{} word(s) before the note", words.len())));
        };
        let profile: Profile =
            profile.parse().map_err(|e: crate::faults::ParseProfileError| error(e.to_string()))?;
        let seed: u64 = seed
            .parse()
            .map_err(|_| error(format!("invalid seed {seed:?}: expected a whole number")))?;
        entries.push(CorpusEntry { line, profile, seed, note });
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
        assert_eq!((entries[0].line, entries[0].profile, entries[0].seed), (3, Profile::Swarm, 42));
        assert_eq!(entries[0].note, "lost write");
        assert_eq!(
            (entries[1].line, entries[1].profile, entries[1].note.as_str()),
            (4, Profile::Partitions, "")
        );
    }

    #[test]
    fn malformed_lines_name_their_number_and_the_format() {
        let error = parse_corpus("swarm 1\nswarm x\n").unwrap_err();
        assert_eq!(error.line, 2);
        assert!(error.to_string().contains("line 2: invalid seed \"x\""), "{error}");
        assert!(error.to_string().contains("expected `PROFILE SEED [# note]`"), "{error}");
        let error = parse_corpus("chaos 1").unwrap_err();
        assert!(error.to_string().contains("unknown profile \"chaos\""), "{error}");
        let error = parse_corpus("swarm 1 2").unwrap_err();
        assert!(error.to_string().contains("3 word(s)"), "{error}");
    }
}
