//! Local maintenance: the TTL expiry sweep and the tombstone sweep (§2.6, §2.20), and
//! drain (§2.14).
//!
//! # Sweeps
//!
//! Every `sweep_interval_ms` (0 turns the loop off) a node sweeps its own store:
//!
//! 1. Items whose expiry has passed by the node's wall clock become tombstones of the
//!    same version, dated now by the node's monotonic clock ([`Store::sweep_expired`];
//!    counted as `items_expired`). This is
//!    local only: nothing is sent to the other owners, which hold the same absolute
//!    expiry and expire their copies by themselves. Only expired items are touched;
//!    the reference's expiration loop, which removed every item cluster-wide (§2.20),
//!    has no counterpart here. An expired item was invisible to reads already: the
//!    sweep only reclaims it.
//! 2. Tombstones at least `tombstone_ttl_ms` old are purged ([`Store::sweep_tombstones`];
//!    counted as `tombstones_purged`); a TTL of 0 keeps them for ever. A tombstone's age
//!    is counted on each node's monotonic clock from when that node stored it, never
//!    from another node's wall clock: a delete coordinated by a node whose clock is
//!    behind by more than the TTL would otherwise be collected everywhere on arrival,
//!    and the value it deleted could come back (swarm 1232 found it).
//!
//! # The resurrection risk
//!
//! A tombstone is what refuses an older write of its key. Once it is purged, nothing
//! remembers the delete: an owner that missed the delete (partitioned or down for
//! longer than `tombstone_ttl_ms`) and still holds the old item will hand it back, by
//! read repair, anti-entropy or rebalancing, and every owner accepts it as new. The
//! deleted key comes back. The same holds for a replica write or hint older than the
//! tombstone that arrives after the purge. The options keep `tombstone_ttl_ms` above
//! `hint_ttl_ms`, so that no hint outlives the tombstone that must refuse it; nothing
//! bounds how long a replica may be away. As in the reference (§2.21), the remedy is
//! operational: keep the TTL longer than any outage, or wipe a replica that was away
//! longer before it rejoins. Clock skew and jumps do not change a tombstone's life:
//! it is aged on the monotonic clock.
//!
//! # Drain
//!
//! [`CacheNode::drain`] prepares a node to be taken out of service. It is one-way (there
//! is no undrain; a restarted node starts undrained) and idempotent (`drains` counts
//! once). A draining node:
//!
//! - refuses client writes that enter it, and writes forwarded to it for
//!   coordination, with [`Error::Draining`](crate::Error::Draining) (a client whose key's primary drains gets
//!   that error; the write path does not fall through to the next owner);
//! - keeps serving reads, as a coordinator and as an owner;
//! - keeps applying replica writes, read repairs, hint replays, anti-entropy and
//!   rebalancing from its peers, so its copies stay current while it drains;
//! - keeps replaying its own hints, and keeps running its sweeps and its membership.
//!
//! Drain does not remove the node from the ring, does not hand its keys to other
//! owners, does not tell its peers (they learn it from the errors), and does not stop
//! the node: an operator (or the rebalancing work) moves the keys, then stops it.

use std::rc::Rc;

use crate::node::{CacheNode, Inner};
use crate::store::Store;

/// What one sweep removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SweepReport {
    /// Expired items turned into tombstones.
    pub(crate) items_expired: usize,
    /// Tombstones purged.
    pub(crate) tombstones_purged: usize,
}

/// Sweeps `store` at `now_ms` (wall clock, for item expiry) and `local_ms` (the
/// node's monotonic clock, for tombstone ages): expired items become tombstones, then
/// the tombstones at least `tombstone_ttl_ms` old are purged (none when it is 0).
pub(crate) fn sweep(
    store: &mut Store,
    now_ms: u64,
    local_ms: u64,
    tombstone_ttl_ms: u64,
) -> SweepReport {
    let (items_before, tombstones_before) = (store.item_count(), store.tombstone_count());
    let items_expired = store.sweep_expired(now_ms, local_ms);
    let tombstones_purged =
        if tombstone_ttl_ms == 0 { 0 } else { store.sweep_tombstones(local_ms, tombstone_ttl_ms) };
    assert_eq!(store.item_count(), items_before - items_expired);
    assert_eq!(store.tombstone_count() + tombstones_purged, tombstones_before + items_expired);
    assert!(store.items(now_ms).count() == store.item_count(), "no expired item is left");
    SweepReport { items_expired, tombstones_purged }
}

impl Inner {
    /// Starts the sweep loop, unless `sweep_interval_ms` is 0.
    pub(crate) fn start_sweeps(inner: &Rc<Inner>) {
        let interval_ms = inner.options.sweep_interval_ms();
        Inner::spawn_periodic(inner, "sweep", interval_ms, |inner| {
            Box::pin(async move {
                // Fault point: a sweep put off to the next round (expired items are
                // invisible already; tombstones living longer is safe).
                if !inner.buggify() {
                    let _report = inner.sweep_store();
                }
            })
        });
    }

    /// One sweep of the local store; counts what it removed.
    pub(crate) fn sweep_store(&self) -> SweepReport {
        let now_ms = self.runtime.wall_clock_ms();
        let local_ms = self.elapsed_ms();
        let mut state = self.state.borrow_mut();
        let ttl_ms = self.options.tombstone_ttl_ms();
        let ttl_ms = if self.mutant(crate::Mutant::TombstonesSweptAtOnce) {
            1
        } else if ttl_ms > 0 && self.mutant(crate::Mutant::TombstoneTtlSeconds) {
            (ttl_ms / 1000).max(1) // The canary: the TTL misread as seconds.
        } else {
            ttl_ms
        };
        let report = if self.mutant(crate::Mutant::TtlNeverExpires) {
            // The canary: no item ever expires; tombstones are purged as usual.
            let purged =
                if ttl_ms == 0 { 0 } else { state.store.sweep_tombstones(local_ms, ttl_ms) };
            SweepReport { items_expired: 0, tombstones_purged: purged }
        } else {
            sweep(&mut state.store, now_ms, local_ms, ttl_ms)
        };
        state.metrics.items_expired += report.items_expired as u64;
        state.metrics.tombstones_purged += report.tombstones_purged as u64;
        drop(state);
        if report.items_expired > 0 {
            self.reached("an expired item became a tombstone");
        }
        if report.tombstones_purged > 0 {
            self.reached("a tombstone was collected");
        }
        if report != SweepReport::default() {
            tracing::debug!(target: "cache::maintenance", node = %self.id, ?report, "sweep");
        }
        report
    }
}

impl CacheNode {
    /// Starts draining: from now on this node refuses writes with [`Error::Draining`](crate::Error::Draining)
    /// and still serves reads (see the module documentation of `maintenance.rs` for
    /// what drain does and does not do). One-way and idempotent: the `drains` metric
    /// counts the first call only.
    pub fn drain(&self) {
        if self.inner.draining.replace(true) {
            return;
        }
        self.inner.state.borrow_mut().metrics.drains += 1;
        self.inner.reached("a node started draining");
        tracing::info!(target: "cache::maintenance", node = %self.inner.id, "draining");
        assert!(self.is_draining());
    }

    /// Whether [`CacheNode::drain`] was called.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.get()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::node_id::NodeId;
    use crate::store::{Entry, Item, Tombstone};
    use crate::version::Version;

    fn version(counter: u64) -> Version {
        Version::new(counter, NodeId::new("n1").unwrap())
    }

    fn apply(store: &mut Store, key: &str, entry: Entry) {
        assert!(store.apply(key, entry).unwrap().is_applied());
    }

    fn item(expires_at_ms: Option<u64>) -> Entry {
        let item = match expires_at_ms {
            Some(at_ms) => Item::with_ttl(Bytes::from_static(b"v"), version(1), 0, at_ms),
            None => Item::new(Bytes::from_static(b"v"), version(1)),
        };
        Entry::Item(item)
    }

    #[test]
    fn sweep_expires_only_expired_items_into_tombstones() {
        let mut store = Store::new(16);
        apply(&mut store, "expired", item(Some(100)));
        apply(&mut store, "later", item(Some(10_000)));
        apply(&mut store, "forever", item(None));
        let report = sweep(&mut store, 100, 100, 60_000);
        assert_eq!(report, SweepReport { items_expired: 1, tombstones_purged: 0 });
        let tombstone = Tombstone { version: version(1), deleted_at_ms: 100 };
        assert_eq!(store.entry("expired"), Some(&Entry::Tombstone(tombstone)));
        assert!(store.get("later", 100).is_some());
        assert!(store.get("forever", 100).is_some());
        assert_eq!(sweep(&mut store, 100, 100, 60_000), SweepReport::default(), "nothing twice");
    }

    #[test]
    fn sweep_purges_only_tombstones_past_their_ttl() {
        let mut store = Store::new(16);
        let old = Tombstone { version: version(1), deleted_at_ms: 1_000 };
        let young = Tombstone { version: version(1), deleted_at_ms: 5_000 };
        apply(&mut store, "old", Entry::Tombstone(old));
        apply(&mut store, "young", Entry::Tombstone(young));
        apply(&mut store, "item", item(None));
        assert_eq!(sweep(&mut store, 10_999, 10_999, 10_000).tombstones_purged, 0);
        assert_eq!(
            sweep(&mut store, 11_000, 11_000, 10_000).tombstones_purged,
            1,
            "at exactly the ttl"
        );
        assert!(store.entry("old").is_none());
        assert!(store.entry("young").is_some());
        assert!(store.get("item", 11_000).is_some());
        // A TTL of 0 keeps tombstones for ever.
        assert_eq!(sweep(&mut store, u64::MAX, u64::MAX, 0).tombstones_purged, 0);
        assert!(store.entry("young").is_some());
    }

    #[test]
    fn a_tombstone_lives_its_ttl_from_when_this_node_stored_it() {
        let mut store = Store::new(16);
        apply(&mut store, "k", item(Some(100)));
        // Expired long ago by the wall clock, yet kept a full TTL on the local clock:
        // the wall clock of whoever set the expiry says nothing of this node's time.
        let report = sweep(&mut store, 20_000, 5_000, 10_000);
        assert_eq!(report, SweepReport { items_expired: 1, tombstones_purged: 0 });
        assert_eq!(sweep(&mut store, 90_000, 14_999, 10_000).tombstones_purged, 0);
        assert_eq!(sweep(&mut store, 0, 15_000, 10_000).tombstones_purged, 1);
        assert!(store.is_empty());
    }
}
