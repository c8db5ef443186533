//! [`Options`]: a node's validated settings, built with [`Options::builder`].
//!
//! The defaults are the reference server's production settings (§1.5), not its library
//! defaults, which turn every background loop off. An interval of 0 turns its loop
//! off. Every queue has a limit here or in the module that owns it.

use std::borrow::Cow;
use std::fmt;

use crate::anti_entropy::MERKLE_BACKOFF_FACTOR_MAX;
use crate::consistency::Consistency;
use crate::merkle::MERKLE_CHUNK_SIZE_MAX;
use crate::ring::{REPLICATION_FACTOR_MAX, VNODE_COUNT_PER_NODE_MAX};

/// The longest interval or timeout accepted: one hour.
pub const INTERVAL_MS_MAX: u64 = 3_600_000;
/// The most indirect probes per failed heartbeat.
pub const INDIRECT_PROBE_COUNT_MAX: usize = 8;
/// The most hints queued, per node or in total.
pub const HINT_COUNT_MAX: usize = 1 << 20;
/// The most bytes of hints queued.
pub const HINT_BYTES_MAX: u64 = 1 << 30;
/// The most keys one rebalance batch moves.
pub const REBALANCE_BATCH_SIZE_MAX: usize = 4096;
/// The most entries (items and tombstones) one store may be configured to hold.
pub const ENTRY_COUNT_MAX: usize = 1 << 28;

/// Defines `Options`, its getters and its builder's setters from one list, so that a
/// new option cannot miss one of them.
macro_rules! options {
    ($( $(#[doc = $doc:literal])+ $name:ident: $type:ty = $default:expr; )+) => {
        /// A node's settings; every value is within its range (see [`Options::builder`]).
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct Options {
            $( $name: $type, )+
        }

        /// The defaults: the reference server's production settings.
        const DEFAULTS: Options = Options { $( $name: $default, )+ };

        impl Options {
            $( $(#[doc = $doc])+ pub fn $name(&self) -> $type { self.$name } )+
        }

        impl OptionsBuilder {
            $(
                $(#[doc = $doc])+
                pub fn $name(mut self, $name: $type) -> OptionsBuilder {
                    self.options.$name = $name;
                    self
                }
            )+
        }
    };
}

options! {
    /// How many nodes own each key, the primary included (default 3; 1..=7).
    replication_factor: usize = 3;
    /// Points on the ring per node (default 64; 1..=1024).
    vnode_count_per_node: usize = 64;
    /// Owners that must answer a read (default ONE).
    read_consistency: Consistency = Consistency::One;
    /// Owners that must acknowledge a write (default QUORUM).
    write_consistency: Consistency = Consistency::Quorum;
    /// How long a request to a peer may take (default 5 s; 1..=3600000 ms).
    rpc_timeout_ms: u64 = 5_000;
    /// Time between heartbeat rounds (default 1 s; 0 = off).
    heartbeat_interval_ms: u64 = 1_000;
    /// Unheard-from time after which a peer is suspect (default 3 s; 0 = never).
    suspect_after_ms: u64 = 3_000;
    /// Unheard-from time after which a peer is removed (default 6 s; 0 = never).
    dead_after_ms: u64 = 6_000;
    /// How long one heartbeat or indirect probe may take (default 500 ms, half the
    /// heartbeat interval as in the reference; less than the heartbeat interval).
    probe_timeout_ms: u64 = 500;
    /// Peers asked to probe a peer that missed a heartbeat (default 2; 0..=8, 0 = off).
    indirect_probe_count: usize = 2;
    /// Time between gossip pushes (default 1 s; 0 = off).
    gossip_interval_ms: u64 = 1_000;
    /// How long a hint for an unreachable owner is kept (default 30 s; 0 = no hints).
    hint_ttl_ms: u64 = 30_000;
    /// Time between hint replays (default 200 ms; 0 = off).
    hint_replay_interval_ms: u64 = 200;
    /// Hints kept per target node; the oldest is dropped past it (default 1024).
    hint_count_per_node_max: usize = 1_024;
    /// Hints kept in total; a new hint is refused past it (default 16384).
    hint_count_max: usize = 16_384;
    /// Bytes of keys and values in hints; a new hint is refused past it (default 64 MiB).
    hint_bytes_max: u64 = 64 << 20;
    /// Time between rebalance rounds (default 250 ms; 0 = off).
    rebalance_interval_ms: u64 = 250;
    /// Keys moved per rebalance batch (default 128; 1..=4096).
    rebalance_batch_size: usize = 128;
    /// Time between sweeps of expired items and old tombstones (default 1 s; 0 = off).
    sweep_interval_ms: u64 = 1_000;
    /// Age after which a tombstone is swept (default 10 min; 0 = kept for ever, as in
    /// the reference). Longer than the hint TTL, so that no hint outlives the tombstone
    /// that refuses it; a replica away for longer can still resurrect a deleted key.
    tombstone_ttl_ms: u64 = 600_000;
    /// Entries (items and tombstones) the store holds at most (default 2^20).
    entry_count_max: usize = 1 << 20;
    /// Time between anti-entropy rounds (default 10 s; 0 = off: no periodic rounds and
    /// no bootstrap sync when the node starts, so that anti-entropy is off entirely and
    /// the other repair paths can be tested alone). Each round compares
    /// merkle trees with one peer that shares keys with this node and pulls what
    /// differs. It is the backstop behind replica writes, hints and read repair: it
    /// repairs a replica that was away for longer than the hint TTL (30 s) or restarted
    /// empty, within tens of seconds. A round hashes every entry shared with the peer,
    /// so a shorter interval buys little and costs a scan; even at the largest backoff
    /// (8 × 10 s = 80 s) several rounds fit in the tombstone TTL (10 min), so a replica
    /// that missed a delete gets the tombstone long before it is swept.
    merkle_sync_interval_ms: u64 = 10_000;
    /// Entries a merkle leaf is sized for (default 128, the reference's; 1..=65536):
    /// the leaf count is the next power of two of entries / chunk size, at most 4096. A
    /// differing leaf costs a listing of about this many `(key, version)` pairs; smaller
    /// leaves list less on a small diff but make a longer summary.
    merkle_chunk_size: usize = 128;
    /// The largest anti-entropy backoff factor (default 8; 1..=64, 1 = no backoff): a
    /// round whose trees were equal doubles the wait, up to interval × this; a round
    /// that found differences resets it to the interval; a failed round leaves it. A
    /// quiet cluster then scans 8 times less often, and divergence gets the full rate
    /// back at its first round.
    merkle_backoff_factor_max: u64 = 8;
    /// Whether a QUORUM or ALL read repairs the owners that answered with an older
    /// version, or none (default true). Off, a read never writes: the other repair
    /// paths (hints, anti-entropy, rebalance) can be tested alone.
    read_repair: bool = true;
}

impl Options {
    /// A builder that starts from the defaults.
    pub fn builder() -> OptionsBuilder {
        OptionsBuilder { options: DEFAULTS }
    }
}

impl Default for Options {
    fn default() -> Options {
        let options = DEFAULTS;
        assert_eq!(validate(&options), Ok(()), "the defaults must be valid");
        options
    }
}

/// Builds [`Options`]; each setter is named after the option it sets.
#[derive(Clone, Debug)]
pub struct OptionsBuilder {
    options: Options,
}

impl OptionsBuilder {
    /// The options, if every value is in its range.
    ///
    /// # Errors
    ///
    /// [`OptionsError`] naming the first option out of range and the values accepted.
    pub fn build(self) -> Result<Options, OptionsError> {
        validate(&self.options)?;
        Ok(self.options)
    }
}

/// An option out of its range.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum OptionsError {
    /// The value is outside `min..=max` (and not 0 where 0 turns a loop off).
    OutOfRange {
        /// The option's name.
        option: Cow<'static, str>,
        /// The value given.
        value: u64,
        /// The smallest value accepted, 0 aside.
        min: u64,
        /// The largest value accepted.
        max: u64,
        /// Whether 0 is accepted (it turns the loop off).
        zero_means_off: bool,
    },
    /// The value must be above (or at least) another option's.
    TooSmall {
        /// The option's name.
        option: Cow<'static, str>,
        /// The value given.
        value: u64,
        /// The option it is compared with.
        other: Cow<'static, str>,
        /// That option's value.
        other_value: u64,
        /// Whether equal values are accepted.
        equal_allowed: bool,
    },
}

impl fmt::Display for OptionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionsError::OutOfRange { option, value, min, max, zero_means_off } => {
                let off = if *zero_means_off { "0 (off) or " } else { "" };
                write!(f, "option `{option}` is {value}: accepted {off}{min}..={max}")
            }
            OptionsError::TooSmall { option, value, other, other_value, equal_allowed } => {
                let relation = if *equal_allowed { "at least" } else { "above" };
                write!(
                    f,
                    "option `{option}` is {value}: accepted {relation} `{other}` ({other_value})"
                )
            }
        }
    }
}

impl std::error::Error for OptionsError {}

fn validate(options: &Options) -> Result<(), OptionsError> {
    let o = options;
    let rf_max = REPLICATION_FACTOR_MAX as u64;
    let vnodes_max = VNODE_COUNT_PER_NODE_MAX as u64;
    let hints_max = HINT_COUNT_MAX as u64;
    let batch_max = REBALANCE_BATCH_SIZE_MAX as u64;
    let entries_max = ENTRY_COUNT_MAX as u64;
    range("replication_factor", to_u64(o.replication_factor), 1, rf_max)?;
    range("vnode_count_per_node", to_u64(o.vnode_count_per_node), 1, vnodes_max)?;
    range("rpc_timeout_ms", o.rpc_timeout_ms, 1, INTERVAL_MS_MAX)?;
    interval("heartbeat_interval_ms", o.heartbeat_interval_ms)?;
    interval("suspect_after_ms", o.suspect_after_ms)?;
    interval("dead_after_ms", o.dead_after_ms)?;
    range("probe_timeout_ms", o.probe_timeout_ms, 1, INTERVAL_MS_MAX)?;
    let probes_max = INDIRECT_PROBE_COUNT_MAX as u64;
    range("indirect_probe_count", to_u64(o.indirect_probe_count), 0, probes_max)?;
    interval("gossip_interval_ms", o.gossip_interval_ms)?;
    interval("hint_ttl_ms", o.hint_ttl_ms)?;
    interval("hint_replay_interval_ms", o.hint_replay_interval_ms)?;
    range("hint_count_per_node_max", to_u64(o.hint_count_per_node_max), 1, hints_max)?;
    range("hint_count_max", to_u64(o.hint_count_max), 1, hints_max)?;
    range("hint_bytes_max", o.hint_bytes_max, 1, HINT_BYTES_MAX)?;
    interval("rebalance_interval_ms", o.rebalance_interval_ms)?;
    range("rebalance_batch_size", to_u64(o.rebalance_batch_size), 1, batch_max)?;
    interval("sweep_interval_ms", o.sweep_interval_ms)?;
    interval("tombstone_ttl_ms", o.tombstone_ttl_ms)?;
    range("entry_count_max", to_u64(o.entry_count_max), 1, entries_max)?;
    interval("merkle_sync_interval_ms", o.merkle_sync_interval_ms)?;
    let chunk_max = MERKLE_CHUNK_SIZE_MAX as u64;
    range("merkle_chunk_size", to_u64(o.merkle_chunk_size), 1, chunk_max)?;
    let factor_max = o.merkle_backoff_factor_max;
    range("merkle_backoff_factor_max", factor_max, 1, MERKLE_BACKOFF_FACTOR_MAX)?;
    // `read_repair` is a bool: every value is valid.

    // A peer is suspected before it is removed, a probe ends before the next round, and
    // a tombstone outlives every hint it must refuse.
    if o.suspect_after_ms > 0 && o.dead_after_ms > 0 {
        above("dead_after_ms", o.dead_after_ms, "suspect_after_ms", o.suspect_after_ms)?;
    }
    if o.heartbeat_interval_ms > 0 {
        let (interval_ms, timeout_ms) = (o.heartbeat_interval_ms, o.probe_timeout_ms);
        above("heartbeat_interval_ms", interval_ms, "probe_timeout_ms", timeout_ms)?;
    }
    if o.tombstone_ttl_ms > 0 && o.hint_ttl_ms > 0 {
        above("tombstone_ttl_ms", o.tombstone_ttl_ms, "hint_ttl_ms", o.hint_ttl_ms)?;
    }
    let (total, per_node) = (to_u64(o.hint_count_max), to_u64(o.hint_count_per_node_max));
    if total < per_node {
        return Err(OptionsError::TooSmall {
            option: Cow::Borrowed("hint_count_max"),
            value: total,
            other: Cow::Borrowed("hint_count_per_node_max"),
            other_value: per_node,
            equal_allowed: true,
        });
    }
    Ok(())
}

fn to_u64(value: usize) -> u64 {
    u64::try_from(value).expect("usize fits in u64")
}

fn range(option: &'static str, value: u64, min: u64, max: u64) -> Result<(), OptionsError> {
    assert!(min <= max);
    if value < min || value > max {
        return Err(OptionsError::OutOfRange {
            option: option.into(),
            value,
            min,
            max,
            zero_means_off: false,
        });
    }
    Ok(())
}

/// An interval: 0 (off) or `1..=INTERVAL_MS_MAX`.
fn interval(option: &'static str, value_ms: u64) -> Result<(), OptionsError> {
    if value_ms > INTERVAL_MS_MAX {
        return Err(OptionsError::OutOfRange {
            option: option.into(),
            value: value_ms,
            min: 1,
            max: INTERVAL_MS_MAX,
            zero_means_off: true,
        });
    }
    Ok(())
}

fn above(
    option: &'static str,
    value: u64,
    other: &'static str,
    other_value: u64,
) -> Result<(), OptionsError> {
    if value <= other_value {
        return Err(OptionsError::TooSmall {
            option: option.into(),
            value,
            other: other.into(),
            other_value,
            equal_allowed: false,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_production_settings() {
        let options = Options::default();
        assert_eq!(Options::builder().build(), Ok(options.clone()));
        assert_eq!(options.replication_factor(), 3);
        assert_eq!(options.vnode_count_per_node(), 64);
        assert_eq!(options.read_consistency(), Consistency::One);
        assert_eq!(options.write_consistency(), Consistency::Quorum);
        assert_eq!(options.heartbeat_interval_ms(), 1_000);
        assert_eq!(options.suspect_after_ms(), 3_000);
        assert_eq!(options.dead_after_ms(), 6_000);
        assert_eq!(options.indirect_probe_count(), 2);
        assert_eq!(options.gossip_interval_ms(), 1_000);
        assert_eq!(options.hint_ttl_ms(), 30_000);
        assert_eq!(options.hint_replay_interval_ms(), 200);
        assert_eq!(options.rebalance_interval_ms(), 250);
        assert!(options.read_repair());
    }

    #[test]
    fn every_repair_path_has_an_off_switch() {
        let options = Options::builder()
            .merkle_sync_interval_ms(0)
            .hint_ttl_ms(0)
            .rebalance_interval_ms(0)
            .read_repair(false)
            .build()
            .unwrap();
        assert_eq!(options.merkle_sync_interval_ms(), 0);
        assert_eq!(options.hint_ttl_ms(), 0);
        assert_eq!(options.rebalance_interval_ms(), 0);
        assert!(!options.read_repair());
        // Each alone, too: the harness switches off one path per seed.
        assert!(Options::builder().merkle_sync_interval_ms(0).build().is_ok());
        assert!(Options::builder().hint_ttl_ms(0).build().is_ok());
        assert!(Options::builder().rebalance_interval_ms(0).build().is_ok());
        assert!(Options::builder().read_repair(false).build().is_ok());
    }

    #[test]
    fn setters_set() {
        let options = Options::builder()
            .replication_factor(5)
            .write_consistency(Consistency::All)
            .gossip_interval_ms(0)
            .build()
            .unwrap();
        assert_eq!(options.replication_factor(), 5);
        assert_eq!(options.write_consistency(), Consistency::All);
        assert_eq!(options.gossip_interval_ms(), 0);
    }

    #[test]
    fn out_of_range_names_the_option_and_the_range() {
        let error = Options::builder().replication_factor(0).build().unwrap_err();
        assert_eq!(error.to_string(), "option `replication_factor` is 0: accepted 1..=7");
        let error = Options::builder().vnode_count_per_node(1025).build().unwrap_err();
        assert_eq!(error.to_string(), "option `vnode_count_per_node` is 1025: accepted 1..=1024");
        let error = Options::builder().gossip_interval_ms(INTERVAL_MS_MAX + 1).build().unwrap_err();
        assert_eq!(
            error.to_string(),
            "option `gossip_interval_ms` is 3600001: accepted 0 (off) or 1..=3600000"
        );
    }

    #[test]
    fn relations_between_options_are_checked() {
        let error = Options::builder().dead_after_ms(3_000).build().unwrap_err();
        assert_eq!(
            error.to_string(),
            "option `dead_after_ms` is 3000: accepted above `suspect_after_ms` (3000)"
        );
        let error = Options::builder().probe_timeout_ms(1_000).build().unwrap_err();
        assert!(
            matches!(&error, OptionsError::TooSmall { option, .. } if option == "heartbeat_interval_ms")
        );
        let error = Options::builder().tombstone_ttl_ms(30_000).build().unwrap_err();
        assert_eq!(
            error.to_string(),
            "option `tombstone_ttl_ms` is 30000: accepted above `hint_ttl_ms` (30000)"
        );
        let error = Options::builder().hint_count_max(10).build().unwrap_err();
        assert_eq!(
            error.to_string(),
            "option `hint_count_max` is 10: accepted at least `hint_count_per_node_max` (1024)"
        );
    }

    #[test]
    fn zero_turns_loops_off_without_relations() {
        let options = Options::builder()
            .heartbeat_interval_ms(0)
            .probe_timeout_ms(10_000)
            .suspect_after_ms(0)
            .dead_after_ms(0)
            .hint_ttl_ms(0)
            .rebalance_interval_ms(0)
            .sweep_interval_ms(0)
            .build();
        assert!(options.is_ok(), "{options:?}");
    }
}
