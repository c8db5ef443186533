//! Shrinking a failing run: delta debugging over its fault plan (drop episodes, then
//! shorten them), then over the workload (fewer clients, a shorter fault phase),
//! keeping the same kind of failure. Deterministic: the same seed shrinks the same way.

use std::time::Duration;

use crate::faults::FaultPlan;
use crate::run::{RunConfig, Verdict, run};

/// Runs one shrink may make.
pub const SHRINK_RUNS_MAX: usize = 400;
/// Episodes are not shortened below this.
const EPISODE_MS_MIN: u64 = 100;

/// The result of a shrink.
#[derive(Clone, Debug)]
pub struct ShrinkReport {
    /// The failing run as drawn.
    pub original: RunConfig,
    /// The smallest run found that fails the same way.
    pub minimal: RunConfig,
    /// Its verdict.
    pub verdict: Verdict,
    /// Runs made.
    pub runs: usize,
}

struct Shrinker {
    kind: &'static str,
    runs: usize,
    best: RunConfig,
    verdict: Verdict,
}

impl Shrinker {
    /// Whether `candidate` fails the same way; keeps it as the best if so.
    fn try_candidate(&mut self, candidate: RunConfig) -> bool {
        if self.runs >= SHRINK_RUNS_MAX {
            return false;
        }
        self.runs += 1;
        let report = run(&candidate);
        if report.verdict.kind() != self.kind {
            return false;
        }
        self.best = candidate;
        self.verdict = report.verdict;
        true
    }

    fn plan(&self) -> &FaultPlan {
        self.best.plan.as_ref().expect("the shrinker always runs an explicit plan")
    }

    fn with_plan(&self, plan: FaultPlan) -> RunConfig {
        RunConfig { plan: Some(plan), ..self.best.clone() }
    }

    /// Drops chunks of episodes, halving the chunk size down to one.
    fn drop_episodes(&mut self) {
        let mut chunk = self.plan().episodes.len().div_ceil(2).max(1);
        loop {
            let mut start = 0;
            while start < self.plan().episodes.len() {
                let mut plan = self.plan().clone();
                let end = (start + chunk).min(plan.episodes.len());
                plan.episodes.drain(start..end);
                if !self.try_candidate(self.with_plan(plan)) {
                    start += chunk;
                }
            }
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2);
        }
    }

    /// Halves each episode's duration while the failure stays.
    fn shorten_episodes(&mut self) {
        for index in 0..self.plan().episodes.len() {
            loop {
                let mut plan = self.plan().clone();
                let episode = &mut plan.episodes[index];
                if episode.duration_ms / 2 < EPISODE_MS_MIN {
                    break;
                }
                episode.duration_ms /= 2;
                if !self.try_candidate(self.with_plan(plan)) {
                    break;
                }
            }
        }
    }

    /// Fewer clients, then a shorter fault phase (never before the last episode ends).
    fn shrink_workload(&mut self) {
        while self.best.workload.clients > 1 {
            let mut candidate = self.best.clone();
            candidate.workload.clients -= 1;
            if !self.try_candidate(candidate) {
                break;
            }
        }
        let last_end_ms =
            self.plan().episodes.iter().map(|episode| episode.end_ms()).max().unwrap_or(0);
        loop {
            let phase = self.best.fault_phase / 2;
            if phase < Duration::from_secs(1) || phase.as_millis() < u128::from(last_end_ms) {
                break;
            }
            let candidate = RunConfig { fault_phase: phase, ..self.best.clone() };
            if !self.try_candidate(candidate) {
                break;
            }
        }
    }
}

/// Shrinks the failing run `config`.
///
/// # Errors
///
/// When the run passes: there is nothing to shrink.
pub fn shrink(config: &RunConfig) -> Result<ShrinkReport, String> {
    let first = run(config);
    if first.verdict.is_pass() {
        return Err(format!(
            "seed {} passes under profile {}: nothing to shrink",
            config.seed, config.profile
        ));
    }
    let original = RunConfig { plan: Some(first.plan.clone()), ..config.clone() };
    let mut shrinker = Shrinker {
        kind: first.verdict.kind(),
        runs: 1,
        best: original.clone(),
        verdict: first.verdict,
    };
    shrinker.drop_episodes();
    shrinker.shorten_episodes();
    shrinker.shrink_workload();
    Ok(ShrinkReport {
        original,
        minimal: shrinker.best,
        verdict: shrinker.verdict,
        runs: shrinker.runs,
    })
}
