//! The oracle for mutation testing with cargo-mutants (`tests/scripts/mutation-score.sh`):
//! a short sweep over seeds `0..ORACLE_SEEDS`, the profiles in turn
//! ([`mutant_profile`]), that fails on the first seed whose verdict is not a pass.
//! A mutant of the cache is caught when this test fails: a safety or liveness
//! violation, or a crash (a cache assertion, a deadlock, a limit).
//!
//! Ignored, so that `cargo test --workspace` does not run it: it is a sweep of the
//! unplanted cache, which the other tests already cover. Run it with
//! `cargo test -p cachesim --test mutation_oracle -- --ignored`.
//!
//! Environment:
//! - `ORACLE_SEEDS`: seeds to run (default [`SEEDS_DEFAULT`]).
//! - `ORACLE_FIRST_SEED`: the first seed (default 0).
//! - `ORACLE_JOBS`: threads (default 1). With more, seeds are claimed in order and
//!   the lowest failing seed found before the stop is reported.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use cachesim::{mutant_profile, record, run};

/// Seeds the oracle runs unless `ORACLE_SEEDS` says otherwise: 50 of each of the 8
/// profiles, ~20 s for a passing sweep in the dev profile on one core (~49 ms a seed).
const SEEDS_DEFAULT: u64 = 400;

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| panic!("{name}={text:?}: not a number")),
        Err(_) => default,
    }
}

/// A failing seed: (seed, profile name, verdict text).
type Failure = (u64, &'static str, String);

#[test]
#[ignore = "the mutation-testing oracle: run with --ignored (tests/scripts/mutation-score.sh)"]
fn sweep_passes_every_seed() {
    let first = env_u64("ORACLE_FIRST_SEED", 0);
    let count = env_u64("ORACLE_SEEDS", SEEDS_DEFAULT);
    let jobs = env_u64("ORACLE_JOBS", 1).max(1);
    let end = first.saturating_add(count);
    let next = AtomicU64::new(first);
    let stop = AtomicBool::new(false);
    let failures: Mutex<Vec<Failure>> = Mutex::new(Vec::new());
    let ran = AtomicU64::new(0);
    // Wall time for the report only; it decides nothing.
    #[allow(clippy::disallowed_methods)]
    let start = Instant::now();
    // Seeds run on threads, one whole simulation each: only the seed counter, the stop
    // flag and the failures are shared.
    #[allow(clippy::disallowed_methods)]
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(count.max(1)) {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        break;
                    }
                    let profile = mutant_profile(seed);
                    let report = run(&record(profile, seed));
                    ran.fetch_add(1, Ordering::Relaxed);
                    if !report.verdict.is_pass() {
                        stop.store(true, Ordering::Relaxed);
                        let failure = (seed, profile.name(), report.verdict.to_string());
                        failures.lock().expect("failures lock").push(failure);
                    }
                }
            });
        }
    });
    let wall = start.elapsed().as_secs_f64();
    let ran = ran.load(Ordering::Relaxed);
    let mut failures = failures.into_inner().expect("failures lock");
    failures.sort_by_key(|failure| failure.0);
    if let Some((seed, profile, verdict)) = failures.first() {
        panic!(
            "oracle: seed {seed} (profile {profile}) did not pass after {ran} seed(s), \
             {wall:.1}s\n  replay: cargo run --release -- replay --seed {seed} \
             --profile {profile}\n  verdict: {verdict}"
        );
    }
    eprintln!("oracle: {ran} seed(s) from {first} passed in {wall:.1}s on {jobs} thread(s)");
}
