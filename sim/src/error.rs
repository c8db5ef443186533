//! The one error type of a simulation run.

use std::fmt;
use std::time::Duration;

use crate::node::NodeId;

/// Why a simulation run (or a call on it) failed.
///
/// Every error carries the seed and the virtual time, and its `Display` ends with the
/// replay hint (`SIM_SEED=…`), so that a failure never loses its seed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimError {
    seed: u64,
    time_ns: u64,
    kind: ErrorKind,
}

/// What went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A task panicked; the run ended there.
    Panic {
        /// The node the task ran on.
        node: String,
        /// The task's name.
        task: String,
        /// Where the task was spawned.
        location: String,
        /// The panic message.
        message: String,
    },
    /// The main future is unfinished, no task is ready and no timer is pending.
    Deadlock {
        /// Every task that was still alive.
        blocked: Vec<BlockedTask>,
    },
    /// Virtual time would have passed the configured limit.
    TimeLimit {
        /// The limit.
        limit: Duration,
    },
    /// More polls than the configured limit.
    StepLimit {
        /// The limit.
        limit: u64,
    },
    /// No node has this id.
    UnknownNode {
        /// The id given.
        node: NodeId,
        /// How many nodes exist (ids are `0..count`).
        count: usize,
    },
    /// No node has this name.
    UnknownNodeName {
        /// The name given.
        name: String,
        /// The names that exist.
        known: Vec<String>,
    },
    /// The main node cannot be killed, restarted or paused.
    MainNode {
        /// What was attempted.
        action: &'static str,
    },
    /// The node is killed; restart it first.
    NodeKilled {
        /// The node.
        node: NodeId,
        /// What was attempted.
        action: &'static str,
    },
    /// A node with this name exists already.
    DuplicateNodeName {
        /// The name.
        name: String,
    },
    /// Node names must not be empty.
    InvalidNodeName {
        /// The name.
        name: String,
    },
    /// The simulation holds its maximum number of nodes.
    TooManyNodes {
        /// The maximum.
        max: usize,
    },
    /// A clock drift outside the allowed range.
    InvalidDrift {
        /// The drift given, in parts per million.
        drift_ppm: i32,
        /// The largest drift allowed either way.
        max: i32,
    },
    /// A network fault between a node and itself (a node always reaches itself), or a
    /// partition with a node on both sides.
    PartitionSelf {
        /// The node.
        node: NodeId,
    },
    /// A link configuration that makes no sense.
    InvalidLinkConfig {
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A network call failed (see [`crate::net::NetError`]).
    Net {
        /// The network's error.
        error: crate::net::NetError,
    },
}

/// A task alive at a deadlock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockedTask {
    /// The task's name.
    pub task: String,
    /// Its node's name.
    pub node: String,
    /// Where it was spawned.
    pub location: String,
    /// Whether its node is paused (a paused node's tasks cannot run).
    pub paused: bool,
}

impl SimError {
    pub(crate) fn new(seed: u64, time_ns: u64, kind: ErrorKind) -> SimError {
        SimError { seed, time_ns, kind }
    }

    /// The seed of the run.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The virtual time of the failure, since the start of the run.
    pub fn time(&self) -> Duration {
        Duration::from_nanos(self.time_ns)
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// Whether the run itself failed (a panic, deadlock or limit), as opposed to a call
    /// with bad arguments.
    pub fn is_run_failure(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Panic { .. }
                | ErrorKind::Deadlock { .. }
                | ErrorKind::TimeLimit { .. }
                | ErrorKind::StepLimit { .. }
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Panic { node, task, location, message } => write!(
                f,
                "task '{task}' on node {node} (spawned at {location}) panicked: {message}"
            ),
            ErrorKind::Deadlock { blocked } => {
                write!(
                    f,
                    "deadlock: the main future waits but no task can run and no timer is set"
                )?;
                write!(f, "; {} task(s) blocked", blocked.len())?;
                for task in blocked.iter().take(20) {
                    let paused = if task.paused { ", node paused" } else { "" };
                    write!(
                        f,
                        "\n  - '{}' on node {} (spawned at {}{paused})",
                        task.task, task.node, task.location
                    )?;
                }
                Ok(())
            }
            ErrorKind::TimeLimit { limit } => {
                write!(
                    f,
                    "virtual time limit of {limit:?} reached (raise it with Builder::time_limit)"
                )
            }
            ErrorKind::StepLimit { limit } => write!(
                f,
                "step limit of {limit} polls reached: a livelock, or raise it with Builder::step_limit"
            ),
            ErrorKind::UnknownNode { node, count } => {
                write!(
                    f,
                    "unknown node {node}: this simulation has nodes 0 to {}",
                    count.saturating_sub(1)
                )
            }
            ErrorKind::UnknownNodeName { name, known } => write!(
                f,
                "no node is named {name:?}: the nodes are {}; `node(name)` builds a new node, `node_by_name(name)` finds one",
                known.join(", ")
            ),
            ErrorKind::MainNode { action } => {
                write!(f, "cannot {action} the main node: it runs the driving future")
            }
            ErrorKind::NodeKilled { node, action } => {
                write!(f, "cannot {action} {node}: it is killed (restart it first)")
            }
            ErrorKind::DuplicateNodeName { name } => {
                write!(f, "a node named {name:?} exists already: node names must be unique")
            }
            ErrorKind::InvalidNodeName { name } => {
                write!(f, "invalid node name {name:?}: a name must not be empty")
            }
            ErrorKind::TooManyNodes { max } => write!(f, "too many nodes: at most {max}"),
            ErrorKind::InvalidDrift { drift_ppm, max } => {
                write!(f, "invalid clock drift {drift_ppm} ppm: allowed is -{max} to {max}")
            }
            ErrorKind::PartitionSelf { node } => {
                write!(f, "cannot cut {node} off from itself: a node always reaches itself")
            }
            ErrorKind::InvalidLinkConfig { problem } => write!(f, "invalid link config: {problem}"),
            ErrorKind::Net { error } => write!(f, "network: {error}"),
        }
    }
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.time_ns / 1_000_000_000;
        let micros = (self.time_ns % 1_000_000_000) / 1_000;
        write!(
            f,
            "{} (seed {}, virtual time {seconds}.{micros:06}s); replay with SIM_SEED={}",
            self.kind, self.seed, self.seed
        )
    }
}

impl std::error::Error for SimError {}

/// A network error as a simulation error, so that `?` works in a function that returns
/// [`SimError`] (a node's setup allocating ports). Inside a simulation it carries the
/// run's seed and the virtual time; outside one, zeros.
impl From<crate::net::NetError> for SimError {
    fn from(error: crate::net::NetError) -> SimError {
        let (seed, time_ns) = crate::context::try_with(|shared| {
            let seed = shared.world.try_borrow().map_or(0, |world| world.seed());
            (seed, shared.now_ns.get())
        })
        .unwrap_or((0, 0));
        SimError::new(seed, time_ns, ErrorKind::Net { error })
    }
}
