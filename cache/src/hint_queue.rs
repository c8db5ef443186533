//! [`HintQueue`]: the replica writes a node owes its peers, without any I/O.
//!
//! One queue per target node, oldest first, and at most one hint per (node, key): a
//! newer version supersedes the queued one (the replica only needs the newest), an
//! older or equal one is dropped as stale. The limits follow the reference (§2.9):
//!
//! - a hint lives `hint_ttl_ms` after it was queued, then is dropped as expired;
//! - a target node holds at most `hint_count_per_node_max` hints: past it, its OLDEST
//!   hint is dropped to make room ([`Push::Queued::dropped_oldest`]);
//! - all queues together hold at most `hint_count_max` hints and `hint_bytes_max`
//!   bytes (key plus value): past either, the NEW hint is rejected ([`Push::Rejected`]).
//!
//! Times are the caller's monotonic milliseconds (the node's `elapsed()`), never the
//! wall clock: a hint's life must not change when the clock is set. They never go
//! back, so each target's queue is in expiry order too.

use std::collections::BTreeMap;

use crate::node_id::NodeId;
use crate::options::{HINT_BYTES_MAX, HINT_COUNT_MAX, Options};
use crate::store::Entry;
use crate::version::Version;

/// One queued replica write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Hint {
    pub(crate) key: String,
    pub(crate) entry: Entry,
    pub(crate) queued_at_ms: u64,
    pub(crate) expires_at_ms: u64,
    /// The key's and the value's bytes: what the byte limit counts.
    pub(crate) size_bytes: u64,
}

/// What [`HintQueue::push`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Push {
    /// The hint is queued.
    Queued {
        /// It replaced an older hint for the same node and key.
        superseded: bool,
        /// The node's queue was full: its oldest hint was dropped.
        dropped_oldest: bool,
    },
    /// A hint at least as new is queued for this node and key already.
    Stale,
    /// The total count or bytes limit would be passed: the new hint is refused.
    Rejected,
    /// Hints are off (a TTL of 0).
    Disabled,
}

#[cfg(test)]
impl Push {
    /// Whether the hint was queued.
    pub(crate) fn is_queued(self) -> bool {
        matches!(self, Push::Queued { .. })
    }
}

/// The limits of a [`HintQueue`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HintLimits {
    pub(crate) ttl_ms: u64,
    pub(crate) count_per_node_max: usize,
    pub(crate) count_max: usize,
    pub(crate) bytes_max: u64,
}

impl HintLimits {
    pub(crate) fn from_options(options: &Options) -> HintLimits {
        HintLimits {
            ttl_ms: options.hint_ttl_ms(),
            count_per_node_max: options.hint_count_per_node_max(),
            count_max: options.hint_count_max(),
            bytes_max: options.hint_bytes_max(),
        }
    }
}

/// One target node's hints.
#[derive(Debug, Default)]
struct NodeHints {
    /// Oldest first, by queue sequence.
    by_seq: BTreeMap<u64, Hint>,
    /// The sequence of each key's hint.
    seq_by_key: BTreeMap<String, u64>,
}

impl NodeHints {
    fn insert(&mut self, seq: u64, hint: Hint) {
        let old = self.seq_by_key.insert(hint.key.clone(), seq);
        assert!(old.is_none(), "one hint per node and key");
        assert!(self.by_seq.insert(seq, hint).is_none(), "sequences are unique");
    }

    fn remove_key(&mut self, key: &str) -> Option<Hint> {
        let seq = self.seq_by_key.remove(key)?;
        let hint = self.by_seq.remove(&seq).expect("every indexed key has a hint");
        assert_eq!(hint.key, key);
        Some(hint)
    }

    fn pop_oldest(&mut self) -> Option<Hint> {
        let (_, hint) = self.by_seq.pop_first()?;
        assert!(self.seq_by_key.remove(&hint.key).is_some());
        Some(hint)
    }
}

/// The hint queues of one node: see the module documentation.
#[derive(Debug)]
pub(crate) struct HintQueue {
    limits: HintLimits,
    nodes: BTreeMap<NodeId, NodeHints>,
    count: usize,
    bytes: u64,
    seq_next: u64,
    /// The latest time seen: times never go back.
    now_ms: u64,
}

impl HintQueue {
    /// An empty queue.
    ///
    /// # Panics
    ///
    /// When a limit is out of the range [`Options`] validates.
    pub(crate) fn new(limits: HintLimits) -> HintQueue {
        assert!((1..=HINT_COUNT_MAX).contains(&limits.count_per_node_max));
        assert!((limits.count_per_node_max..=HINT_COUNT_MAX).contains(&limits.count_max));
        assert!((1..=HINT_BYTES_MAX).contains(&limits.bytes_max));
        HintQueue { limits, nodes: BTreeMap::new(), count: 0, bytes: 0, seq_next: 0, now_ms: 0 }
    }

    /// Queues `entry` for `node` at `now_ms`, applying the limits.
    pub(crate) fn push(&mut self, node: &NodeId, key: &str, entry: &Entry, now_ms: u64) -> Push {
        self.advance(now_ms);
        if self.limits.ttl_ms == 0 {
            return Push::Disabled;
        }
        let size_bytes = hint_size_bytes(key, entry);
        let hints = self.nodes.entry(node.clone()).or_default();
        let held = hints.seq_by_key.get(key).map(|seq| &hints.by_seq[seq]);
        if let Some(held) = held
            && !entry.version().is_newer_than(held.entry.version())
        {
            return Push::Stale;
        }
        let superseded_bytes = held.map(|held| held.size_bytes);
        // Superseding frees the held hint's room; otherwise a full node drops its oldest.
        let drop_oldest =
            superseded_bytes.is_none() && hints.by_seq.len() == self.limits.count_per_node_max;
        let freed_bytes = match (superseded_bytes, drop_oldest) {
            (Some(bytes), _) => bytes,
            (None, true) => hints.by_seq.first_key_value().expect("a full queue").1.size_bytes,
            (None, false) => 0,
        };
        let freed_count = usize::from(superseded_bytes.is_some() || drop_oldest);
        let count_after = self.count + 1 - freed_count;
        let bytes_after = self.bytes + size_bytes - freed_bytes;
        if count_after > self.limits.count_max || bytes_after > self.limits.bytes_max {
            // The newest is refused; the queued hints, a superseded one included, stay.
            self.forget_if_empty(node);
            return Push::Rejected;
        }
        let removed = if drop_oldest { hints.pop_oldest() } else { hints.remove_key(key) };
        assert_eq!(removed.as_ref().map(|hint| hint.size_bytes).unwrap_or(0), freed_bytes);
        let seq = self.seq_next;
        self.seq_next += 1;
        let hint = Hint {
            key: key.to_string(),
            entry: entry.clone(),
            queued_at_ms: now_ms,
            expires_at_ms: now_ms.saturating_add(self.limits.ttl_ms),
            size_bytes,
        };
        hints.insert(seq, hint);
        assert!(hints.by_seq.len() <= self.limits.count_per_node_max);
        (self.count, self.bytes) = (count_after, bytes_after);
        assert!(self.count <= self.limits.count_max && self.bytes <= self.limits.bytes_max);
        Push::Queued { superseded: superseded_bytes.is_some(), dropped_oldest: drop_oldest }
    }

    /// Drops every hint expired at `now_ms`; returns how many.
    pub(crate) fn expire(&mut self, now_ms: u64) -> usize {
        self.advance(now_ms);
        let mut expired_count = 0;
        for hints in self.nodes.values_mut() {
            while let Some((_, oldest)) = hints.by_seq.first_key_value() {
                if oldest.expires_at_ms > now_ms {
                    break;
                }
                let hint = hints.pop_oldest().expect("there is an oldest");
                self.count -= 1;
                self.bytes -= hint.size_bytes;
                expired_count += 1;
            }
        }
        self.nodes.retain(|_, hints| !hints.by_seq.is_empty());
        expired_count
    }

    /// Removes the hint for `node` and `key` if it still carries `version` (a newer one
    /// may have superseded it since it was handed out); returns whether it did.
    pub(crate) fn acknowledge(&mut self, node: &NodeId, key: &str, version: &Version) -> bool {
        let Some(hints) = self.nodes.get_mut(node) else { return false };
        let Some(seq) = hints.seq_by_key.get(key) else { return false };
        if hints.by_seq[seq].entry.version() != version {
            return false;
        }
        let hint = hints.remove_key(key).expect("the hint was just found");
        self.count -= 1;
        self.bytes -= hint.size_bytes;
        self.forget_if_empty(node);
        true
    }

    /// Up to `count_max` of `node`'s hints, oldest first, as `(key, entry)`.
    pub(crate) fn oldest(&self, node: &NodeId, count_max: usize) -> Vec<(String, Entry)> {
        let Some(hints) = self.nodes.get(node) else { return Vec::new() };
        let batch = hints.by_seq.values().take(count_max);
        batch.map(|hint| (hint.key.clone(), hint.entry.clone())).collect()
    }

    /// The nodes with hints queued, in id order.
    pub(crate) fn targets(&self) -> Vec<NodeId> {
        self.nodes.keys().cloned().collect()
    }

    /// Hints queued for `node`.
    pub(crate) fn len_for(&self, node: &NodeId) -> usize {
        self.nodes.get(node).map_or(0, |hints| hints.by_seq.len())
    }

    /// Hints queued in total.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Bytes of keys and values queued in total.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    fn advance(&mut self, now_ms: u64) {
        assert!(now_ms >= self.now_ms, "hint times are monotonic");
        self.now_ms = now_ms;
    }

    fn forget_if_empty(&mut self, node: &NodeId) {
        if self.nodes.get(node).is_some_and(|hints| hints.by_seq.is_empty()) {
            self.nodes.remove(node);
        }
    }

    /// Checks the counts against a full scan (tests only: it is linear).
    #[cfg(test)]
    fn check(&self) {
        let mut count = 0;
        let mut bytes = 0;
        for hints in self.nodes.values() {
            assert!(!hints.by_seq.is_empty(), "empty queues are forgotten");
            assert_eq!(hints.by_seq.len(), hints.seq_by_key.len());
            assert!(hints.by_seq.len() <= self.limits.count_per_node_max);
            let mut queued_at_ms = 0;
            for (seq, hint) in &hints.by_seq {
                assert_eq!(hints.seq_by_key[&hint.key], *seq);
                assert!(hint.queued_at_ms >= queued_at_ms, "oldest first");
                queued_at_ms = hint.queued_at_ms;
                bytes += hint.size_bytes;
            }
            count += hints.by_seq.len();
        }
        assert_eq!((count, bytes), (self.count, self.bytes));
    }
}

/// What a hint weighs against the byte limit: its key and value (as the reference).
fn hint_size_bytes(key: &str, entry: &Entry) -> u64 {
    let value_len = entry.as_item().map_or(0, |item| item.value.len());
    u64::try_from(key.len() + value_len).expect("usize fits in u64")
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::store::{Item, Tombstone};

    fn id(name: &str) -> NodeId {
        NodeId::new(name).unwrap()
    }

    fn item(value: &str, counter: u64) -> Entry {
        let version = Version::new(counter, id("n1"));
        Entry::Item(Item::new(Bytes::copy_from_slice(value.as_bytes()), version))
    }

    fn limits(per_node: usize, total: usize, bytes_max: u64) -> HintLimits {
        HintLimits { ttl_ms: 1_000, count_per_node_max: per_node, count_max: total, bytes_max }
    }

    fn keys(queue: &HintQueue, node: &str) -> Vec<String> {
        queue.oldest(&id(node), usize::MAX).into_iter().map(|(key, _)| key).collect()
    }

    const QUEUED: Push = Push::Queued { superseded: false, dropped_oldest: false };

    #[test]
    fn hints_are_kept_per_node_oldest_first() {
        let mut queue = HintQueue::new(limits(8, 16, 1 << 20));
        assert_eq!(queue.push(&id("b"), "k2", &item("v", 1), 0), QUEUED);
        assert_eq!(queue.push(&id("a"), "k1", &item("v", 2), 1), QUEUED);
        assert_eq!(queue.push(&id("b"), "k1", &item("v", 3), 2), QUEUED);
        queue.check();
        assert_eq!(queue.targets(), vec![id("a"), id("b")]);
        assert_eq!(keys(&queue, "b"), ["k2", "k1"]);
        assert_eq!(queue.oldest(&id("b"), 1), vec![("k2".to_string(), item("v", 1))]);
        assert_eq!((queue.len(), queue.len_for(&id("b")), queue.len_for(&id("c"))), (3, 2, 0));
        assert!(queue.oldest(&id("c"), 8).is_empty());
    }

    #[test]
    fn per_node_limit_drops_the_oldest() {
        let mut queue = HintQueue::new(limits(2, 16, 1 << 20));
        for (at_ms, key) in ["k1", "k2"].iter().enumerate() {
            assert_eq!(queue.push(&id("b"), key, &item("v", 1), at_ms as u64), QUEUED);
        }
        let outcome = queue.push(&id("b"), "k3", &item("v", 1), 5);
        assert_eq!(outcome, Push::Queued { superseded: false, dropped_oldest: true });
        assert_eq!(keys(&queue, "b"), ["k2", "k3"]);
        // Another node has its own room.
        assert_eq!(queue.push(&id("c"), "k1", &item("v", 1), 6), QUEUED);
        assert_eq!(queue.len(), 3);
        queue.check();
    }

    #[test]
    fn global_count_limit_rejects_the_newest() {
        let mut queue = HintQueue::new(limits(2, 3, 1 << 20));
        assert_eq!(queue.push(&id("b"), "k1", &item("v", 1), 0), QUEUED);
        assert_eq!(queue.push(&id("b"), "k2", &item("v", 1), 0), QUEUED);
        assert_eq!(queue.push(&id("c"), "k1", &item("v", 1), 0), QUEUED);
        assert_eq!(queue.push(&id("c"), "k2", &item("v", 1), 0), Push::Rejected);
        assert_eq!(keys(&queue, "c"), ["k1"]);
        // A full node still makes room by dropping its oldest: the total does not grow.
        let outcome = queue.push(&id("b"), "k3", &item("v", 1), 0);
        assert_eq!(outcome, Push::Queued { superseded: false, dropped_oldest: true });
        assert_eq!(keys(&queue, "b"), ["k2", "k3"]);
        // A rejected hint for a new node leaves no empty queue behind.
        assert_eq!(queue.push(&id("d"), "k1", &item("v", 1), 0), Push::Rejected);
        assert_eq!(queue.targets(), vec![id("b"), id("c")]);
        queue.check();
    }

    #[test]
    fn byte_limit_rejects_the_newest_and_counts_key_and_value() {
        let mut queue = HintQueue::new(limits(8, 8, 10));
        assert_eq!(queue.push(&id("b"), "k1", &item("abc", 1), 0), QUEUED); // 2 + 3
        assert_eq!(queue.bytes(), 5);
        let tombstone =
            Entry::Tombstone(Tombstone { version: Version::new(2, id("n1")), deleted_at_ms: 0 });
        assert_eq!(queue.push(&id("b"), "k2", &tombstone, 0), QUEUED); // 2 + 0
        assert_eq!(queue.bytes(), 7);
        assert_eq!(queue.push(&id("b"), "k3", &item("xy", 1), 0), Push::Rejected); // 7 + 4
        assert_eq!(queue.push(&id("b"), "k3", &item("x", 1), 0), QUEUED); // 7 + 3
        assert_eq!(queue.bytes(), 10);
        assert!(queue.acknowledge(&id("b"), "k1", &Version::new(1, id("n1"))));
        assert_eq!(queue.bytes(), 5);
        // A hint larger than the whole limit is refused even into an empty queue.
        let mut queue = HintQueue::new(limits(8, 8, 4));
        assert_eq!(queue.push(&id("b"), "k1", &item("abc", 1), 0), Push::Rejected);
        assert_eq!((queue.len(), queue.bytes()), (0, 0));
        queue.check();
    }

    #[test]
    fn newer_hint_supersedes_and_older_is_stale() {
        let mut queue = HintQueue::new(limits(8, 8, 1 << 20));
        assert_eq!(queue.push(&id("b"), "k1", &item("one", 2), 0), QUEUED);
        assert_eq!(queue.push(&id("b"), "k2", &item("v", 1), 1), QUEUED);
        let outcome = queue.push(&id("b"), "k1", &item("three", 3), 2);
        assert_eq!(outcome, Push::Queued { superseded: true, dropped_oldest: false });
        // The newest version only, moved to the back (it is the newest hint now).
        assert_eq!(
            queue.oldest(&id("b"), 8),
            vec![("k2".to_string(), item("v", 1)), ("k1".to_string(), item("three", 3))]
        );
        assert_eq!(queue.bytes(), 2 + 1 + 2 + 5);
        assert_eq!(queue.push(&id("b"), "k1", &item("old", 1), 3), Push::Stale);
        assert_eq!(queue.push(&id("b"), "k1", &item("same", 3), 3), Push::Stale);
        assert_eq!(queue.len(), 2);
        queue.check();
    }

    #[test]
    fn superseding_a_full_node_drops_nothing() {
        let mut queue = HintQueue::new(limits(2, 2, 1 << 20));
        assert_eq!(queue.push(&id("b"), "k1", &item("v", 1), 0), QUEUED);
        assert_eq!(queue.push(&id("b"), "k2", &item("v", 1), 0), QUEUED);
        let outcome = queue.push(&id("b"), "k1", &item("v", 2), 0);
        assert_eq!(outcome, Push::Queued { superseded: true, dropped_oldest: false });
        assert_eq!(keys(&queue, "b"), ["k2", "k1"]);
        queue.check();
    }

    #[test]
    fn superseding_past_the_byte_limit_keeps_the_queued_hint() {
        let mut queue = HintQueue::new(limits(8, 8, 6));
        assert_eq!(queue.push(&id("b"), "k1", &item("abc", 1), 0), QUEUED);
        assert_eq!(queue.push(&id("b"), "k1", &item("abcde", 2), 0), Push::Rejected);
        assert_eq!(queue.oldest(&id("b"), 8), vec![("k1".to_string(), item("abc", 1))]);
        assert!(queue.push(&id("b"), "k1", &item("abcd", 2), 0).is_queued());
        assert_eq!(queue.bytes(), 6);
        queue.check();
    }

    #[test]
    fn expired_hints_are_dropped_at_their_ttl() {
        let mut queue = HintQueue::new(limits(8, 8, 1 << 20));
        assert_eq!(queue.push(&id("b"), "k1", &item("v", 1), 100), QUEUED);
        assert_eq!(queue.push(&id("c"), "k1", &item("v", 1), 500), QUEUED);
        assert_eq!(queue.expire(1_099), 0);
        assert_eq!(queue.expire(1_100), 1, "expires at queued + ttl");
        assert_eq!(queue.targets(), vec![id("c")]);
        // Superseding restarts the life of the hint.
        assert!(queue.push(&id("c"), "k1", &item("v", 2), 1_400).is_queued());
        assert_eq!(queue.expire(1_500), 0);
        assert_eq!(queue.expire(2_400), 1);
        assert_eq!((queue.len(), queue.bytes()), (0, 0));
        queue.check();
    }

    #[test]
    fn acknowledge_removes_only_the_version_handed_out() {
        let mut queue = HintQueue::new(limits(8, 8, 1 << 20));
        assert_eq!(queue.push(&id("b"), "k1", &item("v", 1), 0), QUEUED);
        let (key, entry) = queue.oldest(&id("b"), 1).pop().unwrap();
        assert!(queue.push(&id("b"), "k1", &item("v", 2), 1).is_queued());
        assert!(!queue.acknowledge(&id("b"), &key, entry.version()), "superseded meanwhile");
        assert_eq!(queue.len(), 1);
        assert!(queue.acknowledge(&id("b"), "k1", &Version::new(2, id("n1"))));
        assert!(!queue.acknowledge(&id("b"), "k1", &Version::new(2, id("n1"))));
        assert!(queue.targets().is_empty());
        queue.check();
    }

    #[test]
    fn ttl_of_zero_turns_hints_off() {
        let mut queue = HintQueue::new(HintLimits { ttl_ms: 0, ..limits(8, 8, 1 << 20) });
        assert_eq!(queue.push(&id("b"), "k1", &item("v", 1), 0), Push::Disabled);
        assert_eq!(queue.len(), 0);
    }

    #[test]
    #[should_panic(expected = "hint times are monotonic")]
    fn time_never_goes_back() {
        let mut queue = HintQueue::new(limits(8, 8, 1 << 20));
        let _ = queue.expire(10);
        let _ = queue.push(&id("b"), "k1", &item("v", 1), 9);
    }
}
