//! The command line every system gets: `sweep`, `replay`, `shrink`,
//! `check-determinism` and `merge`, with the system's profiles and knobs.
//!
//! Exit status: 0 when everything passed, 1 when the system under test failed (a seed
//! failed, a run is not deterministic), 2 when the harness could not run what was
//! asked (bad input, an unwritable file).

// The command line reports to its user on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::ffi::OsString;
use std::ops::Range;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Arg, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::commands;
use crate::record::{Knob, Record};
use crate::sweep::{JOBS_MAX, Sweep, sweep};
use crate::system::{System, parse_record, profile_names};

/// Names the harness takes for its own flags, record words and plan-file directives: a
/// system's knob may not use them.
#[rustfmt::skip]
const RESERVED: [&str; 25] = [
    "seed", "seeds", "count", "jobs", "profile", "shard", "failures", "quiet", "json", "junit",
    "until-covered", "plan", "trace", "grep", "output", "record", "fault-seconds",
    "quiet-seconds", "fault", "fp", "help", "version", "files", "episode", "latency-tail",
];

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run many seeds with faults and check every run.
    ///
    /// Each seed draws its fault plan under --profile; a failing seed is printed with
    /// the command that replays it and appended to --failures as its run record.
    /// Exits with status 1 if any seed failed, 2 if the sweep could not run.
    Sweep(SweepArgs),
    /// Run one recorded run again and print its fault plan, its trace and its verdict.
    ///
    /// Give the run record (`PROFILE SEED [KNOB=VALUE ...]`, as `failures.txt` and the
    /// printed replay commands have it), or --seed with --profile and knob flags, or
    /// --plan.
    Replay(ReplayArgs),
    /// Shrink a failing run: the smallest fault plan and knobs that still fail the
    /// same way, written to a plan file that `replay --plan` runs.
    Shrink(ShrinkArgs),
    /// Run each seed twice, and once more on another thread, and compare every event;
    /// a mismatch prints the first differing event of both runs.
    CheckDeterminism(CheckArgs),
    /// Combine the `--json` outputs of the shards of one sweep into one summary, after
    /// checking that the shards cover its seeds exactly once.
    Merge(crate::merge::MergeArgs),
}

/// The phases, as flags.
#[derive(Debug, Args, Clone)]
pub(crate) struct PhaseArgs {
    /// Virtual seconds of faults per run, 1 to 600 [default: the system's].
    #[arg(long, value_parser = fault_seconds, allow_hyphen_values = true)]
    pub(crate) fault_seconds: Option<u64>,
    /// Virtual seconds of quiet after the faults, 0 to 600 [default: the system's].
    #[arg(long, value_parser = quiet_seconds, allow_hyphen_values = true)]
    pub(crate) quiet_seconds: Option<u64>,
}

fn fault_seconds(text: &str) -> Result<u64, String> {
    crate::record::parse_seconds("--fault-seconds", text.trim(), 1)
}

fn quiet_seconds(text: &str) -> Result<u64, String> {
    crate::record::parse_seconds("--quiet-seconds", text.trim(), 0)
}

/// A whole number (for clap).
pub(crate) fn whole_number(text: &str) -> Result<u64, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number from 0 to {}", u64::MAX))
}

#[derive(Debug, Args)]
struct SweepArgs {
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
    /// The fault profile [default: the system's first].
    #[arg(long)]
    profile: Option<String>,
    /// Run only shard K of N (1 <= K <= N): the seeds S with S mod N = K - 1.
    #[arg(long, value_parser = parse_shard)]
    shard: Option<(u64, u64)>,
    #[command(flatten)]
    phases: PhaseArgs,
    /// File that failing runs are appended to, one run record and `# checks` per line.
    #[arg(long, default_value = "failures.txt")]
    failures: PathBuf,
    /// No progress bar (for logs and CI).
    #[arg(long)]
    quiet: bool,
    /// Print JSON lines instead of the table: a `failure` per failing run, then a
    /// `summary` (what `merge` combines).
    #[arg(long)]
    json: bool,
    /// Also write a JUnit XML report here: a test case per seed.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Stop once every coverage point has been reached by some seed (the seeds asked
    /// for are the budget).
    #[arg(long)]
    until_covered: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    /// The run record: `PROFILE SEED [KNOB=VALUE ...]` (a `# note` after it is ignored).
    #[arg(num_args = 0.., conflicts_with_all = ["seed", "profile", "plan"])]
    pub(crate) record: Vec<String>,
    /// The seed to run (or give the record).
    #[arg(long, value_parser = whole_number, allow_hyphen_values = true, conflicts_with = "plan")]
    pub(crate) seed: Option<u64>,
    /// Run exactly this plan file (as `shrink` writes it) instead of the seed's plan.
    #[arg(long)]
    pub(crate) plan: Option<PathBuf>,
    /// The fault profile, with --seed [default: the system's first].
    #[arg(long, conflicts_with = "plan")]
    pub(crate) profile: Option<String>,
    #[command(flatten)]
    pub(crate) phases: PhaseArgs,
    /// Print the run's trace, stamped with virtual time (filter with SIM_LOG).
    #[arg(long)]
    pub(crate) trace: bool,
    /// Print only the trace lines that contain TEXT (a key, a node, a message type).
    #[arg(long, value_name = "TEXT")]
    pub(crate) grep: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ShrinkArgs {
    /// The failing run's record: `PROFILE SEED [KNOB=VALUE ...]`.
    #[arg(num_args = 0.., conflicts_with_all = ["seed", "profile"])]
    pub(crate) record: Vec<String>,
    /// The failing seed (or give the record).
    #[arg(long, value_parser = whole_number, allow_hyphen_values = true)]
    pub(crate) seed: Option<u64>,
    /// Its fault profile, with --seed [default: the system's first].
    #[arg(long)]
    pub(crate) profile: Option<String>,
    #[command(flatten)]
    pub(crate) phases: PhaseArgs,
    /// Where to write the minimal plan.
    #[arg(long, default_value = "shrunk.plan")]
    pub(crate) output: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// One run record to check, instead of --seeds.
    #[arg(num_args = 0.., conflicts_with_all = ["seeds", "profile"])]
    pub(crate) record: Vec<String>,
    /// Seeds to check, as a half-open range A..B [default: 0..20].
    #[arg(long, value_parser = parse_range)]
    pub(crate) seeds: Option<Range<u64>>,
    /// Fault profile [default: the system's first].
    #[arg(long)]
    pub(crate) profile: Option<String>,
    #[command(flatten)]
    pub(crate) phases: PhaseArgs,
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

/// A command a system adds to the harness's own (the cache's `mutants`, say).
type Extra<'a> = (clap::Command, Box<dyn Fn(&ArgMatches) -> ExitCode + 'a>);

/// The command line of one system: build it with [`Main::new`], add commands of the
/// system's own with [`Main::command`], run it with [`Main::run`].
pub struct Main<'a, S: System> {
    system: &'a S,
    name: &'static str,
    about: &'static str,
    version: Option<&'static str>,
    extra: Vec<Extra<'a>>,
}

impl<S: System> std::fmt::Debug for Main<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Main").field("name", &self.name).finish_non_exhaustive()
    }
}

impl<'a, S: System> Main<'a, S> {
    /// The command line of `system`, as the binary `name`, described by `about`.
    pub fn new(system: &'a S, name: &'static str, about: &'static str) -> Main<'a, S> {
        Main { system, name, about, version: None, extra: Vec::new() }
    }

    /// Gives the binary a `--version` (`env!("CARGO_PKG_VERSION")`, say).
    pub fn version(mut self, version: &'static str) -> Main<'a, S> {
        self.version = Some(version);
        self
    }

    /// Adds a command of the system's own; `handler` runs it with its matches.
    pub fn command(
        mut self,
        command: clap::Command,
        handler: impl Fn(&ArgMatches) -> ExitCode + 'a,
    ) -> Main<'a, S> {
        self.extra.push((command, Box::new(handler)));
        self
    }

    /// Parses the process's arguments and runs the command.
    pub fn run(self) -> ExitCode {
        self.run_from(std::env::args_os())
    }

    /// Parses `args` (the binary's name first) and runs the command.
    pub fn run_from(self, args: impl IntoIterator<Item = impl Into<OsString> + Clone>) -> ExitCode {
        let knobs = self.system.knobs();
        if let Some(problem) = knobs.iter().find_map(|knob| knob_name_problem(knob.name)) {
            return input_error(problem);
        }
        let mut command = Cli::command().name(self.name).about(self.about);
        if let Some(version) = self.version {
            command = command.version(version).disable_version_flag(false);
        }
        for sub in ["sweep", "replay", "shrink", "check-determinism"] {
            command = command.mut_subcommand(sub, |sub| with_knobs(sub, &knobs));
        }
        for (extra, _) in &self.extra {
            command = command.subcommand(extra.clone());
        }
        let matches = match command.try_get_matches_from(args) {
            Ok(matches) => matches,
            Err(error) => {
                let _ = error.print();
                return ExitCode::from(if error.use_stderr() { 2 } else { 0 });
            }
        };
        if let Some((name, sub)) = matches.subcommand()
            && let Some((_, handler)) = self.extra.iter().find(|(c, _)| c.get_name() == name)
        {
            return handler(sub);
        }
        let cli = match Cli::from_arg_matches(&matches) {
            Ok(cli) => cli,
            Err(error) => return input_error(error),
        };
        let sub = matches.subcommand().map(|(_, sub)| sub).expect("a subcommand was parsed");
        let set = knob_values(sub, &knobs);
        self.dispatch(cli.command, &set)
    }

    fn dispatch(&self, command: Command, knobs: &[(&'static str, String)]) -> ExitCode {
        let system = self.system;
        match command {
            Command::Sweep(args) => sweep_command(system, &args, knobs, self.name),
            Command::Replay(args) => commands::replay(system, &args, knobs),
            Command::Shrink(args) => commands::shrink(system, &args, knobs),
            Command::CheckDeterminism(args) => commands::check_determinism(system, &args, knobs),
            Command::Merge(args) => crate::merge::merge(system, &args),
        }
    }
}

/// What is wrong with a system's knob name, if anything: it must be lowercase words
/// joined by `-`, and not a name the harness's flags or plan files use.
fn knob_name_problem(name: &str) -> Option<String> {
    let well_formed = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !well_formed {
        return Some(format!(
            "the system's knob {name:?} is not a knob name: use lowercase words joined by -"
        ));
    }
    RESERVED
        .contains(&name)
        .then(|| format!("the system's knob {name:?} takes a name the harness uses: rename it"))
}

/// The system's knobs as `--NAME VALUE` flags.
fn with_knobs(mut command: clap::Command, knobs: &[Knob]) -> clap::Command {
    for knob in knobs {
        let check = knob.check;
        command = command.arg(
            Arg::new(knob.name)
                .long(knob.name)
                .value_name(knob.value)
                .help(knob.help)
                .allow_hyphen_values(true)
                .value_parser(move |text: &str| check(text).map(|()| text.to_string())),
        );
    }
    command
}

fn knob_values(matches: &ArgMatches, knobs: &[Knob]) -> Vec<(&'static str, String)> {
    knobs
        .iter()
        .filter_map(|knob| {
            // Commands without the knob flags (merge) have none to read.
            let value = matches.try_get_one::<String>(knob.name).ok().flatten()?;
            Some((knob.name, value.clone()))
        })
        .collect()
}

/// An input error: the message, and exit status 2.
pub(crate) fn input_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

/// `record` with the phases and knobs given as flags.
pub(crate) fn with_flags<S: System>(
    system: &S,
    mut record: Record,
    phases: &PhaseArgs,
    knobs: &[(&'static str, String)],
) -> Result<Record, String> {
    record.fault_seconds = phases.fault_seconds.or(record.fault_seconds);
    record.quiet_seconds = phases.quiet_seconds.or(record.quiet_seconds);
    let (profiles, declared) = (profile_names(system), system.knobs());
    let vocabulary = crate::record::Vocabulary { profiles: &profiles, knobs: &declared };
    for (name, value) in knobs {
        record.set(name, value, vocabulary)?;
    }
    let record = crate::system::without_default_phases(system, record);
    system.validate(&record)?;
    Ok(record)
}

/// The record that `--seed`/`--profile`, or the record's words, describe.
pub(crate) fn record_of<S: System>(
    system: &S,
    words: &[String],
    seed: Option<u64>,
    profile: Option<&str>,
) -> Result<Record, String> {
    if !words.is_empty() {
        let text = words.join(" ");
        let text = text.split('#').next().unwrap_or("");
        return parse_record(system, text).map_err(|e| e.to_string());
    }
    let Some(seed) = seed else {
        return Err("which run? give its record (for example `swarm 17 quiet=0`) or --seed".into());
    };
    Ok(Record::new(&profile_of(system, profile)?, seed))
}

/// The profile named, or the system's first.
pub(crate) fn profile_of<S: System>(system: &S, name: Option<&str>) -> Result<String, String> {
    let profiles = profile_names(system);
    match name {
        None => profiles
            .first()
            .map(|name| (*name).to_string())
            .ok_or_else(|| "the system has no profile".to_string()),
        Some(name) => crate::record::Vocabulary { profiles: &profiles, knobs: &[] }.profile(name),
    }
}

fn plan_sweep<S: System>(
    system: &S,
    args: &SweepArgs,
    knobs: &[(&'static str, String)],
) -> Result<Sweep, String> {
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
    let shard = args.shard.unwrap_or((1, 1));
    let probe = Sweep::new((range.start, range.end), Record::new("", 0));
    let probe = Sweep { shard, ..probe };
    if probe.is_empty() {
        return Err(format!(
            "shard {}/{} of seeds {}..{} is empty: give a wider range or fewer shards",
            shard.0, shard.1, range.start, range.end
        ));
    }
    if args.until_covered && system.coverage_points().is_empty() {
        return Err("--until-covered needs coverage points, and this system declares none (System::coverage_points)".into());
    }
    let jobs = match args.jobs {
        Some(0) => return Err("--jobs 0 runs nothing: give 1 to 256, or leave it out".into()),
        Some(jobs) if jobs > JOBS_MAX as u64 => {
            return Err(format!("--jobs {jobs} is too many: give 1 to {JOBS_MAX}"));
        }
        Some(jobs) => usize::try_from(jobs).unwrap_or(JOBS_MAX),
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
    let profile = profile_of(system, args.profile.as_deref())?;
    let first = probe.seed(0).unwrap_or(range.start);
    let template = with_flags(system, Record::new(&profile, first), &args.phases, knobs)?;
    let (until_covered, progress) = (args.until_covered, !args.quiet);
    Ok(Sweep { template, jobs, until_covered, progress, ..probe })
}

fn sweep_command<S: System>(
    system: &S,
    args: &SweepArgs,
    knobs: &[(&'static str, String)],
    name: &str,
) -> ExitCode {
    let plan = match plan_sweep(system, args, knobs) {
        Ok(plan) => plan,
        Err(error) => return input_error(error),
    };
    let on_failure = |failure: &crate::Failure| {
        eprintln!("seed {} failed ({}); replay: {}", failure.seed, failure.verdict, failure.replay);
    };
    let (summary, failed) = sweep(system, &plan, &on_failure);
    // Files first: a reader that closes stdout early (`| head`) ends the process.
    if let Err(error) = crate::output::append_failures(&args.failures, &failed) {
        return input_error(error);
    }
    if let Some(path) = &args.junit
        && let Err(error) = crate::output::write_junit(path, name, &summary, &failed, &summary.ran)
    {
        return input_error(error);
    }
    commands::print_sweep(system, &summary, &failed, args.json);
    if failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::NoFault;
    use crate::nemesis::Target;
    use crate::profile::Profile;
    use crate::system::{Run, Violation};

    /// A system with nothing in it but what the command line reads.
    struct Bare {
        knobs: Vec<Knob>,
    }

    struct Nothing;

    impl Target<NoFault> for Nothing {
        fn node_count(&self) -> usize {
            0
        }

        fn node(&self, _: usize) -> Option<sim::NodeId> {
            None
        }
    }

    impl System for Bare {
        type Fault = NoFault;
        type World = Nothing;

        fn command(&self) -> String {
            "bare".into()
        }

        fn profiles(&self) -> Vec<Profile<NoFault>> {
            vec![Profile::new("none", "", Vec::new())]
        }

        fn knobs(&self) -> Vec<Knob> {
            self.knobs.clone()
        }

        fn node_count(&self, _: &Record) -> usize {
            2
        }

        fn build(&self, _: &mut sim::Sim, _: &Run<NoFault>) -> Result<Nothing, String> {
            Ok(Nothing)
        }

        fn check(&self, _: &mut sim::Sim, _: &mut Nothing, _: &Run<NoFault>) -> Vec<Violation> {
            Vec::new()
        }
    }

    fn knob(name: &'static str) -> Knob {
        Knob { name, value: "X", help: "", default: "", check: |_| Ok(()) }
    }

    fn exit(system: &Bare, args: &[&str]) -> ExitCode {
        Main::new(system, "bare", "").run_from(std::iter::once("bare").chain(args.iter().copied()))
    }

    #[test]
    fn knob_names_are_checked_before_anything_runs() {
        assert_eq!(knob_name_problem("clients"), None);
        for bad in ["grep", "episode", "fault", "Clients", "two words", "under_score", "9lives"] {
            assert!(knob_name_problem(bad).is_some(), "{bad}");
        }
        let system = Bare { knobs: vec![knob("grep")] };
        assert_eq!(exit(&system, &["sweep", "--count", "1", "--quiet"]), ExitCode::from(2));
    }

    #[test]
    fn until_covered_needs_declared_points_and_phases_at_their_defaults_are_no_setting() {
        let system = Bare { knobs: Vec::new() };
        let args =
            ["sweep", "--count", "5", "--until-covered", "--quiet", "--failures", "/dev/null"];
        assert_eq!(exit(&system, &args), ExitCode::from(2));
        let record = crate::system::parse_record(&system, "none 3 fault=20 quiet=41").unwrap();
        assert_eq!(record.to_string(), "none 3 quiet=41");
    }
}
