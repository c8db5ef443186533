//! The history of one run: every client operation with its virtual invoke and
//! completion times and its outcome, plus the node crashes that lose memory.

use std::fmt;

use cache::{Consistency, NodeId, Version};

use crate::bad_input::BadInput;

/// What a client asked.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// Set the key to a value unique to this operation.
    Set {
        /// The value written (unique per set: `c{client}-{seq}`, maybe padded with `.`).
        value: String,
        /// The time to live the set asked for, in milliseconds; `None` for ever. The
        /// coordinator turns it into an absolute expiry on its own wall clock.
        ttl_ms: Option<u64>,
    },
    /// Read the key.
    Get,
    /// Remove the key.
    Remove,
    /// List the cluster's live keys matching `pattern` (empty: every key; a glob with
    /// `*`, `?` or `[`; else a literal prefix). The op's `key` is the pattern too.
    ListKeys {
        /// The pattern.
        pattern: String,
    },
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Not finished yet (or the run ended first).
    Pending,
    /// Acknowledged: a write's version, or a read's item (value and version) if any.
    Ok {
        /// The version written (writes) or read (reads of a live item).
        version: Option<Version>,
        /// The value read.
        value: Option<String>,
    },
    /// A key listing's answer.
    Keys {
        /// The keys listed, sorted and deduplicated.
        keys: Vec<String>,
        /// The members that did not answer (fully): keys they hold may be missing.
        partial: Vec<NodeId>,
        /// More keys may match than were listed (the request's `max`, or a member's
        /// own limit).
        truncated: bool,
    },
    /// Failed with an error the cache returned, or the node was unreachable (the
    /// request was then never delivered, unless the text says otherwise).
    Failed(String),
    /// No answer in time: it may or may not have taken effect.
    Unknown,
    /// The request never left the client (a refused connect, a reconnect backoff): it
    /// had no effect. Only a real network's client knows this; the simulator's
    /// clients record [`Outcome::Failed`].
    NotSent(String),
}

/// One client operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Op {
    /// Its index in the history.
    pub index: usize,
    /// The client that issued it.
    pub client: usize,
    /// The cache node it was sent to.
    pub target: NodeId,
    /// The key.
    pub key: String,
    /// What was asked.
    pub kind: OpKind,
    /// The consistency level the request carried (drawn per operation; a key listing
    /// records QUORUM but the cache lists from every member it can reach).
    pub consistency: Consistency,
    /// Virtual time of the request, in nanoseconds.
    pub invoke_ns: u64,
    /// Virtual time of the answer, in nanoseconds.
    pub complete_ns: Option<u64>,
    /// The outcome.
    pub outcome: Outcome,
    /// For acknowledged writes: the nodes that held the write (or newer) when it was
    /// acknowledged; for reads of an item, the nodes that held its version (or newer)
    /// when the answer arrived; seen white-box.
    pub holders: Vec<NodeId>,
    /// For a set that failed with a quorum error: the version some node stored it
    /// under when the error arrived (a failed write is not rolled back: the owners
    /// that acknowledged it keep it). Its `holders` are the nodes that held it then.
    pub applied_version: Option<Version>,
}

impl Op {
    /// Whether it is a set or a remove.
    pub fn is_write(&self) -> bool {
        matches!(self.kind, OpKind::Set { .. } | OpKind::Remove)
    }

    /// Whether it is a get (a read of one key; key listings are not).
    pub fn is_read(&self) -> bool {
        matches!(self.kind, OpKind::Get)
    }

    /// Whether it is a key listing.
    pub fn is_list(&self) -> bool {
        matches!(self.kind, OpKind::ListKeys { .. })
    }

    /// A set's time to live in milliseconds, if it had one.
    pub fn ttl_ms(&self) -> Option<u64> {
        match self.kind {
            OpKind::Set { ttl_ms, .. } => ttl_ms,
            _ => None,
        }
    }
}

/// Values longer than this print abbreviated (padded values reach 64 KiB).
const VALUE_SHOWN_MAX: usize = 24;

/// A value for a message: its unique head (`c{client}-{seq}`) and its length.
pub(crate) fn shown(value: &str) -> String {
    if value.len() <= VALUE_SHOWN_MAX {
        return value.to_string();
    }
    let head: String = value.chars().take(VALUE_SHOWN_MAX).collect();
    format!("{head}…({} bytes)", value.len())
}

fn seconds(ns: u64) -> String {
    format!("{}.{:06}s", ns / 1_000_000_000, (ns % 1_000_000_000) / 1_000)
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match &self.kind {
            OpKind::Set { value, ttl_ms: None } => format!("set {}={}", self.key, shown(value)),
            OpKind::Set { value, ttl_ms: Some(ttl) } => {
                format!("set {}={} ttl {ttl}ms", self.key, shown(value))
            }
            OpKind::Get => format!("get {}", self.key),
            OpKind::Remove => format!("remove {}", self.key),
            OpKind::ListKeys { pattern } => format!("list {pattern:?}"),
        };
        let done = self.complete_ns.map_or_else(|| "…".to_string(), seconds);
        write!(
            f,
            "op#{} client{} via {} [{}, {}] {what} ({}) -> ",
            self.index,
            self.client,
            self.target,
            seconds(self.invoke_ns),
            done,
            self.consistency
        )?;
        match &self.outcome {
            Outcome::Pending => write!(f, "pending"),
            Outcome::Ok { version: None, .. } => write!(f, "ok (none)"),
            Outcome::Ok { version: Some(version), value: Some(value) } => {
                write!(f, "ok {} @{}:{}", shown(value), version.counter, version.origin)
            }
            Outcome::Ok { version: Some(version), value: None } => {
                write!(f, "ok @{}:{}", version.counter, version.origin)
            }
            Outcome::Keys { keys, partial, truncated } => {
                write!(f, "keys [{}]", keys.join(","))?;
                if !partial.is_empty() {
                    let missing: Vec<&str> = partial.iter().map(NodeId::as_str).collect();
                    write!(f, " partial (missing {})", missing.join(","))?;
                }
                if *truncated { write!(f, " truncated") } else { Ok(()) }
            }
            Outcome::Failed(error) => write!(f, "failed: {error}"),
            Outcome::NotSent(error) => write!(f, "not sent: {error}"),
            Outcome::Unknown => write!(f, "unknown (timeout)"),
        }
    }
}

/// A node losing its memory at a virtual time: a crash, or the end of a drain (the
/// node leaves and rejoins empty).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MemoryLoss {
    /// The node.
    pub node: NodeId,
    /// When, in virtual nanoseconds.
    pub at_ns: u64,
}

/// Everything the checkers read.
#[derive(Clone, Debug, Default, Hash)]
pub struct History {
    /// The operations, in invoke order.
    pub ops: Vec<Op>,
    /// The kills, in time order.
    pub memory_losses: Vec<MemoryLoss>,
    /// Nodes that joined the running cluster, with when (virtual nanoseconds).
    pub joins: Vec<(NodeId, u64)>,
    /// When the probe phase began: operations invoked then or later are probes.
    pub probes_from_ns: Option<u64>,
    /// Bad requests (see [`BadInput`]) the cache answered other than with the error
    /// the contract names.
    pub bad_inputs: Vec<BadInput>,
}

impl History {
    /// Whether `op` is a probe (see [`History::probes_from_ns`]).
    pub fn is_probe(&self, op: &Op) -> bool {
        self.probes_from_ns.is_some_and(|from_ns| op.invoke_ns >= from_ns)
    }

    /// Records an invocation; returns its index.
    pub fn invoke(
        &mut self,
        client: usize,
        target: NodeId,
        key: String,
        kind: OpKind,
        consistency: Consistency,
        invoke_ns: u64,
    ) -> usize {
        let index = self.ops.len();
        let op = Op {
            index,
            client,
            target,
            key,
            kind,
            consistency,
            invoke_ns,
            complete_ns: None,
            outcome: Outcome::Pending,
            holders: Vec::new(),
            applied_version: None,
        };
        self.ops.push(op);
        index
    }

    /// Records a completion.
    ///
    /// # Panics
    ///
    /// When the operation completed already.
    pub fn complete(
        &mut self,
        index: usize,
        complete_ns: u64,
        outcome: Outcome,
        holders: Vec<NodeId>,
    ) {
        let op = &mut self.ops[index];
        assert_eq!(op.outcome, Outcome::Pending, "an operation completes once");
        assert!(complete_ns >= op.invoke_ns);
        op.complete_ns = Some(complete_ns);
        op.outcome = outcome;
        op.holders = holders;
    }

    /// Records where a set that failed with a quorum error was applied anyway (see
    /// [`Op::applied_version`]).
    pub fn applied_anyway(&mut self, index: usize, version: Version, holders: Vec<NodeId>) {
        let op = &mut self.ops[index];
        assert!(matches!(op.outcome, Outcome::Failed(_)), "only a failed write applies anyway");
        op.applied_version = Some(version);
        op.holders = holders;
    }

    /// Whether `node` lost its memory at or after `since_ns`.
    pub fn lost_memory_since(&self, node: &NodeId, since_ns: u64) -> bool {
        self.memory_losses.iter().any(|loss| loss.node == *node && loss.at_ns >= since_ns)
    }
}
