//! Goal: the same seed gives the same run, event for event; different seeds explore
//! different interleavings; the determinism check names the first differing event.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sim::{EventKind, Sim};

use crate::workload;

/// Over 1,000 seeds, two runs of each seed give the same fingerprint, the same event
/// log and the same observed order.
#[test]
fn same_seed_same_fingerprint_and_order_over_1000_seeds() {
    for seed in 0..1_000 {
        let mut first = Sim::builder().seed(seed).event_log(100_000).build();
        let mut second = Sim::builder().seed(seed).event_log(100_000).build();
        let order_first = workload::run(&mut first);
        let order_second = workload::run(&mut second);
        assert_eq!(order_first, order_second, "seed {seed}");
        assert_eq!(first.fingerprint(), second.fingerprint(), "seed {seed}");
        assert_eq!(first.event_count(), second.event_count(), "seed {seed}");
        let log = first.event_log();
        assert!(!log.is_empty());
        assert_eq!(log, second.event_log(), "seed {seed}");
    }
}

/// Different seeds give different interleavings and fingerprints.
#[test]
fn different_seeds_interleave_differently() {
    let mut orders = BTreeSet::new();
    let mut fingerprints = BTreeSet::new();
    for seed in 0..50 {
        let mut sim = Sim::new(seed);
        let order: Vec<(usize, usize, &str)> =
            workload::run(&mut sim).into_iter().map(|(_, w, r, what)| (w, r, what)).collect();
        orders.insert(order);
        fingerprints.insert(sim.fingerprint());
    }
    assert_eq!(fingerprints.len(), 50);
    assert!(orders.len() >= 45, "only {} distinct orders of 50", orders.len());
}

/// The random scheduler reorders tasks that are ready together; FIFO does not.
#[test]
fn fifo_mode_runs_ready_tasks_in_order() {
    let order_for = |mode, seed| {
        let mut sim = Sim::builder().seed(seed).scheduler(mode).build();
        sim.block_on(async {
            let order = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let order = order.clone();
                    sim::spawn(async move { order.borrow_mut().push(i) })
                })
                .collect();
            for handle in handles {
                handle.await.unwrap();
            }
            order.take()
        })
        .unwrap()
    };
    for seed in 0..5 {
        assert_eq!(order_for(sim::SchedulerMode::Fifo, seed), (0..8).collect::<Vec<_>>());
    }
    let random: BTreeSet<_> =
        (0..20).map(|seed| order_for(sim::SchedulerMode::Random, seed)).collect();
    assert!(random.len() > 10, "random mode gave {} orders", random.len());
}

/// A body that behaves differently on its second run (a counter that survives across
/// runs) is caught, and the report names the first differing event.
#[test]
fn check_determinism_names_the_planted_difference() {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let result = sim::check_determinism(11, |sim| {
        let run = RUNS.fetch_add(1, Ordering::Relaxed);
        sim.block_on(async move {
            sim::time::sleep(Duration::from_millis(10)).await;
            let first = sim::spawn_named("steady", async {});
            first.await.unwrap();
            // The planted non-determinism: a different task name on the second run.
            let name = if run == 0 { "alpha" } else { "beta" };
            sim::spawn_named(name, async {}).await.unwrap();
        })
        .unwrap();
    });
    let error = result.expect_err("the two runs differ");
    assert_eq!(error.seed(), 11);
    let index = error.first_difference().expect("the difference is within the log");
    let (first, second) = error.context();
    let differing_first = first.iter().find(|event| event.index == index).unwrap();
    let differing_second = second.iter().find(|event| event.index == index).unwrap();
    assert!(matches!(&differing_first.kind, EventKind::Spawn { name, .. } if name == "alpha"));
    assert!(matches!(&differing_second.kind, EventKind::Spawn { name, .. } if name == "beta"));
    // Context from before the difference is the same in both runs.
    assert!(
        first
            .iter()
            .filter(|event| event.index < index)
            .eq(second.iter().filter(|e| e.index < index))
    );
    let report = error.to_string();
    assert!(report.contains(&format!("first at event #{index}")), "{report}");
    assert!(report.contains("'alpha'") && report.contains("'beta'"), "{report}");
    assert!(report.contains("SIM_SEED=11"), "{report}");
}

/// A difference in a random draw (a counter-dependent amount of randomness) is caught
/// even when task names are the same.
#[test]
fn check_determinism_catches_extra_draws() {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let result = sim::check_determinism(5, |sim| {
        let draws = 1 + RUNS.fetch_add(1, Ordering::Relaxed);
        sim.block_on(async move {
            for _ in 0..draws {
                sim::rand::u64();
            }
            sim::time::sleep(Duration::from_secs(1)).await;
        })
        .unwrap();
    });
    let error = result.expect_err("the second run draws once more");
    let index = error.first_difference().unwrap();
    let (first, second) = error.context();
    let second_event = second.iter().find(|event| event.index == index).unwrap();
    assert!(matches!(second_event.kind, EventKind::Draw { .. }), "{error}");
    assert!(first.iter().any(|event| event.index == index));
}

/// A deterministic body passes the check and returns the run's fingerprint.
#[test]
fn check_determinism_passes_a_deterministic_body() {
    let fingerprint = sim::check_determinism(3, |sim| {
        workload::run(sim);
    })
    .unwrap();
    let mut sim = Sim::new(3);
    workload::run(&mut sim);
    assert_eq!(sim.fingerprint(), fingerprint);
}

/// Simulations on parallel threads give exactly what they give one after another.
#[test]
fn parallel_threads_match_sequential_runs() {
    let run = |seed| {
        let mut sim = Sim::new(seed);
        let order = workload::run(&mut sim);
        (sim.fingerprint(), order)
    };
    let sequential: Vec<_> = (0..16).map(run).collect();
    #[allow(clippy::disallowed_methods)] // The point of the test: threads must not matter.
    let parallel: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16).map(|seed| scope.spawn(move || run(seed))).collect();
        handles.into_iter().map(|handle| handle.join().unwrap()).collect()
    });
    assert_eq!(sequential, parallel);
}

/// A thousand simulations in a row on one thread behave as each does alone.
#[test]
fn many_sims_in_a_row_do_not_leak_state() {
    let mut alone = Sim::new(77);
    let expected = workload::run(&mut alone);
    let expected_fingerprint = alone.fingerprint();
    for seed in 0..200 {
        let mut other = Sim::new(seed);
        workload::run(&mut other);
    }
    let mut again = Sim::new(77);
    assert_eq!(workload::run(&mut again), expected);
    assert_eq!(again.fingerprint(), expected_fingerprint);
}

/// Forked streams are independent of each other and of the run.
#[test]
fn forked_streams_are_stable() {
    use sim::rand::RngExt;
    let sim = Sim::new(9);
    let mut faults = sim.fork_rng("faults");
    let a: Vec<u64> = (0..5).map(|_| faults.below(1000)).collect();
    let mut other = Sim::new(9).fork_rng("faults");
    let b: Vec<u64> = (0..5).map(|_| other.below(1000)).collect();
    assert_eq!(a, b);
    let mut workload = Sim::new(9).fork_rng("workload");
    assert_ne!(a, (0..5).map(|_| workload.below(1000)).collect::<Vec<_>>());
}
