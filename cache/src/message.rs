//! What cache nodes say to each other.
//!
//! A client write forwarded to its coordinator ([`PeerRequest::Forward`]) and a
//! replica copy ([`PeerRequest::Replicate`]) are different messages: the first is
//! versioned by its receiver, the second carries its version and is applied only if
//! newer.

use std::time::Duration;

use bytes::Bytes;

use crate::anti_entropy::{MerkleRequest, MerkleResponse};
use crate::consistency::Consistency;
use crate::error::Error;
use crate::gossip::{MembershipRequest, MembershipResponse};
use crate::keys::{KeyList, KeysRequest, KeysResponse};
use crate::rebalance::{RebalanceRequest, RebalanceResponse};
use crate::store::{Entry, Item};
use crate::version::Version;

/// A client write, before it is versioned.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum WriteOp {
    /// Set the value, with an optional time to live.
    Set {
        /// The value.
        value: Bytes,
        /// How long the item lives; `None` for ever.
        ttl: Option<Duration>,
    },
    /// Remove the key (writes a tombstone).
    Remove,
}

impl WriteOp {
    /// The name of the operation, for metrics and traces.
    pub fn name(&self) -> &'static str {
        match self {
            WriteOp::Set { .. } => "set",
            WriteOp::Remove => "remove",
        }
    }
}

/// Why a node sends a [`PeerRequest::Replicate`].
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReplicaCause {
    /// The coordinator's replica write of a client write.
    Write,
    /// A hint replayed to the owner it was queued for.
    Hint,
    /// A read repair of an owner that answered with an older version, or none.
    ReadRepair,
    /// An anti-entropy push of what the peer lacks or holds older.
    AntiEntropy,
}

impl ReplicaCause {
    /// The cause's name, for traces.
    pub fn name(self) -> &'static str {
        match self {
            ReplicaCause::Write => "write",
            ReplicaCause::Hint => "hint",
            ReplicaCause::ReadRepair => "read_repair",
            ReplicaCause::AntiEntropy => "anti_entropy",
        }
    }
}

/// A request from one cache node to another.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PeerRequest {
    /// Coordinate this client write: version it, apply it, replicate it.
    Forward {
        /// The key.
        key: String,
        /// The write.
        op: WriteOp,
        /// The client's level; `None` for the coordinator's write consistency.
        consistency: Option<Consistency>,
    },
    /// Apply this versioned entry if it is newer than what is held (replica writes,
    /// hint replays, read repairs and anti-entropy pushes).
    Replicate {
        /// The key.
        key: String,
        /// The entry, with its version.
        entry: Entry,
        /// Why it is sent. The receiver treats every cause alike; the cause is there
        /// for traces and for whoever watches the wire (the harness books hint
        /// deliveries by it rather than trust the sender's counters).
        cause: ReplicaCause,
    },
    /// Return the entry held for this key, tombstones included.
    Read {
        /// The key.
        key: String,
    },
    /// Failure detection and gossip (`gossip.rs`, `detector.rs`).
    Membership(MembershipRequest),
    /// Merkle anti-entropy (`anti_entropy.rs`).
    AntiEntropy(MerkleRequest),
    /// Ownership transfer on join and leave (`rebalance.rs`).
    Rebalance(RebalanceRequest),
    /// Cluster-wide key listing (`keys.rs`).
    Keys(KeysRequest),
    /// A client's request: any node serves it, forwarding as needed.
    Client(ClientRequest),
}

/// What a client asks a cache node (the cache's client protocol).
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ClientRequest {
    /// Set `key` to `value`, with an optional time to live.
    Set {
        /// The key.
        key: String,
        /// The value.
        value: Bytes,
        /// How long the item lives; `None` for ever.
        ttl: Option<Duration>,
        /// The level; `None` for the node's write consistency.
        consistency: Option<Consistency>,
    },
    /// Read `key`.
    Get {
        /// The key.
        key: String,
        /// The level; `None` for the node's read consistency.
        consistency: Option<Consistency>,
    },
    /// Remove `key`.
    Remove {
        /// The key.
        key: String,
        /// The level; `None` for the node's write consistency.
        consistency: Option<Consistency>,
    },
    /// List the cluster's live keys matching `pattern` (see `CacheNode::list_keys`).
    ListKeys {
        /// Empty for every key, a glob, or a literal prefix.
        pattern: String,
        /// The most keys returned; 0 for no limit.
        max: usize,
    },
}

/// The answer to a [`ClientRequest`].
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ClientResponse {
    /// A set or remove: the version written, or why it failed.
    Written(Result<Version, Error>),
    /// A get: the live item, if any, or why the read failed.
    Read(Result<Option<Item>, Error>),
    /// A key listing, or why it failed.
    Keys(Result<KeyList, Error>),
}

impl PeerRequest {
    /// The request's kind, for traces and message rules.
    pub fn kind(&self) -> &'static str {
        match self {
            PeerRequest::Forward { .. } => "forward",
            PeerRequest::Replicate { .. } => "replicate",
            PeerRequest::Read { .. } => "read",
            PeerRequest::Membership(_) => "membership",
            PeerRequest::AntiEntropy(_) => "anti_entropy",
            PeerRequest::Rebalance(_) => "rebalance",
            PeerRequest::Keys(_) => "keys",
            PeerRequest::Client(_) => "client",
        }
    }
}

/// The answer to a [`PeerRequest`].
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PeerResponse {
    /// The outcome of a forwarded write: its version, or why it failed.
    Written(Result<Version, Error>),
    /// The outcome of a replica write: whether it applied, and what is held now.
    Replicated {
        /// Whether the entry was newer and replaced what was held.
        applied: bool,
        /// The version held after the request.
        held: Option<Version>,
    },
    /// The entry held for a read key.
    Entry(Option<Entry>),
    /// The request failed on the receiver.
    Failed(Error),
    /// Answers a [`PeerRequest::Membership`].
    Membership(MembershipResponse),
    /// Answers a [`PeerRequest::AntiEntropy`].
    AntiEntropy(MerkleResponse),
    /// Answers a [`PeerRequest::Rebalance`].
    Rebalance(RebalanceResponse),
    /// Answers a [`PeerRequest::Keys`].
    Keys(KeysResponse),
    /// Answers a [`PeerRequest::Client`].
    Client(ClientResponse),
}
