//! [`Store`]: one node's local entries, and the version check every write goes through.
//!
//! A key holds either an [`Item`] or a [`Tombstone`], never both (the reference lets
//! them coexist, §2.22 item 7). [`Store::apply`] is the only way in: it keeps an
//! incoming entry only if its version is newer than the one held, item or tombstone.
//! The reference's receiver overwrites unconditionally (§2.22 item 1), so a late hint
//! replay could overwrite a newer value; here forwards, replica writes, repairs, hint
//! replays and migrations all meet the same check.
//!
//! Expiry is an absolute wall-clock time fixed when the item is written, so every
//! replica expires it at the same moment (the reference restarts the TTL on each
//! replica and repair). Sweeping expired items is local only: it never issues a
//! delete to other nodes (the reference's expiration loop deletes everything
//! cluster-wide, §2.20).

use std::collections::BTreeMap;
use std::mem;
use std::ops::Bound;

use bytes::Bytes;

use crate::error::Error;
use crate::options::ENTRY_COUNT_MAX;
use crate::version::Version;

/// The longest key accepted, in bytes.
pub const KEY_LEN_MAX: usize = 1024;
/// The largest value accepted, in bytes: the reference's HTTP body limit.
pub const VALUE_LEN_MAX: usize = 16 << 20;

/// Checks that `key` is not empty and at most [`KEY_LEN_MAX`] bytes long.
///
/// # Errors
///
/// [`Error::InvalidKey`] otherwise.
pub fn check_key(key: &str) -> Result<(), Error> {
    if key.is_empty() || key.len() > KEY_LEN_MAX {
        return Err(Error::InvalidKey { key_len: key.len(), key_len_max: KEY_LEN_MAX });
    }
    Ok(())
}

/// Checks that `value` is at most [`VALUE_LEN_MAX`] bytes long.
///
/// # Errors
///
/// [`Error::ValueTooLarge`] otherwise.
pub fn check_value(value: &[u8]) -> Result<(), Error> {
    if value.len() > VALUE_LEN_MAX {
        return Err(Error::ValueTooLarge { value_len: value.len(), value_len_max: VALUE_LEN_MAX });
    }
    Ok(())
}

/// A stored value with its version and optional expiry.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Item {
    /// The value.
    pub value: Bytes,
    /// The write's version.
    pub version: Version,
    /// When the item expires, in wall-clock milliseconds; `None` never expires.
    pub expires_at_ms: Option<u64>,
}

impl Item {
    /// An item that never expires.
    pub fn new(value: Bytes, version: Version) -> Item {
        Item { value, version, expires_at_ms: None }
    }

    /// An item that expires `ttl_ms` after `now_ms` (wall clock).
    ///
    /// # Panics
    ///
    /// When `ttl_ms` is 0: use [`Item::new`] for an item that never expires.
    pub fn with_ttl(value: Bytes, version: Version, now_ms: u64, ttl_ms: u64) -> Item {
        assert!(ttl_ms > 0, "a ttl of 0 ms would expire at once: use Item::new");
        let expires_at_ms = now_ms.saturating_add(ttl_ms);
        assert!(expires_at_ms > now_ms);
        Item { value, version, expires_at_ms: Some(expires_at_ms) }
    }

    /// Whether the item has expired at `now_ms`: its expiry is at or before it.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|expires_at_ms| expires_at_ms <= now_ms)
    }

    /// The time left before expiry, if it expires (0 once expired).
    pub fn ttl_remaining_ms(&self, now_ms: u64) -> Option<u64> {
        self.expires_at_ms.map(|expires_at_ms| expires_at_ms.saturating_sub(now_ms))
    }
}

/// The trace of a deleted (or expired) key: its version refuses older writes.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Tombstone {
    /// The delete's version.
    pub version: Version,
    /// When this node stored the tombstone (or its item expired here), in the node's
    /// own monotonic milliseconds: the tombstone's age for [`Store::sweep_tombstones`].
    /// Local on purpose: a tombstone dated by another node's wall clock (behind by
    /// more than the tombstone TTL, say) would be collected on arrival, and an older
    /// write it must refuse could come back. Each node stamps the tombstones it
    /// stores; a value received from a peer is replaced.
    pub deleted_at_ms: u64,
}

/// What a key holds: an item or a tombstone.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Entry {
    /// A value.
    Item(Item),
    /// A delete.
    Tombstone(Tombstone),
}

impl Entry {
    /// The entry's version.
    pub fn version(&self) -> &Version {
        match self {
            Entry::Item(item) => &item.version,
            Entry::Tombstone(tombstone) => &tombstone.version,
        }
    }

    /// The item, unless this is a tombstone.
    pub fn as_item(&self) -> Option<&Item> {
        match self {
            Entry::Item(item) => Some(item),
            Entry::Tombstone(_) => None,
        }
    }

    /// Whether this is a tombstone.
    pub fn is_tombstone(&self) -> bool {
        matches!(self, Entry::Tombstone(_))
    }
}

/// What [`Store::apply`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum Apply {
    /// The entry is stored now.
    Applied {
        /// What it replaced, if the key held anything.
        replaced: Option<Entry>,
    },
    /// The entry was not newer than what the key holds, which is unchanged.
    Stale {
        /// The version held.
        held: Version,
    },
}

impl Apply {
    /// Whether the entry was stored.
    pub fn is_applied(&self) -> bool {
        matches!(self, Apply::Applied { .. })
    }
}

/// One node's entries, in key order.
#[derive(Clone, Debug)]
pub struct Store {
    entries: BTreeMap<String, Entry>,
    /// Tombstones among `entries`; the rest are items.
    tombstone_count: usize,
    entry_count_max: usize,
    /// Bumped whenever a key enters or leaves the store (not when one is overwritten).
    key_set_generation: u64,
}

impl Store {
    /// An empty store for at most `entry_count_max` entries (items and tombstones).
    ///
    /// # Panics
    ///
    /// When `entry_count_max` is not in `1..=ENTRY_COUNT_MAX`; [`crate::Options`]
    /// validates it.
    pub fn new(entry_count_max: usize) -> Store {
        assert!(entry_count_max >= 1);
        assert!(entry_count_max <= ENTRY_COUNT_MAX);
        Store {
            entries: BTreeMap::new(),
            tombstone_count: 0,
            entry_count_max,
            key_set_generation: 0,
        }
    }

    /// The live item under `key`: `None` when the key is absent, deleted or expired.
    pub fn get(&self, key: &str, now_ms: u64) -> Option<&Item> {
        self.entries.get(key)?.as_item().filter(|item| !item.is_expired(now_ms))
    }

    /// Whatever `key` holds, expired items and tombstones included.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// The version `key` holds, item or tombstone.
    pub fn version(&self, key: &str) -> Option<&Version> {
        self.entries.get(key).map(Entry::version)
    }

    /// Stores `entry` under `key` if its version is newer than what the key holds (an
    /// equal version is a duplicate and is not newer). Every write path goes through
    /// here; the caller observes the version on its clock.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] or [`Error::ValueTooLarge`] for a key or value out of
    /// bounds; [`Error::StoreFull`] when the key is new and the store is full.
    pub fn apply(&mut self, key: &str, entry: Entry) -> Result<Apply, Error> {
        check_key(key)?;
        if let Entry::Item(item) = &entry {
            check_value(&item.value)?;
        }
        let tombstone_count_before = self.tombstone_count;
        let outcome = match self.entries.get_mut(key) {
            Some(held) => {
                if !entry.version().is_newer_than(held.version()) {
                    return Ok(Apply::Stale { held: held.version().clone() });
                }
                let replaced = mem::replace(held, entry);
                self.tombstone_count -= usize::from(replaced.is_tombstone());
                self.tombstone_count += usize::from(held.is_tombstone());
                Apply::Applied { replaced: Some(replaced) }
            }
            None => {
                if self.entries.len() >= self.entry_count_max {
                    return Err(Error::StoreFull { entry_count_max: self.entry_count_max });
                }
                self.tombstone_count += usize::from(entry.is_tombstone());
                self.entries.insert(key.to_owned(), entry);
                self.key_set_generation += 1;
                Apply::Applied { replaced: None }
            }
        };
        assert!(self.tombstone_count <= self.entries.len());
        assert!(self.tombstone_count.abs_diff(tombstone_count_before) <= 1);
        Ok(outcome)
    }

    /// Forgets `key` locally, leaving no tombstone: for shedding a key this node no
    /// longer owns, and for tests that lose a replica's copy. Not a delete: an older
    /// write can store the key again.
    pub fn drop_local(&mut self, key: &str) -> Option<Entry> {
        let dropped = self.entries.remove(key)?;
        self.key_set_generation += 1;
        self.tombstone_count -= usize::from(dropped.is_tombstone());
        Some(dropped)
    }

    /// Turns every item expired at `now_ms` (wall clock) into a tombstone of the same
    /// version, dated `stored_at_ms` (the node's monotonic clock, see
    /// [`Tombstone::deleted_at_ms`]); returns how many. Local only: nothing is sent to
    /// other owners, which expire their copies at the same time. The tombstone keeps
    /// an older, unexpired version of the key (from a late hint or a stale replica)
    /// from coming back.
    pub fn sweep_expired(&mut self, now_ms: u64, stored_at_ms: u64) -> usize {
        let mut expired_count = 0;
        for entry in self.entries.values_mut() {
            let Entry::Item(item) = entry else { continue };
            if item.expires_at_ms.is_none_or(|at_ms| at_ms > now_ms) {
                continue;
            }
            let version = item.version.clone();
            *entry = Entry::Tombstone(Tombstone { version, deleted_at_ms: stored_at_ms });
            expired_count += 1;
        }
        self.tombstone_count += expired_count;
        assert!(self.tombstone_count <= self.entries.len());
        expired_count
    }

    /// Removes the tombstones at least `ttl_ms` old at `now_ms` (the node's monotonic
    /// clock, as [`Tombstone::deleted_at_ms`]); returns how many.
    ///
    /// # Panics
    ///
    /// When `ttl_ms` is 0 (that would drop every tombstone at once; a TTL of 0 in
    /// [`crate::Options`] means the sweep does not run).
    pub fn sweep_tombstones(&mut self, now_ms: u64, ttl_ms: u64) -> usize {
        assert!(ttl_ms > 0);
        let count_before = self.entries.len();
        self.entries.retain(|_, entry| match entry {
            Entry::Item(_) => true,
            Entry::Tombstone(tombstone) => now_ms.saturating_sub(tombstone.deleted_at_ms) < ttl_ms,
        });
        let purged_count = count_before - self.entries.len();
        if purged_count > 0 {
            self.key_set_generation += 1;
        }
        assert!(purged_count <= self.tombstone_count);
        self.tombstone_count -= purged_count;
        purged_count
    }

    /// A number that changes whenever a key enters or leaves the store, and only then:
    /// a scan whose outcome depends on the set of keys alone (which keys this node
    /// does not own) need not run again while it stays the same.
    pub fn key_set_generation(&self) -> u64 {
        self.key_set_generation
    }

    /// Every entry in key order, expired items and tombstones included.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Entry)> + '_ {
        self.entries.iter().map(|(key, entry)| (key.as_str(), entry))
    }

    /// The entries after `cursor` (from the first key when `None`), in key order: for
    /// scans in bounded batches that resume where the last one stopped.
    pub fn iter_after<'a>(
        &'a self,
        cursor: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a str, &'a Entry)> + 'a {
        let start = cursor.map_or(Bound::Unbounded, Bound::Excluded);
        self.entries.range::<str, _>((start, Bound::Unbounded)).map(|(key, e)| (key.as_str(), e))
    }

    /// The live items at `now_ms`, in key order.
    pub fn items(&self, now_ms: u64) -> impl Iterator<Item = (&str, &Item)> + '_ {
        self.iter().filter_map(move |(key, entry)| {
            entry.as_item().filter(|item| !item.is_expired(now_ms)).map(|item| (key, item))
        })
    }

    /// How many entries, items and tombstones.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the store holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many items, expired ones included until swept.
    pub fn item_count(&self) -> usize {
        self.entries.len() - self.tombstone_count
    }

    /// How many tombstones.
    pub fn tombstone_count(&self) -> usize {
        self.tombstone_count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_id::NodeId;

    fn version(counter: u64, origin: &str) -> Version {
        Version::new(counter, NodeId::new(origin).unwrap())
    }

    fn item(value: &'static str, counter: u64) -> Entry {
        Entry::Item(Item::new(Bytes::from_static(value.as_bytes()), version(counter, "n1")))
    }

    fn tombstone(counter: u64, deleted_at_ms: u64) -> Entry {
        Entry::Tombstone(Tombstone { version: version(counter, "n1"), deleted_at_ms })
    }

    fn value(store: &Store, key: &str, now_ms: u64) -> Option<String> {
        let item = store.get(key, now_ms)?;
        Some(String::from_utf8(item.value.to_vec()).unwrap())
    }

    /// Checks the counts against a full scan.
    fn check_counts(store: &Store) {
        let tombstones = store.iter().filter(|(_, entry)| entry.is_tombstone()).count();
        assert_eq!(store.tombstone_count(), tombstones);
        assert_eq!(store.item_count() + tombstones, store.len());
    }

    #[test]
    fn newer_version_replaces_and_returns_the_old_entry() {
        let mut store = Store::new(16);
        assert_eq!(store.apply("k", item("v1", 1)).unwrap(), Apply::Applied { replaced: None });
        let outcome = store.apply("k", item("v2", 2)).unwrap();
        assert_eq!(outcome, Apply::Applied { replaced: Some(item("v1", 1)) });
        assert_eq!(value(&store, "k", 0).as_deref(), Some("v2"));
        check_counts(&store);
    }

    #[test]
    fn older_or_equal_version_is_stale() {
        let mut store = Store::new(16);
        let _ = store.apply("k", item("v5", 5)).unwrap();
        for counter in [4, 5] {
            let outcome = store.apply("k", item("old", counter)).unwrap();
            assert_eq!(outcome, Apply::Stale { held: version(5, "n1") });
        }
        assert_eq!(value(&store, "k", 0).as_deref(), Some("v5"));
    }

    #[test]
    fn late_hint_replay_does_not_overwrite_a_newer_value() {
        // §2.22 item 1: the reference's receiver overwrote unconditionally.
        let mut store = Store::new(16);
        let _ = store.apply("k", item("new", 9)).unwrap();
        let hint = item("hinted", 3);
        assert!(!store.apply("k", hint).unwrap().is_applied());
        assert_eq!(value(&store, "k", 0).as_deref(), Some("new"));
    }

    #[test]
    fn tie_break_goes_to_the_smaller_origin() {
        let mut store = Store::new(16);
        let from_z = Entry::Item(Item::new(Bytes::from_static(b"z"), version(4, "zzzz")));
        let from_a = Entry::Item(Item::new(Bytes::from_static(b"a"), version(4, "node-a")));
        let _ = store.apply("k", from_z).unwrap();
        assert!(store.apply("k", from_a.clone()).unwrap().is_applied());
        let from_z = Entry::Item(Item::new(Bytes::from_static(b"z"), version(4, "zzzz")));
        assert!(!store.apply("k", from_z).unwrap().is_applied());
        assert_eq!(store.entry("k"), Some(&from_a));
    }

    #[test]
    fn tombstone_hides_the_key_and_refuses_older_writes() {
        let mut store = Store::new(16);
        let _ = store.apply("k", item("v1", 1)).unwrap();
        let outcome = store.apply("k", tombstone(2, 100)).unwrap();
        assert_eq!(outcome, Apply::Applied { replaced: Some(item("v1", 1)) });
        assert_eq!(store.get("k", 0), None);
        assert!(!store.apply("k", item("v1", 1)).unwrap().is_applied());
        assert_eq!((store.item_count(), store.tombstone_count()), (0, 1));
        // A newer write re-creates the key: item and tombstone never coexist.
        assert!(store.apply("k", item("v3", 3)).unwrap().is_applied());
        assert_eq!(value(&store, "k", 0).as_deref(), Some("v3"));
        assert_eq!((store.item_count(), store.tombstone_count()), (1, 0));
    }

    #[test]
    fn delete_that_arrives_first_still_wins() {
        let mut store = Store::new(16);
        let _ = store.apply("k", tombstone(7, 0)).unwrap();
        assert!(!store.apply("k", item("v6", 6)).unwrap().is_applied());
        assert_eq!(store.get("k", 0), None);
        check_counts(&store);
    }

    #[test]
    fn get_hides_expired_items() {
        let mut store = Store::new(16);
        let entry = Item::with_ttl(Bytes::from_static(b"v"), version(1, "n1"), 1_000, 500);
        assert_eq!(entry.expires_at_ms, Some(1_500));
        let _ = store.apply("k", Entry::Item(entry)).unwrap();
        assert_eq!(value(&store, "k", 1_499).as_deref(), Some("v"));
        assert_eq!(store.get("k", 1_500), None);
        assert!(store.entry("k").is_some(), "expired, not yet swept");
        assert_eq!(store.items(1_500).count(), 0);
        assert_eq!(store.get("k", 1_499).unwrap().ttl_remaining_ms(1_499), Some(1));
    }

    #[test]
    fn sweep_expired_removes_only_expired_items_and_keeps_their_version() {
        let mut store = Store::new(16);
        let short = Item::with_ttl(Bytes::from_static(b"s"), version(5, "n1"), 0, 10);
        let long = Item::with_ttl(Bytes::from_static(b"l"), version(5, "n1"), 0, 1_000);
        let _ = store.apply("short", Entry::Item(short)).unwrap();
        let _ = store.apply("long", Entry::Item(long)).unwrap();
        let _ = store.apply("forever", item("f", 5)).unwrap();
        assert_eq!(store.sweep_expired(10, 10), 1);
        assert_eq!(store.sweep_expired(10, 10), 0);
        assert_eq!(value(&store, "long", 10).as_deref(), Some("l"));
        assert_eq!(value(&store, "forever", 10).as_deref(), Some("f"));
        assert_eq!(store.entry("short"), Some(&tombstone(5, 10)));
        // A stale unexpired copy from a lagging replica cannot bring it back.
        assert!(!store.apply("short", item("stale", 4)).unwrap().is_applied());
        check_counts(&store);
    }

    #[test]
    fn sweep_tombstones_removes_only_old_tombstones() {
        let mut store = Store::new(16);
        let _ = store.apply("old", tombstone(1, 100)).unwrap();
        let _ = store.apply("young", tombstone(1, 900)).unwrap();
        let _ = store.apply("item", item("v", 1)).unwrap();
        assert_eq!(store.sweep_tombstones(1_000, 500), 1);
        assert_eq!(store.entry("old"), None);
        assert!(store.entry("young").is_some());
        assert!(store.entry("item").is_some());
        check_counts(&store);
    }

    #[test]
    fn store_is_bounded() {
        let mut store = Store::new(2);
        let _ = store.apply("a", item("v", 1)).unwrap();
        let _ = store.apply("b", tombstone(1, 0)).unwrap();
        let full = Error::StoreFull { entry_count_max: 2 };
        assert_eq!(store.apply("c", item("v", 1)), Err(full));
        // Replacing an existing key is still possible.
        assert!(store.apply("a", item("v2", 2)).unwrap().is_applied());
    }

    #[test]
    fn keys_and_values_are_checked() {
        let mut store = Store::new(16);
        let invalid = Error::InvalidKey { key_len: 0, key_len_max: KEY_LEN_MAX };
        assert_eq!(store.apply("", item("v", 1)), Err(invalid));
        let long_key = "k".repeat(KEY_LEN_MAX + 1);
        assert!(store.apply(&long_key, item("v", 1)).is_err());
        let big = Bytes::from(vec![0; VALUE_LEN_MAX + 1]);
        let error = store.apply("k", Entry::Item(Item::new(big, version(1, "n1"))));
        let too_large =
            Error::ValueTooLarge { value_len: VALUE_LEN_MAX + 1, value_len_max: VALUE_LEN_MAX };
        assert_eq!(error, Err(too_large));
        assert!(store.is_empty());
    }

    #[test]
    fn iteration_is_in_key_order_and_resumes_after_a_cursor() {
        let mut store = Store::new(16);
        for key in ["c", "a", "d", "b"] {
            let _ = store.apply(key, item("v", 1)).unwrap();
        }
        let _ = store.apply("e", tombstone(2, 0)).unwrap();
        let keys: Vec<&str> = store.iter().map(|(key, _)| key).collect();
        assert_eq!(keys, ["a", "b", "c", "d", "e"]);
        let after: Vec<&str> = store.iter_after(Some("b")).take(2).map(|(key, _)| key).collect();
        assert_eq!(after, ["c", "d"]);
        assert_eq!(store.iter_after(None).count(), 5);
        assert_eq!(store.items(0).count(), 4);
        assert_eq!(store.drop_local("e"), Some(tombstone(2, 0)));
        check_counts(&store);
    }

    #[test]
    fn replicas_converge_whatever_the_delivery_order() {
        // The same writes delivered in different orders (and duplicated) leave the same
        // state: the order-independence that replication, repair and hints rely on.
        let mut writes: Vec<(String, Entry)> = Vec::new();
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let origins = ["n1", "n2", "n3"];
        for _ in 0..300 {
            let key = format!("key-{}", next() % 20);
            let version = version(next() % 40, origins[(next() % 3) as usize]);
            let entry = if next() % 4 == 0 {
                Entry::Tombstone(Tombstone { version, deleted_at_ms: 0 })
            } else {
                Entry::Item(Item::new(Bytes::from(key.clone().into_bytes()), version))
            };
            writes.push((key, entry));
        }
        let mut reference = Store::new(64);
        for (key, entry) in &writes {
            let _ = reference.apply(key, entry.clone()).unwrap();
        }
        for _round in 0..10 {
            // Fisher–Yates with the same generator, plus a few duplicates.
            let mut shuffled = writes.clone();
            for index in (1..shuffled.len()).rev() {
                shuffled.swap(index, (next() % (index as u64 + 1)) as usize);
            }
            shuffled.extend(writes.iter().take(30).cloned());
            let mut replica = Store::new(64);
            for (key, entry) in shuffled {
                let _ = replica.apply(&key, entry).unwrap();
            }
            assert!(replica.iter().eq(reference.iter()));
            check_counts(&replica);
        }
    }
}
