//! The example system end to end, through the harness: the correct register passes a
//! sweep; the planted bug is found within 100 seeds, shrunk, written as a plan file,
//! and the plan file replays the same failing run.

#[path = "../examples/register/harness.rs"]
mod harness;
#[path = "../examples/register/register.rs"]
mod register;

use std::process::ExitCode;

use harness::Register;
use sim_harness::{
    Capture, Main, Record, Sweep, Verdict, parse_plan_file, parse_record, run, shrink, sweep,
    write_plan_file,
};

fn sweep_of(record: &str, count: u64) -> Sweep {
    let template = parse_record(&Register, record).unwrap();
    Sweep { jobs: 2, ..Sweep::new((0, count), template) }
}

#[test]
fn the_correct_register_passes_every_profile_and_reaches_its_coverage() {
    for profile in ["swarm", "partitions", "reboots", "none"] {
        let (summary, failures) = sweep(&Register, &sweep_of(&format!("{profile} 0"), 60), &|_| {});
        assert!(failures.is_empty(), "{profile}: {failures:?}");
        assert_eq!(summary.seeds, 60);
        assert!(summary.stats["ok"] > 60 * 300, "{profile}: {:?}", summary.stats);
        if profile == "swarm" {
            assert!(summary.never_reached().is_empty(), "{}", summary.coverage_table());
        }
    }
}

#[test]
fn the_planted_bug_is_found_shrunk_and_replayed_from_its_plan_file() {
    let (summary, failures) = sweep(&Register, &sweep_of("swarm 0 bug=read-one", 100), &|_| {});
    assert!(summary.failures > 0 && summary.by_check.contains_key("safety: stale-read"));
    let first = &failures[0];
    assert!(first.replay.contains("--example register -- replay swarm"), "{}", first.replay);
    // The failure's record replays the same run.
    let record = parse_record(&Register, &first.record).unwrap();
    let report = run(&Register, &record, None, Capture::default());
    assert_eq!(record.reproduced_by(report.fingerprint), Some(true));
    // Shrunk, it fails the same way with fewer episodes, and its file replays it.
    let shrunk = shrink(&Register, &record).unwrap();
    let (minimal, plan) = &shrunk.minimal;
    assert_eq!(shrunk.verdict.kind(), "safety");
    assert!(plan.episodes.len() <= shrunk.original.1.episodes.len());
    let text = write_plan_file(minimal, plan, "a test");
    let (parsed, parsed_plan) = parse_plan_file(&Register, &text).unwrap();
    assert_eq!((&parsed, &parsed_plan), (minimal, plan));
    let replayed = run(&Register, &parsed, Some(&parsed_plan), Capture::default());
    assert!(matches!(replayed.verdict, Verdict::Safety(_)), "{}", replayed.verdict);
    assert_eq!(replayed.fingerprint, shrunk.fingerprint);
}

#[test]
fn the_subtler_bug_a_reused_version_is_found_within_100_seeds() {
    let (summary, failures) =
        sweep(&Register, &sweep_of("swarm 0 bug=reuse-version", 100), &|_| {});
    assert!(summary.failures > 0, "{}", summary.table(&[]));
    assert!(failures.iter().all(|f| f.checks == "safety: stale-read"), "{failures:?}");
}

#[test]
fn a_client_that_shuns_replicas_for_good_fails_the_liveness_check() {
    let (summary, failures) =
        sweep(&Register, &sweep_of("partitions 0 bug=shun-forever", 100), &|_| {});
    assert!(summary.failures > 0, "{}", summary.table(&[]));
    assert!(failures.iter().all(|f| f.checks == "liveness: no-progress"), "{failures:?}");
}

#[test]
fn a_run_is_a_function_of_its_record() {
    let record = parse_record(&Register, "swarm 7 fault=3 quiet=3").unwrap();
    let capture = Capture { trace: false, event_log: 10_000 };
    let (a, b) = (run(&Register, &record, None, capture), run(&Register, &record, None, capture));
    assert_eq!((a.fingerprint, &a.event_log, &a.plan), (b.fingerprint, &b.event_log, &b.plan));
    assert!(a.events > 1_000);
    assert_eq!(a.virtual_time, std::time::Duration::from_secs(6));
    assert!(a.verdict.is_pass(), "{}", a.verdict);
    let other = run(&Register, &Record { seed: 8, ..record }, None, capture);
    assert_ne!(a.fingerprint, other.fingerprint);
}

fn exit(args: &[&str]) -> ExitCode {
    let args = std::iter::once("register").chain(args.iter().copied());
    Main::new(&Register, "register", "a test").run_from(args)
}

#[test]
fn the_command_line_refuses_bad_input_with_status_2() {
    let bad: [&[&str]; 11] = [
        &["sweep", "--count", "0"],
        &["sweep", "--profile", "chaos", "--count", "1"],
        &["sweep", "--bug", "segfault", "--count", "1"],
        &["sweep", "--jobs", "0", "--count", "1"],
        &["sweep", "--shard", "3/2"],
        &["replay", "swarm", "x"],
        &["replay"],
        &["replay", "--plan", "/nonexistent/plan"],
        &["replay", "--plan", "/nonexistent/plan", "--bug", "read-one"],
        &["replay", "swarm", "1", "quiet=1"],
        &["replay", "swarm", "1", "bug=read one"],
    ];
    for args in bad {
        assert_eq!(exit(args), ExitCode::from(2), "{args:?}");
    }
    let failures = std::env::temp_dir().join(format!("register-failures-{}", std::process::id()));
    let failures = failures.to_str().unwrap();
    let quiet = ["--quiet", "--failures", failures, "--json"];
    let sweep = |extra: &[&str]| {
        let args: Vec<&str> =
            ["sweep", "--count", "30"].iter().chain(&quiet).chain(extra).copied().collect();
        exit(&args)
    };
    assert_eq!(sweep(&[]), ExitCode::SUCCESS);
    assert_eq!(sweep(&["--bug", "read-one"]), ExitCode::FAILURE);
    let written = std::fs::read_to_string(failures).unwrap();
    assert!(written.lines().all(|line| line.contains("bug=read-one fp=0x")), "{written}");
    let _ = std::fs::remove_file(failures);
    assert_eq!(
        exit(&["check-determinism", "--seeds", "0..2", "--fault-seconds", "2"]),
        ExitCode::SUCCESS
    );
}
