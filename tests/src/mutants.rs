//! Proof that the sweeps find real bugs: each planted bug ([`Mutant`]) is swept until
//! a seed fails, and the failure is shrunk.

use cache::Mutant;
use sim_harness::{Plan, Record, Verdict, shrink};

use crate::faults::{CacheFault, Profile};
use crate::system::{CacheSystem, record, run};

/// What sweeping one mutant found.
#[derive(Clone, Debug)]
pub struct MutantReport {
    /// The planted bug.
    pub mutant: Mutant,
    /// The first failing seed and its profile, if any seed failed.
    pub caught: Option<(u64, Profile)>,
    /// Seeds run (up to and including the first failure).
    pub seeds_run: u64,
    /// The failing run's verdict.
    pub verdict: Option<Verdict>,
    /// The shrunk run and its plan, when shrinking was asked for and worked.
    pub shrunk: Option<(Record, Plan<CacheFault>)>,
}

impl MutantReport {
    /// The checker that caught the mutant: its name, or the verdict's kind.
    pub fn caught_by(&self) -> String {
        match &self.verdict {
            Some(Verdict::Safety(violations) | Verdict::Liveness(violations)) => violations
                .first()
                .map_or_else(|| "?".to_string(), |violation| violation.check.clone()),
            Some(Verdict::Crash(_)) => "assertion (crash)".to_string(),
            Some(Verdict::Invalid(_)) => "invalid run".to_string(),
            Some(Verdict::Pass) | None => "-".to_string(),
        }
    }
}

/// The profile of seed `seed` in a mutant sweep: the five profiles in turn, so that
/// bugs that show only without faults and bugs that need them are both reached.
pub fn mutant_profile(seed: u64) -> Profile {
    Profile::ALL[(seed % Profile::ALL.len() as u64) as usize]
}

/// Sweeps `mutant` over seeds `0..seed_count` until one fails; shrinks the failure if
/// `shrink_failure`.
pub fn sweep_mutant(mutant: Mutant, seed_count: u64, shrink_failure: bool) -> MutantReport {
    let mut report =
        MutantReport { mutant, caught: None, seeds_run: 0, verdict: None, shrunk: None };
    for seed in 0..seed_count {
        let profile = mutant_profile(seed);
        let mut record = record(profile, seed);
        record.knobs.push(("mutant", mutant.name().to_string()));
        let result = run(&record);
        report.seeds_run += 1;
        if result.verdict.is_pass() {
            continue;
        }
        report.caught = Some((seed, profile));
        report.verdict = Some(result.verdict);
        if shrink_failure {
            report.shrunk = shrink(&CacheSystem, &record).ok().map(|shrunk| shrunk.minimal);
        }
        break;
    }
    report
}
