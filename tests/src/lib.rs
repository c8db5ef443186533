//! The harness that judges the cache: cluster fixtures now; workloads, checkers and
//! the `cachesim` command line next.
//!
//! # Map of the crate
//!
//! - `cluster.rs`: [`DistCluster`], an N-node cache cluster on a [`sim::Sim`], with
//!   [`setup_in_process_cluster`], node lookup by id, and [`find_owner_key`] /
//!   [`allocate_port`] for scripted tests.
//!
//! - `history.rs`: the [`History`] of client operations and crashes.
//! - `workload.rs`: clients on their own nodes issuing random requests.
//! - `faults.rs`: [`Profile`]s and the [`FaultPlan`] a seed draws.
//! - `nemesis.rs`: applies a plan to a running cluster.
//! - `checker.rs`: the contract's clauses, as checks over history and stores.
//! - `bad_input.rs`: requests the cache must refuse, and the check that it does.
//! - `quiet.rs`: [`QuietWindows`], where the contract promises progress and fresh reads.
//! - `observer.rs`: samples the stores through a run; survival and replication over time.
//! - `wire.rs`: what the harness sees cross the network (hint replays answered), booked
//!   apart from the cache's own counters.
//! - `sync_book.rs`: anti-entropy's promise in each direction (a sync pulls what the
//!   peer holds newer and pushes what it holds older), watched at the wire.
//! - `tally.rs`: per node, the messages its counters promise to count, and the check
//!   that holds the counters to the wire.
//! - `knobs.rs`: [`Knobs`], the cache options a seed draws, and the [`RepairPath`] it
//!   may switch off.
//! - `record.rs`: [`RunRecord`], everything that shapes a run in one line of words.
//! - `corpus.rs`: `seeds.txt`, the regression corpus.
//! - `plan_file.rs`: a run written down, for `replay --plan`.
//! - `shrink.rs`: delta debugging of a failing run's plan and workload.
//! - `mutants.rs`: sweeps of the cache's planted bugs, proving the checkers catch them.
//! - `run.rs`: one run end to end, [`run`] → [`RunReport`] with its [`Verdict`].
//!
//! Everything that judges lives here, outside the cache: the cache never checks
//! itself against a model.

#![deny(missing_docs)]

mod bad_input;
mod checker;
mod cluster;
mod corpus;
mod faults;
mod history;
mod knobs;
mod mutants;
mod nemesis;
mod observer;
mod plan_file;
mod quiet;
mod record;
mod run;
mod shrink;
mod sync_book;
mod tally;
mod wire;
mod workload;

pub use crate::bad_input::BadInput;
pub use crate::checker::{Availability, Check, Violation};
pub use crate::cluster::{
    CLUSTER_NODES_MAX, DistCluster, FixtureError, REPLICATION_FACTOR_DEFAULT, allocate_port,
    find_owner_key, setup_in_process_cluster, setup_in_process_cluster_mutant,
    setup_in_process_cluster_rf,
};
pub use crate::corpus::{CorpusEntry, CorpusError, parse_corpus};
pub use crate::faults::{
    EPISODES_PER_KIND_MAX, Episode, Fault, FaultPlan, JOINS_PER_RUN_MAX, LinkTail,
    ParseProfileError, Profile, TAIL_LATENCY_MS_MAX,
};
pub use crate::history::{History, MemoryLoss, Op, OpKind, Outcome};
pub use crate::knobs::{Knobs, RepairPath};
pub use crate::mutants::{MutantReport, mutant_profile, sweep_mutant};
pub use crate::observer::{REPLICATION_BOUND, SAMPLE_INTERVAL};
pub use crate::plan_file::{PlanFileError, parse_plan_file, write_plan_file};
pub use crate::quiet::{QuietWindows, SETTLE, Window};
pub use crate::record::{CLIENTS_MAX, PHASE_SECONDS_MAX, RecordError, RunRecord};
pub use crate::run::{Liveness, RunConfig, RunReport, Verdict, run};
pub use crate::shrink::{SHRINK_RUNS_MAX, ShrinkReport, shrink};
pub use crate::workload::{VALUE_PAD_MAX, WORKLOAD_KEYS_MAX, WorkloadConfig};
