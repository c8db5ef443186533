//! The command line as a user drives it: bad input is refused with exit status 2 and a
//! sentence, and a failure found with any knobs replays from its `failures.txt` line.

use std::path::PathBuf;
use std::process::{Command, Output};

fn cachesim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cachesim"))
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("cannot run cachesim: {error}"))
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-test");
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

#[test]
fn bad_input_exits_2_with_what_is_wrong() {
    let cases: &[(&[&str], &str)] = &[
        (&["sweep", "--count", "0"], "runs nothing"),
        (&["sweep", "--seed", "18446744073709551615", "--count", "2"], "runs past the last seed"),
        (&["sweep", "--jobs", "0"], "--jobs 0 runs nothing"),
        (&["sweep", "--jobs", "100000"], "too many"),
        (&["sweep", "--fault-seconds", "86400"], "expected 1 to 600 seconds"),
        (&["sweep", "--quiet-seconds", "-1"], "not a whole number"),
        (&["sweep", "--count", "x"], "not a whole number"),
        (&["sweep", "--seeds", "0..3", "--seed", "7"], "cannot be used with"),
        (&["sweep", "--seeds", "5..5"], "expected A..B"),
        (&["sweep", "--shard", "0/4"], "1 <= K <= N"),
        (&["sweep", "--seeds", "0..1", "--shard", "2/4"], "is empty"),
        (&["sweep", "--clients", "100000"], "expected 1 to 64 clients"),
        (&["sweep", "--mutant", "nope"], "unknown mutant"),
        (&["replay"], "which run?"),
        (&["replay", "swarm"], "expected `PROFILE SEED"),
        (&["replay", "storm", "1"], "unknown profile"),
        (&["replay", "swarm", "1", "speed=3"], "unknown knob"),
        (&["replay", "--plan", "no-such.plan", "--seed", "1"], "cannot be used with"),
        (&["replay", "--plan", "no-such.plan"], "cannot read plan file"),
        (&["mutants", "--seeds", "0"], "runs nothing"),
        (&["shrink", "swarm", "1", "quiet=9999"], "expected 0 to 600 seconds"),
    ];
    for (args, expected) in cases {
        let output = cachesim(args);
        let said = text(&output);
        assert_eq!(
            output.status.code(),
            Some(2),
            "cachesim {args:?} exited {:?}:\n{said}",
            output.status
        );
        assert!(said.contains(expected), "cachesim {args:?} did not say {expected:?}:\n{said}");
    }
}

#[test]
fn a_failure_found_with_knobs_replays_from_its_failures_line() {
    let failures = scratch("failures.txt");
    let path = failures.to_str().expect("a UTF-8 path");
    let args = [
        "sweep",
        "--count",
        "1",
        "--profile",
        "none",
        "--fault-seconds",
        "2",
        "--quiet-seconds",
        "5",
        "--clients",
        "2",
        "--mutant",
        "fanout-removes-counted-as-sets",
        "--quiet",
        "--failures",
        path,
    ];
    let output = cachesim(&args);
    assert_eq!(output.status.code(), Some(1), "the planted bug fails seed 0:\n{}", text(&output));
    let written = std::fs::read_to_string(&failures).expect("failures.txt was written");
    let line = written.lines().next().expect("one failure line");
    let record = line.split('#').next().expect("a record").trim();
    assert!(
        record.starts_with(
            "none 0 fault=2 quiet=5 clients=2 mutant=fanout-removes-counted-as-sets fp=0x"
        ),
        "{line}"
    );
    let mut replay = vec!["replay"];
    replay.extend(record.split_whitespace());
    let output = cachesim(&replay);
    let said = text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(said.contains("reproduced the recorded run"), "{said}");
    assert!(said.contains("counter-untrue"), "{said}");
}

#[test]
fn a_panic_outside_a_task_is_that_seeds_crash_and_the_sweep_goes_on() {
    let failures = scratch("panics.txt");
    let path = failures.to_str().expect("a UTF-8 path");
    let args = [
        "sweep",
        "--count",
        "4",
        "--jobs",
        "2",
        "--profile",
        "none",
        "--fault-seconds",
        "2",
        "--quiet-seconds",
        "2",
        "--mutant",
        "panic-on-stop",
        "--quiet",
        "--failures",
        path,
    ];
    let output = cachesim(&args);
    let said = text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(said.contains("crash: panic outside a task: the node was stopped"), "{said}");
    let written = std::fs::read_to_string(&failures).expect("failures.txt was written");
    let seeds: Vec<&str> =
        written.lines().map(|line| line.split_whitespace().nth(1).unwrap_or("")).collect();
    assert_eq!(seeds, ["0", "1", "2", "3"], "every seed, in seed order:\n{written}");
    assert!(written.lines().all(|line| line.ends_with("# crash")), "{written}");
}
