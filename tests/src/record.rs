//! The run record: everything that shapes a run, in one line of words.
//!
//! ```text
//! swarm 17 quiet=0 liveness=majority mutant=read-quorum-short fp=0x3b1f29c07d5e8a41
//! ```
//!
//! The profile and the seed come first; then, only where they differ from the
//! defaults, the knobs: `fault=SECONDS` (the fault phase, default 20), `quiet=SECONDS`
//! (default 40), `liveness=all|majority`, `clients=N` (the profile's workload with this
//! many clients), `mutant=NAME` (a planted bug of the cache, see `cachesim mutants`).
//! `fp=0x…` is the fingerprint the run had when it was recorded: a replay compares it
//! and says whether it reproduced that run or the code has changed since. Everything
//! else (the fault plan, the cache's options, the consistency levels, buggify, the
//! workload's draws) is drawn from the seed under the profile.
//!
//! The record is what `failures.txt` and `seeds.txt` hold (a `# note` may follow), what
//! every printed replay command carries, and what `replay`, `shrink` and
//! `check-determinism` take. A plain `PROFILE SEED` is a record with every default.

use std::fmt;
use std::time::Duration;

use crate::faults::Profile;
use crate::run::{Liveness, RunConfig};
use crate::workload::WorkloadConfig;

/// The longest fault phase or quiet period a record may ask for, in virtual seconds:
/// a run must end well inside the simulation's one-hour time limit.
pub const PHASE_SECONDS_MAX: u64 = 600;
/// The most clients a record may ask for.
pub const CLIENTS_MAX: usize = 64;

/// Everything that shapes one run (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRecord {
    /// The fault profile.
    pub profile: Profile,
    /// The seed.
    pub seed: u64,
    /// The fault phase, in virtual seconds.
    pub fault_seconds: u64,
    /// The quiet period, in virtual seconds.
    pub quiet_seconds: u64,
    /// Which nodes must converge after the faults.
    pub liveness: Liveness,
    /// The client count, if not the profile's.
    pub clients: Option<usize>,
    /// The planted bug every cache node runs with, if any.
    pub mutant: Option<cache::Mutant>,
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

const FAULT_SECONDS_DEFAULT: u64 = 20;
const QUIET_SECONDS_DEFAULT: u64 = 40;

impl RunRecord {
    /// The record of `seed` under `profile` with every default.
    pub fn new(profile: Profile, seed: u64) -> RunRecord {
        RunRecord {
            profile,
            seed,
            fault_seconds: FAULT_SECONDS_DEFAULT,
            quiet_seconds: QUIET_SECONDS_DEFAULT,
            liveness: Liveness::All,
            clients: None,
            mutant: None,
            fingerprint: None,
        }
    }

    /// Parses a record from its words (a `# note` must be cut off first).
    ///
    /// # Errors
    ///
    /// A missing or malformed profile or seed, an unknown knob, a knob given twice, or
    /// a value out of range; the error names the word and what is accepted.
    pub fn parse(text: &str) -> Result<RunRecord, RecordError> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let error = |word: usize, problem: String| RecordError { word, problem };
        let [profile, seed, knobs @ ..] = &words[..] else {
            return Err(error(
                0,
                "expected `PROFILE SEED [KNOB=VALUE ...]`, for example `swarm 17 quiet=0`".into(),
            ));
        };
        let profile: Profile =
            profile.parse().map_err(|e: crate::ParseProfileError| error(1, e.to_string()))?;
        let seed = parse_number(seed).map_err(|problem| error(2, format!("seed {problem}")))?;
        let mut record = RunRecord::new(profile, seed);
        let mut seen: Vec<&str> = Vec::new();
        for (index, word) in knobs.iter().enumerate() {
            let at = index + 3;
            let (name, value) = word.split_once('=').ok_or_else(|| {
                error(at, format!("{word:?} is not a knob: expected NAME=VALUE, one of {KNOBS}"))
            })?;
            if seen.contains(&name) {
                return Err(error(at, format!("{name} is given twice")));
            }
            seen.push(name);
            record.set(name, value).map_err(|problem| error(at, problem))?;
        }
        Ok(record)
    }

    fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        match name {
            "fault" => self.fault_seconds = parse_seconds("fault", value, 1)?,
            "quiet" => self.quiet_seconds = parse_seconds("quiet", value, 0)?,
            "liveness" => {
                self.liveness = value.parse().map_err(|e| format!("liveness: {e}"))?;
            }
            "clients" => {
                let clients = parse_number(value).map_err(|p| format!("clients {p}"))?;
                let clients = usize::try_from(clients).unwrap_or(usize::MAX);
                if !(1..=CLIENTS_MAX).contains(&clients) {
                    return Err(format!("clients={value}: expected 1 to {CLIENTS_MAX}"));
                }
                self.clients = Some(clients);
            }
            "mutant" => {
                self.mutant = Some(value.parse().map_err(|e: String| format!("mutant: {e}"))?)
            }
            "fp" => {
                let digits = value.strip_prefix("0x").ok_or_else(|| {
                    format!(
                        "fp={value}: expected a fingerprint in hex, such as fp=0x3b1f29c07d5e8a41"
                    )
                })?;
                let fingerprint = u64::from_str_radix(digits, 16)
                    .map_err(|_| format!("fp={value}: expected up to 16 hex digits after 0x"))?;
                self.fingerprint = Some(fingerprint);
            }
            other => return Err(format!("unknown knob {other:?}: expected one of {KNOBS}")),
        }
        Ok(())
    }

    /// The record of the run `config` describes (its plan, if any, is not part of it).
    pub fn of(config: &RunConfig) -> RunRecord {
        let clients = config.workload.clients;
        RunRecord {
            fault_seconds: config.fault_phase.as_secs(),
            quiet_seconds: config.quiet.as_secs(),
            liveness: config.liveness,
            clients: (clients != WorkloadConfig::for_profile(config.profile).clients)
                .then_some(clients),
            mutant: config.mutant,
            ..RunRecord::new(config.profile, config.seed)
        }
    }

    /// The same record, carrying `fingerprint`.
    pub fn with_fingerprint(mut self, fingerprint: u64) -> RunRecord {
        self.fingerprint = Some(fingerprint);
        self
    }

    /// The run configuration this record describes.
    pub fn config(&self) -> RunConfig {
        let mut config = RunConfig::new(self.seed, self.profile);
        config.fault_phase = Duration::from_secs(self.fault_seconds);
        config.quiet = Duration::from_secs(self.quiet_seconds);
        config.liveness = self.liveness;
        config.mutant = self.mutant;
        if let Some(clients) = self.clients {
            config.workload.clients = clients;
        }
        config
    }

    /// Whether a run with `fingerprint` reproduced this record: `None` when the record
    /// carries no fingerprint.
    pub fn reproduced_by(&self, fingerprint: u64) -> Option<bool> {
        self.fingerprint.map(|recorded| recorded == fingerprint)
    }
}

/// The knobs a record accepts.
const KNOBS: &str =
    "fault=SECONDS, quiet=SECONDS, liveness=all|majority, clients=N, mutant=NAME, fp=0xHEX";

fn parse_number(text: &str) -> Result<u64, String> {
    text.parse().map_err(|_| format!("{text:?}: expected a whole number from 0 to {}", u64::MAX))
}

fn parse_seconds(name: &str, value: &str, min: u64) -> Result<u64, String> {
    let seconds = parse_number(value).map_err(|problem| format!("{name} {problem}"))?;
    if !(min..=PHASE_SECONDS_MAX).contains(&seconds) {
        return Err(format!("{name}={value}: expected {min} to {PHASE_SECONDS_MAX} seconds"));
    }
    Ok(seconds)
}

impl fmt::Display for RunRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.profile, self.seed)?;
        if self.fault_seconds != FAULT_SECONDS_DEFAULT {
            write!(f, " fault={}", self.fault_seconds)?;
        }
        if self.quiet_seconds != QUIET_SECONDS_DEFAULT {
            write!(f, " quiet={}", self.quiet_seconds)?;
        }
        if self.liveness != Liveness::All {
            write!(f, " liveness={}", self.liveness)?;
        }
        if let Some(clients) = self.clients {
            write!(f, " clients={clients}")?;
        }
        if let Some(mutant) = self.mutant {
            write!(f, " mutant={mutant}")?;
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

    #[test]
    fn records_round_trip_through_text() {
        let plain = RunRecord::parse("swarm 17").unwrap();
        assert_eq!(plain, RunRecord::new(Profile::Swarm, 17));
        assert_eq!(plain.to_string(), "swarm 17");
        let text = "keys 5 fault=30 quiet=0 liveness=majority clients=2 mutant=read-quorum-short fp=0x00000000000000ff";
        let record = RunRecord::parse(text).unwrap();
        assert_eq!(record.to_string(), text);
        assert_eq!(record.reproduced_by(0xff), Some(true));
        assert_eq!(record.reproduced_by(0xfe), Some(false));
        let config = record.config();
        assert_eq!(config.quiet, Duration::ZERO);
        assert_eq!(config.workload.clients, 2);
        assert_eq!(RunRecord::of(&config), RunRecord { fingerprint: None, ..record });
    }

    #[test]
    fn malformed_records_name_the_word_and_what_is_accepted() {
        let cases = [
            ("", 0, "expected `PROFILE SEED"),
            ("swarm", 0, "expected `PROFILE SEED"),
            ("storm 1", 1, "unknown profile"),
            ("swarm -1", 2, "expected a whole number"),
            ("swarm 1 quiet", 3, "is not a knob"),
            ("swarm 1 speed=2", 3, "unknown knob \"speed\""),
            ("swarm 1 quiet=0 quiet=1", 4, "given twice"),
            ("swarm 1 fault=0", 3, "expected 1 to 600 seconds"),
            ("swarm 1 quiet=86400", 3, "expected 0 to 600 seconds"),
            ("swarm 1 clients=0", 3, "expected 1 to 64"),
            ("swarm 1 mutant=nope", 3, "unknown mutant"),
            ("swarm 1 fp=12", 3, "expected a fingerprint in hex"),
            ("swarm 1 liveness=most", 3, "liveness"),
        ];
        for (text, word, problem) in cases {
            let error = RunRecord::parse(text).unwrap_err();
            assert_eq!(error.word, word, "{text:?}: {error}");
            assert!(error.to_string().contains(problem), "{text:?}: {error}");
        }
    }
}
