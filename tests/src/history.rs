//! The history of one run: every client operation with its virtual invoke and
//! completion times and its outcome, plus the node crashes that lose memory.

use std::fmt;

use cache::{Consistency, NodeId, Version};

/// What a client asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// Set the key to a value unique to this operation.
    Set {
        /// The value written.
        value: String,
    },
    /// Read the key.
    Get,
    /// Remove the key.
    Remove,
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// Failed with an error the cache returned.
    Failed(String),
    /// No answer in time: it may or may not have taken effect.
    Unknown,
}

/// One client operation.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// The consistency level it ran at (the cluster's read or write level).
    pub consistency: Consistency,
    /// Virtual time of the request, in nanoseconds.
    pub invoke_ns: u64,
    /// Virtual time of the answer, in nanoseconds.
    pub complete_ns: Option<u64>,
    /// The outcome.
    pub outcome: Outcome,
    /// For acknowledged writes: the nodes that held the write (or newer) when it was
    /// acknowledged, seen white-box.
    pub holders: Vec<NodeId>,
}

impl Op {
    /// Whether it is a set or a remove.
    pub fn is_write(&self) -> bool {
        !matches!(self.kind, OpKind::Get)
    }
}

fn seconds(ns: u64) -> String {
    format!("{}.{:06}s", ns / 1_000_000_000, (ns % 1_000_000_000) / 1_000)
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match &self.kind {
            OpKind::Set { value } => format!("set {}={value}", self.key),
            OpKind::Get => format!("get {}", self.key),
            OpKind::Remove => format!("remove {}", self.key),
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
                write!(f, "ok {value} @{}:{}", version.counter, version.origin)
            }
            Outcome::Ok { version: Some(version), value: None } => {
                write!(f, "ok @{}:{}", version.counter, version.origin)
            }
            Outcome::Failed(error) => write!(f, "failed: {error}"),
            Outcome::Unknown => write!(f, "unknown (timeout)"),
        }
    }
}

/// A node losing its memory (a kill) at a virtual time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryLoss {
    /// The node.
    pub node: NodeId,
    /// When, in virtual nanoseconds.
    pub at_ns: u64,
}

/// Everything the checkers read.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// The operations, in invoke order.
    pub ops: Vec<Op>,
    /// The kills, in time order.
    pub memory_losses: Vec<MemoryLoss>,
}

impl History {
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

    /// Whether `node` lost its memory at or after `since_ns`.
    pub fn lost_memory_since(&self, node: &NodeId, since_ns: u64) -> bool {
        self.memory_losses.iter().any(|loss| loss.node == *node && loss.at_ns >= since_ns)
    }
}
