//! Fault profiles and fault plans.
//!
//! A profile says which fault kinds a run may have; swarm testing draws, per seed,
//! which kinds are on and how hard. The draw becomes a [`FaultPlan`]: an explicit,
//! printable list of episodes (a fault, when it starts, how long it lasts), taken from
//! the fault stream alone. Removing one episode changes nothing else, which is what
//! shrinking needs.

use std::fmt;
use std::str::FromStr;

use std::time::Duration;

use sim::net::{LatencyTail, LinkConfig};
use sim::rand::{Ratio, RngExt, SimRng};

/// Episodes one fault kind may have in a run.
pub const EPISODES_PER_KIND_MAX: u64 = 4;
/// Nodes that may join one run (each join adds a cache node for good).
pub const JOINS_PER_RUN_MAX: usize = 2;
/// The slowest a latency tail makes a message: well below the cache's 5 s RPC
/// timeout, so that the tail slows requests without failing them.
pub const TAIL_LATENCY_MS_MAX: u64 = 400;

/// Which faults a run may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Profile {
    /// No faults: the baseline.
    None,
    /// Network partitions: halves, one node isolated, one-way.
    Partitions,
    /// Nodes killed (losing their memory) and restarted, and paused.
    Crashes,
    /// Clock offsets and drift.
    Clock,
    /// Each seed draws which kinds are on and how hard (all of the above, plus loss,
    /// duplication, latency spikes, joins and drains).
    Swarm,
    /// Swarm's faults, over 1,500 keys (so that merkle trees have many leaves).
    Keys,
    /// Membership changes: nodes join, drain (then leave and rejoin empty), and crash.
    Membership,
    /// Message loss and duplication alone, at rates the failure detector promises to
    /// ride out: no running node may be declared dead.
    Loss,
}

impl Profile {
    /// Every profile, in a fixed order.
    pub const ALL: [Profile; 8] = [
        Profile::None,
        Profile::Partitions,
        Profile::Crashes,
        Profile::Clock,
        Profile::Swarm,
        Profile::Keys,
        Profile::Membership,
        Profile::Loss,
    ];

    /// The profile's name, as the command line spells it.
    pub fn name(self) -> &'static str {
        match self {
            Profile::None => "none",
            Profile::Partitions => "partitions",
            Profile::Crashes => "crashes",
            Profile::Clock => "clock",
            Profile::Swarm => "swarm",
            Profile::Keys => "keys",
            Profile::Membership => "membership",
            Profile::Loss => "loss",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown profile name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseProfileError {
    name: String,
}

impl fmt::Display for ParseProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown profile {:?}: expected one of none, partitions, crashes, clock, swarm, keys, membership",
            self.name
        )
    }
}

impl std::error::Error for ParseProfileError {}

impl FromStr for Profile {
    type Err = ParseProfileError;

    fn from_str(name: &str) -> Result<Profile, ParseProfileError> {
        Profile::ALL
            .into_iter()
            .find(|profile| profile.name() == name)
            .ok_or_else(|| ParseProfileError { name: name.to_string() })
    }
}

/// One fault, applied at an episode's start and undone at its end. Nodes are cache
/// node indices (0 is `n1`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The two sides cannot reach each other.
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
    /// The node is killed (losing its memory) and restarted at the end.
    Crash {
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
    /// A new cache node joins the running cluster at the start (it gets the next
    /// index); the end undoes nothing: the node stays. At most [`JOINS_PER_RUN_MAX`].
    Join,
    /// The node drains at the start (refuses writes, still serves reads); at the end
    /// it leaves and rejoins: killed and restarted, its memory lost.
    Drain {
        /// The node.
        node: usize,
    },
}

/// A fault and the interval it lasts, in virtual milliseconds from the run's start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Episode {
    /// When the fault starts.
    pub start_ms: u64,
    /// How long it lasts.
    pub duration_ms: u64,
    /// The fault.
    pub fault: Fault,
}

impl Episode {
    /// When the fault is undone.
    pub fn end_ms(&self) -> u64 {
        self.start_ms + self.duration_ms
    }
}

/// A latency tail on every link for the whole run: `ratio` of the messages take
/// `latency_ms_min..=latency_ms_max` (at most [`TAIL_LATENCY_MS_MAX`]). It fails
/// nothing, so it is no fault episode: a run with a tail and no episode is quiet.
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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// The episodes, by start time.
    pub episodes: Vec<Episode>,
    /// The latency tail of the whole run, if any (not an episode).
    pub latency_tail: Option<LinkTail>,
}

impl FaultPlan {
    /// How many nodes join during the run.
    pub fn join_count(&self) -> usize {
        self.episodes.iter().filter(|episode| episode.fault == Fault::Join).count()
    }
}

fn node_name(index: usize) -> String {
    format!("n{}", index + 1)
}

fn node_list(nodes: &[usize]) -> String {
    nodes.iter().map(|node| node_name(*node)).collect::<Vec<_>>().join(",")
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Partition { side_a, side_b } => {
                write!(f, "partition {} | {}", node_list(side_a), node_list(side_b))
            }
            Fault::PartitionOneway { from, to } => {
                write!(f, "partition one-way {} -> {}", node_name(*from), node_name(*to))
            }
            Fault::Loss { ratio } => write!(f, "loss {ratio}"),
            Fault::Duplicate { ratio } => write!(f, "duplicate {ratio}"),
            Fault::LatencySpike { latency_ms_max } => {
                write!(f, "latency spike up to {latency_ms_max}ms")
            }
            Fault::Crash { node } => write!(f, "crash {} (memory lost)", node_name(*node)),
            Fault::Pause { node } => write!(f, "pause {}", node_name(*node)),
            Fault::ClockSkew { node, offset_ms, drift_ppm } => {
                write!(f, "clock {} offset {offset_ms}ms drift {drift_ppm}ppm", node_name(*node))
            }
            Fault::Join => write!(f, "join (a new node)"),
            Fault::Drain { node } => {
                write!(f, "drain {} (then leaves and rejoins, memory lost)", node_name(*node))
            }
        }
    }
}

/// In plan-file syntax (see `plan_file.rs`), each episode with its span in seconds as
/// a comment: a printed plan pastes into a plan file as it is.
impl fmt::Display for FaultPlan {
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
            let line = format!(
                "episode {} {} {}",
                episode.start_ms,
                episode.duration_ms,
                crate::plan_file::fault_text(&episode.fault)
            );
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

/// The kinds of fault, for the swarm draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Partition,
    Loss,
    Duplicate,
    Latency,
    Crash,
    Pause,
    Clock,
    Join,
    Drain,
}

impl Profile {
    fn kinds(self) -> &'static [Kind] {
        match self {
            Profile::None => &[],
            Profile::Partitions => &[Kind::Partition],
            Profile::Crashes => &[Kind::Crash, Kind::Pause],
            Profile::Clock => &[Kind::Clock],
            Profile::Swarm | Profile::Keys => &[
                Kind::Partition,
                Kind::Loss,
                Kind::Duplicate,
                Kind::Latency,
                Kind::Crash,
                Kind::Pause,
                Kind::Clock,
                Kind::Join,
                Kind::Drain,
            ],
            Profile::Membership => &[Kind::Join, Kind::Drain, Kind::Crash],
            Profile::Loss => &[Kind::Loss, Kind::Duplicate],
        }
    }

    /// Whether each kind is on for only some seeds (swarm testing).
    fn is_swarm(self) -> bool {
        matches!(self, Profile::Swarm | Profile::Keys)
    }
}

impl FaultPlan {
    /// Draws the plan of a run with `node_count` cache nodes and a fault phase of
    /// `phase_ms`, from the fault stream alone.
    ///
    /// # Panics
    ///
    /// When there are fewer than 2 nodes or the phase is shorter than a second.
    pub fn draw(profile: Profile, rng: &mut SimRng, node_count: usize, phase_ms: u64) -> FaultPlan {
        assert!(node_count >= 2);
        assert!(phase_ms >= 1_000);
        let mut episodes = Vec::new();
        for &kind in profile.kinds() {
            // Swarm: each kind is on for about half the seeds; named profiles keep theirs.
            if profile.is_swarm() && !rng.chance(Ratio::new(1, 2)) {
                continue;
            }
            let count = match kind {
                Kind::Join => 1 + rng.below(JOINS_PER_RUN_MAX as u64),
                _ => 1 + rng.below(EPISODES_PER_KIND_MAX),
            };
            // Episodes of one kind follow each other, so that undoing one never undoes
            // another of the same kind.
            let slot_ms = phase_ms / count;
            for slot in 0..count {
                // Within its slot: starts in the first quarter, ends before the next.
                let start_ms = slot * slot_ms + rng.below(slot_ms / 4);
                let duration_ms = slot_ms / 4 + rng.below(slot_ms / 2);
                let fault = draw_fault(kind, rng, node_count);
                episodes.push(Episode { start_ms, duration_ms, fault });
            }
        }
        episodes.sort_by_key(|episode| episode.start_ms);
        // Drawn last, so that it leaves the episodes' draws as they were.
        let latency_tail = draw_tail(rng);
        FaultPlan { episodes, latency_tail }
    }
}

/// Half the seeds of every profile get a latency tail: 1–10 % of the messages take
/// 20–400 ms, so that quorum reads meet lagging replicas even without faults.
fn draw_tail(rng: &mut SimRng) -> Option<LinkTail> {
    if !rng.chance(Ratio::new(1, 2)) {
        return None;
    }
    let ratio = Ratio::new(1 + rng.below(10), 100);
    let latency_ms_min = 20 + rng.below(100);
    let latency_ms_max = latency_ms_min + rng.below(TAIL_LATENCY_MS_MAX - latency_ms_min + 1);
    assert!(latency_ms_max <= TAIL_LATENCY_MS_MAX);
    Some(LinkTail { ratio, latency_ms_min, latency_ms_max })
}

fn draw_fault(kind: Kind, rng: &mut SimRng, node_count: usize) -> Fault {
    let nodes = node_count as u64;
    match kind {
        Kind::Partition => draw_partition(rng, node_count),
        Kind::Loss => Fault::Loss { ratio: Ratio::new(1 + rng.below(30), 100) },
        Kind::Duplicate => Fault::Duplicate { ratio: Ratio::new(1 + rng.below(30), 100) },
        Kind::Latency => Fault::LatencySpike { latency_ms_max: 50 + rng.below(2_000) },
        Kind::Crash => Fault::Crash { node: rng.below(nodes) as usize },
        Kind::Pause => Fault::Pause { node: rng.below(nodes) as usize },
        Kind::Clock => {
            let node = rng.below(nodes) as usize;
            let offset_ms = rng.below(120_001) as i64 - 60_000;
            let drift_ppm = rng.below(20_001) as i32 - 10_000;
            Fault::ClockSkew { node, offset_ms, drift_ppm }
        }
        Kind::Join => Fault::Join,
        Kind::Drain => Fault::Drain { node: rng.below(nodes) as usize },
    }
}

fn draw_partition(rng: &mut SimRng, node_count: usize) -> Fault {
    let mut nodes: Vec<usize> = (0..node_count).collect();
    match rng.below(3) {
        0 => {
            rng.shuffle(&mut nodes);
            let cut = 1 + rng.below(node_count as u64 - 1) as usize;
            let (side_a, side_b) = nodes.split_at(cut);
            let (mut side_a, mut side_b) = (side_a.to_vec(), side_b.to_vec());
            side_a.sort_unstable();
            side_b.sort_unstable();
            Fault::Partition { side_a, side_b }
        }
        1 => {
            let isolated = rng.below(node_count as u64) as usize;
            let rest = nodes.into_iter().filter(|node| *node != isolated).collect();
            Fault::Partition { side_a: vec![isolated], side_b: rest }
        }
        _ => {
            let from = rng.below(node_count as u64) as usize;
            let to = (from + 1 + rng.below(node_count as u64 - 1) as usize) % node_count;
            Fault::PartitionOneway { from, to }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_drawn_from_the_stream_alone() {
        let draw =
            |seed| FaultPlan::draw(Profile::Swarm, &mut SimRng::forked(seed, "faults"), 5, 20_000);
        assert_eq!(draw(1), draw(1));
        let distinct: std::collections::BTreeSet<String> =
            (0..20).map(|seed| draw(seed).to_string()).collect();
        assert!(distinct.len() > 15);
    }

    #[test]
    fn named_profiles_draw_only_their_kinds() {
        for seed in 0..50 {
            let mut rng = SimRng::forked(seed, "faults");
            let plan = FaultPlan::draw(Profile::Partitions, &mut rng, 5, 20_000);
            assert!(!plan.episodes.is_empty());
            assert!(plan.episodes.iter().all(|e| matches!(
                e.fault,
                Fault::Partition { .. } | Fault::PartitionOneway { .. }
            )));
            let plan = FaultPlan::draw(Profile::None, &mut rng, 5, 20_000);
            assert!(plan.episodes.is_empty());
        }
    }

    #[test]
    fn episodes_of_one_kind_do_not_overlap_and_end_in_the_phase() {
        for seed in 0..200 {
            let plan =
                FaultPlan::draw(Profile::Swarm, &mut SimRng::forked(seed, "faults"), 5, 20_000);
            for episode in &plan.episodes {
                assert!(episode.end_ms() <= 20_000, "{episode:?}");
            }
            let crashes: Vec<_> =
                plan.episodes.iter().filter(|e| matches!(e.fault, Fault::Crash { .. })).collect();
            for pair in crashes.windows(2) {
                assert!(pair[0].end_ms() <= pair[1].start_ms, "{pair:?}");
            }
        }
    }

    #[test]
    fn profile_names_round_trip() {
        for profile in Profile::ALL {
            assert_eq!(profile.name().parse::<Profile>(), Ok(profile));
        }
        let error = "chaos".parse::<Profile>().unwrap_err().to_string();
        assert!(error.contains("expected one of none, partitions"), "{error}");
        assert_eq!("keys".parse::<Profile>(), Ok(Profile::Keys));
        assert_eq!("membership".parse::<Profile>(), Ok(Profile::Membership));
    }

    #[test]
    fn membership_plans_cap_joins_and_every_profile_may_have_a_tail() {
        let mut tails = 0;
        for seed in 0..100 {
            let mut rng = SimRng::forked(seed, "faults");
            let plan = FaultPlan::draw(Profile::Membership, &mut rng, 5, 20_000);
            assert!(plan.join_count() >= 1 && plan.join_count() <= JOINS_PER_RUN_MAX);
            assert!(plan.episodes.iter().all(|e| matches!(
                e.fault,
                Fault::Join | Fault::Drain { .. } | Fault::Crash { .. }
            )));
            let plan = FaultPlan::draw(Profile::None, &mut rng, 5, 20_000);
            assert!(plan.episodes.is_empty());
            if let Some(tail) = plan.latency_tail {
                tails += 1;
                assert!(tail.latency_ms_min <= tail.latency_ms_max);
                assert!(tail.latency_ms_max <= TAIL_LATENCY_MS_MAX);
            }
            let plan = FaultPlan::draw(Profile::Keys, &mut SimRng::forked(seed, "f"), 5, 20_000);
            assert!(plan.join_count() <= JOINS_PER_RUN_MAX);
        }
        assert!(tails > 20 && tails < 80, "{tails} tails in 100 seeds");
    }
}
