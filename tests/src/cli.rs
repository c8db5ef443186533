//! The command line: arguments, and every command but the sweep (`sweep_cli.rs`).
//!
//! Exit status: 0 when everything passed, 1 when the system under test failed (a seed
//! failed, a mutant survived, a run is not deterministic), 2 when the harness could
//! not run what was asked (bad input, an unwritable file).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use cachesim::{Liveness, Profile, RunConfig, RunRecord, RunReport, run};
use clap::{Args, Parser, Subcommand};

use crate::sweep_cli::{SweepArgs, sweep};

/// Deterministic simulation testing of a distributed cache: every run is a pure
/// function of its record (profile, seed and knobs), so any failure replays exactly.
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
    /// written to --failures as its run record. Exits with status 1 if any seed failed,
    /// 2 if the sweep could not run.
    Sweep(SweepArgs),
    /// Run one recorded run again and print its fault plan, its trace and its verdict.
    ///
    /// Give the run record (`PROFILE SEED [KNOB=VALUE ...]`, as `failures.txt` and the
    /// printed replay commands have it), or --seed with --profile and knob flags, or
    /// --plan.
    Replay(ReplayArgs),
    /// Shrink a failing run: the smallest fault plan and workload that still fail the
    /// same way, written to a plan file that `replay --plan` runs.
    Shrink(ShrinkArgs),
    /// Run each seed twice, and once more on another thread, and compare every event;
    /// a mismatch prints the first differing event of both runs.
    CheckDeterminism(CheckArgs),
    /// Sweep each planted bug of the cache (its `mutants` feature) until a seed fails,
    /// and print which checker caught it, after how many seeds, and the shrunk plan's
    /// size; each shrunk plan is written to --plans. Exits with status 1 if a mutant
    /// survives.
    Mutants(MutantsArgs),
    /// Combine the `--json` outputs of the shards of one sweep (`sweep --shard K/N
    /// --json`) into one summary and one failure list, after checking that the shards
    /// cover the sweep's seeds exactly once. Exits with status 1 if any seed failed, 2
    /// if the outputs do not make one sweep.
    Merge(crate::merge_cli::MergeArgs),
}

/// The knobs that shape a run besides its profile and seed (see `RunRecord`).
#[derive(Debug, Args, Clone)]
pub(crate) struct KnobArgs {
    /// Virtual seconds of faults per run (clients run meanwhile), 1 to 600 [default: 20].
    #[arg(long, value_parser = fault_seconds, allow_hyphen_values = true)]
    pub(crate) fault_seconds: Option<u64>,
    /// Virtual seconds the healed cluster settles before the liveness checks, 0 to 600
    /// [default: 40].
    #[arg(long, value_parser = quiet_seconds, allow_hyphen_values = true)]
    pub(crate) quiet_seconds: Option<u64>,
    /// Which nodes must converge after the faults: all (everything heals) or majority
    /// (a random minority stays cut off; the majority must converge by itself)
    /// [default: all].
    #[arg(long)]
    pub(crate) liveness: Option<Liveness>,
    /// Client nodes per run, 1 to 64 [default: the profile's].
    #[arg(long, value_parser = clients, allow_hyphen_values = true)]
    pub(crate) clients: Option<usize>,
    /// Run every cache node with this planted bug (see `cachesim mutants`).
    #[arg(long)]
    pub(crate) mutant: Option<cache::Mutant>,
}

impl KnobArgs {
    /// `record` with the knobs given on the command line.
    pub(crate) fn apply(&self, mut record: RunRecord) -> RunRecord {
        record.fault_seconds = self.fault_seconds.unwrap_or(record.fault_seconds);
        record.quiet_seconds = self.quiet_seconds.unwrap_or(record.quiet_seconds);
        record.liveness = self.liveness.unwrap_or(record.liveness);
        record.clients = self.clients.or(record.clients);
        record.mutant = self.mutant.or(record.mutant);
        record
    }
}

fn number(text: &str) -> Result<u64, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number from 0 to {}", u64::MAX))
}

/// A whole number (for clap).
pub(crate) fn whole_number(text: &str) -> Result<u64, String> {
    number(text)
}

fn seconds(text: &str, min: u64) -> Result<u64, String> {
    let max = cachesim::PHASE_SECONDS_MAX;
    let value = number(text)?;
    if !(min..=max).contains(&value) {
        return Err(format!("{value} is out of range: expected {min} to {max} seconds"));
    }
    Ok(value)
}

fn fault_seconds(text: &str) -> Result<u64, String> {
    seconds(text, 1)
}

fn quiet_seconds(text: &str) -> Result<u64, String> {
    seconds(text, 0)
}

fn clients(text: &str) -> Result<usize, String> {
    let max = cachesim::CLIENTS_MAX;
    let value = number(text)?;
    usize::try_from(value)
        .ok()
        .filter(|clients| (1..=max).contains(clients))
        .ok_or_else(|| format!("{value} is out of range: expected 1 to {max} clients"))
}

/// A run record from its words on the command line.
fn record_words(words: &[String]) -> Result<RunRecord, String> {
    RunRecord::parse(&words.join(" ")).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
struct ReplayArgs {
    /// The run record: `PROFILE SEED [KNOB=VALUE ...]`, for example `swarm 17 quiet=0
    /// fp=0x3b1f29c07d5e8a41` (a `# note` after it is ignored).
    #[arg(num_args = 0.., conflicts_with_all = ["seed", "profile", "plan"])]
    record: Vec<String>,
    /// The seed to run (or give the record).
    #[arg(long, value_parser = whole_number, allow_hyphen_values = true, conflicts_with = "plan")]
    seed: Option<u64>,
    /// Run exactly this plan file (as written by `shrink`; it names its seed, profile
    /// and knobs) instead of the seed's own plan.
    #[arg(long, conflicts_with_all = ["fault_seconds", "quiet_seconds", "liveness", "clients", "mutant"])]
    plan: Option<PathBuf>,
    /// The fault profile, with --seed [default: swarm].
    #[arg(long, conflicts_with = "plan")]
    profile: Option<Profile>,
    #[command(flatten)]
    knobs: KnobArgs,
    /// Print the run's trace, stamped with virtual time (filter with SIM_LOG, default info).
    #[arg(long)]
    trace: bool,
    /// Print every client operation on this key (or listing with this pattern).
    #[arg(long)]
    key: Option<String>,
}

#[derive(Debug, Args)]
struct ShrinkArgs {
    /// The failing run's record: `PROFILE SEED [KNOB=VALUE ...]`.
    #[arg(num_args = 0.., conflicts_with_all = ["seed", "profile"])]
    record: Vec<String>,
    /// The failing seed (or give the record).
    #[arg(long, value_parser = whole_number, allow_hyphen_values = true)]
    seed: Option<u64>,
    /// Its fault profile, with --seed [default: swarm].
    #[arg(long)]
    profile: Option<Profile>,
    #[command(flatten)]
    knobs: KnobArgs,
    /// Where to write the minimal plan.
    #[arg(long, default_value = "shrunk.plan")]
    output: PathBuf,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// One run record to check, instead of --seeds: `PROFILE SEED [KNOB=VALUE ...]`.
    #[arg(num_args = 0.., conflicts_with_all = ["seeds", "profile"])]
    record: Vec<String>,
    /// Seeds to check, as a half-open range A..B [default: 0..20].
    #[arg(long, value_parser = crate::sweep_cli::parse_range)]
    seeds: Option<std::ops::Range<u64>>,
    /// Fault profile [default: swarm].
    #[arg(long)]
    profile: Option<Profile>,
    #[command(flatten)]
    knobs: KnobArgs,
}

#[derive(Debug, Args)]
struct MutantsArgs {
    /// Seeds to try per mutant (profiles in turn: none, partitions, crashes, clock,
    /// swarm, keys, membership, loss), at least 1.
    #[arg(long, default_value_t = 200, value_parser = whole_number, allow_hyphen_values = true)]
    seeds: u64,
    /// Only this mutant (default: all).
    #[arg(long)]
    mutant: Option<cache::Mutant>,
    /// Skip shrinking the failures.
    #[arg(long)]
    no_shrink: bool,
    /// Where each mutant's shrunk plan is written, as MUTANT.plan.
    #[arg(long, default_value = "mutant-plans")]
    plans: PathBuf,
}

pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Sweep(args) => sweep(&args),
        Command::Replay(args) => replay(&args),
        Command::Shrink(args) => shrink(&args),
        Command::CheckDeterminism(args) => check_determinism(&args),
        Command::Mutants(args) => mutants(&args),
        Command::Merge(args) => crate::merge_cli::merge(&args),
    }
}

/// An input error: the message, and exit status 2.
pub(crate) fn input_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

/// The command that replays `record`.
pub(crate) fn replay_command(record: &RunRecord) -> String {
    replay_command_text(&record.to_string())
}

/// The command that replays the record written as `record`.
pub(crate) fn replay_command_text(record: &str) -> String {
    format!("cargo run --release -- replay {record} --trace")
}

/// The record that `--seed`/`--profile` and the knob flags, or the record's words,
/// describe; an error if neither names a seed.
fn record_of(
    words: &[String],
    seed: Option<u64>,
    profile: Option<Profile>,
    knobs: &KnobArgs,
) -> Result<RunRecord, String> {
    let record = match (words.is_empty(), seed) {
        (false, _) => record_words(words)?,
        (true, Some(seed)) => RunRecord::new(profile.unwrap_or(Profile::Swarm), seed),
        (true, None) => {
            return Err(
                "which run? give its record (for example `swarm 17 quiet=0`) or --seed".into()
            );
        }
    };
    Ok(knobs.apply(record))
}

fn read_plan(path: &Path) -> Result<RunConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read plan file {}: {e}", path.display()))?;
    cachesim::parse_plan_file(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn replay(args: &ReplayArgs) -> ExitCode {
    let (mut config, record) = match &args.plan {
        Some(path) => match read_plan(path) {
            Ok(config) => (config, None),
            Err(error) => return input_error(error),
        },
        None => match record_of(&args.record, args.seed, args.profile, &args.knobs) {
            Ok(record) => (record.config(), Some(record)),
            Err(error) => return input_error(error),
        },
    };
    config.trace = args.trace || args.key.is_some();
    if let Err(problem) = config.validate() {
        return input_error(problem);
    }
    let report = run(&config);
    print_replay(args, &report);
    if let Some(reproduced) = record.as_ref().and_then(|r| r.reproduced_by(report.fingerprint)) {
        let recorded = record.as_ref().and_then(|r| r.fingerprint).unwrap_or_default();
        if reproduced {
            println!("reproduced the recorded run (fingerprint {recorded:#018x})");
        } else {
            println!(
                "NOT the recorded run: fingerprint {:#018x}, recorded {recorded:#018x}; the code (or a dependency) has changed since it was recorded, so this run may not show what the recorded one did",
                report.fingerprint
            );
        }
    }
    if report.verdict.is_pass() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn print_replay(args: &ReplayArgs, report: &RunReport) {
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
}

fn shrink(args: &ShrinkArgs) -> ExitCode {
    let record = match record_of(&args.record, args.seed, args.profile, &args.knobs) {
        Ok(record) => record,
        Err(error) => return input_error(error),
    };
    let config = record.config();
    if let Err(problem) = config.validate() {
        return input_error(problem);
    }
    // Wall time for the figures the user reads, never for the runs themselves.
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let report = match cachesim::shrink(&config) {
        Ok(report) => report,
        Err(error) => return input_error(error),
    };
    let original = report.original.plan.as_ref().map_or(0, |plan| plan.episodes.len());
    let plan = report.minimal.plan.clone().unwrap_or_default();
    let comment = format!(
        "written by cachesim shrink from {record}: {} of {original} episodes, {} clients\nverdict: {}",
        plan.episodes.len(),
        report.minimal.workload.clients,
        report.verdict.kind()
    );
    let text = cachesim::write_plan_file(&report.minimal, &plan, &comment);
    if let Err(error) = std::fs::write(&args.output, &text) {
        return input_error(format!("cannot write {}: {error}", args.output.display()));
    }
    println!(
        "shrunk {record} from {original} to {} episode(s) and {} client(s) in {} runs ({:.1}s)",
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
    let records: Vec<RunRecord> = if args.record.is_empty() {
        let profile = args.profile.unwrap_or(Profile::Swarm);
        let seeds = args.seeds.clone().unwrap_or(0..20);
        seeds.map(|seed| args.knobs.apply(RunRecord::new(profile, seed))).collect()
    } else {
        match record_words(&args.record) {
            Ok(record) => vec![args.knobs.apply(record)],
            Err(error) => return input_error(error),
        }
    };
    if let Err(problem) = records[0].config().validate() {
        return input_error(problem);
    }
    let mut mismatches = 0;
    for record in &records {
        let mut config = record.config();
        config.event_log = CHECK_EVENT_LOG_MAX;
        let first = run(&config);
        let second = run(&config);
        let config_thread = config.clone();
        // The point of the check: a run on another thread must be the same run.
        #[allow(clippy::disallowed_methods)]
        let third = std::thread::spawn(move || run(&config_thread)).join();
        let Ok(third) = third else {
            mismatches += 1;
            println!("{record}: the run on another thread panicked");
            continue;
        };
        for (label, other) in [("second run", &second), ("run on another thread", &third)] {
            if let Some(report) = compare(&first, other) {
                mismatches += 1;
                println!("{record}: the {label} differs from the first\n{report}");
            }
        }
    }
    println!("{} run(s) checked, {mismatches} mismatch(es)", records.len());
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
    if args.seeds == 0 {
        return input_error("--seeds 0 runs nothing: give at least 1");
    }
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
    let survivors = print_mutants(&reports);
    if let Err(error) = write_mutant_plans(&reports, &args.plans) {
        return input_error(error);
    }
    println!(
        "{} mutant(s), {survivors} survived, {:.1}s",
        reports.len(),
        started.elapsed().as_secs_f64()
    );
    if survivors == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Prints the table; returns how many mutants survived.
fn print_mutants(reports: &[cachesim::MutantReport]) -> usize {
    println!(
        "{:<32} {:>10} {:>14} {:<22} {:>14}",
        "mutant", "caught", "first seed", "caught by", "shrunk plan"
    );
    let mut survivors = 0;
    for report in reports {
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
            .shrunk
            .as_ref()
            .and_then(|config| config.plan.as_ref())
            .map_or_else(|| "-".to_string(), |plan| format!("{} episode(s)", plan.episodes.len()));
        println!(
            "{:<32} {:>10} {:>14} {:<22} {:>14}",
            report.mutant.name(),
            caught,
            seed,
            report.caught_by(),
            shrunk
        );
    }
    survivors
}

/// Writes each shrunk plan to `dir/MUTANT.plan`.
fn write_mutant_plans(reports: &[cachesim::MutantReport], dir: &Path) -> Result<(), String> {
    let shrunk: Vec<(&cachesim::MutantReport, &RunConfig)> =
        reports.iter().filter_map(|report| Some((report, report.shrunk.as_ref()?))).collect();
    if shrunk.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (report, config) in shrunk {
        let plan = config.plan.clone().unwrap_or_default();
        let comment = format!(
            "written by cachesim mutants: {} caught by {}",
            report.mutant.name(),
            report.caught_by()
        );
        let path = dir.join(format!("{}.plan", report.mutant.name()));
        std::fs::write(&path, cachesim::write_plan_file(config, &plan, &comment))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    println!(
        "shrunk plans written to {}/ (replay one with: cargo run --release -- replay --plan {}/MUTANT.plan --trace)",
        dir.display(),
        dir.display()
    );
    Ok(())
}
