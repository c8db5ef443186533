//! [`Metrics`]: a node's counters, and [`MetricsSnapshot`], which adds its gauges.
//!
//! The names are the reference's `DistMetrics` fields (§2.19) in snake case, so that
//! ported tests read the same numbers. Durations are in the caller's clock, in
//! nanoseconds (`_ns`), or milliseconds (`_ms`) where the reference's clock is coarse.
//! The reference's dead counters (`ReplicaGetMiss`) and the fault-injection counters
//! (`ChaosDrops`, `ChaosLatencies`: the simulator's network owns faults) are left out;
//! `LastAutoSyncError` (a string) becomes the `auto_sync_failures` count.

use crate::membership::Membership;
use crate::store::Store;

/// Defines `Metrics` and its list of names from one list, so that a new counter is
/// always exported.
macro_rules! metrics {
    ($( $(#[doc = $doc:literal])+ $name:ident, )+) => {
        /// A node's counters: plain integers the protocol code bumps directly.
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct Metrics {
            $( $(#[doc = $doc])+ pub $name: u64, )+
        }

        impl Metrics {
            /// Every counter's name, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$( stringify!($name), )+];

            /// Every counter as `(name, value)`, in declaration order.
            pub fn fields(&self) -> impl Iterator<Item = (&'static str, u64)> + use<> {
                [$( (stringify!($name), self.$name), )+].into_iter()
            }
        }
    };
}

metrics! {
    /// Reads forwarded to another owner.
    forward_get,
    /// Writes forwarded to the primary.
    forward_set,
    /// Deletes forwarded to the primary.
    forward_remove,
    /// Writes sent to replicas by a coordinator.
    replica_fanout_set,
    /// Deletes sent to replicas by a coordinator.
    replica_fanout_remove,
    /// Stale owners repaired after a read.
    read_repair,
    /// Read repairs sent in batches.
    read_repair_batched,
    /// Read repairs merged into a pending one for the same peer and key.
    read_repair_coalesced,
    /// Reads answered by an owner after the primary failed or missed.
    read_primary_promote,
    /// Reads that did not reach their consistency level.
    read_quorum_failures,
    /// Reads whose answers carried different versions.
    version_conflicts,
    /// Conflicts decided by the origin tie-break (equal counters).
    version_tie_breaks,
    /// Incoming entries refused by the version check (not newer than held).
    apply_stale,
    /// Client writes started on this node.
    write_attempts,
    /// Acknowledgements counted for client writes.
    write_acks,
    /// Writes that did not reach their consistency level.
    write_quorum_failures,
    /// Writes (and deletes) this node coordinated after the primary failed.
    write_forward_promotion,
    /// Incoming writes refused because this node does not own the key.
    write_apply_refused,
    /// Heartbeats answered.
    heartbeat_success,
    /// Heartbeats unanswered.
    heartbeat_failure,
    /// Indirect probes that reached the target.
    indirect_probe_success,
    /// Indirect probes that did not.
    indirect_probe_failure,
    /// Failed heartbeats that an indirect probe contradicted.
    indirect_probe_refuted,
    /// Members this node marked suspect.
    nodes_suspect,
    /// Members this node declared dead.
    nodes_dead,
    /// Members this node removed.
    nodes_removed,
    /// Gossip messages sent.
    gossip_sent,
    /// Gossip messages received.
    gossip_received,
    /// Gossip entries ignored as stale.
    gossip_entries_stale,
    /// Suspicions of this node that it refuted.
    gossip_self_refutes,
    /// Hints queued for unreachable owners.
    hinted_queued,
    /// Hints delivered.
    hinted_replayed,
    /// Hints dropped when their TTL ran out.
    hinted_expired,
    /// Oldest hints dropped for a node whose queue was full.
    hinted_dropped,
    /// New hints refused because all queues together were full.
    hinted_global_dropped,
    /// Queued hints replaced by a newer hint for the same node and key.
    hinted_superseded,
    /// Bytes of keys and values held in hint queues (a gauge kept by the queue).
    hinted_bytes,
    /// Hints queued by a migration.
    migration_hint_queued,
    /// Migration hints delivered.
    migration_hint_replayed,
    /// Migration hints expired.
    migration_hint_expired,
    /// Migration hints dropped or refused for lack of room.
    migration_hint_dropped,
    /// Age of the last migration hint delivered, in milliseconds.
    migration_hint_last_age_ms,
    /// Anti-entropy syncs that found differences.
    merkle_syncs,
    /// Keys pulled by anti-entropy.
    merkle_keys_pulled,
    /// Time to build the last merkle tree.
    merkle_build_ns,
    /// Time to diff the last two trees.
    merkle_diff_ns,
    /// Time to fetch the last remote tree.
    merkle_fetch_ns,
    /// Anti-entropy rounds run.
    auto_sync_loops,
    /// Duration of the last anti-entropy round.
    last_auto_sync_ns,
    /// Anti-entropy rounds with a failed peer.
    auto_sync_failures,
    /// Syncs begun by the startup pull (a node pulls what it owns from every peer when
    /// it starts): every sync is an autosync round or one of these.
    bootstrap_syncs,
    /// Anti-entropy rounds that found nothing to do.
    auto_sync_clean_ticks,
    /// The current anti-entropy backoff factor (a gauge).
    auto_sync_backoff_factor,
    /// Tombstones swept after their TTL.
    tombstones_purged,
    /// Expired items swept.
    items_expired,
    /// Keys sent to new owners by rebalancing.
    rebalanced_keys,
    /// Rebalance batches sent.
    rebalance_batches,
    /// Rebalance batches that waited for a free slot.
    rebalance_throttle,
    /// Duration of the last rebalance round.
    rebalance_last_ns,
    /// Keys copied to owners that became replicas.
    rebalanced_replica_diff,
    /// Rebalance rounds that hit the replica-copy limit.
    rebalance_replica_diff_throttle,
    /// Keys handed to a new primary.
    rebalanced_primary,
    /// Times this node started draining (at most 1).
    drains,
}

impl Metrics {
    /// The counters plus the gauges read from `membership` and `store`.
    pub fn snapshot(&self, membership: &Membership, store: &Store) -> MetricsSnapshot {
        let counts = membership.counts();
        let snapshot = MetricsSnapshot {
            counters: self.clone(),
            membership_version: membership.version(),
            members_alive: to_u64(counts.alive),
            members_suspect: to_u64(counts.suspect),
            members_dead: to_u64(counts.dead),
            items_active: to_u64(store.item_count()),
            tombstones_active: to_u64(store.tombstone_count()),
        };
        assert!(snapshot.members_alive >= 1, "the local node is alive");
        snapshot
    }
}

/// A node's metrics at one moment: counters and gauges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// The counters.
    pub counters: Metrics,
    /// The membership version.
    pub membership_version: u64,
    /// Alive members, the local node included.
    pub members_alive: u64,
    /// Suspect members.
    pub members_suspect: u64,
    /// Dead members not yet removed.
    pub members_dead: u64,
    /// Items stored, expired ones included until swept.
    pub items_active: u64,
    /// Tombstones stored.
    pub tombstones_active: u64,
}

impl MetricsSnapshot {
    /// Every counter and gauge as `(name, value)`: counters first, then gauges.
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, u64)> + use<> {
        let gauges = [
            ("membership_version", self.membership_version),
            ("members_alive", self.members_alive),
            ("members_suspect", self.members_suspect),
            ("members_dead", self.members_dead),
            ("items_active", self.items_active),
            ("tombstones_active", self.tombstones_active),
        ];
        self.counters.fields().chain(gauges)
    }
}

fn to_u64(count: usize) -> u64 {
    u64::try_from(count).expect("usize fits in u64")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use bytes::Bytes;

    use super::*;
    use crate::membership::{Member, NodeState};
    use crate::node_id::NodeId;
    use crate::store::{Entry, Item, Tombstone};
    use crate::version::Version;

    #[test]
    fn reference_metric_names_are_all_here() {
        // §2.19's DistMetrics fields, snake-cased; the renamed ones are listed apart.
        let reference = "forward_get forward_set forward_remove replica_fanout_set \
            replica_fanout_remove read_repair read_repair_batched read_repair_coalesced \
            heartbeat_success heartbeat_failure indirect_probe_success indirect_probe_failure \
            indirect_probe_refuted drains nodes_suspect nodes_dead nodes_removed \
            version_conflicts version_tie_breaks read_primary_promote hinted_queued \
            hinted_replayed hinted_expired hinted_dropped hinted_global_dropped hinted_bytes \
            migration_hint_queued migration_hint_replayed migration_hint_expired \
            migration_hint_dropped merkle_syncs merkle_keys_pulled merkle_build_ns \
            merkle_diff_ns merkle_fetch_ns auto_sync_loops last_auto_sync_ns \
            auto_sync_clean_ticks auto_sync_backoff_factor tombstones_purged \
            write_quorum_failures write_acks write_attempts write_forward_promotion \
            write_apply_refused rebalanced_keys rebalance_batches rebalance_throttle \
            rebalance_last_ns rebalanced_replica_diff rebalance_replica_diff_throttle \
            rebalanced_primary";
        let renamed = "migration_hint_last_age_ms auto_sync_failures";
        let names: BTreeSet<&str> = Metrics::NAMES.iter().copied().collect();
        for name in reference.split_whitespace().chain(renamed.split_whitespace()) {
            assert!(names.contains(name), "missing metric `{name}`");
        }
        assert_eq!(names.len(), Metrics::NAMES.len(), "a name appears twice");
    }

    #[test]
    fn snapshot_adds_the_gauges() {
        let local = NodeId::new("a").unwrap();
        let mut membership = Membership::new(Member::new(local.clone(), "a:1"), 0);
        membership.upsert(Member::new(NodeId::new("b").unwrap(), "b:1"), 0).unwrap();
        membership.mark(&NodeId::new("b").unwrap(), NodeState::Suspect, 1).unwrap();
        let mut store = Store::new(8);
        let version = Version::new(1, local);
        let item = Entry::Item(Item::new(Bytes::from_static(b"v"), version.clone()));
        let _ = store.apply("k", item).unwrap();
        let tombstone = Entry::Tombstone(Tombstone { version, deleted_at_ms: 0 });
        let _ = store.apply("gone", tombstone).unwrap();
        let metrics = Metrics { write_attempts: 3, ..Metrics::default() };

        let snapshot = metrics.snapshot(&membership, &store);
        assert_eq!(snapshot.counters.write_attempts, 3);
        assert_eq!((snapshot.members_alive, snapshot.members_suspect), (1, 1));
        assert_eq!((snapshot.items_active, snapshot.tombstones_active), (1, 1));
        assert_eq!(snapshot.membership_version, 3);
        let fields: Vec<(&str, u64)> = snapshot.fields().collect();
        assert_eq!(fields.len(), Metrics::NAMES.len() + 6);
        assert!(fields.contains(&("write_attempts", 3)));
        assert!(fields.contains(&("members_suspect", 1)));
    }
}
