//! Named assertions: `always` and `unreachable` fail the run with its seed; `sometimes`
//! and `reachable` are counted per simulation, and change nothing in the run.

use std::time::Duration;

use sim::{AssertionKind, ErrorKind, Sim};

#[test]
fn coverage_counts_what_fired_per_simulation() {
    let mut sim = Sim::new(1);
    sim.block_on(async {
        for round in 0..10u64 {
            sim::sometimes("round is even", round % 2 == 0);
            sim::sometimes("round is 42", round == 42);
            sim::always("round is small", round < 10);
            if round == 3 {
                sim::reachable("round three");
            }
            sim::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .unwrap();
    let coverage = sim.coverage();
    let count =
        |name: &str| coverage.get(name).map(|count| (count.kind, count.evaluations, count.fired));
    assert_eq!(count("round is even"), Some((AssertionKind::Sometimes, 10, 5)));
    assert_eq!(count("round is 42"), Some((AssertionKind::Sometimes, 10, 0)));
    assert_eq!(count("round is small"), Some((AssertionKind::Always, 10, 0)));
    assert_eq!(count("round three"), Some((AssertionKind::Reachable, 1, 1)));
    assert!(Sim::new(1).coverage().is_empty(), "a fresh simulation has its own counts");
}

#[test]
fn a_failed_always_or_a_reached_unreachable_fails_the_run_with_its_seed() {
    for (seed, body) in [(7, 0), (8, 1)] {
        let mut sim = Sim::new(seed);
        let node = sim.node("n1").build();
        let handle = sim.handle();
        let error = sim
            .block_on(async move {
                let task = handle
                    .spawn_on(node, "checker", async move {
                        sim::time::sleep(Duration::from_millis(5)).await;
                        if body == 0 {
                            sim::always("balance is never negative", false);
                        } else {
                            sim::unreachable("a deleted key is served");
                        }
                    })
                    .unwrap();
                task.await
            })
            .unwrap_err();
        assert_eq!(error.seed(), seed);
        let ErrorKind::Panic { message, node, .. } = error.kind() else {
            panic!("expected a panic, got {error:?}");
        };
        assert_eq!(node, "n1");
        let expected = if body == 0 {
            "always-assertion \"balance is never negative\" failed"
        } else {
            "unreachable point \"a deleted key is served\" was reached"
        };
        assert!(message.contains(expected), "{message}");
    }
}

#[test]
fn assertions_change_nothing_in_the_run() {
    let run = |assert: bool| {
        let mut sim = Sim::new(3);
        sim.block_on(async move {
            for _ in 0..20u64 {
                if assert {
                    sim::sometimes("a draw under five", sim::rand::range(0..10) < 5);
                } else {
                    let _ = sim::rand::range(0..10u64);
                }
                sim::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .unwrap();
        sim.fingerprint()
    };
    assert_eq!(run(true), run(false));
}
