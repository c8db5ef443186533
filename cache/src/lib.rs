//! The I/O-free core of a Dynamo-style distributed in-memory cache.
//!
//! This crate re-imagines the distributed backend of hyp3rd/hypercache (see
//! `shared/reference/hypercache.md`): a consistent-hash ring, primary and replica
//! owners, last-write-wins on Lamport versions, tombstones, failure detection by
//! heartbeat and gossip. Everything here is plain synchronous code: structs that take
//! the time (`now_ms`) as an argument and return what happened, never reading a clock,
//! never sending a message, never spawning. The node and its data path sit on top, and
//! can run on the `sim` simulator or on a real network.
//!
//! ```
//! use bytes::Bytes;
//! use cache::{Entry, Item, LamportClock, NodeId, Options, Ring, Store};
//!
//! let options = Options::default();
//! let nodes: Vec<NodeId> = ["n1", "n2", "n3"].iter().map(|n| n.parse().unwrap()).collect();
//! let mut ring = Ring::new(options.replication_factor(), options.vnode_count_per_node());
//! ring.rebuild(&nodes);
//! let owners = ring.lookup("user:42");
//! assert_eq!(owners.len(), 3);
//!
//! // The primary versions the write; every owner applies it through the same check.
//! let mut clock = LamportClock::new(owners.primary().unwrap().clone());
//! let mut store = Store::new(options.entry_count_max());
//! let item = Item::new(Bytes::from_static(b"alice"), clock.tick());
//! assert!(store.apply("user:42", Entry::Item(item)).unwrap().is_applied());
//! assert_eq!(&store.get("user:42", 0).unwrap().value[..], b"alice");
//! ```
//!
//! # Map of the crate
//!
//! - `node_id.rs`: [`NodeId`], a node's name (ordered, cheap to clone).
//! - `version.rs`: [`Version`] (Lamport counter + origin, totally ordered) and
//!   [`LamportClock`] with its receive rule.
//! - `ring.rs`: [`Ring`], xxhash64 vnodes; [`Ring::lookup`] returns [`Owners`] without
//!   allocating; [`Ring::find_key_with_owners`] places test keys.
//! - `membership.rs`: [`Membership`], one node's view: upsert, mark, refute, remove,
//!   gossip merge by incarnation, removals that stop resurrection; mutations return a
//!   [`MembershipChange`].
//! - `store.rs`: [`Store`] of [`Entry`] (an [`Item`] or a [`Tombstone`]);
//!   [`Store::apply`] is the version check of every write path; local sweeps.
//! - `consistency.rs`: [`Consistency`] ONE / QUORUM / ALL and the acks each needs.
//! - `options.rs`: [`Options`], validated by [`OptionsBuilder::build`].
//! - `metrics.rs`: [`Metrics`] counters named after the reference's, and
//!   [`MetricsSnapshot`].
//! - `error.rs`: [`Error`], the operating errors.
//!
//! # Rules of the road
//!
//! No wall-clock reads, no OS randomness, no threads, no hashed collections (iteration
//! order must not depend on a random seed): `clippy.toml` enforces it. Every queue and
//! map has a named limit. A broken invariant panics; a bad input or an unreachable peer
//! is an [`Error`].

#![deny(missing_docs)]

mod anti_entropy;
mod consistency;
mod detector;
mod error;
mod glob;
mod gossip;
mod handoff;
mod hint_queue;
mod keys;
mod maintenance;
mod membership;
mod merkle;
mod message;
mod metrics;
mod mutant;
mod node;
mod node_id;
mod options;
mod read_path;
mod rebalance;
mod ring;
mod runtime;
#[cfg(feature = "sim")]
mod sim_runtime;
#[cfg(all(test, feature = "sim"))]
mod sim_tests;
mod store;
mod version;
mod write_path;

pub use crate::anti_entropy::{
    BOOTSTRAP_ROUNDS_MAX, MERKLE_BACKOFF_FACTOR_MAX, MERKLE_FETCH_BYTES_MAX,
    MERKLE_KEYS_PER_FETCH_MAX, MERKLE_LEAVES_PER_REQUEST_MAX, MerkleRequest, MerkleResponse,
    SyncReport,
};
pub use crate::consistency::{Consistency, ParseConsistencyError};
pub use crate::error::Error;
pub use crate::glob::{Glob, KeyPattern, PATTERN_LEN_MAX, PatternError};
pub use crate::gossip::{Ack, GOSSIP_ENTRY_COUNT_MAX, MembershipRequest, MembershipResponse};
pub use crate::handoff::HINT_REPLAY_BATCH_MAX;
pub use crate::keys::{
    KEY_COUNT_PER_NODE_MAX, KEYS_PAGE_COUNT_MAX, KEYS_PAGE_LEN_MAX, KEYS_PAGE_SCAN_MAX, KeyList,
    KeysRequest, KeysResponse,
};
pub use crate::membership::{
    ChangeKind, GossipEntry, MEMBER_COUNT_MAX, Member, MemberCounts, Membership, MembershipChange,
    NodeState, REMOVAL_COUNT_MAX, Removal,
};
pub use crate::merkle::{
    MERKLE_CHUNK_SIZE_MAX, MERKLE_LEAF_COUNT_MAX, MerkleHash, MerkleTree, is_valid_leaf_count,
    leaf_count_for, leaf_index, root_of,
};
pub use crate::message::{
    ClientRequest, ClientResponse, PeerRequest, PeerResponse, ReplicaCause, WriteOp,
};
pub use crate::metrics::{Metrics, MetricsSnapshot};
pub use crate::mutant::Mutant;
pub use crate::node::{CacheNode, NodeConfig, PeerHandler};
pub use crate::node_id::{NODE_ID_LEN_MAX, NodeId};
pub use crate::options::{
    ENTRY_COUNT_MAX, HINT_BYTES_MAX, HINT_COUNT_MAX, INDIRECT_PROBE_COUNT_MAX, INTERVAL_MS_MAX,
    Options, OptionsBuilder, OptionsError, REBALANCE_BATCH_SIZE_MAX,
};
pub use crate::rebalance::{RebalanceRequest, RebalanceResponse, TransferOutcome};
pub use crate::ring::{
    Owners, REPLICATION_FACTOR_MAX, RING_NODE_COUNT_MAX, Ring, VNODE_COUNT_PER_NODE_MAX, key_hash,
};
pub use crate::runtime::{LocalBoxFuture, Runtime, TaskGuard, Transport, TransportError};
#[cfg(feature = "sim")]
pub use crate::sim_runtime::{StartError, parse_address, start_on_sim};
pub use crate::store::{
    Apply, Entry, Item, KEY_LEN_MAX, Store, Tombstone, VALUE_LEN_MAX, check_key, check_value,
};
pub use crate::version::{LamportClock, Version};

/// The interesting states the cache marks as reached ([`Runtime::reached`]): a sweep
/// should reach every one, and names those it did not.
pub const COVERAGE_POINTS: &[&str] = &[
    "anti-entropy found differing leaves",
    "anti-entropy pulled a key",
    "anti-entropy pushed a key",
    "a peer was declared dead",
    "an indirect probe refuted a failed heartbeat",
    "a peer was suspected",
    "a node refuted a suspicion of itself",
    "a hint was queued",
    "a full hint queue dropped its oldest hint",
    "a hint expired",
    "a hint was replayed",
    "an expired item became a tombstone",
    "a tombstone was collected",
    "a node started draining",
    "a stale copy was refused by the version check",
    "a copy was refused by the ownership guard",
    "a read was answered by an owner after the primary",
    "a read failed its quorum",
    "a read met conflicting versions",
    "a read broke a version tie by origin",
    "a read repaired a stale owner",
    "rebalance transferred a key",
    "a write was coordinated by an owner after the primary",
    "a write failed its quorum",
    "a write was forwarded to its coordinator",
    "a key listing skipped a dead member",
];
