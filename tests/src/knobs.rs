//! The cache's options, drawn per seed within their valid ranges, and the one repair
//! path a seed may switch off.
//!
//! Defaults hide bugs: with a 30 s hint TTL and 20 s of faults no hint ever expires,
//! with 32 keys and 128-entry merkle leaves every tree has one leaf, and with every
//! repair path on, anti-entropy repairs whatever hinted handoff, rebalance or read
//! repair fails to do. So each seed draws its options (intervals, caps, TTLs, vnode
//! counts, leaf sizes) from its own "options" stream, and some seeds switch one repair
//! path off, so that the others' promises are checked alone; an eighth switch off all
//! but anti-entropy, whose promise is then checked alone.

use std::fmt;

use cache::OptionsBuilder;
use sim::rand::{Ratio, RngExt, SimRng};

/// A repair path the cache can run without.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RepairPath {
    /// Merkle anti-entropy (periodic rounds and the bootstrap sync on start).
    AntiEntropy,
    /// Read repair after QUORUM and ALL reads.
    ReadRepair,
    /// Hinted handoff.
    HintedHandoff,
    /// Rebalance on membership change.
    Rebalance,
}

impl RepairPath {
    /// Every path, in a fixed order.
    pub const ALL: [RepairPath; 4] = [
        RepairPath::AntiEntropy,
        RepairPath::ReadRepair,
        RepairPath::HintedHandoff,
        RepairPath::Rebalance,
    ];

    /// The path's name.
    pub fn name(self) -> &'static str {
        match self {
            RepairPath::AntiEntropy => "anti-entropy",
            RepairPath::ReadRepair => "read-repair",
            RepairPath::HintedHandoff => "hinted-handoff",
            RepairPath::Rebalance => "rebalance",
        }
    }
}

impl fmt::Display for RepairPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The tombstone TTL of seeds that keep tombstones for the whole run.
const TOMBSTONE_TTL_LONG_MS: u64 = 600_000;

/// The options one seed runs with (those not drawn keep the cache's defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Knobs {
    /// The repair path switched off, if any.
    pub repair_off: Option<RepairPath>,
    /// Every repair path but anti-entropy is off (drawn only where `repair_off` is
    /// none): anti-entropy's own promise is then checked alone.
    pub anti_entropy_alone: bool,
    /// Points on the ring per node.
    pub vnode_count_per_node: usize,
    /// How long a hint is kept.
    pub hint_ttl_ms: u64,
    /// Hints kept per target node.
    pub hint_count_per_node_max: usize,
    /// Time between hint replays.
    pub hint_replay_interval_ms: u64,
    /// Time between rebalance rounds.
    pub rebalance_interval_ms: u64,
    /// Keys per rebalance batch.
    pub rebalance_batch_size: usize,
    /// Time between sweeps.
    pub sweep_interval_ms: u64,
    /// Age at which a tombstone is collected.
    pub tombstone_ttl_ms: u64,
    /// Time between anti-entropy rounds.
    pub merkle_sync_interval_ms: u64,
    /// Entries per merkle leaf.
    pub merkle_chunk_size: usize,
    /// The largest anti-entropy backoff factor.
    pub merkle_backoff_factor_max: u64,
}

impl Knobs {
    /// The cache's own defaults, every repair path on.
    pub fn defaults() -> Knobs {
        let options = cache::Options::default();
        Knobs {
            repair_off: None,
            anti_entropy_alone: false,
            vnode_count_per_node: options.vnode_count_per_node(),
            hint_ttl_ms: options.hint_ttl_ms(),
            hint_count_per_node_max: options.hint_count_per_node_max(),
            hint_replay_interval_ms: options.hint_replay_interval_ms(),
            rebalance_interval_ms: options.rebalance_interval_ms(),
            rebalance_batch_size: options.rebalance_batch_size(),
            sweep_interval_ms: options.sweep_interval_ms(),
            tombstone_ttl_ms: options.tombstone_ttl_ms(),
            merkle_sync_interval_ms: options.merkle_sync_interval_ms(),
            merkle_chunk_size: options.merkle_chunk_size(),
            merkle_backoff_factor_max: options.merkle_backoff_factor_max(),
        }
    }

    /// Draws one seed's options: half the seeds switch one repair path off; a quarter
    /// collect tombstones within the run.
    pub fn draw(rng: &mut SimRng) -> Knobs {
        let repair_off = if rng.chance(Ratio::new(1, 2)) {
            None
        } else {
            Some(*rng.choose(&RepairPath::ALL).expect("paths"))
        };
        let hint_ttl_ms = 2_000 + rng.below(40_001);
        let tombstone_ttl_ms = if rng.chance(Ratio::new(1, 4)) {
            // Above the hint TTL: no hint outlives the tombstone that must refuse it.
            hint_ttl_ms + 1_000 + rng.below(20_001)
        } else {
            TOMBSTONE_TTL_LONG_MS
        };
        Knobs {
            repair_off,
            vnode_count_per_node: 8 + rng.below(121) as usize,
            hint_ttl_ms,
            // Log-uniform, 1 to 1,024: some seeds cap a node's hints at 1 or 2, so that a
            // fault fills a queue and the cap's drop-oldest path runs.
            hint_count_per_node_max: 1 << rng.below(11),
            hint_replay_interval_ms: 50 + rng.below(951),
            rebalance_interval_ms: 100 + rng.below(901),
            rebalance_batch_size: 1 + rng.below(128) as usize,
            sweep_interval_ms: 200 + rng.below(1_801),
            tombstone_ttl_ms,
            merkle_sync_interval_ms: 2_000 + rng.below(8_001),
            merkle_chunk_size: draw_chunk_size(rng),
            merkle_backoff_factor_max: 1 + rng.below(8),
            // Drawn last, so that it leaves every other option as it was.
            anti_entropy_alone: repair_off.is_none() && rng.chance(Ratio::new(1, 4)),
        }
    }

    /// Whether `path` runs.
    pub fn runs(&self, path: RepairPath) -> bool {
        if self.anti_entropy_alone {
            return path == RepairPath::AntiEntropy;
        }
        self.repair_off != Some(path)
    }

    /// Whether tombstones may be collected before the run ends.
    pub fn collects_tombstones(&self) -> bool {
        self.tombstone_ttl_ms < TOMBSTONE_TTL_LONG_MS
    }

    /// The options, on top of `builder`.
    pub fn apply(&self, builder: OptionsBuilder) -> OptionsBuilder {
        let off = |path: RepairPath, value: u64| if self.runs(path) { value } else { 0 };
        builder
            .vnode_count_per_node(self.vnode_count_per_node)
            .hint_ttl_ms(off(RepairPath::HintedHandoff, self.hint_ttl_ms))
            .hint_count_per_node_max(self.hint_count_per_node_max)
            .hint_replay_interval_ms(self.hint_replay_interval_ms)
            .rebalance_interval_ms(off(RepairPath::Rebalance, self.rebalance_interval_ms))
            .rebalance_batch_size(self.rebalance_batch_size)
            .sweep_interval_ms(self.sweep_interval_ms)
            .tombstone_ttl_ms(self.tombstone_ttl_ms)
            .merkle_sync_interval_ms(off(RepairPath::AntiEntropy, self.merkle_sync_interval_ms))
            .merkle_chunk_size(self.merkle_chunk_size)
            .merkle_backoff_factor_max(self.merkle_backoff_factor_max)
            .read_repair(self.runs(RepairPath::ReadRepair))
    }
}

impl fmt::Display for Knobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let off = match self.repair_off {
            _ if self.anti_entropy_alone => "all but anti-entropy".to_string(),
            Some(path) => path.to_string(),
            None => "none".to_string(),
        };
        write!(
            f,
            "repair off: {off}; vnodes {}; hints ttl {}ms, {} per node, replay every {}ms; \
             rebalance every {}ms, batch {}; sweep every {}ms; tombstone ttl {}ms; \
             merkle every {}ms, chunk {}, backoff x{}",
            self.vnode_count_per_node,
            self.hint_ttl_ms,
            self.hint_count_per_node_max,
            self.hint_replay_interval_ms,
            self.rebalance_interval_ms,
            self.rebalance_batch_size,
            self.sweep_interval_ms,
            self.tombstone_ttl_ms,
            self.merkle_sync_interval_ms,
            self.merkle_chunk_size,
            self.merkle_backoff_factor_max
        )
    }
}

/// A merkle chunk size in 1..128, log-uniform: each range from a power of two to the
/// next as likely as the others, so that most seeds' trees have several leaves even
/// over the default 64 keys (about 40 entries a node), and some have one.
fn draw_chunk_size(rng: &mut SimRng) -> usize {
    let exponent = rng.below(7);
    let low = 1u64 << exponent;
    let chunk = low + rng.below(low);
    assert!((1..128).contains(&chunk));
    usize::try_from(chunk).expect("chunk sizes are small")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawn_knobs_are_valid_options_and_vary() {
        let mut offs = std::collections::BTreeSet::new();
        let (mut short_tombstones, mut alone) = (0, 0);
        for seed in 0..400 {
            let knobs = Knobs::draw(&mut SimRng::forked(seed, "options"));
            let built = knobs.apply(cache::Options::builder()).build();
            assert!(built.is_ok(), "seed {seed}: {knobs}: {built:?}");
            offs.insert(knobs.repair_off);
            alone += usize::from(knobs.anti_entropy_alone);
            if knobs.anti_entropy_alone {
                assert!(
                    RepairPath::ALL
                        .iter()
                        .all(|path| { knobs.runs(*path) == (*path == RepairPath::AntiEntropy) })
                );
            }
            short_tombstones += usize::from(knobs.collects_tombstones());
        }
        assert_eq!(offs.len(), 5, "every path is switched off by some seed: {offs:?}");
        assert!((50..150).contains(&short_tombstones), "{short_tombstones}");
        assert!((25..75).contains(&alone), "{alone} seeds with anti-entropy alone");
        assert!(Knobs::defaults().apply(cache::Options::builder()).build().is_ok());
    }
}
