//! Profiles, and the plan each seed draws under one.
//!
//! A [`Profile`] names the fault kinds a run may have. Under a swarm profile each
//! seed draws which of its kinds are on (about half each) and how hard; under the
//! others every kind is on. The draw becomes a [`Plan`] taken from the seed's
//! "faults" stream alone: removing an episode changes nothing else, which is what
//! shrinking needs, and the system's own draws stay where they were.

use sim::rand::{Ratio, RngExt, SimRng};

use crate::fault::TAIL_LATENCY_MS_MAX;
use crate::fault::{CustomFault, EPISODES_PER_KIND_MAX, Episode, Fault, LinkTail, Plan};

/// A kind of fault, for the draw: the simulator's own, or the system's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind<K> {
    /// Partitions: halves, one node isolated, one-way.
    Partition,
    /// Message loss on every link.
    Loss,
    /// Message duplication on every link.
    Duplicate,
    /// Latency spikes on every link.
    Latency,
    /// A node killed, losing its memory, then restarted.
    Crash,
    /// A node killed, keeping what it made durable, then restarted.
    Reboot,
    /// A node paused, then resumed.
    Pause,
    /// A node's clock offset and drifting.
    Clock,
    /// A kind of the system's own.
    Custom(K),
}

impl<K> Kind<K> {
    /// The simulator's kinds, in the order a swarm draws them.
    pub const NETWORK_AND_NODES: [Kind<K>; 7] = [
        Kind::Partition,
        Kind::Loss,
        Kind::Duplicate,
        Kind::Latency,
        Kind::Crash,
        Kind::Pause,
        Kind::Clock,
    ];
}

/// Which faults a run may have, by name.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile<K> {
    /// The name, as a run record and the command line spell it.
    pub name: &'static str,
    /// One line for `--help` and the docs.
    pub about: &'static str,
    /// The kinds drawn, in draw order.
    pub kinds: Vec<Kind<K>>,
    /// Whether each kind is on for only some seeds (about half).
    pub swarm: bool,
    /// The share of seeds run with buggify on.
    pub buggify: Ratio,
    /// Whether half the seeds get a [`LinkTail`].
    pub latency_tail: bool,
}

impl<K> Profile<K> {
    /// A profile with every kind on, no buggify and no latency tail.
    pub fn new(name: &'static str, about: &'static str, kinds: Vec<Kind<K>>) -> Profile<K> {
        Profile { name, about, kinds, swarm: false, buggify: Ratio::NEVER, latency_tail: false }
    }

    /// The same profile, drawing which kinds are on per seed.
    pub fn swarm(self) -> Profile<K> {
        Profile { swarm: true, ..self }
    }

    /// The same profile, with buggify on for `ratio` of the seeds.
    pub fn buggify(self, ratio: Ratio) -> Profile<K> {
        Profile { buggify: ratio, ..self }
    }

    /// The same profile, with a latency tail for half the seeds.
    pub fn latency_tail(self) -> Profile<K> {
        Profile { latency_tail: true, ..self }
    }
}

/// Whether buggify is on for `seed` under `profile`: from the seed's own "buggify"
/// stream, drawn before the simulation exists (which needs to know).
pub fn buggify_drawn<K>(profile: &Profile<K>, seed: u64) -> bool {
    !profile.buggify.is_never() && SimRng::forked(seed, "buggify").chance(profile.buggify)
}

impl<C: CustomFault> Plan<C> {
    /// Draws the plan of a run whose faults name `node_count` nodes, over a fault phase
    /// of `phase_ms`, from `rng` (the seed's "faults" stream) alone.
    ///
    /// # Panics
    ///
    /// When there are fewer than 2 nodes or the phase is shorter than a second (the
    /// harness checks both before it draws).
    pub fn draw(
        profile: &Profile<C::Kind>,
        rng: &mut SimRng,
        node_count: usize,
        phase_ms: u64,
    ) -> Plan<C> {
        assert!(node_count >= 2);
        assert!(phase_ms >= 1_000);
        let mut episodes = Vec::new();
        for &kind in &profile.kinds {
            if profile.swarm && !rng.chance(Ratio::new(1, 2)) {
                continue;
            }
            let count = match kind {
                Kind::Custom(custom) => 1 + rng.below(C::episodes_max(custom).max(1)),
                _ => 1 + rng.below(EPISODES_PER_KIND_MAX),
            };
            // Each episode's slot keeps at least 4 ms, whatever a system's maximum.
            let count = count.min(phase_ms / 4);
            // Episodes of one kind follow each other, so that undoing one never undoes
            // another of the same kind.
            let slot_ms = phase_ms / count;
            for slot in 0..count {
                // Within its slot: starts in the first quarter, ends before the next.
                let start_ms = slot * slot_ms + rng.below(slot_ms / 4);
                let duration_ms = slot_ms / 4 + rng.below(slot_ms / 2);
                let fault = draw_fault::<C>(kind, rng, node_count);
                episodes.push(Episode { start_ms, duration_ms, fault });
            }
        }
        episodes.sort_by_key(|episode| episode.start_ms);
        // Drawn last, so that it leaves the episodes' draws as they were.
        let latency_tail = if profile.latency_tail { draw_tail(rng) } else { None };
        Plan { episodes, latency_tail }
    }
}

/// Half the seeds get a latency tail: 1–10 % of the messages take 20–400 ms.
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

fn draw_fault<C: CustomFault>(
    kind: Kind<C::Kind>,
    rng: &mut SimRng,
    node_count: usize,
) -> Fault<C> {
    let nodes = node_count as u64;
    match kind {
        Kind::Partition => draw_partition(rng, node_count),
        Kind::Loss => Fault::Loss { ratio: Ratio::new(1 + rng.below(30), 100) },
        Kind::Duplicate => Fault::Duplicate { ratio: Ratio::new(1 + rng.below(30), 100) },
        Kind::Latency => Fault::LatencySpike { latency_ms_max: 50 + rng.below(2_000) },
        Kind::Crash => Fault::Crash { node: rng.below(nodes) as usize },
        Kind::Reboot => Fault::Reboot { node: rng.below(nodes) as usize },
        Kind::Pause => Fault::Pause { node: rng.below(nodes) as usize },
        Kind::Clock => {
            let node = rng.below(nodes) as usize;
            let offset_ms = rng.below(120_001) as i64 - 60_000;
            let drift_ppm = rng.below(20_001) as i32 - 10_000;
            Fault::ClockSkew { node, offset_ms, drift_ppm }
        }
        Kind::Custom(custom) => Fault::Custom(C::draw(custom, rng, node_count)),
    }
}

fn draw_partition<C>(rng: &mut SimRng, node_count: usize) -> Fault<C> {
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
    use crate::fault::NoFault;

    fn swarm() -> Profile<NoFault> {
        Profile::new("swarm", "", Kind::NETWORK_AND_NODES.to_vec()).swarm().latency_tail()
    }

    #[test]
    fn plans_are_drawn_from_the_stream_alone() {
        let draw =
            |seed| Plan::<NoFault>::draw(&swarm(), &mut SimRng::forked(seed, "faults"), 5, 20_000);
        assert_eq!(draw(1), draw(1));
        let distinct: std::collections::BTreeSet<String> =
            (0..20).map(|seed| draw(seed).to_string()).collect();
        assert!(distinct.len() > 15);
    }

    #[test]
    fn episodes_of_one_kind_do_not_overlap_and_end_in_the_phase() {
        for seed in 0..200 {
            let mut rng = SimRng::forked(seed, "faults");
            let plan = Plan::<NoFault>::draw(&swarm(), &mut rng, 5, 20_000);
            assert!(plan.end_ms() <= 20_000, "{plan}");
            let crashes: Vec<_> =
                plan.episodes.iter().filter(|e| matches!(e.fault, Fault::Crash { .. })).collect();
            for pair in crashes.windows(2) {
                assert!(pair[0].end_ms() <= pair[1].start_ms, "{pair:?}");
            }
        }
    }

    #[test]
    fn named_profiles_draw_only_their_kinds_and_buggify_only_when_asked() {
        let reboots: Profile<NoFault> = Profile::new("reboots", "", vec![Kind::Reboot]);
        for seed in 0..50 {
            let plan = Plan::<NoFault>::draw(&reboots, &mut SimRng::forked(seed, "f"), 3, 5_000);
            assert!(!plan.episodes.is_empty() && plan.latency_tail.is_none());
            assert!(
                plan.episodes.iter().all(|e| matches!(e.fault, Fault::Reboot { node } if node < 3))
            );
            assert!(!buggify_drawn(&reboots, seed));
        }
        let always = reboots.buggify(Ratio::ALWAYS);
        assert!((0..50).all(|seed| buggify_drawn(&always, seed)));
    }
}
