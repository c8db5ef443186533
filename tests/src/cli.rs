//! The command line: the harness's commands (`sim_harness::Main`: sweep, replay,
//! shrink, check-determinism, merge) over [`CacheSystem`], and the cache's own
//! `mutants`.
//!
//! Exit status: 0 when everything passed, 1 when the system under test failed (a seed
//! failed, a mutant survived, a run is not deterministic), 2 when the harness could
//! not run what was asked (bad input, an unwritable file).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use cachesim::{CacheFault, CacheSystem};
use clap::{Args, FromArgMatches};
use sim_harness::{Main, Plan, Record};

#[derive(Debug, Args)]
struct MutantsArgs {
    /// Seeds to try per mutant (profiles in turn: none, partitions, crashes, clock,
    /// swarm, keys, membership, loss), at least 1.
    #[arg(long, default_value_t = 200, allow_hyphen_values = true)]
    seeds: u64,
    /// Only this mutant (default: all).
    #[arg(long)]
    mutant: Option<cache::Mutant>,
    /// Skip shrinking the failures.
    #[arg(long)]
    no_shrink: bool,
    /// Where each mutant's shrunk plan is written, as MUTANT.plan.
    #[arg(long, default_value = "mutant-plans")]
    plans: std::path::PathBuf,
}

const ABOUT: &str = "Deterministic simulation testing of a distributed cache: every run is a pure function of its record (profile, seed and knobs), so any failure replays exactly";

pub(crate) fn main() -> ExitCode {
    let mutants = MutantsArgs::augment_args(clap::Command::new("mutants").about(
        "Sweep each planted bug of the cache until a seed fails, and print which checker caught it, after how many seeds, and the shrunk plan's size; exits with status 1 if a mutant survives",
    ));
    let main = Main::new(&CacheSystem, "cachesim", ABOUT)
        .version(env!("CARGO_PKG_VERSION"))
        .command(mutants, |matches| match MutantsArgs::from_arg_matches(matches) {
            Ok(args) => self::mutants(&args),
            Err(error) => input_error(error),
        });
    #[cfg(feature = "net")]
    let main = with_net_commands(main);
    main.run()
}

/// `serve` and `client`: the cache on a real network (feature `net`).
#[cfg(feature = "net")]
fn with_net_commands(main: Main<'_, CacheSystem>) -> Main<'_, CacheSystem> {
    use crate::net_cli::{ClientArgs, ServeArgs};
    // The about lines come from the argument structs' doc comments.
    let serve = ServeArgs::augment_args(clap::Command::new("serve"));
    let client = ClientArgs::augment_args(clap::Command::new("client"));
    main.command(serve, |matches| match ServeArgs::from_arg_matches(matches) {
        Ok(args) => crate::net_cli::serve(&args),
        Err(error) => input_error(error),
    })
    .command(client, |matches| match ClientArgs::from_arg_matches(matches) {
        Ok(args) => crate::net_cli::client(&args),
        Err(error) => input_error(error),
    })
}

/// An input error: the message, and exit status 2.
fn input_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
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
    sim_harness::say!(
        "{} mutant(s), {survivors} survived, {:.1}s",
        reports.len(),
        started.elapsed().as_secs_f64()
    );
    if survivors == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Prints the table; returns how many mutants survived.
fn print_mutants(reports: &[cachesim::MutantReport]) -> usize {
    sim_harness::say!(
        "{:<32} {:>10} {:>14} {:<22} {:>14}",
        "mutant",
        "caught",
        "first seed",
        "caught by",
        "shrunk plan"
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
        let shrunk = report.shrunk.as_ref().map_or_else(
            || "-".to_string(),
            |(_, plan)| format!("{} episode(s)", plan.episodes.len()),
        );
        sim_harness::say!(
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
    let shrunk: Vec<(&cachesim::MutantReport, &(Record, Plan<CacheFault>))> =
        reports.iter().filter_map(|report| Some((report, report.shrunk.as_ref()?))).collect();
    if shrunk.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (report, (record, plan)) in shrunk {
        let comment = format!(
            "written by cachesim mutants: {} caught by {}",
            report.mutant.name(),
            report.caught_by()
        );
        let path = dir.join(format!("{}.plan", report.mutant.name()));
        std::fs::write(&path, sim_harness::write_plan_file(record, plan, &comment))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    sim_harness::say!(
        "shrunk plans written to {}/ (replay one with: cargo run --release -- replay --plan {}/MUTANT.plan --trace)",
        dir.display(),
        dir.display()
    );
    Ok(())
}
