//! The command line: argument parsing, the sweep driver with its progress bar and
//! summary table, and replay.

use std::fs::OpenOptions;
use std::io::Write;
use std::ops::Range;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cachesim::{Profile, RunConfig, RunReport, run};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

/// Deterministic simulation testing of a distributed cache: every run is a pure
/// function of its seed, so any failure replays exactly.
#[derive(Debug, Parser)]
#[command(name = "cachesim", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run many seeds with faults and check every run against the consistency contract.
    ///
    /// Each seed draws its fault plan (under --profile), its consistency levels and
    /// its workload; a failing seed is printed with the command that replays it and
    /// appended to --failures. Exits with status 1 if any seed failed.
    Sweep(SweepArgs),
    /// Run one seed again and print its fault plan, its trace and its verdict.
    Replay(ReplayArgs),
    /// Shrink a failing seed: the smallest fault plan and workload that still fail the
    /// same way, written to a plan file that `replay --plan` runs.
    Shrink(ShrinkArgs),
    /// Run each seed twice, and once more on another thread, and compare every event;
    /// a mismatch prints the first differing event of both runs.
    CheckDeterminism(CheckArgs),
    /// Sweep each planted bug of the cache (its `mutants` feature) until a seed fails,
    /// and print which checker caught it, after how many seeds, and the shrunk plan's
    /// size. Exits with status 1 if a mutant survives.
    Mutants(MutantsArgs),
}

#[derive(Debug, Args)]
struct MutantsArgs {
    /// Seeds to try per mutant (profiles cycle none, partitions, crashes, clock, swarm).
    #[arg(long, default_value_t = 200)]
    seeds: u64,
    /// Only this mutant (default: all).
    #[arg(long)]
    mutant: Option<cache::Mutant>,
    /// Skip shrinking the failures.
    #[arg(long)]
    no_shrink: bool,
}

#[derive(Debug, Args)]
struct ShrinkArgs {
    /// The failing seed.
    #[arg(long)]
    seed: u64,
    /// Its fault profile.
    #[arg(long, default_value = "swarm")]
    profile: Profile,
    /// Where to write the minimal plan.
    #[arg(long, default_value = "shrunk.plan")]
    output: PathBuf,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// Seeds to check, as a half-open range A..B.
    #[arg(long, value_parser = parse_range, default_value = "0..20")]
    seeds: Range<u64>,
    /// Fault profile.
    #[arg(long, default_value = "swarm")]
    profile: Profile,
}

#[derive(Debug, Args)]
struct SweepArgs {
    /// Seeds to run, as a half-open range A..B (for example 0..1000).
    #[arg(long, value_parser = parse_range, conflicts_with = "count")]
    seeds: Option<Range<u64>>,
    /// How many seeds to run, starting at --seed.
    #[arg(long, default_value_t = 2000)]
    count: u64,
    /// The first seed, with --count.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Threads running seeds (default: all cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Fault profile: none, partitions, crashes, clock or swarm.
    #[arg(long, default_value = "swarm")]
    profile: Profile,
    /// Run only shard K of N of the seeds (for example 2/4), to split a sweep over
    /// machines or CI jobs: seed S belongs to shard S mod N.
    #[arg(long, value_parser = parse_shard)]
    shard: Option<(u64, u64)>,
    /// Virtual seconds of faults per run (clients run meanwhile).
    #[arg(long, default_value_t = 20)]
    fault_seconds: u64,
    /// Virtual seconds the healed cluster settles before the liveness checks.
    #[arg(long, default_value_t = 40)]
    quiet_seconds: u64,
    /// Which nodes must converge after the faults: all (everything heals) or majority
    /// (a random minority stays cut off; the majority must converge by itself).
    #[arg(long, default_value = "all")]
    liveness: cachesim::Liveness,
    /// File that failing seeds are appended to, one `profile seed # verdict` per line.
    #[arg(long, default_value = "failures.txt")]
    failures: PathBuf,
    /// No progress bar (for logs and CI).
    #[arg(long)]
    quiet: bool,
}

#[derive(Debug, Args)]
struct ReplayArgs {
    /// The seed to run (ignored with --plan, which names its seed).
    #[arg(long, required_unless_present = "plan", default_value_t = 0)]
    seed: u64,
    /// Run exactly this plan file (as written by `shrink`) instead of the seed's own plan.
    #[arg(long)]
    plan: Option<PathBuf>,
    /// Its fault profile.
    #[arg(long, default_value = "swarm")]
    profile: Profile,
    /// Print the run's trace, stamped with virtual time (filter with SIM_LOG, default info).
    #[arg(long)]
    trace: bool,
    /// Print every client operation on this key (or listing with this pattern).
    #[arg(long)]
    key: Option<String>,
    /// Run every cache node with this planted bug (see `mutants`).
    #[arg(long)]
    mutant: Option<cache::Mutant>,
    /// The liveness mode the seed ran with (all or majority).
    #[arg(long, default_value = "all")]
    liveness: cachesim::Liveness,
    /// Virtual seconds of faults (must match the sweep's).
    #[arg(long, default_value_t = 20)]
    fault_seconds: u64,
    /// Virtual seconds of quiet (must match the sweep's).
    #[arg(long, default_value_t = 40)]
    quiet_seconds: u64,
}

fn parse_range(text: &str) -> Result<Range<u64>, String> {
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

pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Sweep(args) => sweep(&args),
        Command::Replay(args) => replay(&args),
        Command::Shrink(args) => shrink(&args),
        Command::CheckDeterminism(args) => check_determinism(&args),
        Command::Mutants(args) => mutants(&args),
    }
}

fn config(seed: u64, profile: Profile, fault_seconds: u64, quiet_seconds: u64) -> RunConfig {
    let mut config = RunConfig::new(seed, profile);
    config.fault_phase = Duration::from_secs(fault_seconds);
    config.quiet = Duration::from_secs(quiet_seconds);
    config
}

fn replay_command(report: &RunReport) -> String {
    let mut flags = String::new();
    if report.liveness == cachesim::Liveness::Majority {
        flags.push_str(" --liveness majority");
    }
    let (fault, quiet) = report.phases;
    let defaults = RunConfig::new(report.seed, report.profile);
    if fault != defaults.fault_phase {
        flags.push_str(&format!(" --fault-seconds {}", fault.as_secs()));
    }
    if quiet != defaults.quiet {
        flags.push_str(&format!(" --quiet-seconds {}", quiet.as_secs()));
    }
    format!(
        "cargo run --release -- replay --seed {} --profile {}{flags} --trace",
        report.seed, report.profile
    )
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

fn sweep(args: &SweepArgs) -> ExitCode {
    if args.fault_seconds == 0 {
        eprintln!("error: --fault-seconds must be at least 1");
        return ExitCode::from(2);
    }
    let range = args.seeds.clone().unwrap_or(args.seed..args.seed.saturating_add(args.count));
    let seeds: Vec<u64> = match args.shard {
        Some((k, n)) => range.filter(|seed| seed % n == k - 1).collect(),
        None => range.collect(),
    };
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
        .max(1);
    let progress =
        if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(seeds.len() as u64) };
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} seeds  {per_sec}  {msg}  eta {eta}")
            .expect("a valid template"),
    );
    let totals = Mutex::new(Totals::default());
    let failed: Mutex<Vec<RunReport>> = Mutex::new(Vec::new());
    let next = AtomicU64::new(0);
    // Wall time for the figures the user reads, never for the runs themselves.
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let worker = || {
        while let Some(&seed) = seeds.get(next.fetch_add(1, Ordering::Relaxed) as usize) {
            let config = RunConfig {
                liveness: args.liveness,
                ..config(seed, args.profile, args.fault_seconds, args.quiet_seconds)
            };
            let report = run(&config);
            record(&report, &totals, &failed, &progress, args);
        }
    };
    // Seeds run on threads, one whole simulation each: only the seed counter is shared.
    #[allow(clippy::disallowed_methods)]
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(seeds.len().max(1)) {
            scope.spawn(worker);
        }
    });
    progress.finish_and_clear();
    let wall = started.elapsed();
    let totals = totals.into_inner().unwrap_or_else(|e| e.into_inner());
    print_summary(args.profile, &totals, wall, jobs);
    let mut failed = failed.into_inner().unwrap_or_else(|e| e.into_inner());
    failed.sort_by_key(|report| report.seed);
    for report in &failed {
        println!(
            "\nFAILED seed {} ({}): {}\n  replay: {}",
            report.seed,
            report.profile,
            report.verdict,
            replay_command(report)
        );
    }
    if failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn record(
    report: &RunReport,
    totals: &Mutex<Totals>,
    failed: &Mutex<Vec<RunReport>>,
    progress: &ProgressBar,
    args: &SweepArgs,
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
    let line = format!("{} {} # {}\n", report.profile, report.seed, report.verdict.kind());
    let appended = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.failures)
        .and_then(|mut file| file.write_all(line.as_bytes()));
    if let Err(error) = appended {
        progress.suspend(|| {
            eprintln!("warning: cannot append to {}: {error}", args.failures.display())
        });
    }
    progress.suspend(|| {
        eprintln!(
            "seed {} failed ({}); replay: {}",
            report.seed,
            report.verdict.kind(),
            replay_command(report)
        )
    });
    failed.lock().unwrap_or_else(|e| e.into_inner()).push(report.clone());
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

fn replay(args: &ReplayArgs) -> ExitCode {
    let mut config = match &args.plan {
        None => config(args.seed, args.profile, args.fault_seconds, args.quiet_seconds),
        Some(path) => match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| cachesim::parse_plan_file(&text).map_err(|e| e.to_string()))
        {
            Ok(config) => config,
            Err(error) => {
                eprintln!("error: cannot use plan file {}: {error}", path.display());
                return ExitCode::from(2);
            }
        },
    };
    config.trace = args.trace || args.key.is_some();
    config.mutant = args.mutant;
    config.liveness = args.liveness;
    if let Err(problem) = config.validate() {
        eprintln!("error: {problem}");
        return ExitCode::from(2);
    }
    let report = run(&config);
    let (read, write) = report.consistency;
    println!("seed {} profile {} (read {read}, write {write})", report.seed, report.profile);
    println!("options: {}{}", report.knobs, if report.buggify { "; buggify on" } else { "" });
    println!("fault plan:\n{}", report.plan);
    if let Some(trace) = report.trace.as_ref().filter(|_| args.trace) {
        println!("trace:\n{trace}");
    }
    if let (Some(key), Some(history)) = (&args.key, &report.history) {
        println!("operations on {key}:");
        for op in history.ops.iter().filter(|op| op.key == *key) {
            println!("  {op}");
        }
    }
    let a = report.availability;
    println!(
        "{} operations ({} ok, {} failed, {} unknown; {} of {} probes ok), {} events, {:.3}s virtual, fingerprint {:#018x}",
        report.operations,
        a.ok,
        a.failed,
        a.unknown,
        a.probes_ok,
        a.probes,
        report.events,
        report.virtual_time.as_secs_f64(),
        report.fingerprint
    );
    println!("verdict: {}", report.verdict);
    if report.verdict.is_pass() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn shrink(args: &ShrinkArgs) -> ExitCode {
    let config = RunConfig::new(args.seed, args.profile);
    // Wall time for the figures the user reads, never for the runs themselves.
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let report = match cachesim::shrink(&config) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let original = report.original.plan.as_ref().map_or(0, |plan| plan.episodes.len());
    let plan = report.minimal.plan.clone().unwrap_or_default();
    let comment = format!(
        "written by cachesim shrink from seed {} ({}): {} of {original} episodes, {} clients\nverdict: {}",
        args.seed,
        args.profile,
        plan.episodes.len(),
        report.minimal.workload.clients,
        report.verdict.kind()
    );
    let text = cachesim::write_plan_file(&report.minimal, &plan, &comment);
    if let Err(error) = std::fs::write(&args.output, &text) {
        eprintln!("error: cannot write {}: {error}", args.output.display());
        return ExitCode::from(2);
    }
    println!(
        "shrunk seed {} from {original} to {} episode(s) and {} client(s) in {} runs ({:.1}s)",
        args.seed,
        plan.episodes.len(),
        report.minimal.workload.clients,
        report.runs,
        started.elapsed().as_secs_f64()
    );
    println!("minimal plan:\n{plan}verdict: {}", report.verdict);
    println!(
        "written to {}; replay: cargo run --release -- replay --plan {} --trace",
        args.output.display(),
        args.output.display()
    );
    ExitCode::SUCCESS
}

/// Events kept per run for the comparison.
const CHECK_EVENT_LOG_MAX: usize = 1 << 20;

fn check_determinism(args: &CheckArgs) -> ExitCode {
    let mut mismatches = 0;
    for seed in args.seeds.clone() {
        let mut config = RunConfig::new(seed, args.profile);
        config.event_log = CHECK_EVENT_LOG_MAX;
        let first = run(&config);
        let second = run(&config);
        let config_thread = config.clone();
        // The point of the check: a run on another thread must be the same run.
        #[allow(clippy::disallowed_methods)]
        let third = std::thread::spawn(move || run(&config_thread))
            .join()
            .expect("the run thread does not panic");
        for (label, other) in [("second run", &second), ("run on another thread", &third)] {
            if let Some(report) = compare(&first, other) {
                mismatches += 1;
                println!("seed {seed}: the {label} differs from the first\n{report}");
            }
        }
    }
    let count = args.seeds.end - args.seeds.start;
    println!("{count} seed(s) checked, {mismatches} mismatch(es)");
    if mismatches == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// The first differing event of two runs, with context, or `None` when they match.
fn compare(first: &RunReport, second: &RunReport) -> Option<String> {
    if first.fingerprint == second.fingerprint
        && first.events == second.events
        && first.event_log == second.event_log
        && first.history_digest == second.history_digest
        && first.verdict == second.verdict
    {
        return None;
    }
    if first.event_log == second.event_log {
        // The simulation matched event for event; what the harness made of it did not
        // (a checker or the history depends on something outside the run).
        return Some(format!(
            "  the events match, but the harness saw another run: history digest {:#018x} against {:#018x}, verdict {} against {}",
            first.history_digest,
            second.history_digest,
            first.verdict.kind(),
            second.verdict.kind()
        ));
    }
    let (a, b) = (&first.event_log, &second.event_log);
    let index = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
    let context = |log: &[sim::Event]| {
        log.iter()
            .skip(index.saturating_sub(3))
            .take(5)
            .map(|event| format!("    {event}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    Some(format!(
        "  first difference at event #{index}\n  first run:\n{}\n  other run:\n{}",
        context(a),
        context(b)
    ))
}

fn mutants(args: &MutantsArgs) -> ExitCode {
    let selected: Vec<cache::Mutant> =
        args.mutant.map_or_else(|| cache::Mutant::ALL.to_vec(), |mutant| vec![mutant]);
    // Wall time for the figures the user reads, never for the runs themselves.
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let next = AtomicU64::new(0);
    let reports = Mutex::new(Vec::new());
    let jobs = std::thread::available_parallelism().map_or(1, usize::from).min(selected.len());
    // Mutants run on threads, one whole sweep each.
    #[allow(clippy::disallowed_methods)]
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                while let Some(&mutant) =
                    selected.get(next.fetch_add(1, Ordering::Relaxed) as usize)
                {
                    let report = cachesim::sweep_mutant(mutant, args.seeds, !args.no_shrink);
                    reports.lock().unwrap_or_else(|e| e.into_inner()).push(report);
                }
            });
        }
    });
    let mut reports = reports.into_inner().unwrap_or_else(|e| e.into_inner());
    reports.sort_by_key(|report| report.mutant);
    println!(
        "{:<26} {:>8} {:>12} {:<20} {:>14}",
        "mutant", "caught", "first seed", "caught by", "shrunk plan"
    );
    let mut survivors = 0;
    for report in &reports {
        let (caught, seed) = match report.caught {
            Some((seed, profile)) => {
                (format!("{} seeds", report.seeds_run), format!("{profile} {seed}"))
            }
            None => {
                survivors += 1;
                ("SURVIVED".to_string(), "-".to_string())
            }
        };
        let shrunk = report
            .shrunk_episodes
            .map_or_else(|| "-".to_string(), |episodes| format!("{episodes} episode(s)"));
        println!(
            "{:<26} {:>8} {:>12} {:<20} {:>14}",
            report.mutant.name(),
            caught,
            seed,
            report.caught_by(),
            shrunk
        );
    }
    println!(
        "{} mutant(s), {survivors} survived, {:.1}s",
        reports.len(),
        started.elapsed().as_secs_f64()
    );
    if survivors == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
