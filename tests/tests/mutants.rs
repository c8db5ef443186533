//! The sweeps find real bugs: a CI-sized run of `cachesim mutants`. Each planted bug
//! must make some seed fail within a few seeds; the full table (every mutant, 200
//! seeds) is `cargo run --release -- mutants`.

use cache::Mutant;
use cachesim::sweep_mutant;

/// Seeds each mutant gets here: the full run catches these three within 5 seeds.
const SEEDS: u64 = 20;

#[test]
fn planted_bugs_are_caught() {
    for mutant in [Mutant::QuorumOffByOne, Mutant::TombstonesSweptAtOnce, Mutant::SkipVersionCheck]
    {
        let report = sweep_mutant(mutant, SEEDS, false);
        assert!(report.caught.is_some(), "{mutant} survived {SEEDS} seeds");
        assert!(!report.verdict.as_ref().expect("caught").is_pass());
    }
}
