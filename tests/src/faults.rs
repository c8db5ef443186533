//! Fault profiles and fault plans.
//!
//! A profile says which fault kinds a run may have; swarm testing draws, per seed,
//! which kinds are on and how hard. The draw becomes a [`FaultPlan`]: an explicit,
//! printable list of episodes (a fault, when it starts, how long it lasts), taken from
//! the fault stream alone. Removing one episode changes nothing else, which is what
//! shrinking needs.

use std::fmt;
use std::str::FromStr;

use sim::rand::{Ratio, RngExt, SimRng};

/// Episodes one fault kind may have in a run.
pub const EPISODES_PER_KIND_MAX: u64 = 4;

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
    /// duplication and latency spikes).
    Swarm,
}

impl Profile {
    /// Every profile, in a fixed order.
    pub const ALL: [Profile; 5] =
        [Profile::None, Profile::Partitions, Profile::Crashes, Profile::Clock, Profile::Swarm];

    /// The profile's name, as the command line spells it.
    pub fn name(self) -> &'static str {
        match self {
            Profile::None => "none",
            Profile::Partitions => "partitions",
            Profile::Crashes => "crashes",
            Profile::Clock => "clock",
            Profile::Swarm => "swarm",
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
            "unknown profile {:?}: expected one of none, partitions, crashes, clock, swarm",
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

/// The faults of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// The episodes, by start time.
    pub episodes: Vec<Episode>,
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
        }
    }
}

impl fmt::Display for FaultPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.episodes.is_empty() {
            return writeln!(f, "  (no faults)");
        }
        for episode in &self.episodes {
            let (start, end) = (episode.start_ms, episode.end_ms());
            writeln!(
                f,
                "  {:>4}.{:03}s .. {:>4}.{:03}s  {}",
                start / 1000,
                start % 1000,
                end / 1000,
                end % 1000,
                episode.fault
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
}

impl Profile {
    fn kinds(self) -> &'static [Kind] {
        match self {
            Profile::None => &[],
            Profile::Partitions => &[Kind::Partition],
            Profile::Crashes => &[Kind::Crash, Kind::Pause],
            Profile::Clock => &[Kind::Clock],
            Profile::Swarm => &[
                Kind::Partition,
                Kind::Loss,
                Kind::Duplicate,
                Kind::Latency,
                Kind::Crash,
                Kind::Pause,
                Kind::Clock,
            ],
        }
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
            if profile == Profile::Swarm && !rng.chance(Ratio::new(1, 2)) {
                continue;
            }
            let count = 1 + rng.below(EPISODES_PER_KIND_MAX);
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
        FaultPlan { episodes }
    }
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
    }
}
