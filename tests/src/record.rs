//! The cache's knobs in a run record (`sim_harness::Record`):
//!
//! ```text
//! swarm 17 quiet=0 liveness=majority mutant=read-quorum-short fp=0x3b1f29c07d5e8a41
//! ```
//!
//! Besides the harness's `fault=SECONDS` (the fault phase, default 20) and
//! `quiet=SECONDS` (default 40): `liveness=all|majority`, `clients=N` (the profile's
//! workload with this many clients) and `mutant=NAME` (a planted bug of the cache,
//! see `cachesim mutants`). Everything else (the fault plan, the cache's options, the
//! consistency levels, buggify, the workload's draws) is drawn from the seed under the
//! profile.

use sim_harness::Knob;

/// The most clients a record may ask for.
pub const CLIENTS_MAX: usize = 64;

/// The cache's knobs, in the order records print them.
pub(crate) const KNOBS: [Knob; 3] = [
    Knob {
        name: "liveness",
        value: "all|majority",
        help: "Which nodes must converge after the faults: all (everything heals) or majority (a random minority stays cut off) [default: all]",
        default: "all",
        check: check_liveness,
    },
    Knob {
        name: "clients",
        value: "N",
        help: "Client nodes per run, 1 to 64 [default: the profile's]",
        default: "",
        check: check_clients,
    },
    Knob {
        name: "mutant",
        value: "NAME",
        help: "Run every cache node with this planted bug (see `cachesim mutants`)",
        default: "",
        check: check_mutant,
    },
];

fn check_liveness(value: &str) -> Result<(), String> {
    value.parse::<crate::run::Liveness>().map(|_| ())
}

fn check_clients(value: &str) -> Result<(), String> {
    match value.parse::<usize>() {
        Ok(clients) if (1..=CLIENTS_MAX).contains(&clients) => Ok(()),
        _ => Err(format!("{value:?} is out of range: expected 1 to {CLIENTS_MAX} clients")),
    }
}

fn check_mutant(value: &str) -> Result<(), String> {
    value.parse::<cache::Mutant>().map(|_| ())
}

#[cfg(test)]
mod tests {
    use crate::system::CacheSystem;
    use sim_harness::parse_record;

    #[test]
    fn cache_records_round_trip_through_text() {
        let plain = parse_record(&CacheSystem, "swarm 17").unwrap();
        assert_eq!(plain.to_string(), "swarm 17");
        let text = "keys 5 fault=30 quiet=0 liveness=majority clients=2 mutant=read-quorum-short fp=0x00000000000000ff";
        let record = parse_record(&CacheSystem, text).unwrap();
        assert_eq!(record.to_string(), text);
        assert_eq!(record.knob("clients"), Some("2"));
        assert_eq!(record.reproduced_by(0xff), Some(true));
    }

    #[test]
    fn malformed_records_name_the_word_and_what_is_accepted() {
        let cases = [
            ("storm 1", 1, "unknown profile"),
            ("swarm 1 speed=2", 3, "unknown knob \"speed\""),
            ("swarm 1 clients=0", 3, "expected 1 to 64"),
            ("swarm 1 mutant=nope", 3, "unknown mutant"),
            ("swarm 1 liveness=most", 3, "expected all or majority"),
        ];
        for (text, word, problem) in cases {
            let error = parse_record(&CacheSystem, text).unwrap_err();
            assert_eq!(error.word, word, "{text:?}: {error}");
            assert!(error.to_string().contains(problem), "{text:?}: {error}");
        }
    }
}
