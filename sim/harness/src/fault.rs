//! Faults, episodes and plans: what a run injects, as explicit, printable data.
//!
//! A [`Plan`] is a list of [`Episode`]s (a fault, when it starts, how long it lasts)
//! and an optional [`LinkTail`]. Nodes are indices into the system's fault targets
//! (0 is `n1`). Faults the simulator knows act on nodes and links; a system adds its
//! own through [`CustomFault`] (the cache's node joins and drains, say).

use std::fmt;
use std::time::Duration;

use sim::net::{LatencyTail, LinkConfig};
use sim::rand::{Ratio, SimRng};

/// Episodes one fault kind may have in a run, unless [`CustomFault::episodes_max`]
/// says otherwise.
pub const EPISODES_PER_KIND_MAX: u64 = 4;

/// The faults a system defines on top of the simulator's: a kind to draw, a fault to
/// apply (through [`crate::Target::apply`]), and its words in a plan file.
///
/// A system without faults of its own uses [`NoFault`].
pub trait CustomFault:
    Clone + fmt::Debug + fmt::Display + PartialEq + Send + Sync + 'static
{
    /// What a profile lists to have this fault drawn.
    type Kind: Copy + fmt::Debug + PartialEq + Send + Sync + 'static;

    /// Draws one fault of `kind` for a run whose plans name `node_count` nodes.
    fn draw(kind: Self::Kind, rng: &mut SimRng, node_count: usize) -> Self;

    /// The most episodes of `kind` one run may draw.
    fn episodes_max(_kind: Self::Kind) -> u64 {
        EPISODES_PER_KIND_MAX
    }

    /// Parses the words after `episode START DURATION` when the first, `word`, names
    /// one of these faults; `None` when it names none of them. `Display` must print
    /// what this parses.
    ///
    /// # Errors
    ///
    /// Malformed arguments, with what is expected.
    fn parse(word: &str, args: &[&str], node_count: usize) -> Option<Result<Self, String>>;

    /// The plan-file syntax of these faults, for error messages (`join; drain NODE`).
    fn syntax() -> &'static str;

    /// Checks a whole plan's faults of this type (a cap per run, say).
    ///
    /// # Errors
    ///
    /// What is wrong with the plan.
    fn check_plan(_faults: &[&Self]) -> Result<(), String> {
        Ok(())
    }
}

/// The custom fault of a system that has none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoFault {}

impl fmt::Display for NoFault {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {}
    }
}

impl CustomFault for NoFault {
    type Kind = NoFault;

    fn draw(kind: NoFault, _: &mut SimRng, _: usize) -> NoFault {
        match kind {}
    }

    fn parse(_: &str, _: &[&str], _: usize) -> Option<Result<NoFault, String>> {
        None
    }

    fn syntax() -> &'static str {
        ""
    }
}

/// Whether a killed node keeps what it wrote down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Memory {
    /// It restarts empty (a crash that loses the disk, or an in-memory node).
    Lost,
    /// It restarts with what it made durable (a reboot).
    Kept,
}

/// One fault, applied at an episode's start and undone at its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault<C> {
    /// The two sides cannot reach each other (one node alone on a side: isolated).
    Partition {
        /// One side.
        side_a: Vec<usize>,
        /// The other side.
        side_b: Vec<usize>,
    },
    /// Messages from `from` to `to` are lost; the other direction works.
    PartitionOneway {
        /// The sender cut off.
        from: usize,
        /// The receiver.
        to: usize,
    },
    /// Every message on every link is lost with this probability.
    Loss {
        /// The loss ratio.
        ratio: Ratio,
    },
    /// Every message on every link is duplicated with this probability.
    Duplicate {
        /// The duplication ratio.
        ratio: Ratio,
    },
    /// Latency on every link rises to up to this many milliseconds.
    LatencySpike {
        /// The largest latency.
        latency_ms_max: u64,
    },
    /// The node is killed, losing its memory, and restarted at the end.
    Crash {
        /// The node.
        node: usize,
    },
    /// The node is killed, keeping what it made durable, and restarted at the end.
    Reboot {
        /// The node.
        node: usize,
    },
    /// The node is frozen (a stop-the-world pause) and resumed at the end.
    Pause {
        /// The node.
        node: usize,
    },
    /// The node's wall clock is off by this much, drifting by `drift_ppm`.
    ClockSkew {
        /// The node.
        node: usize,
        /// The offset in milliseconds (negative: behind).
        offset_ms: i64,
        /// The drift in parts per million.
        drift_ppm: i32,
    },
    /// A fault of the system's own.
    Custom(C),
}

impl<C> Fault<C> {
    /// The nodes the fault names (none for link-wide faults and custom ones).
    pub fn nodes(&self) -> Vec<usize> {
        match self {
            Fault::Partition { side_a, side_b } => side_a.iter().chain(side_b).copied().collect(),
            Fault::PartitionOneway { from, to } => vec![*from, *to],
            Fault::Crash { node }
            | Fault::Reboot { node }
            | Fault::Pause { node }
            | Fault::ClockSkew { node, .. } => vec![*node],
            Fault::Loss { .. }
            | Fault::Duplicate { .. }
            | Fault::LatencySpike { .. }
            | Fault::Custom(_) => Vec::new(),
        }
    }
}

/// A node index as plan files write it: 0 is `n1`.
pub fn node_name(index: usize) -> String {
    format!("n{}", index + 1)
}

fn node_list(nodes: &[usize]) -> String {
    nodes.iter().map(|node| node_name(*node)).collect::<Vec<_>>().join(",")
}

/// In plan-file syntax: `partition n1,n2 | n3`, `crash n2`, `loss 1/10`, …
impl<C: fmt::Display> fmt::Display for Fault<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Partition { side_a, side_b } => {
                write!(f, "partition {} | {}", node_list(side_a), node_list(side_b))
            }
            Fault::PartitionOneway { from, to } => {
                write!(f, "partition-oneway {} {}", node_name(*from), node_name(*to))
            }
            Fault::Loss { ratio } => write!(f, "loss {ratio}"),
            Fault::Duplicate { ratio } => write!(f, "duplicate {ratio}"),
            Fault::LatencySpike { latency_ms_max } => write!(f, "latency {latency_ms_max}"),
            Fault::Crash { node } => write!(f, "crash {}", node_name(*node)),
            Fault::Reboot { node } => write!(f, "reboot {}", node_name(*node)),
            Fault::Pause { node } => write!(f, "pause {}", node_name(*node)),
            Fault::ClockSkew { node, offset_ms, drift_ppm } => {
                write!(f, "clock {} {offset_ms} {drift_ppm}", node_name(*node))
            }
            Fault::Custom(custom) => write!(f, "{custom}"),
        }
    }
}

/// A fault and the interval it lasts, in virtual milliseconds from the fault phase's
/// start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Episode<C> {
    /// When the fault starts.
    pub start_ms: u64,
    /// How long it lasts.
    pub duration_ms: u64,
    /// The fault.
    pub fault: Fault<C>,
}

impl<C> Episode<C> {
    /// When the fault is undone.
    pub fn end_ms(&self) -> u64 {
        self.start_ms.saturating_add(self.duration_ms)
    }
}

/// The slowest a latency tail makes a message.
pub const TAIL_LATENCY_MS_MAX: u64 = 400;

/// A latency tail on every link for the whole run: `ratio` of the messages take
/// `latency_ms_min..=latency_ms_max` (at most [`TAIL_LATENCY_MS_MAX`]). It fails
/// nothing, so it is no fault episode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkTail {
    /// The share of messages slowed.
    pub ratio: Ratio,
    /// The least tail latency.
    pub latency_ms_min: u64,
    /// The greatest tail latency.
    pub latency_ms_max: u64,
}

impl LinkTail {
    /// The default link with this tail.
    pub fn link(&self) -> LinkConfig {
        let tail = LatencyTail {
            ratio: self.ratio,
            latency_min: Duration::from_millis(self.latency_ms_min),
            latency_max: Duration::from_millis(self.latency_ms_max),
        };
        LinkConfig { tail: Some(tail), ..LinkConfig::DEFAULT }
    }
}

impl fmt::Display for LinkTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}..{}ms", self.ratio, self.latency_ms_min, self.latency_ms_max)
    }
}

/// The faults of one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan<C> {
    /// The episodes, by start time.
    pub episodes: Vec<Episode<C>>,
    /// The latency tail of the whole run, if any (not an episode).
    pub latency_tail: Option<LinkTail>,
}

impl<C> Default for Plan<C> {
    fn default() -> Plan<C> {
        Plan { episodes: Vec::new(), latency_tail: None }
    }
}

impl<C> Plan<C> {
    /// The custom faults of the plan, in time order.
    pub fn custom(&self) -> impl Iterator<Item = &C> {
        self.episodes.iter().filter_map(|episode| match &episode.fault {
            Fault::Custom(custom) => Some(custom),
            _ => None,
        })
    }

    /// When the last episode ends (0: no episode).
    pub fn end_ms(&self) -> u64 {
        self.episodes.iter().map(Episode::end_ms).max().unwrap_or(0)
    }
}

/// In plan-file syntax, each episode with its span in seconds as a comment: a printed
/// plan pastes into a plan file as it is.
impl<C: fmt::Display> fmt::Display for Plan<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(tail) = &self.latency_tail {
            let (min, max) = (tail.latency_ms_min, tail.latency_ms_max);
            writeln!(f, "latency-tail {} {min} {max}", tail.ratio)?;
        }
        if self.episodes.is_empty() {
            return writeln!(f, "# no faults");
        }
        for episode in &self.episodes {
            let (start, end) = (episode.start_ms, episode.end_ms());
            let line =
                format!("episode {} {} {}", episode.start_ms, episode.duration_ms, episode.fault);
            writeln!(
                f,
                "{line:<44} # {}.{:03}s .. {}.{:03}s",
                start / 1000,
                start % 1000,
                end / 1000,
                end % 1000
            )?;
        }
        Ok(())
    }
}
