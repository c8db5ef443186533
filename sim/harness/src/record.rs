//! The run record: everything that shapes a run, in one line of words.
//!
//! ```text
//! swarm 17 quiet=0 clients=2 fp=0x3b1f29c07d5e8a41
//! ```
//!
//! The profile and the seed come first; then, only where they differ from the
//! defaults, `fault=SECONDS` (the fault phase), `quiet=SECONDS` (the quiet period
//! after it) and the system's own knobs ([`Knob`]), in the order the system declares
//! them. `fp=0x…` is the fingerprint the run had when it was recorded: a replay
//! compares it and says whether it reproduced that run. Everything else is drawn from
//! the seed under the profile.

use std::fmt;

/// The longest fault phase or quiet period a record may ask for, in virtual seconds.
pub const PHASE_SECONDS_MAX: u64 = 600;

/// A knob of the system's own, as records (`NAME=VALUE`), plan files (`NAME VALUE`)
/// and the command line (`--NAME VALUE`) spell it. Absent, the system's default holds.
#[derive(Clone, Copy, Debug)]
pub struct Knob {
    /// The name (lowercase, words joined by `-`).
    pub name: &'static str,
    /// What the value looks like, for help and errors (`N`, `all|majority`).
    pub value: &'static str,
    /// One line for `--help`.
    pub help: &'static str,
    /// The value that means "not set" (a record leaves it out); empty when the
    /// default depends on the run (the profile's client count, say).
    pub default: &'static str,
    /// Checks a value; the error says what is accepted.
    pub check: fn(&str) -> Result<(), String>,
}

/// Everything that shapes one run (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The profile's name.
    pub profile: String,
    /// The seed.
    pub seed: u64,
    /// The fault phase in virtual seconds, if not the system's default.
    pub fault_seconds: Option<u64>,
    /// The quiet period in virtual seconds, if not the system's default.
    pub quiet_seconds: Option<u64>,
    /// The system's knobs that are set, in the order the system declares them.
    pub knobs: Vec<(&'static str, String)>,
    /// The fingerprint the run had when recorded.
    pub fingerprint: Option<u64>,
}

/// A malformed record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordError {
    /// The word at fault (1-based), 0 for the record as a whole.
    pub word: usize,
    /// What is wrong and what is accepted.
    pub problem: String,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.word == 0 {
            write!(f, "run record: {}", self.problem)
        } else {
            write!(f, "run record word {}: {}", self.word, self.problem)
        }
    }
}

impl std::error::Error for RecordError {}

/// What a record may name: the profiles and the knobs of one system.
#[derive(Clone, Copy, Debug)]
pub struct Vocabulary<'a> {
    /// The profiles' names.
    pub profiles: &'a [&'static str],
    /// The system's knobs.
    pub knobs: &'a [Knob],
}

impl Vocabulary<'_> {
    /// Every knob a record accepts, for error messages.
    pub fn knob_list(&self) -> String {
        let mut names = vec!["fault=SECONDS".to_string(), "quiet=SECONDS".to_string()];
        names.extend(self.knobs.iter().map(|knob| format!("{}={}", knob.name, knob.value)));
        names.push("fp=0xHEX".to_string());
        names.join(", ")
    }

    /// Checks a profile name.
    ///
    /// # Errors
    ///
    /// An unknown name, with the names accepted.
    pub fn profile(&self, name: &str) -> Result<String, String> {
        if self.profiles.contains(&name) {
            return Ok(name.to_string());
        }
        Err(format!("unknown profile {name:?}: expected one of {}", self.profiles.join(", ")))
    }
}

impl Record {
    /// The record of `seed` under `profile` with every default.
    pub fn new(profile: &str, seed: u64) -> Record {
        Record {
            profile: profile.to_string(),
            seed,
            fault_seconds: None,
            quiet_seconds: None,
            knobs: Vec::new(),
            fingerprint: None,
        }
    }

    /// Parses a record from its words (a `# note` must be cut off first).
    ///
    /// # Errors
    ///
    /// A missing or malformed profile or seed, an unknown knob, a knob given twice, or
    /// a value out of range; the error names the word and what is accepted.
    pub fn parse(text: &str, vocabulary: Vocabulary<'_>) -> Result<Record, RecordError> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let error = |word: usize, problem: String| RecordError { word, problem };
        let [profile, seed, knobs @ ..] = &words[..] else {
            return Err(error(
                0,
                "expected `PROFILE SEED [KNOB=VALUE ...]`, for example `swarm 17 quiet=0`".into(),
            ));
        };
        let profile = vocabulary.profile(profile).map_err(|problem| error(1, problem))?;
        let seed = parse_number(seed).map_err(|problem| error(2, format!("seed {problem}")))?;
        let mut record = Record::new(&profile, seed);
        let mut seen: Vec<&str> = Vec::new();
        for (index, word) in knobs.iter().enumerate() {
            let at = index + 3;
            let (name, value) = word.split_once('=').ok_or_else(|| {
                let list = vocabulary.knob_list();
                error(at, format!("{word:?} is not a knob: expected NAME=VALUE, one of {list}"))
            })?;
            if seen.contains(&name) {
                return Err(error(at, format!("{name} is given twice")));
            }
            seen.push(name);
            record.set(name, value, vocabulary).map_err(|problem| error(at, problem))?;
        }
        Ok(record)
    }

    /// Sets one knob (`fault`, `quiet`, `fp` or one of the system's).
    ///
    /// # Errors
    ///
    /// An unknown knob or a value out of range.
    pub fn set(
        &mut self,
        name: &str,
        value: &str,
        vocabulary: Vocabulary<'_>,
    ) -> Result<(), String> {
        match name {
            "fault" => self.fault_seconds = Some(parse_seconds("fault", value, 1)?),
            "quiet" => self.quiet_seconds = Some(parse_seconds("quiet", value, 0)?),
            "fp" => self.fingerprint = Some(parse_fingerprint(value)?),
            other => {
                let knob =
                    vocabulary.knobs.iter().find(|knob| knob.name == other).ok_or_else(|| {
                        format!(
                            "unknown knob {other:?}: expected one of {}",
                            vocabulary.knob_list()
                        )
                    })?;
                if value.is_empty() || value.contains(|c: char| c.is_whitespace() || c == '#') {
                    return Err(format!(
                        "{}={value:?}: a knob's value is one word, without spaces or #",
                        knob.name
                    ));
                }
                (knob.check)(value).map_err(|problem| format!("{}: {problem}", knob.name))?;
                self.set_knob(knob, value, vocabulary.knobs);
            }
        }
        Ok(())
    }

    fn set_knob(&mut self, knob: &Knob, value: &str, order: &[Knob]) {
        self.knobs.retain(|(name, _)| *name != knob.name);
        if value == knob.default {
            // The default is no setting: records print only what differs.
            return;
        }
        self.knobs.push((knob.name, value.to_string()));
        let rank = |name: &str| order.iter().position(|knob| knob.name == name);
        self.knobs.sort_by_key(|(name, _)| rank(name));
    }

    /// The value of the system's knob `name`, if set.
    pub fn knob(&self, name: &str) -> Option<&str> {
        self.knobs.iter().find(|(knob, _)| *knob == name).map(|(_, value)| value.as_str())
    }

    /// The same record, carrying `fingerprint`.
    pub fn with_fingerprint(mut self, fingerprint: u64) -> Record {
        self.fingerprint = Some(fingerprint);
        self
    }

    /// The same record, for `seed`, without a fingerprint.
    pub fn for_seed(&self, seed: u64) -> Record {
        Record { seed, fingerprint: None, ..self.clone() }
    }

    /// Whether a run with `fingerprint` reproduced this record: `None` when the record
    /// carries no fingerprint.
    pub fn reproduced_by(&self, fingerprint: u64) -> Option<bool> {
        self.fingerprint.map(|recorded| recorded == fingerprint)
    }

    /// The knobs, without the profile and the seed (`quiet=10 clients=2`).
    pub fn knobs_text(&self) -> String {
        let text = Record { fingerprint: None, ..self.clone() }.to_string();
        text.split_whitespace().skip(2).collect::<Vec<_>>().join(" ")
    }
}

fn parse_number(text: &str) -> Result<u64, String> {
    text.parse().map_err(|_| format!("{text:?}: expected a whole number from 0 to {}", u64::MAX))
}

fn parse_fingerprint(value: &str) -> Result<u64, String> {
    let digits = value.strip_prefix("0x").ok_or_else(|| {
        format!("fp={value}: expected a fingerprint in hex, such as fp=0x3b1f29c07d5e8a41")
    })?;
    u64::from_str_radix(digits, 16)
        .map_err(|_| format!("fp={value}: expected up to 16 hex digits after 0x"))
}

/// A phase length within `min..=PHASE_SECONDS_MAX` seconds.
///
/// # Errors
///
/// Not a whole number, or out of range.
pub(crate) fn parse_seconds(name: &str, value: &str, min: u64) -> Result<u64, String> {
    let seconds = parse_number(value).map_err(|problem| format!("{name} {problem}"))?;
    if !(min..=PHASE_SECONDS_MAX).contains(&seconds) {
        return Err(format!("{name}={value}: expected {min} to {PHASE_SECONDS_MAX} seconds"));
    }
    Ok(seconds)
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.profile, self.seed)?;
        if let Some(seconds) = self.fault_seconds {
            write!(f, " fault={seconds}")?;
        }
        if let Some(seconds) = self.quiet_seconds {
            write!(f, " quiet={seconds}")?;
        }
        for (name, value) in &self.knobs {
            write!(f, " {name}={value}")?;
        }
        if let Some(fingerprint) = self.fingerprint {
            write!(f, " fp={fingerprint:#018x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clients(value: &str) -> Result<(), String> {
        match value.parse::<u64>() {
            Ok(1..=64) => Ok(()),
            _ => Err(format!("clients={value}: expected 1 to 64")),
        }
    }

    const KNOBS: [Knob; 2] = [
        Knob {
            name: "mode",
            value: "a|b",
            help: "",
            default: "a",
            check: |v| match v {
                "a" | "b" => Ok(()),
                _ => Err("expected a or b".into()),
            },
        },
        Knob { name: "clients", value: "N", help: "", default: "", check: clients },
    ];

    fn words() -> Vocabulary<'static> {
        Vocabulary { profiles: &["swarm", "none"], knobs: &KNOBS }
    }

    #[test]
    fn records_round_trip_in_the_systems_knob_order() {
        let plain = Record::parse("swarm 17", words()).unwrap();
        assert_eq!(plain, Record::new("swarm", 17));
        assert_eq!(plain.to_string(), "swarm 17");
        let record =
            Record::parse("none 5 clients=2 quiet=0 mode=b fault=30 fp=0xff", words()).unwrap();
        assert_eq!(
            record.to_string(),
            "none 5 fault=30 quiet=0 mode=b clients=2 fp=0x00000000000000ff"
        );
        assert_eq!(Record::parse(&record.to_string(), words()).unwrap(), record);
        assert_eq!(record.knob("clients"), Some("2"));
        assert_eq!(record.knobs_text(), "fault=30 quiet=0 mode=b clients=2");
        assert_eq!(record.reproduced_by(0xff), Some(true));
        assert_eq!(record.for_seed(6).reproduced_by(0xff), None);
        // A knob at its default is no setting.
        assert_eq!(Record::parse("none 5 mode=a", words()).unwrap().to_string(), "none 5");
    }

    #[test]
    fn malformed_records_name_the_word_and_what_is_accepted() {
        let cases = [
            ("", 0, "expected `PROFILE SEED"),
            ("storm 1", 1, "unknown profile \"storm\": expected one of swarm, none"),
            ("swarm -1", 2, "expected a whole number"),
            ("swarm 1 quiet", 3, "is not a knob"),
            (
                "swarm 1 speed=2",
                3,
                "unknown knob \"speed\": expected one of fault=SECONDS, quiet=SECONDS, mode=a|b",
            ),
            ("swarm 1 quiet=0 quiet=1", 4, "given twice"),
            ("swarm 1 fault=0", 3, "expected 1 to 600 seconds"),
            ("swarm 1 clients=0", 3, "expected 1 to 64"),
            ("swarm 1 mode=c", 3, "mode: expected a or b"),
            ("swarm 1 fp=12", 3, "expected a fingerprint in hex"),
            ("swarm 1 mode=", 3, "a knob's value is one word"),
            ("swarm 1 mode=a#b", 3, "a knob's value is one word"),
        ];
        for (text, word, problem) in cases {
            let error = Record::parse(text, words()).unwrap_err();
            assert_eq!(error.word, word, "{text:?}: {error}");
            assert!(error.to_string().contains(problem), "{text:?}: {error}");
        }
    }
}
