//! `cachesim sweep`: many seeds on threads, a progress bar, the summary table, and the
//! failing runs' records in `failures.txt`.

use std::fs::OpenOptions;
use std::io::Write;
use std::ops::Range;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cachesim::{Profile, RunRecord, RunReport, run};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{KnobArgs, input_error, replay_command, whole_number};

/// Threads a sweep may run.
const JOBS_MAX: usize = 256;

#[derive(Debug, Args)]
pub(crate) struct SweepArgs {
    /// Seeds to run, as a half-open range A..B (for example 0..1000).
    #[arg(long, value_parser = parse_range, conflicts_with_all = ["count", "seed"])]
    seeds: Option<Range<u64>>,
    /// How many seeds to run, starting at --seed [default: 2000].
    #[arg(long, value_parser = whole_number, allow_hyphen_values = true)]
    count: Option<u64>,
    /// The first seed, with --count [default: 0].
    #[arg(long, value_parser = whole_number, allow_hyphen_values = true)]
    seed: Option<u64>,
    /// Threads running seeds, 1 to 256 (default: all cores).
    #[arg(long, value_parser = whole_number, allow_hyphen_values = true)]
    jobs: Option<u64>,
    /// Fault profile: none, partitions, crashes, clock, swarm, keys, membership or loss.
    #[arg(long, default_value = "swarm")]
    profile: Profile,
    /// Run only shard K of N (1 <= K <= N) of the seeds, to split a sweep over machines
    /// or CI jobs: shard K takes the seeds S with S mod N = K - 1.
    #[arg(long, value_parser = parse_shard)]
    shard: Option<(u64, u64)>,
    #[command(flatten)]
    knobs: KnobArgs,
    /// File that failing runs are appended to, one run record (with its fingerprint)
    /// and `# verdict` per line, in seed order.
    #[arg(long, default_value = "failures.txt")]
    failures: PathBuf,
    /// No progress bar (for logs and CI).
    #[arg(long)]
    quiet: bool,
}

pub(crate) fn parse_range(text: &str) -> Result<Range<u64>, String> {
    let error = || {
        format!(
            "invalid seed range {text:?}: expected A..B with whole numbers A < B, for example 0..1000"
        )
    };
    let (start, end) = text.split_once("..").ok_or_else(error)?;
    let (start, end): (u64, u64) =
        (start.trim().parse().map_err(|_| error())?, end.trim().parse().map_err(|_| error())?);
    if start >= end {
        return Err(error());
    }
    Ok(start..end)
}

fn parse_shard(text: &str) -> Result<(u64, u64), String> {
    let error =
        || format!("invalid shard {text:?}: expected K/N with 1 <= K <= N, for example 2/4");
    let (k, n) = text.split_once('/').ok_or_else(error)?;
    let (k, n): (u64, u64) =
        (k.trim().parse().map_err(|_| error())?, n.trim().parse().map_err(|_| error())?);
    if k == 0 || k > n {
        return Err(error());
    }
    Ok((k, n))
}

/// What a sweep runs: its seeds, the record every seed runs under, and its threads.
struct Plan {
    seeds: Vec<u64>,
    template: RunRecord,
    jobs: usize,
}

/// Checks the sweep's arguments; an error names what is wrong and what is accepted.
fn plan(args: &SweepArgs) -> Result<Plan, String> {
    let range = match args.seeds.clone() {
        Some(range) => range,
        None => {
            let (seed, count) = (args.seed.unwrap_or(0), args.count.unwrap_or(2_000));
            if count == 0 {
                return Err("--count 0 runs nothing: give at least 1".into());
            }
            let end = seed.checked_add(count).ok_or_else(|| {
                format!(
                    "--seed {seed} --count {count} runs past the last seed, {}: lower either",
                    u64::MAX
                )
            })?;
            seed..end
        }
    };
    let seeds: Vec<u64> = match args.shard {
        Some((k, n)) => range.clone().filter(|seed| seed % n == k - 1).collect(),
        None => range.clone().collect(),
    };
    if seeds.is_empty() {
        let (k, n) = args.shard.unwrap_or((1, 1));
        return Err(format!(
            "shard {k}/{n} of seeds {}..{} is empty: give a wider range or fewer shards",
            range.start, range.end
        ));
    }
    let jobs = match args.jobs {
        Some(0) => return Err("--jobs 0 runs nothing: give 1 to 256, or leave it out".into()),
        Some(jobs) if jobs > JOBS_MAX as u64 => {
            return Err(format!("--jobs {jobs} is too many: give 1 to {JOBS_MAX}"));
        }
        Some(jobs) => usize::try_from(jobs).unwrap_or(JOBS_MAX),
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
    let template = args.knobs.apply(RunRecord::new(args.profile, seeds[0]));
    template.config().validate()?;
    Ok(Plan { seeds, template, jobs })
}

/// Totals for the summary table.
#[derive(Default)]
struct Totals {
    seeds: u64,
    failures: u64,
    events: u64,
    operations: u64,
    virtual_ns: u128,
    availability: cachesim::Availability,
    /// Failures per verdict kind and checker, for the summary.
    by_check: std::collections::BTreeMap<String, u64>,
}

pub(crate) fn sweep(args: &SweepArgs) -> ExitCode {
    let plan = match plan(args) {
        Ok(plan) => plan,
        Err(error) => return input_error(error),
    };
    let progress =
        if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(plan.seeds.len() as u64) };
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} seeds  {per_sec}  {msg}  eta {eta}")
            .expect("a valid template"),
    );
    let totals = Mutex::new(Totals::default());
    let failed: Mutex<Vec<(RunRecord, RunReport)>> = Mutex::new(Vec::new());
    let next = AtomicU64::new(0);
    // Wall time for the figures the user reads, never for the runs themselves.
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let worker = || {
        while let Some(&seed) = plan.seeds.get(next.fetch_add(1, Ordering::Relaxed) as usize) {
            let record = RunRecord { seed, ..plan.template.clone() };
            let report = run(&record.config());
            // A run that panicked outside a task has no fingerprint to record.
            let record = if report.events > 0 {
                record.with_fingerprint(report.fingerprint)
            } else {
                record
            };
            tally(&record, report, &totals, &failed, &progress);
        }
    };
    // Seeds run on threads, one whole simulation each: only the seed counter is shared.
    #[allow(clippy::disallowed_methods)]
    std::thread::scope(|scope| {
        for _ in 0..plan.jobs.min(plan.seeds.len()) {
            scope.spawn(worker);
        }
    });
    progress.finish_and_clear();
    let wall = started.elapsed();
    let totals = totals.into_inner().unwrap_or_else(|e| e.into_inner());
    print_summary(args.profile, &totals, wall, plan.jobs);
    let mut failed = failed.into_inner().unwrap_or_else(|e| e.into_inner());
    failed.sort_by_key(|(record, _)| record.seed);
    for (record, report) in &failed {
        println!("\nFAILED {record}: {}\n  replay: {}", report.verdict, replay_command(record));
    }
    if let Err(error) = append_failures(&args.failures, &failed) {
        return input_error(error);
    }
    if failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Appends the failing runs' records, in seed order, to `path`.
fn append_failures(path: &PathBuf, failed: &[(RunRecord, RunReport)]) -> Result<(), String> {
    if failed.is_empty() {
        return Ok(());
    }
    let text: String = failed
        .iter()
        .map(|(record, report)| format!("{record} # {}\n", verdict_checks(&report.verdict)))
        .collect();
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|error| format!("cannot append the failures to {}: {error}", path.display()))
}

fn tally(
    record: &RunRecord,
    report: RunReport,
    totals: &Mutex<Totals>,
    failed: &Mutex<Vec<(RunRecord, RunReport)>>,
    progress: &ProgressBar,
) {
    let failures = {
        let mut totals = totals.lock().unwrap_or_else(|e| e.into_inner());
        totals.seeds += 1;
        totals.events += report.events;
        totals.operations += report.operations as u64;
        totals.virtual_ns += report.virtual_time.as_nanos();
        totals.availability.add(report.availability);
        if !report.verdict.is_pass() {
            totals.failures += 1;
            *totals.by_check.entry(verdict_checks(&report.verdict)).or_default() += 1;
        }
        totals.failures
    };
    progress.set_message(format!("{failures} failed"));
    progress.inc(1);
    if report.verdict.is_pass() {
        return;
    }
    progress.suspend(|| {
        eprintln!(
            "seed {} failed ({}); replay: {}",
            record.seed,
            report.verdict.kind(),
            replay_command(record)
        )
    });
    failed.lock().unwrap_or_else(|e| e.into_inner()).push((record.clone(), report));
}

fn print_summary(profile: Profile, totals: &Totals, wall: Duration, jobs: usize) {
    let wall_s = wall.as_secs_f64().max(1e-9);
    let virtual_s = totals.virtual_ns as f64 / 1e9;
    println!(
        "{:<10} {:>7} {:>8} {:>12} {:>10} {:>10} {:>14} {:>12}",
        "profile", "seeds", "failures", "events", "ops", "seeds/s", "events/s", "virt s/s"
    );
    println!(
        "{:<10} {:>7} {:>8} {:>12} {:>10} {:>10.1} {:>14.0} {:>12.0}",
        profile.name(),
        totals.seeds,
        totals.failures,
        totals.events,
        totals.operations,
        totals.seeds as f64 / wall_s,
        totals.events as f64 / wall_s,
        virtual_s / wall_s
    );
    let a = totals.availability;
    let all = (a.ok + a.failed + a.unknown).max(1) as f64;
    println!(
        "operations: {} ok ({:.1}%), {} failed ({:.1}%), {} unknown ({:.1}%)",
        a.ok,
        100.0 * a.ok as f64 / all,
        a.failed,
        100.0 * a.failed as f64 / all,
        a.unknown,
        100.0 * a.unknown as f64 / all
    );
    println!(
        "probes after heal: {} of {} ok ({:.1}%)",
        a.probes_ok,
        a.probes,
        100.0 * a.probes_ok as f64 / a.probes.max(1) as f64
    );
    for (checks, count) in &totals.by_check {
        println!("  {count:>6} failed by {checks}");
    }
    println!("wall time {:.1}s on {jobs} thread(s)", wall.as_secs_f64());
}

/// The verdict's kind and the checks that fired, for the summary: `safety: lost-write`.
fn verdict_checks(verdict: &cachesim::Verdict) -> String {
    match verdict {
        cachesim::Verdict::Safety(violations) | cachesim::Verdict::Liveness(violations) => {
            let mut names: Vec<&str> =
                violations.iter().map(|violation| violation.check.name()).collect();
            names.sort_unstable();
            names.dedup();
            format!("{}: {}", verdict.kind(), names.join(", "))
        }
        other => other.kind().to_string(),
    }
}
