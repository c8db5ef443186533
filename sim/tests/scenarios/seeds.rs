//! Goal: seeded tests run every selected seed, in parallel, and a failure names each
//! failing seed with a command that replays it.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sim::Seeds;

fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: BTreeMap<String, String> =
        vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |name| vars.get(name).cloned()
}

#[test]
fn environment_selects_seeds_jobs_and_checking() {
    let seeds = Seeds::from_lookup(8, lookup(&[("SIM_JOBS", "3")])).unwrap();
    assert_eq!((seeds.seeds(), seeds.jobs(), seeds.checks_determinism()), (0..8, 3, false));
    let seeds = Seeds::from_lookup(8, lookup(&[("SIM_SEED", "42")])).unwrap();
    assert_eq!(seeds.seeds(), 42..43);
    let seeds = Seeds::from_lookup(8, lookup(&[("SIM_SEED", "42"), ("SIM_SEEDS", "100")])).unwrap();
    assert_eq!(seeds.seeds(), 42..142);
    let seeds =
        Seeds::from_lookup(8, lookup(&[("SIM_SEEDS", "5"), ("SIM_CHECK_DETERMINISM", "1")]))
            .unwrap();
    assert_eq!((seeds.seeds(), seeds.checks_determinism()), (0..5, true));
}

#[test]
fn malformed_environment_is_a_clear_error() {
    let error = Seeds::from_lookup(8, lookup(&[("SIM_SEED", "0x10")])).unwrap_err();
    assert!(error.contains("invalid SIM_SEED=\"0x10\": expected a whole number"), "{error}");
    let error = Seeds::from_lookup(8, lookup(&[("SIM_JOBS", "0")])).unwrap_err();
    assert!(error.contains("SIM_JOBS=0"), "{error}");
    let error = Seeds::from_lookup(8, lookup(&[("SIM_CHECK_DETERMINISM", "yes")])).unwrap_err();
    assert!(error.contains("SIM_CHECK_DETERMINISM=\"yes\": expected 0 (off) or 1 (on)"), "{error}");
    let error = Seeds::from_lookup(8, lookup(&[("SIM_SEEDS", "0")])).unwrap_err();
    assert!(error.contains("SIM_SEEDS=0 runs no seed"), "{error}");
    let error =
        Seeds::from_lookup(8, lookup(&[("SIM_SEED", &u64::MAX.to_string()), ("SIM_SEEDS", "2")]))
            .unwrap_err();
    assert!(error.contains("passes the largest seed"), "{error}");
}

#[test]
fn every_seed_runs_once_across_threads() {
    let seen = Mutex::new(Vec::new());
    Seeds::new(0..40, 4)
        .try_run(|sim| {
            seen.lock().unwrap().push(sim.seed());
            sim.block_on(sim::time::sleep(Duration::from_millis(1)))
        })
        .unwrap();
    let mut seen = seen.into_inner().unwrap();
    seen.sort_unstable();
    assert_eq!(seen, (0..40).collect::<Vec<_>>());
}

#[test]
fn failures_name_each_seed_with_a_replay_command() {
    let failures = Seeds::new(0..10, 2)
        .try_run(|sim| {
            let seed = sim.seed();
            sim.block_on(async move {
                if seed == 7 {
                    panic!("boom at seed {seed}");
                }
            })
            .map_err(|error| error.to_string())?;
            if seed == 3 { Err(format!("checker failed for {seed}")) } else { Ok(()) }
        })
        .unwrap_err();
    assert_eq!(failures.total, 10);
    let seeds: Vec<u64> = failures.failures.iter().map(|(seed, _)| *seed).collect();
    assert_eq!(seeds, [3, 7]);
    let report = failures.to_string();
    assert!(report.starts_with("2 of 10 seeds failed"), "{report}");
    assert!(report.contains("seed 3: checker failed for 3"), "{report}");
    assert!(report.contains("boom at seed 7"), "{report}");
    assert!(report.contains("replay: SIM_SEED=7 cargo test -p sim -- --exact"), "{report}");
}

#[test]
fn a_panicking_body_is_reported_not_propagated() {
    let failures = Seeds::new(5..6, 1)
        .try_run(|_sim| -> Result<(), String> { panic!("assertion in the body") })
        .unwrap_err();
    assert_eq!(failures.failures[0].0, 5);
    assert!(failures.failures[0].1.contains("panicked: assertion in the body"));
}

#[test]
fn determinism_mode_catches_a_run_that_differs() {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let failures = Seeds::new(0..1, 1)
        .check_determinism(true)
        .try_run(|sim| {
            let draws = RUNS.fetch_add(1, Ordering::Relaxed);
            sim.block_on(async move {
                for _ in 0..draws {
                    sim::rand::u64();
                }
            })
        })
        .unwrap_err();
    assert!(failures.failures[0].1.contains("non-determinism"), "{failures}");
    // And a deterministic body passes in the same mode.
    Seeds::new(0..4, 2)
        .check_determinism(true)
        .try_run(|sim| sim.block_on(async { sim::rand::u64() }).map(drop))
        .unwrap();
}

#[test]
fn run_seeds_uses_the_default_count() {
    let count = AtomicU64::new(0);
    // With SIM_SEED/SIM_SEEDS unset in the test environment this runs seeds 0..6;
    // with them set, as many as they say. Either way every run succeeds.
    let expected = Seeds::from_env(6).seeds();
    sim::run_seeds(6, |sim| {
        count.fetch_add(1, Ordering::Relaxed);
        sim.block_on(async {})
    });
    assert_eq!(count.load(Ordering::Relaxed), expected.end - expected.start);
}
