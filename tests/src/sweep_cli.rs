//! `cachesim sweep`: many seeds on threads, a progress bar, the summary table, and the
//! failing runs' records in `failures.txt`.

use std::fs::OpenOptions;
use std::io::Write;
use std::ops::Range;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use cachesim::{Profile, RunRecord, RunReport, run};

use crate::sweep_output::{Failure, Summary};
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
    /// Print JSON lines on stdout instead of the table: a `failure` object per failing
    /// run, then a `summary` (what `cachesim merge` combines).
    #[arg(long)]
    json: bool,
    /// Also write a JUnit XML report here: a test case per seed.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Stop once every coverage point of the cache has been reached by some seed
    /// (the seeds asked for are the budget); the summary says how many it took.
    #[arg(long)]
    until_covered: bool,
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
    /// The range, before sharding.
    range: Range<u64>,
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
    Ok(Plan { range, seeds, template, jobs })
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
    let summary = Mutex::new(Summary {
        profile: args.profile.name().to_string(),
        knobs: knobs_text(&plan.template),
        range: (plan.range.start, plan.range.end),
        shard: args.shard.unwrap_or((1, 1)),
        jobs: plan.jobs,
        coverage: cache::COVERAGE_POINTS.iter().map(|point| ((*point).to_string(), 0)).collect(),
        ..Summary::default()
    });
    let covered = std::sync::atomic::AtomicBool::new(false);
    let failed: Mutex<Vec<Failure>> = Mutex::new(Vec::new());
    let next = AtomicU64::new(0);
    // Wall time for the figures the user reads, never for the runs themselves.
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let worker = || {
        while let Some(&seed) = plan.seeds.get(next.fetch_add(1, Ordering::Relaxed) as usize) {
            if args.until_covered && covered.load(Ordering::Relaxed) {
                break;
            }
            let record = RunRecord { seed, ..plan.template.clone() };
            let report = run(&record.config());
            // A run that panicked outside a task has no fingerprint to record.
            let record = if report.events > 0 {
                record.with_fingerprint(report.fingerprint)
            } else {
                record
            };
            if tally(&record, &report, &summary, &failed, &progress) {
                covered.store(true, Ordering::Relaxed);
            }
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
    let mut summary = summary.into_inner().unwrap_or_else(|e| e.into_inner());
    summary.wall = started.elapsed();
    let mut failed = failed.into_inner().unwrap_or_else(|e| e.into_inner());
    failed.sort_by_key(|failure| failure.seed);
    report(args, &summary, &failed, &plan.seeds)
}

/// Prints the summary and the failures (as a table, or JSON lines), writes the failures
/// file and the JUnit report; the exit status.
fn report(args: &SweepArgs, summary: &Summary, failed: &[Failure], seeds: &[u64]) -> ExitCode {
    if args.json {
        for failure in failed {
            println!("{}", failure.to_json());
        }
        println!("{}", summary.to_json());
    } else {
        summary.print();
        for failure in failed {
            println!(
                "\nFAILED {}: {}\n  replay: {}",
                failure.record,
                failure.message,
                crate::cli::replay_command_text(&failure.record)
            );
        }
    }
    if let Err(error) = append_failures(&args.failures, failed) {
        return input_error(error);
    }
    if let Some(path) = &args.junit
        && let Err(error) = crate::sweep_output::write_junit(path, summary, failed, seeds)
    {
        return input_error(error);
    }
    if failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// The knobs of a record, without its profile and seed (`quiet=10 mutant=…`).
pub(crate) fn knobs_text(record: &RunRecord) -> String {
    let text = record.to_string();
    text.split_whitespace().skip(2).collect::<Vec<_>>().join(" ")
}

/// Appends the failing runs' records, in seed order, to `path`.
fn append_failures(path: &PathBuf, failed: &[Failure]) -> Result<(), String> {
    if failed.is_empty() {
        return Ok(());
    }
    let text: String =
        failed.iter().map(|failure| format!("{} # {}\n", failure.record, failure.checks)).collect();
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|error| format!("cannot append the failures to {}: {error}", path.display()))
}

/// Counts one run into the summary; whether every coverage point is reached now.
fn tally(
    record: &RunRecord,
    report: &RunReport,
    summary: &Mutex<Summary>,
    failed: &Mutex<Vec<Failure>>,
    progress: &ProgressBar,
) -> bool {
    let (failures, covered) = {
        let mut summary = summary.lock().unwrap_or_else(|e| e.into_inner());
        summary.seeds += 1;
        summary.events += report.events;
        summary.operations += report.operations as u64;
        summary.virtual_ns += report.virtual_time.as_nanos();
        summary.availability.add(report.availability);
        summary.add_coverage(&report.coverage);
        if !report.verdict.is_pass() {
            summary.failures += 1;
            *summary.by_check.entry(verdict_checks(&report.verdict)).or_default() += 1;
        }
        (summary.failures, summary.never_reached().is_empty())
    };
    progress.set_message(format!("{failures} failed"));
    progress.inc(1);
    if report.verdict.is_pass() {
        return covered;
    }
    progress.suspend(|| {
        eprintln!(
            "seed {} failed ({}); replay: {}",
            record.seed,
            report.verdict.kind(),
            replay_command(record)
        )
    });
    let failure = Failure {
        seed: record.seed,
        record: record.to_string(),
        verdict: report.verdict.kind().to_string(),
        checks: verdict_checks(&report.verdict),
        message: report.verdict.to_string(),
    };
    failed.lock().unwrap_or_else(|e| e.into_inner()).push(failure);
    covered
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
