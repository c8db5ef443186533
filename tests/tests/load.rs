//! The contract on a real cluster: a bounded loopback load test (3 nodes, 8 clients
//! over TCP, 50,000 operations at QUORUM, one node killed and restarted empty
//! midway), judged by the simulator's history checks, and the same test catching a
//! planted bug. Its figures print with `-- --nocapture`; nothing here is timed.
#![cfg(feature = "net")]

use std::collections::BTreeMap;
use std::sync::Mutex;

use cachesim::{LoadConfig, LoadReport, run_loopback_load};

/// The load tests run one at a time: each puts a whole cluster and its clients on one
/// thread, and two at once on a 2-core machine would only make each slower.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn checks_failed(report: &LoadReport) -> BTreeMap<&'static str, usize> {
    let mut failed = BTreeMap::new();
    for violation in &report.violations {
        *failed.entry(violation.check.name()).or_default() += 1;
    }
    failed
}

#[test]
fn a_loopback_cluster_under_load_keeps_the_contract() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let config = LoadConfig::default();
    let report = run_loopback_load(&config).unwrap();
    let (ok, failed, not_sent, unknown) = report.counts;
    let (p50, p99, max) = report.latency_us;
    eprintln!(
        "loopback load: {} ops in {:.2}s: {ok} ok, {failed} failed, {not_sent} not sent, \
         {unknown} unknown; {:.0} ok ops/s; latency p50 {p50} us, p99 {p99} us, max {max} us; \
         {} violation(s)",
        config.operations,
        report.elapsed.as_secs_f64(),
        report.throughput(),
        report.violations.len()
    );
    for violation in report.violations.iter().take(5) {
        eprintln!("{violation}");
    }
    assert!(report.violations.is_empty(), "{} violation(s)", report.violations.len());
    // Operations sent to n3 while it is down, or while a client waits out its
    // reconnect backoff, fail at once (never sent); the rest succeed.
    assert!(ok * 2 >= config.operations, "most operations succeed: {ok} of {}", config.operations);
    let probes = report.history.ops.iter().filter(|op| report.history.is_probe(op)).count();
    assert_eq!(probes, config.keys, "every key read at the end");
}

/// The final check proves it can fail: with all three nodes killed at once and
/// restarted empty, every acknowledged write is gone, and the reads at ALL say so.
#[test]
fn losing_every_replica_is_reported_as_lost_writes() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let config = LoadConfig { operations: 5_000, keys: 50, victims: 3, ..LoadConfig::default() };
    let report = run_loopback_load(&config).unwrap();
    let failed = checks_failed(&report);
    // Keys whose newest acknowledged write was a remove read as nothing rightly.
    assert!(failed.get("lost-write").is_some_and(|count| *count >= config.keys / 2), "{failed:?}");
}

/// A planted bug the real network shows at once: coordinators answer every QUORUM
/// write with a quorum failure (after replicating it). The unavailability check
/// catches it in the window before the kill.
#[test]
fn a_planted_bug_fails_the_load_test() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mutant = Some(cache::Mutant::WritesReportFailure);
    let config = LoadConfig { operations: 5_000, keys: 50, mutant, ..LoadConfig::default() };
    let report = run_loopback_load(&config).unwrap();
    let failed = checks_failed(&report);
    assert!(failed.contains_key("unavailable"), "{failed:?}");
}
