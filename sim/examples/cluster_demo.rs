//! A small traced simulation: three nodes heartbeat each other over channels, one is
//! paused, one is killed and restarted, and a node's clock is skewed. Every line of the
//! trace is stamped with virtual time and node name.
//!
//! Run: `cargo run --release -p sim --example cluster_demo [SEED]`

// A demo prints its summary for the person who ran it.
#![allow(clippy::print_stdout)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use futures::StreamExt;
use futures::channel::mpsc;
use sim::{NodeId, Sim, Trace};
use tracing::{info, warn};

type Inboxes = Rc<RefCell<BTreeMap<usize, mpsc::UnboundedSender<(usize, u64)>>>>;

const NODE_COUNT: usize = 3;
const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seed = match std::env::args().nth(1) {
        None => 42,
        Some(text) => text.parse().map_err(|_| {
            format!("invalid seed {text:?}: expected a whole number, for example 42")
        })?,
    };
    let filter = std::env::var(sim::TRACE_ENV).unwrap_or_else(|_| "info".to_string());
    let mut sim = Sim::builder().seed(seed).trace(Trace::Filter(filter)).build();
    let inboxes: Inboxes = Rc::default();
    let nodes: Vec<NodeId> = (0..NODE_COUNT)
        .map(|index| {
            let inboxes = Rc::clone(&inboxes);
            sim.node(format!("n{}", index + 1))
                .init(move || heartbeat_node(index, Rc::clone(&inboxes)))
                .build()
        })
        .collect();

    sim.run_for(Duration::from_secs(2))?;
    sim.pause(nodes[1])?;
    sim.run_for(Duration::from_millis(1500))?;
    sim.resume(nodes[1])?;
    sim.kill(nodes[2])?;
    inboxes.borrow_mut().remove(&2);
    sim.run_for(Duration::from_secs(1))?;
    sim.set_clock_offset(nodes[0], -30_000_000_000)?;
    sim.restart(nodes[2])?;
    sim.run_for(Duration::from_secs(2))?;

    println!(
        "seed {seed}: {} virtual, {} events, {} polls, fingerprint {:#018x}",
        sim.now(),
        sim.event_count(),
        sim.steps(),
        sim.fingerprint()
    );
    Ok(())
}

/// One node's life: register an inbox, then heartbeat the others and log what arrives.
async fn heartbeat_node(index: usize, inboxes: Inboxes) {
    let (tx, mut rx) = mpsc::unbounded();
    inboxes.borrow_mut().insert(index, tx);
    let wall_ms = wall_clock_ms();
    info!(wall_ms, "started");
    let receiver = sim::spawn_named("receiver", async move {
        while let Some((from, sent_ms)) = rx.next().await {
            let skew_ms = i128::from(wall_clock_ms()) - i128::from(sent_ms);
            if skew_ms.abs() > 1_000 {
                warn!(from = from + 1, skew_ms, "late or skewed heartbeat");
            } else {
                info!(from = from + 1, "heartbeat");
            }
        }
    });
    let mut ticker = sim::time::interval(HEARTBEAT_INTERVAL);
    loop {
        ticker.tick().await;
        // Jitter from the node's own stream: different seeds, different interleavings.
        sim::time::sleep(Duration::from_millis(sim::rand::range(0..50))).await;
        let peers: Vec<_> = inboxes
            .borrow()
            .iter()
            .filter(|(peer, _)| **peer != index)
            .map(|(_, tx)| tx.clone())
            .collect();
        for peer in peers {
            let _ = peer.unbounded_send((index, wall_clock_ms()));
        }
        if receiver.is_finished() {
            break;
        }
    }
}

fn wall_clock_ms() -> u64 {
    let since_epoch =
        sim::time::wall_clock().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}
