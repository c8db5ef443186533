//! Shrinking a failing run: delta debugging over its fault plan (drop episodes, then
//! shorten them), then over the system's knobs ([`System::shrink_knobs`]) and the
//! fault phase, keeping the same kind of failure. Deterministic: the same record
//! shrinks the same way.

use crate::fault::Plan;
use crate::record::Record;
use crate::system::{Capture, System, Verdict, run};

/// Runs one shrink may make.
pub const SHRINK_RUNS_MAX: usize = 400;
/// Episodes are not shortened below this.
const EPISODE_MS_MIN: u64 = 100;
/// Rounds of knob shrinking: each round takes one simpler record.
const KNOB_ROUNDS_MAX: usize = 64;

/// The result of a shrink.
#[derive(Clone, Debug)]
pub struct ShrinkReport<C> {
    /// The failing run as recorded, with the plan it drew.
    pub original: (Record, Plan<C>),
    /// The smallest run found that fails the same way.
    pub minimal: (Record, Plan<C>),
    /// Its verdict.
    pub verdict: Verdict,
    /// Its fingerprint.
    pub fingerprint: u64,
    /// Runs made.
    pub runs: usize,
}

struct Shrinker<'a, S: System + ?Sized> {
    system: &'a S,
    kind: &'static str,
    runs: usize,
    record: Record,
    plan: Plan<S::Fault>,
    verdict: Verdict,
    fingerprint: u64,
}

impl<S: System + ?Sized> Shrinker<'_, S> {
    /// Whether the candidate fails the same way; keeps it as the best if so.
    fn try_candidate(&mut self, record: Record, plan: Plan<S::Fault>) -> bool {
        if self.runs >= SHRINK_RUNS_MAX {
            return false;
        }
        // A simpler record may have fewer nodes: a plan naming one it lacks would only
        // fail at the nemesis, which is no smaller run of the same failure.
        let nodes = self.system.node_count(&record);
        if plan.episodes.iter().any(|episode| episode.fault.nodes().iter().any(|n| *n >= nodes)) {
            return false;
        }
        self.runs += 1;
        let report = run(self.system, &record, Some(&plan), Capture::default());
        if report.verdict.kind() != self.kind {
            return false;
        }
        (self.record, self.plan) = (record.for_seed(record.seed), plan);
        (self.verdict, self.fingerprint) = (report.verdict, report.fingerprint);
        true
    }

    fn try_plan(&mut self, plan: Plan<S::Fault>) -> bool {
        self.try_candidate(self.record.clone(), plan)
    }

    /// Drops chunks of episodes, halving the chunk size down to one.
    fn drop_episodes(&mut self) {
        let mut chunk = self.plan.episodes.len().div_ceil(2).max(1);
        loop {
            let mut start = 0;
            while start < self.plan.episodes.len() {
                let mut plan = self.plan.clone();
                let end = (start + chunk).min(plan.episodes.len());
                plan.episodes.drain(start..end);
                if !self.try_plan(plan) {
                    start += chunk;
                }
            }
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2);
        }
        if self.plan.latency_tail.is_some() {
            let plan = Plan { latency_tail: None, ..self.plan.clone() };
            self.try_plan(plan);
        }
    }

    /// Halves each episode's duration while the failure stays.
    fn shorten_episodes(&mut self) {
        for index in 0..self.plan.episodes.len() {
            loop {
                let mut plan = self.plan.clone();
                let episode = &mut plan.episodes[index];
                if episode.duration_ms / 2 < EPISODE_MS_MIN {
                    break;
                }
                episode.duration_ms /= 2;
                if !self.try_plan(plan) {
                    break;
                }
            }
        }
    }

    /// The system's simpler records, then a shorter fault phase (never before the
    /// last episode ends).
    fn shrink_record(&mut self) {
        for _ in 0..KNOB_ROUNDS_MAX {
            let candidates = self.system.shrink_knobs(&self.record);
            let plan = self.plan.clone();
            if !candidates.into_iter().any(|record| self.try_candidate(record, plan.clone())) {
                break;
            }
        }
        let last_end_ms = self.plan.end_ms();
        loop {
            let seconds = self.record.fault_seconds.unwrap_or(self.system.phase_seconds().0) / 2;
            if seconds < 1 || 1_000 * seconds < last_end_ms {
                break;
            }
            let record = Record { fault_seconds: Some(seconds), ..self.record.clone() };
            if !self.try_candidate(record, self.plan.clone()) {
                break;
            }
        }
    }
}

/// Shrinks the failing run `record`.
///
/// # Errors
///
/// When the run passes (there is nothing to shrink) or is invalid.
pub fn shrink<S: System + ?Sized>(
    system: &S,
    record: &Record,
) -> Result<ShrinkReport<S::Fault>, String> {
    let first = run(system, record, None, Capture::default());
    match &first.verdict {
        Verdict::Pass => return Err(format!("{record} passes: nothing to shrink")),
        Verdict::Invalid(problem) => return Err(problem.clone()),
        _ => {}
    }
    let record = record.for_seed(record.seed);
    let mut shrinker = Shrinker {
        system,
        kind: first.verdict.kind(),
        runs: 1,
        record: record.clone(),
        plan: first.plan.clone(),
        verdict: first.verdict,
        fingerprint: first.fingerprint,
    };
    shrinker.drop_episodes();
    shrinker.shorten_episodes();
    shrinker.shrink_record();
    Ok(ShrinkReport {
        original: (record, first.plan),
        minimal: (shrinker.record, shrinker.plan),
        verdict: shrinker.verdict,
        fingerprint: shrinker.fingerprint,
        runs: shrinker.runs,
    })
}
