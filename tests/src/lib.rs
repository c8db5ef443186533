//! The harness that judges the cache: cluster fixtures, workloads, checkers, and the
//! cache's implementation of `sim_harness::System`, which the `cachesim` command line
//! runs.
//!
//! # Map of the crate
//!
//! - `cluster.rs`: [`DistCluster`], an N-node cache cluster on a [`sim::Sim`], with
//!   [`setup_in_process_cluster`], node lookup by id, and [`find_owner_key`] /
//!   [`allocate_port`] for scripted tests.
//!
//! - `scenario.rs`: [`ScenarioCluster`], what a data-path test body needs of a
//!   cluster, so that one body runs on the simulator ([`on_sim`]) and, with the `net`
//!   feature, on real ports (`real_cluster.rs`: `RealCluster`, `on_real`).
//!
//! - `system.rs`: [`CacheSystem`], the cache as `sim_harness` runs it (sweeps,
//!   replay, shrink, plan files and the corpus come from there), with [`record`] and
//!   [`run`] for tests.
//! - `run.rs`: one run's build, drive and judge; `nemesis.rs`: the cluster as the
//!   nemesis's target, with the cache's own faults.
//! - `faults.rs`: [`Profile`]s, and [`CacheFault`] (joins and drains).
//! - `record.rs`: the cache's knobs in a run record.
//! - `history.rs`: the [`History`] of client operations and crashes.
//! - `workload.rs`: clients on their own nodes issuing random requests.
//! - `checker.rs`: the contract's clauses, as checks over history and stores.
//! - `bad_input.rs`: requests the cache must refuse, and the check that it does.
//! - `quiet.rs`: [`QuietWindows`], where the contract promises progress and fresh reads.
//! - `observer.rs`: samples the stores through a run; survival and replication over time.
//! - `wire.rs`: what the harness sees cross the network (hint replays answered), booked
//!   apart from the cache's own counters.
//! - `sync_book.rs`: anti-entropy's promise in each direction, watched at the wire.
//! - `tally.rs`: per node, the messages its counters promise to count, and the check
//!   that holds the counters to the wire.
//! - `knobs.rs`: [`Knobs`], the cache options a seed draws, and the [`RepairPath`] it
//!   may switch off.
//! - `mutants.rs`: sweeps of the cache's planted bugs, proving the checkers catch them.
//!
//! Everything that judges lives here, outside the cache: the cache never checks
//! itself against a model.

#![deny(missing_docs)]

mod bad_input;
mod checker;
mod cluster;
mod faults;
mod history;
mod knobs;
mod mutants;
mod nemesis;
mod observer;
mod quiet;
#[cfg(feature = "net")]
mod real_cluster;
#[cfg(feature = "net")]
mod real_load;
mod record;
mod run;
mod scenario;
mod sync_book;
mod system;
mod tally;
mod wire;
mod workload;

pub use crate::bad_input::BadInput;
pub use crate::checker::{Availability, Check, Violation, history_checks};
pub use crate::cluster::{
    CLUSTER_NODES_MAX, DistCluster, FixtureError, REPLICATION_FACTOR_DEFAULT, allocate_port,
    find_owner_key, setup_in_process_cluster, setup_in_process_cluster_mutant,
    setup_in_process_cluster_rf,
};
pub use crate::faults::{
    CacheFault, CacheKind, Episode, Fault, FaultPlan, JOINS_PER_RUN_MAX, ParseProfileError,
    Profile, draw_plan, join_count,
};
pub use crate::history::{History, MemoryLoss, Op, OpKind, Outcome};
pub use crate::knobs::{Knobs, RepairPath};
pub use crate::mutants::{MutantReport, mutant_profile, sweep_mutant};
pub use crate::observer::{REPLICATION_BOUND, SAMPLE_INTERVAL};
pub use crate::quiet::{QuietWindows, SETTLE, Window};
#[cfg(feature = "net")]
pub use crate::real_cluster::{RealCluster, on_real};
#[cfg(feature = "net")]
pub use crate::real_load::{LoadConfig, LoadReport, run_loopback_load};
pub use crate::record::CLIENTS_MAX;
pub use crate::run::{CacheWorld, Liveness};
pub use crate::scenario::{
    KEY_CANDIDATES_MAX, ScenarioCluster, ScenarioFuture, key_owned_by, on_sim,
};
pub use crate::system::{CacheOutcome, CacheSystem, record, run};
pub use crate::workload::{VALUE_PAD_MAX, WORKLOAD_KEYS_MAX, WorkloadConfig};
