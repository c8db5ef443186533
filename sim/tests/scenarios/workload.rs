//! A random spawn/sleep/channel workload over a few nodes, recording what happened.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use sim::Sim;

/// Nodes in the workload (besides main).
pub(crate) const NODES: usize = 3;
/// Workers per node.
pub(crate) const WORKERS_PER_NODE: usize = 3;
/// Rounds each worker makes.
pub(crate) const ROUNDS: usize = 5;

/// One observed action: (virtual ns, worker, round, what).
pub(crate) type Observation = (u64, usize, usize, &'static str);

/// Runs the workload to completion on `sim`; returns the observations in order.
pub(crate) fn run(sim: &mut Sim) -> Vec<Observation> {
    let log: Rc<RefCell<Vec<Observation>>> = Rc::default();
    let nodes: Vec<_> = (0..NODES).map(|i| sim.node(format!("n{}", i + 1)).build()).collect();
    let (tx, mut rx) = mpsc::channel::<(usize, usize)>(4);
    for (n, node) in nodes.iter().enumerate() {
        for w in 0..WORKERS_PER_NODE {
            let worker = n * WORKERS_PER_NODE + w;
            let log = Rc::clone(&log);
            let mut tx = tx.clone();
            let _ = sim.spawn_on(*node, format!("worker{worker}"), async move {
                for round in 0..ROUNDS {
                    let pause = sim::rand::range(0..5_000_000);
                    sim::time::sleep(Duration::from_nanos(pause)).await;
                    log.borrow_mut().push((now_ns(), worker, round, "woke"));
                    if sim::rand::chance(sim::rand::Ratio::new(1, 2)) {
                        sim::yield_now().await;
                    }
                    // Helpers spawned mid-run exercise spawn from inside tasks.
                    let inner_log = Rc::clone(&log);
                    let helper = sim::spawn(async move {
                        inner_log.borrow_mut().push((now_ns(), worker, round, "helper"));
                    });
                    helper.await.unwrap();
                    tx.send((worker, round)).await.unwrap();
                }
            });
        }
    }
    drop(tx);
    let main_log = Rc::clone(&log);
    sim.block_on(async move {
        while let Some((worker, round)) = rx.next().await {
            main_log.borrow_mut().push((now_ns(), worker, round, "received"));
        }
    })
    .unwrap();
    let observations = log.borrow().clone();
    assert_eq!(observations.len(), NODES * WORKERS_PER_NODE * ROUNDS * 3);
    observations
}

fn now_ns() -> u64 {
    sim::time::Instant::now().as_nanos()
}
