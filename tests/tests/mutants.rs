//! The sweeps find real bugs: a CI-sized run of `cachesim mutants`. Each planted bug
//! must make some seed fail within a few seeds; the full table (every mutant, 200
//! seeds) is `cargo run --release -- mutants`.

use cache::Mutant;
use cachesim::sweep_mutant;

/// Seeds each mutant gets here: the full run catches these within 5 seeds.
const SEEDS: u64 = 20;

#[test]
fn planted_bugs_are_caught_by_the_checker_meant_for_them() {
    let expected = [
        (Mutant::QuorumOffByOne, "under-replicated"),
        // Swept tombstones undo removes, lose writes and leave a remove on fewer nodes
        // than acknowledged: any of these checks is right.
        (Mutant::TombstonesSweptAtOnce, "lost-write|undone-remove|under-replicated"),
        (Mutant::SkipVersionCheck, "under-replicated"),
        // Writes that replicate fully but answer failure: only availability sees it.
        (Mutant::WritesReportFailure, "unavailable"),
        (Mutant::TombstoneTtlSeconds, "lost-write|undone-remove"),
        // Seen only at the wire: the cache's own books balance.
        (Mutant::HintReplayCountsFailure, "hint-lost"),
        (Mutant::ReadRepairNoop, "read-repair-missing"),
        // A failed write is rolled back a second after its answer.
        (Mutant::QuorumFailureRollsBack, "lost-write"),
        // Bad input, and a counter the wire contradicts.
        (Mutant::InvalidKeyReadsNone, "bad-input-accepted"),
        (Mutant::FanoutRemovesCountedAsSets, "counter-untrue"),
    ];
    for (mutant, checker) in expected {
        let report = sweep_mutant(mutant, SEEDS, false);
        assert!(report.caught.is_some(), "{mutant} survived {SEEDS} seeds");
        let caught_by = report.caught_by();
        assert!(checker.split('|').any(|c| c == caught_by), "{mutant}: {:?}", report.verdict);
    }
}
