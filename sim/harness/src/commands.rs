//! The commands behind the command line: replay, shrink, check-determinism, and the
//! sweep's printout.

// The command line reports to its user on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::Path;
use std::process::ExitCode;

use crate::cli::{CheckArgs, ReplayArgs, ShrinkArgs, input_error, record_of, with_flags};
use crate::fault::Plan;
use crate::plan_file::{parse_plan_file, write_plan_file};
use crate::record::Record;
use crate::say;
use crate::sweep::{Failure, Summary};
use crate::system::{Capture, Report, System, run};

/// Prints a sweep's (or a merge's) summary and failures, as a table or JSON lines.
pub(crate) fn print_sweep<S: System>(
    system: &S,
    summary: &Summary,
    failed: &[Failure],
    json: bool,
) {
    if json {
        for failure in failed {
            say!("{}", failure.to_json());
        }
        say!("{}", summary.to_json());
        return;
    }
    say!("{}", summary.table(&system.summary_lines(&summary.stats)).trim_end());
    for failure in failed {
        say!("\nFAILED {}: {}\n  replay: {}", failure.record, failure.message, failure.replay);
    }
}

fn read_plan<S: System>(system: &S, path: &Path) -> Result<(Record, Plan<S::Fault>), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read plan file {}: {e}", path.display()))?;
    parse_plan_file(system, &text).map_err(|e| format!("{}: {e}", path.display()))
}

pub(crate) fn replay<S: System>(
    system: &S,
    args: &ReplayArgs,
    knobs: &[(&'static str, String)],
) -> ExitCode {
    let flags_given = args.phases.fault_seconds.is_some() || args.phases.quiet_seconds.is_some();
    if args.plan.is_some() && (flags_given || !knobs.is_empty()) {
        return input_error(
            "--plan runs exactly the run its file describes: set phases and knobs in the file, not as flags",
        );
    }
    let given = match &args.plan {
        Some(path) => read_plan(system, path).map(|(record, plan)| (record, Some(plan))),
        None => record_of(system, &args.record, args.seed, args.profile.as_deref())
            .map(|record| (record, None)),
    };
    let (record, plan) = match given {
        Ok(given) => given,
        Err(error) => return input_error(error),
    };
    let record = match with_flags(system, record, &args.phases, knobs) {
        Ok(record) => record,
        Err(error) => return input_error(error),
    };
    let trace = args.trace || args.grep.is_some();
    let report = run(system, &record, plan.as_ref(), Capture { trace, event_log: 0 });
    print_replay(&report, args);
    if let Some(reproduced) = record.reproduced_by(report.fingerprint) {
        let recorded = record.fingerprint.unwrap_or_default();
        if reproduced {
            say!("reproduced the recorded run (fingerprint {recorded:#018x})");
        } else {
            say!(
                "NOT the recorded run: fingerprint {:#018x}, recorded {recorded:#018x}; the code (or a dependency) has changed since it was recorded, so this run may not show what the recorded one did",
                report.fingerprint
            );
        }
    }
    if report.verdict.is_pass() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn print_replay<C: std::fmt::Display>(report: &Report<C>, args: &ReplayArgs) {
    let record = Record { fingerprint: None, ..report.record.clone() };
    say!("run {record}{}", if report.buggify { " (buggify on)" } else { "" });
    for line in &report.details {
        say!("{line}");
    }
    say!("fault plan:\n{}", report.plan);
    match (&report.trace, &args.grep) {
        (Some(trace), Some(pattern)) => {
            say!("trace lines with {pattern:?}:");
            for line in trace.lines().filter(|line| line.contains(pattern.as_str())) {
                say!("{line}");
            }
        }
        (Some(trace), None) => say!("trace:\n{trace}"),
        (None, _) => {}
    }
    let stats: Vec<String> =
        report.stats.iter().map(|(name, value)| format!("{name} {value}")).collect();
    if !stats.is_empty() {
        say!("totals: {}", stats.join(", "));
    }
    say!(
        "{} events, {:.3}s virtual, fingerprint {:#018x}",
        report.events,
        report.virtual_time.as_secs_f64(),
        report.fingerprint
    );
    say!("verdict: {}", report.verdict);
}

pub(crate) fn shrink<S: System>(
    system: &S,
    args: &ShrinkArgs,
    knobs: &[(&'static str, String)],
) -> ExitCode {
    let record = record_of(system, &args.record, args.seed, args.profile.as_deref())
        .and_then(|record| with_flags(system, record, &args.phases, knobs));
    let record = match record {
        Ok(record) => record,
        Err(error) => return input_error(error),
    };
    // Wall time for the figures the user reads, never for the runs themselves.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let report = match crate::shrink::shrink(system, &record) {
        Ok(report) => report,
        Err(error) => return input_error(error),
    };
    let original = report.original.1.episodes.len();
    let (minimal, plan) = &report.minimal;
    let comment = format!(
        "written by shrink from {record}: {} of {original} episodes\nverdict: {}",
        plan.episodes.len(),
        report.verdict.kind()
    );
    let text = write_plan_file(minimal, plan, &comment);
    if let Err(error) = std::fs::write(&args.output, &text) {
        return input_error(format!("cannot write {}: {error}", args.output.display()));
    }
    say!(
        "shrunk {record} from {original} to {} episode(s) ({}) in {} runs ({:.1}s)",
        plan.episodes.len(),
        if minimal.knobs_text().is_empty() {
            "default knobs".to_string()
        } else {
            minimal.knobs_text()
        },
        report.runs,
        started.elapsed().as_secs_f64()
    );
    say!("minimal plan:\n{plan}verdict: {}", report.verdict);
    say!(
        "written to {}; replay: {} replay --plan {} --trace",
        args.output.display(),
        system.command(),
        args.output.display()
    );
    ExitCode::SUCCESS
}

/// Events kept per run for the comparison.
const CHECK_EVENT_LOG_MAX: usize = 1 << 20;

pub(crate) fn check_determinism<S: System>(
    system: &S,
    args: &CheckArgs,
    knobs: &[(&'static str, String)],
) -> ExitCode {
    let records: Result<Vec<Record>, String> = if args.record.is_empty() {
        let seeds = args.seeds.clone().unwrap_or(0..20);
        let profile = crate::cli::profile_of(system, args.profile.as_deref());
        profile.and_then(|profile| {
            seeds
                .map(|seed| with_flags(system, Record::new(&profile, seed), &args.phases, knobs))
                .collect()
        })
    } else {
        record_of(system, &args.record, None, None)
            .and_then(|record| with_flags(system, record, &args.phases, knobs))
            .map(|record| vec![record])
    };
    let records = match records {
        Ok(records) => records,
        Err(error) => return input_error(error),
    };
    let mut mismatches = 0;
    for record in &records {
        let problems = check_one(system, record);
        mismatches += problems.len();
        for problem in problems {
            say!("{record}: {problem}");
        }
    }
    say!("{} run(s) checked, {mismatches} mismatch(es)", records.len());
    if mismatches == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Runs `record` twice here and once on another thread; what differs.
fn check_one<S: System>(system: &S, record: &Record) -> Vec<String> {
    let capture = Capture { trace: false, event_log: CHECK_EVENT_LOG_MAX };
    let first = run(system, record, None, capture);
    let second = run(system, record, None, capture);
    // The point of the check: a run on another thread must be the same run.
    #[allow(clippy::disallowed_methods)]
    let third =
        std::thread::scope(|scope| scope.spawn(|| run(system, record, None, capture)).join());
    let Ok(third) = third else {
        return vec!["the run on another thread panicked".to_string()];
    };
    [("second run", &second), ("run on another thread", &third)]
        .into_iter()
        .filter_map(|(label, other)| {
            compare(&first, other)
                .map(|report| format!("the {label} differs from the first\n{report}"))
        })
        .collect()
}

/// The first differing event of two runs, with context, or `None` when they match.
fn compare<C>(first: &Report<C>, second: &Report<C>) -> Option<String> {
    if first.fingerprint == second.fingerprint
        && first.events == second.events
        && first.event_log == second.event_log
        && first.stats == second.stats
        && first.digest == second.digest
        && first.verdict == second.verdict
    {
        return None;
    }
    if first.event_log == second.event_log {
        // The simulation matched event for event; what the system's checks made of it
        // did not (they depend on something outside the run).
        return Some(format!(
            "  the events match, but the checks saw another run: digest {:#018x} against {:#018x}, totals {:?} against {:?}, verdict {} against {}",
            first.digest,
            second.digest,
            first.stats,
            second.stats,
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
