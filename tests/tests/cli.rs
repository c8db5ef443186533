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
        (&["sweep", "--quiet-seconds", "-1"], "expected a whole number"),
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

/// The summary of `sweep --json` output, without what depends on the machine.
fn summary_of(json: &str) -> serde_json::Value {
    let line = json.lines().last().expect("a summary line");
    let mut summary: serde_json::Value = serde_json::from_str(line).expect("a JSON summary");
    let object = summary.as_object_mut().expect("an object");
    object.remove("wall_seconds");
    object.remove("jobs");
    summary
}

#[test]
fn the_merge_of_four_shards_is_the_unsharded_sweep() {
    let sweep = [
        "sweep",
        "--seeds",
        "0..12",
        "--profile",
        "none",
        "--fault-seconds",
        "2",
        "--quiet-seconds",
        "5",
        "--clients",
        "2",
        "--mutant",
        "quorum-off-by-one",
        "--quiet",
        "--json",
        "--failures",
    ];
    let whole = cachesim(&[&sweep[..], &[scratch("whole.txt").to_str().unwrap()]].concat());
    assert_eq!(whole.status.code(), Some(1), "{}", text(&whole));
    let whole = String::from_utf8_lossy(&whole.stdout).into_owned();
    let mut shard_files = Vec::new();
    for k in 1..=4 {
        let shard = format!("{k}/4");
        let failures = scratch(&format!("shard-{k}.txt"));
        let args = [&sweep[..], &[failures.to_str().unwrap(), "--shard", &shard]].concat();
        let output = cachesim(&args);
        let path = scratch(&format!("shard-{k}.json"));
        std::fs::write(&path, &output.stdout).expect("a shard's output");
        shard_files.push(path.to_str().unwrap().to_string());
    }
    let mut merge = vec!["merge", "--json"];
    merge.extend(shard_files.iter().map(String::as_str));
    let merged = cachesim(&merge);
    assert_eq!(merged.status.code(), Some(1), "{}", text(&merged));
    let merged = String::from_utf8_lossy(&merged.stdout).into_owned();
    assert_eq!(summary_of(&merged), summary_of(&whole));
    let failures = |json: &str| {
        json.lines().filter(|l| l.contains("\"failure\"")).map(String::from).collect::<Vec<_>>()
    };
    assert_eq!(failures(&merged), failures(&whole));
    assert_eq!(failures(&whole).len(), 12, "{whole}");
    // Three of four shards do not make the sweep.
    let output = cachesim(&merge[..5]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output).contains("shard(s) 4/4 missing"), "{}", text(&output));
}

#[test]
fn until_covered_stops_once_every_coverage_point_is_reached() {
    let failures = scratch("covered.txt");
    let args = [
        "sweep",
        "--count",
        "400",
        "--until-covered",
        "--json",
        "--quiet",
        "--failures",
        failures.to_str().unwrap(),
    ];
    let output = cachesim(&args);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let summary = summary_of(&String::from_utf8_lossy(&output.stdout));
    let coverage = summary["coverage"].as_object().expect("a coverage map");
    assert_eq!(coverage.len(), cache::COVERAGE_POINTS.len());
    let never: Vec<&String> = coverage
        .iter()
        .filter(|(_, seeds)| seeds.as_u64() == Some(0))
        .map(|(point, _)| point)
        .collect();
    assert!(never.is_empty(), "never reached: {never:?}");
    let seeds = summary["seeds"].as_u64().unwrap();
    assert!(seeds < 400, "stopped early: {seeds} seeds");
}
