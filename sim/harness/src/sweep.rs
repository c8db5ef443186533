//! The sweep: many seeds on threads (one whole simulation each), a progress bar, the
//! summary, and every failing run as its record with the command that replays it.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::record::Record;
use crate::system::{Capture, Report, System, run};

/// Threads a sweep may run.
pub const JOBS_MAX: usize = 256;

/// What a sweep runs: the seeds `S` of `range` with `S mod N = K - 1` for shard
/// `K/N`, in order.
#[derive(Clone, Debug)]
pub struct Sweep {
    /// The range, half-open, before sharding.
    pub range: (u64, u64),
    /// Shard K of N (1 of 1: not sharded), with 1 <= K <= N.
    pub shard: (u64, u64),
    /// The record every seed runs under (its seed is replaced).
    pub template: Record,
    /// Threads.
    pub jobs: usize,
    /// Stop once every coverage point was reached (the seeds are the budget).
    pub until_covered: bool,
    /// Show a progress bar.
    pub progress: bool,
}

impl Sweep {
    /// The sweep of `range` (half-open), not sharded, one seed after another.
    pub fn new(range: (u64, u64), template: Record) -> Sweep {
        Sweep { range, shard: (1, 1), template, jobs: 1, until_covered: false, progress: false }
    }

    /// The first seed of the shard, if the range holds one.
    fn first(&self) -> Option<u64> {
        let (k, n) = self.shard;
        assert!(k >= 1 && k <= n, "shard {k}/{n}");
        let offset = ((k - 1) + n - self.range.0 % n) % n;
        self.range.0.checked_add(offset).filter(|first| *first < self.range.1)
    }

    /// How many seeds the shard runs.
    pub fn len(&self) -> u64 {
        self.first().map_or(0, |first| (self.range.1 - 1 - first) / self.shard.1 + 1)
    }

    /// Whether the shard runs no seed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shard's `index`-th seed.
    pub fn seed(&self, index: u64) -> Option<u64> {
        (index < self.len()).then(|| self.first().unwrap_or(0) + index * self.shard.1)
    }
}

/// A sweep's totals, and what it swept.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// The profile.
    pub profile: String,
    /// The knobs every run had, as in a record (`quiet=10 clients=2`; empty: none).
    pub knobs: String,
    /// The seed range, before sharding.
    pub range: (u64, u64),
    /// Shard K of N.
    pub shard: (u64, u64),
    /// Seeds run.
    pub seeds: u64,
    /// Seeds failed.
    pub failures: u64,
    /// Simulated events.
    pub events: u64,
    /// Virtual time simulated, in nanoseconds.
    pub virtual_ns: u128,
    /// The system's totals ([`System::stats`]).
    pub stats: BTreeMap<String, u64>,
    /// Failures per verdict kind and checks (`safety: lost-write`).
    pub by_check: BTreeMap<String, u64>,
    /// Per coverage point (every declared one, and any other `sometimes` or
    /// `reachable` met): in how many seeds it fired.
    pub coverage: BTreeMap<String, u64>,
    /// Wall time.
    pub wall: Duration,
    /// Threads.
    pub jobs: usize,
    /// The seeds run, in order (a sweep stopped by `--until-covered` runs fewer than
    /// it was given); not in the JSON.
    pub ran: Vec<u64>,
}

/// One failing run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// Its record, with its fingerprint.
    pub record: String,
    /// safety, liveness, crash or invalid.
    pub verdict: String,
    /// The verdict's kind and checks: `safety: lost-write`.
    pub checks: String,
    /// The verdict in full.
    pub message: String,
    /// The command that replays it.
    pub replay: String,
}

impl Summary {
    /// Counts one run.
    pub fn add<C>(&mut self, report: &Report<C>) {
        self.seeds += 1;
        self.events += report.events;
        self.virtual_ns += report.virtual_time.as_nanos();
        for (name, value) in &report.stats {
            *self.stats.entry((*name).to_string()).or_default() += value;
        }
        for (point, count) in &report.coverage {
            if count.kind.is_coverage() && count.fired > 0 {
                *self.coverage.entry((*point).to_string()).or_default() += 1;
            }
        }
        if !report.verdict.is_pass() {
            self.failures += 1;
            *self.by_check.entry(report.verdict.checks()).or_default() += 1;
        }
    }

    /// Adds `other`'s totals (a shard of the same sweep) to these.
    pub fn absorb(&mut self, other: &Summary) {
        self.seeds += other.seeds;
        self.failures += other.failures;
        self.events += other.events;
        self.virtual_ns += other.virtual_ns;
        let maps = [
            (&mut self.stats, &other.stats),
            (&mut self.by_check, &other.by_check),
            (&mut self.coverage, &other.coverage),
        ];
        for (mine, theirs) in maps {
            for (key, count) in theirs {
                *mine.entry(key.clone()).or_default() += count;
            }
        }
        self.wall = self.wall.max(other.wall);
        self.jobs += other.jobs;
    }

    /// The coverage points no seed reached.
    pub fn never_reached(&self) -> Vec<&str> {
        self.coverage.iter().filter(|(_, seeds)| **seeds == 0).map(|(p, _)| p.as_str()).collect()
    }
}

/// Runs the sweep; `on_failure` hears of each failing run as it ends (from the
/// thread that ran it). Failures come back in seed order.
pub fn sweep<S: System + ?Sized>(
    system: &S,
    sweep: &Sweep,
    on_failure: &(dyn Fn(&Failure) + Sync),
) -> (Summary, Vec<Failure>) {
    let progress =
        if sweep.progress { ProgressBar::new(sweep.len()) } else { ProgressBar::hidden() };
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} seeds  {per_sec}  {msg}  eta {eta}")
            .expect("a valid template"),
    );
    let summary = Mutex::new(Summary {
        profile: sweep.template.profile.clone(),
        knobs: sweep.template.knobs_text(),
        range: sweep.range,
        shard: sweep.shard,
        jobs: sweep.jobs,
        coverage: system.coverage_points().iter().map(|point| ((*point).to_string(), 0)).collect(),
        ..Summary::default()
    });
    let (covered, next) = (AtomicBool::new(false), AtomicU64::new(0));
    let declared = !system.coverage_points().is_empty();
    let failed: Mutex<Vec<Failure>> = Mutex::new(Vec::new());
    // Wall time for the figures the user reads, never for the runs themselves.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let worker = || {
        while let Some(seed) = sweep.seed(next.fetch_add(1, Ordering::Relaxed)) {
            if sweep.until_covered && covered.load(Ordering::Relaxed) {
                break;
            }
            let report = run(system, &sweep.template.for_seed(seed), None, Capture::default());
            let (failures, all_covered) = {
                let mut summary = summary.lock().unwrap_or_else(|e| e.into_inner());
                summary.add(&report);
                summary.ran.push(seed);
                // Covered: every declared point reached (a point only fired, never
                // declared, is in the map too, always reached).
                let covered = declared && summary.never_reached().is_empty();
                (summary.failures, covered)
            };
            covered.fetch_or(all_covered, Ordering::Relaxed);
            progress.set_message(format!("{failures} failed"));
            progress.inc(1);
            if !report.verdict.is_pass() {
                let failure = failure(system, &report);
                progress.suspend(|| on_failure(&failure));
                failed.lock().unwrap_or_else(|e| e.into_inner()).push(failure);
            }
        }
    };
    // Seeds run on threads, one whole simulation each: only the seed counter is shared.
    #[allow(clippy::disallowed_methods)]
    std::thread::scope(|scope| {
        let jobs = sweep.jobs.clamp(1, JOBS_MAX);
        for _ in 0..usize::try_from(sweep.len()).map_or(jobs, |len| jobs.min(len)) {
            scope.spawn(worker);
        }
    });
    progress.finish_and_clear();
    let mut summary = summary.into_inner().unwrap_or_else(|e| e.into_inner());
    summary.wall = started.elapsed();
    summary.ran.sort_unstable();
    let mut failed = failed.into_inner().unwrap_or_else(|e| e.into_inner());
    failed.sort_by_key(|failure| failure.seed);
    (summary, failed)
}

/// The failure of a failing run.
pub fn failure<S: System + ?Sized, C>(system: &S, report: &Report<C>) -> Failure {
    // A run that never ran has no fingerprint to record.
    let record = if report.events > 0 {
        report.record.clone()
    } else {
        Record { fingerprint: None, ..report.record.clone() }
    };
    Failure {
        seed: record.seed,
        replay: replay_command(system, &record),
        record: record.to_string(),
        verdict: report.verdict.kind().to_string(),
        checks: report.verdict.checks(),
        message: report.verdict.to_string(),
    }
}

/// The command that replays `record` with its trace.
pub fn replay_command<S: System + ?Sized>(system: &S, record: &Record) -> String {
    format!("{} replay {record} --trace", system.command())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(range: (u64, u64), shard: (u64, u64)) -> Vec<u64> {
        let sweep = Sweep { shard, ..Sweep::new(range, Record::new("none", 0)) };
        (0..sweep.len()).map(|index| sweep.seed(index).unwrap()).collect()
    }

    #[test]
    fn shards_split_a_range_exactly_once_without_listing_it() {
        let all: Vec<Vec<u64>> = (1..=4).map(|k| shard((0, 10), (k, 4))).collect();
        assert_eq!(all, vec![vec![0, 4, 8], vec![1, 5, 9], vec![2, 6], vec![3, 7]]);
        assert_eq!(shard((5, 6), (2, 4)), vec![5]);
        assert!(shard((0, 1), (2, 4)).is_empty());
        assert_eq!(shard((7, 17), (1, 1)), (7..17).collect::<Vec<_>>());
        let huge = Sweep { shard: (3, 5), ..Sweep::new((0, u64::MAX), Record::new("none", 0)) };
        assert_eq!(huge.len(), u64::MAX / 5);
        assert_eq!(huge.seed(huge.len() - 1), Some(u64::MAX - 3));
        assert_eq!(huge.seed(huge.len()), None);
    }
}
