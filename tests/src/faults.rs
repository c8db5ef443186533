//! The cache's fault profiles, and its own faults (joins and drains) on top of the
//! harness's.
//!
//! A profile says which fault kinds a run may have; swarm testing draws, per seed,
//! which kinds are on and how hard (`sim_harness::Plan::draw`). The latency tail a
//! profile may draw stays at most `sim_harness::TAIL_LATENCY_MS_MAX` (400 ms), well
//! below the cache's 5 s RPC timeout, so that the tail slows requests without failing
//! them.

use std::fmt;
use std::str::FromStr;

use sim::rand::{Ratio, RngExt, SimRng};
use sim_harness::{CustomFault, Kind};

/// Nodes that may join one run (each join adds a cache node for good).
pub const JOINS_PER_RUN_MAX: usize = 2;

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

/// The cache's own faults, on top of the simulator's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheFault {
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

/// The kinds of [`CacheFault`], for profiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheKind {
    /// Node joins.
    Join,
    /// Node drains.
    Drain,
}

/// A fault of a cache run: the simulator's, or the cache's own.
pub type Fault = sim_harness::Fault<CacheFault>;
/// A fault and its interval.
pub type Episode = sim_harness::Episode<CacheFault>;
/// The faults of one cache run.
pub type FaultPlan = sim_harness::Plan<CacheFault>;

impl fmt::Display for CacheFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheFault::Join => f.write_str("join"),
            CacheFault::Drain { node } => write!(f, "drain {}", sim_harness::node_name(*node)),
        }
    }
}

impl CustomFault for CacheFault {
    type Kind = CacheKind;

    fn draw(kind: CacheKind, rng: &mut SimRng, node_count: usize) -> CacheFault {
        match kind {
            CacheKind::Join => CacheFault::Join,
            CacheKind::Drain => CacheFault::Drain { node: rng.below(node_count as u64) as usize },
        }
    }

    fn episodes_max(kind: CacheKind) -> u64 {
        match kind {
            CacheKind::Join => JOINS_PER_RUN_MAX as u64,
            CacheKind::Drain => sim_harness::EPISODES_PER_KIND_MAX,
        }
    }

    fn parse(word: &str, args: &[&str], node_count: usize) -> Option<Result<CacheFault, String>> {
        match (word, args) {
            ("join", []) => Some(Ok(CacheFault::Join)),
            ("drain", [node]) => Some(
                sim_harness::parse_node(node, node_count).map(|node| CacheFault::Drain { node }),
            ),
            ("join" | "drain", _) => Some(Err(format!(
                "invalid fault `{word} {}`: expected {}",
                args.join(" "),
                CacheFault::syntax()
            ))),
            _ => None,
        }
    }

    fn syntax() -> &'static str {
        "join; drain NODE"
    }

    fn check_plan(faults: &[&CacheFault]) -> Result<(), String> {
        let joins = faults.iter().filter(|fault| ***fault == CacheFault::Join).count();
        if joins > JOINS_PER_RUN_MAX {
            return Err(format!("{joins} join episodes: at most {JOINS_PER_RUN_MAX} per run"));
        }
        Ok(())
    }
}

/// How many nodes join during the run.
pub fn join_count(plan: &FaultPlan) -> usize {
    plan.custom().filter(|fault| **fault == CacheFault::Join).count()
}

impl Profile {
    /// The profile as the harness draws it.
    pub fn spec(self) -> sim_harness::Profile<CacheKind> {
        let kinds = match self {
            Profile::None => Vec::new(),
            Profile::Partitions => vec![Kind::Partition],
            Profile::Crashes => vec![Kind::Crash, Kind::Pause],
            Profile::Clock => vec![Kind::Clock],
            Profile::Swarm | Profile::Keys => {
                let mut kinds = Kind::NETWORK_AND_NODES.to_vec();
                kinds.extend([Kind::Custom(CacheKind::Join), Kind::Custom(CacheKind::Drain)]);
                kinds
            }
            Profile::Membership => {
                vec![Kind::Custom(CacheKind::Join), Kind::Custom(CacheKind::Drain), Kind::Crash]
            }
            Profile::Loss => vec![Kind::Loss, Kind::Duplicate],
        };
        let profile = sim_harness::Profile::new(self.name(), self.about(), kinds).latency_tail();
        // Buggify for a quarter of swarm seeds: its fault points fail requests on purpose.
        match self {
            Profile::Swarm => profile.swarm().buggify(Ratio::new(1, 4)),
            Profile::Keys => profile.swarm(),
            _ => profile,
        }
    }

    /// One line about the profile.
    pub fn about(self) -> &'static str {
        match self {
            Profile::None => "no faults: the baseline",
            Profile::Partitions => "network partitions: halves, one node isolated, one-way",
            Profile::Crashes => "nodes killed (losing their memory) and restarted, and paused",
            Profile::Clock => "clock offsets and drift",
            Profile::Swarm => "each seed draws which faults are on and how hard",
            Profile::Keys => "swarm's faults over 1,500 keys",
            Profile::Membership => "nodes join, drain (then leave and rejoin empty), and crash",
            Profile::Loss => "message loss and duplication the failure detector rides out",
        }
    }
}

/// Draws the plan of a run with `node_count` cache nodes and a fault phase of
/// `phase_ms`, from the fault stream alone.
pub fn draw_plan(
    profile: Profile,
    rng: &mut SimRng,
    node_count: usize,
    phase_ms: u64,
) -> FaultPlan {
    FaultPlan::draw(&profile.spec(), rng, node_count, phase_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw(profile: Profile, seed: u64) -> FaultPlan {
        draw_plan(profile, &mut SimRng::forked(seed, "faults"), 5, 20_000)
    }

    #[test]
    fn named_profiles_draw_only_their_kinds() {
        for seed in 0..50 {
            let plan = draw(Profile::Partitions, seed);
            assert!(!plan.episodes.is_empty());
            assert!(plan.episodes.iter().all(|e| matches!(
                e.fault,
                Fault::Partition { .. } | Fault::PartitionOneway { .. }
            )));
            assert!(draw(Profile::None, seed).episodes.is_empty());
        }
    }

    #[test]
    fn profile_names_round_trip() {
        for profile in Profile::ALL {
            assert_eq!(profile.name().parse::<Profile>(), Ok(profile));
            assert_eq!(profile.spec().name, profile.name());
        }
        let error = "chaos".parse::<Profile>().unwrap_err().to_string();
        assert!(error.contains("expected one of none, partitions"), "{error}");
    }

    #[test]
    fn membership_plans_cap_joins_and_every_profile_may_have_a_tail() {
        let mut tails = 0;
        for seed in 0..100 {
            let plan = draw(Profile::Membership, seed);
            assert!(join_count(&plan) >= 1 && join_count(&plan) <= JOINS_PER_RUN_MAX);
            assert!(
                plan.episodes
                    .iter()
                    .all(|e| matches!(e.fault, Fault::Custom(_) | Fault::Crash { .. }))
            );
            let plan = draw(Profile::None, seed);
            assert!(plan.episodes.is_empty());
            if let Some(tail) = plan.latency_tail {
                tails += 1;
                assert!(tail.latency_ms_max <= sim_harness::TAIL_LATENCY_MS_MAX);
            }
            assert!(join_count(&draw(Profile::Keys, seed)) <= JOINS_PER_RUN_MAX);
        }
        assert!(tails > 20 && tails < 80, "{tails} tails in 100 seeds");
    }

    #[test]
    fn cache_faults_parse_back_and_cap_joins() {
        for fault in [CacheFault::Join, CacheFault::Drain { node: 3 }] {
            let text = fault.to_string();
            let words: Vec<&str> = text.split_whitespace().collect();
            assert_eq!(CacheFault::parse(words[0], &words[1..], 5), Some(Ok(fault)));
        }
        assert!(CacheFault::parse("drain", &[], 5).unwrap().unwrap_err().contains("drain NODE"));
        assert!(CacheFault::parse("drain", &["n9"], 5).unwrap().is_err());
        assert_eq!(CacheFault::parse("crash", &["n1"], 5), None);
        let join = CacheFault::Join;
        assert!(CacheFault::check_plan(&[&join, &join, &join]).unwrap_err().contains("at most 2"));
    }
}
