//! A seeded, single-threaded deterministic simulator.
//!
//! `sim` runs many simulated *nodes*, their tasks and their timers on one thread, in
//! virtual time, with every scheduling decision and random draw taken from one seed.
//! The same seed gives the same run, event for event; a failure prints that seed.
//!
//! ```
//! use std::time::Duration;
//!
//! let mut sim = sim::Sim::new(42);
//! let server = sim.node("server").build();
//! let (tx, rx) = futures::channel::oneshot::channel();
//! sim.spawn_on(server, "reply", async move {
//!     sim::time::sleep(Duration::from_millis(5)).await;
//!     tx.send(sim::rand::range(0..100)).unwrap();
//! })
//! .unwrap();
//! let value = sim.block_on(async move { rx.await.unwrap() }).unwrap();
//! assert!(value < 100);
//! assert_eq!(sim.elapsed(), Duration::from_millis(5));
//! ```
//!
//! # Map of the crate
//!
//! - [`Sim`] (`sim.rs`): the handle you drive: [`Sim::block_on`], [`Sim::run_for`],
//!   [`Sim::run_until`], [`Sim::step`]; [`Builder`] configures it; [`Handle`] is what
//!   tasks hold to reach the simulation (nodes, faults, spawning).
//! - `world.rs`: all state of one run; `executor.rs`: tasks, wakers and the step;
//!   `timer.rs`: pending timers.
//! - [`time`]: virtual [`time::Instant`], [`time::sleep`], [`time::timeout`],
//!   [`time::interval`], and each node's [`time::wall_clock`].
//! - [`rand`]: the seed's ChaCha streams, per subsystem and per node; [`rand::Ratio`].
//! - `node.rs`: [`NodeId`], kill, restart, pause, resume; `clock.rs`: clock skew.
//! - [`net`]: the virtual network: addresses, ports, endpoints, the link model,
//!   partitions, clogs, message rules, RPC and counters.
//! - [`fingerprint`] and [`check_determinism`]: the run's event hash (over message
//!   contents too) and log, [`fingerprint::note`] for a node's own decisions, and the
//!   check that names the first event where two runs of a seed differ.
//! - [`always`], [`sometimes`], [`reachable`], [`unreachable`]: named assertions with
//!   coverage ([`Sim::coverage`]): what must hold, and what a good test makes happen.
//! - [`macro@test`]: `#[sim::test]` on an `async fn`, a seeded test in one line.
//! - [`run_seeds`] / [`Seeds`]: seeded tests driven by `SIM_SEED`, `SIM_SEEDS`,
//!   `SIM_JOBS` and `SIM_CHECK_DETERMINISM`.
//! - [`buggify`]: FoundationDB-style fault points.
//! - `trace.rs`: `tracing` output stamped with virtual time and node, filtered by
//!   `SIM_LOG`.
//!
//! # Rules of the road
//!
//! Nothing here reads the OS clock or OS randomness, spawns threads (except the seed
//! runner, one simulation per thread) or keeps global state: the running simulation is
//! found through a thread-local slot that only a driving call sets. A task that blocks
//! the thread (a busy loop that never awaits) cannot be interrupted; the step limit
//! catches tasks that keep yielding forever.

#![deny(missing_docs)]

mod assertion;
mod buggify;
mod clock;
mod context;
mod determinism;
mod error;
mod executor;
pub mod fingerprint;
pub mod net;
mod node;
pub mod rand;
mod seeds;
mod sim;
mod task;
pub mod time;
mod timer;
mod trace;
mod world;

pub use crate::assertion::{
    ASSERTIONS_MAX, AssertionCount, AssertionKind, Coverage, always, reachable, sometimes,
    unreachable,
};
pub use crate::buggify::{
    BUGGIFY_ACTIVATION_DEFAULT, BUGGIFY_FIRE_DEFAULT, BuggifyConfig, buggify, buggify_at,
    buggify_with,
};
pub use crate::determinism::{DeterminismError, EVENT_LOG_CHECK_MAX, check_determinism};
pub use crate::error::{BlockedTask, ErrorKind, SimError};
pub use crate::executor::Step;
pub use crate::fingerprint::{Event, EventKind};
pub use crate::node::{NODES_MAX, NodeBuilder, NodeId, NodeState};
pub use crate::seeds::{
    CHECK_DETERMINISM_ENV, JOBS_ENV, JOBS_MAX, SEED_ENV, SEEDS_ENV, SeedFailures, Seeds,
    TestOutcome, run_seeds,
};
pub use crate::sim::{Builder, Handle, STEP_LIMIT_DEFAULT, SchedulerMode, Sim, TIME_LIMIT_DEFAULT};
pub use crate::task::{JoinError, JoinHandle, current_node, spawn, spawn_named, yield_now};
pub use crate::timer::{TIMERS_LIVE_MAX, TIMERS_PER_RUN_MAX};
pub use crate::trace::{TRACE_ENV, Trace, VirtualTime};
/// `#[sim::test]` (and `#[sim::test(seeds = N)]`): an `async fn` test run on a fresh
/// simulation per seed, as [`run_seeds`] runs a closure; see the `sim-macros` crate.
pub use sim_macros::test;
