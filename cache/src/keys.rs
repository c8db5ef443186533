//! Cluster-wide key listing (§2.15): [`CacheNode::list_keys`].
//!
//! The listing node asks every member, itself included (locally, without a message),
//! for its live keys that match a [`KeyPattern`], merges the answers, deduplicates and
//! sorts them, and applies the caller's `max`. Members are asked together; each one
//! answers in pages of at most [`KEYS_PAGE_LEN_MAX`] keys, in key order, resumed after
//! the last key scanned. A member that does not answer a page (down, partitioned,
//! stopped, or answering nonsense) is listed in [`KeyList::partial`], with whatever
//! it answered before; a member known to be dead is listed there without being asked.
//!
//! Limits: a page scans at most [`KEYS_PAGE_SCAN_MAX`] entries, one member gives at most
//! [`KEY_COUNT_PER_NODE_MAX`] keys in [`KEYS_PAGE_COUNT_MAX`] pages, and with a `max`
//! a member is asked for `max + 1` keys at most (its first ones in key order are all
//! the merge can use). [`KeyList::truncated`] says that more keys may match than were
//! returned: past `max`, or past a member's limit.
//!
//! The listing is not a snapshot: keys written or removed while it runs may or may
//! not appear. Expired items and tombstones are never listed.

use std::collections::BTreeSet;

use futures::future::join_all;

use crate::error::Error;
use crate::glob::{KeyPattern, PatternError};
use crate::membership::NodeState;
use crate::message::{PeerRequest, PeerResponse};
use crate::node::{CacheNode, Inner};
use crate::node_id::NodeId;
use crate::store::Store;

/// Keys in one page of a member's answer, at most.
pub const KEYS_PAGE_LEN_MAX: usize = 1024;
/// Entries one page scans at most, matching or not: a selective pattern over a large
/// store answers in several pages instead of one long scan.
pub const KEYS_PAGE_SCAN_MAX: usize = 1 << 16;
/// Keys one member contributes to one listing, at most.
pub const KEY_COUNT_PER_NODE_MAX: usize = 1 << 16;
/// Pages one member is asked for in one listing, at most: enough to scan a store of
/// 2^28 entries.
pub const KEYS_PAGE_COUNT_MAX: usize = 4096;

const _: () = assert!(KEY_COUNT_PER_NODE_MAX >= KEYS_PAGE_LEN_MAX);

/// A key-listing request.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeysRequest {
    /// The live keys matching `pattern` after `after`, in key order.
    Page {
        /// The pattern, as the caller gave it (checked by the sender already).
        pattern: String,
        /// Resume after this key (exclusive); `None` from the first key.
        after: Option<String>,
        /// Keys wanted, at most; clamped to `1..=KEYS_PAGE_LEN_MAX`.
        key_count_max: usize,
    },
}

/// The answer to a [`KeysRequest`].
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeysResponse {
    /// A page of keys.
    Page {
        /// Matching live keys, in strictly increasing order, all after the request's
        /// `after`.
        keys: Vec<String>,
        /// Where to resume (the last key scanned) when the scan stopped before the end
        /// of the store; `None` when it reached the end.
        next: Option<String>,
    },
    /// The receiver refused the pattern.
    InvalidPattern(PatternError),
}

/// The result of a cluster-wide listing.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeyList {
    /// The keys, deduplicated, in increasing order.
    pub keys: Vec<String>,
    /// More keys may match than are listed: `max` was reached, or a member had more
    /// than its limit.
    pub truncated: bool,
    /// The members that did not answer (or not fully), in id order.
    pub partial: Vec<NodeId>,
}

/// The merge of the members' answers: dedup, order, `max`.
#[derive(Debug)]
struct KeyListing {
    keys: BTreeSet<String>,
    /// 0 for no limit.
    max: usize,
    truncated: bool,
    partial: Vec<NodeId>,
}

impl KeyListing {
    fn new(max: usize) -> KeyListing {
        KeyListing { keys: BTreeSet::new(), max, truncated: false, partial: Vec::new() }
    }

    /// Adds one member's keys; `more` when it had more than it gave.
    fn add(&mut self, keys: Vec<String>, more: bool) {
        self.truncated |= more;
        self.keys.extend(keys);
        // Only the first `max` keys can be listed: keep no more than that.
        while self.max > 0 && self.keys.len() > self.max {
            self.keys.pop_last();
            self.truncated = true;
        }
    }

    fn add_partial(&mut self, node: NodeId) {
        self.partial.push(node);
    }

    fn finish(mut self) -> KeyList {
        self.partial.sort();
        self.partial.dedup();
        let list = KeyList {
            keys: self.keys.into_iter().collect(),
            truncated: self.truncated,
            partial: self.partial,
        };
        assert!(list.max_ok(self.max));
        assert!(list.keys.is_sorted());
        list
    }
}

impl KeyList {
    fn max_ok(&self, max: usize) -> bool {
        max == 0 || self.keys.len() <= max
    }
}

/// One page of the live keys of `store` matching `pattern` after `after`: at most
/// `key_count_max` keys and [`KEYS_PAGE_SCAN_MAX`] entries scanned.
fn keys_page(
    store: &Store,
    pattern: &KeyPattern,
    after: Option<&str>,
    key_count_max: usize,
    now_ms: u64,
) -> (Vec<String>, Option<String>) {
    assert!((1..=KEYS_PAGE_LEN_MAX).contains(&key_count_max));
    let mut keys = Vec::new();
    let mut last_scanned: Option<&str> = None;
    for (scanned, (key, entry)) in store.iter_after(after).enumerate() {
        if keys.len() == key_count_max || scanned == KEYS_PAGE_SCAN_MAX {
            let next = last_scanned.expect("a page scans at least one entry").to_string();
            return (keys, Some(next));
        }
        if pattern.is_past(key) {
            break;
        }
        last_scanned = Some(key);
        let live = entry.as_item().is_some_and(|item| !item.is_expired(now_ms));
        if live && pattern.matches(key) {
            keys.push(key.to_string());
        }
    }
    (keys, None)
}

/// Whether a page answering `after` for `key_count_max` keys is well formed.
fn page_ok(
    pattern: &KeyPattern,
    after: Option<&str>,
    key_count_max: usize,
    keys: &[String],
    next: Option<&str>,
) -> bool {
    let after_ok = |key: &str| after.is_none_or(|after| key > after);
    keys.len() <= key_count_max
        && keys.windows(2).all(|pair| pair[0] < pair[1])
        && keys.iter().all(|key| after_ok(key) && pattern.matches(key))
        && next.is_none_or(|next| {
            after_ok(next) && keys.last().is_none_or(|last| next >= last.as_str())
        })
}

impl Inner {
    /// Answers a key-listing request.
    pub(crate) fn handle_keys(&self, request: KeysRequest) -> KeysResponse {
        let KeysRequest::Page { pattern, after, key_count_max } = request;
        let pattern = match KeyPattern::parse(&pattern) {
            Ok(pattern) => pattern,
            Err(error) => return KeysResponse::InvalidPattern(error),
        };
        let mut key_count_max = key_count_max.clamp(1, KEYS_PAGE_LEN_MAX);
        if self.buggify() {
            // Fault point: a short page of one key; the asker resumes after it.
            key_count_max = 1;
        }
        let now_ms = self.runtime.wall_clock_ms();
        let state = self.state.borrow();
        let (keys, next) =
            keys_page(&state.store, &pattern, after.as_deref(), key_count_max, now_ms);
        assert!(page_ok(&pattern, after.as_deref(), key_count_max, &keys, next.as_deref()));
        KeysResponse::Page { keys, next }
    }

    /// Lists the cluster's keys: see the module documentation.
    pub(crate) async fn list_cluster_keys(
        &self,
        pattern: &str,
        parsed: &KeyPattern,
        max: usize,
    ) -> KeyList {
        let members: Vec<(NodeId, NodeState)> = {
            let state = self.state.borrow();
            state.membership.members().map(|member| (member.id.clone(), member.state)).collect()
        };
        assert!(members.iter().any(|(id, _)| *id == self.id), "a node is its own member");
        // With a max, a member's first `max + 1` keys are all the merge can use, and one
        // more than `max` shows that the list is truncated.
        let limit = if max == 0 { KEY_COUNT_PER_NODE_MAX } else { max.saturating_add(1) };
        let limit = limit.min(KEY_COUNT_PER_NODE_MAX);
        let mut listing = KeyListing::new(max);
        let mut asked = Vec::with_capacity(members.len());
        for (id, state) in members {
            if state == NodeState::Dead {
                self.reached("a key listing skipped a dead member");
                listing.add_partial(id);
            } else {
                asked.push(id);
            }
        }
        let answers = join_all(asked.iter().map(|id| self.member_keys(id, pattern, parsed, limit)));
        for (id, answer) in asked.iter().zip(answers.await) {
            let (keys, more, complete) = answer;
            listing.add(keys, more);
            if !complete {
                listing.add_partial(id.clone());
            }
        }
        listing.finish()
    }

    /// The first `limit` keys of one member, whether it has more, and whether it
    /// answered every page asked.
    async fn member_keys(
        &self,
        node: &NodeId,
        pattern: &str,
        parsed: &KeyPattern,
        limit: usize,
    ) -> (Vec<String>, bool, bool) {
        assert!((1..=KEY_COUNT_PER_NODE_MAX).contains(&limit));
        let mut keys: Vec<String> = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..KEYS_PAGE_COUNT_MAX {
            let want = (limit - keys.len()).min(KEYS_PAGE_LEN_MAX);
            let request = KeysRequest::Page {
                pattern: pattern.to_string(),
                after: after.clone(),
                key_count_max: want,
            };
            let Some((page, next)) = self.member_keys_page(node, request).await else {
                return (keys, false, false);
            };
            if !page_ok(parsed, after.as_deref(), want, &page, next.as_deref()) {
                tracing::warn!(target: "cache::keys", %node, "malformed key page");
                return (keys, false, false);
            }
            keys.extend(page);
            assert!(keys.len() <= limit);
            match next {
                None => return (keys, false, true),
                Some(_) if keys.len() == limit => return (keys, true, true),
                Some(next) => after = Some(next),
            }
        }
        (keys, true, true)
    }

    /// One page from `node`: answered locally for this node, by a request otherwise;
    /// `None` when the member did not answer with a page.
    async fn member_keys_page(
        &self,
        node: &NodeId,
        request: KeysRequest,
    ) -> Option<(Vec<String>, Option<String>)> {
        let response = if *node == self.id {
            self.handle_keys(request)
        } else {
            match self.call(node, PeerRequest::Keys(request)).await {
                Ok(PeerResponse::Keys(response)) => response,
                Ok(_) | Err(_) => return None,
            }
        };
        match response {
            KeysResponse::Page { keys, next } => Some((keys, next)),
            KeysResponse::InvalidPattern(_) => None,
        }
    }
}

impl CacheNode {
    /// Lists the live keys of the whole cluster that match `pattern`: every key when
    /// it is empty, a glob when it has any of `*`, `?` or `[` (see [`KeyPattern`]),
    /// else a literal prefix. The keys are deduplicated and sorted; `max` limits how
    /// many are returned (0 for no limit), and [`KeyList::truncated`] says whether
    /// more may match. Members that did not answer are listed in
    /// [`KeyList::partial`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPattern`] for an invalid glob (checked before any member
    /// is asked), and [`Error::Stopped`] when the node is
    /// stopped.
    pub async fn list_keys(&self, pattern: &str, max: usize) -> Result<KeyList, Error> {
        self.inner.check_running()?;
        let parsed = KeyPattern::parse(pattern)?;
        Ok(self.inner.list_cluster_keys(pattern, &parsed, max).await)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::store::{Entry, Item, Tombstone};
    use crate::version::Version;

    fn version(counter: u64) -> Version {
        Version::new(counter, NodeId::new("n1").unwrap())
    }

    fn store_with(keys: &[&str]) -> Store {
        let mut store = Store::new(1 << 17);
        for key in keys {
            let item = Item::new(Bytes::from_static(b"v"), version(1));
            assert!(store.apply(key, Entry::Item(item)).unwrap().is_applied());
        }
        store
    }

    fn strings(keys: &[&str]) -> Vec<String> {
        keys.iter().map(|key| key.to_string()).collect()
    }

    #[test]
    fn page_lists_live_matching_keys_in_order() {
        let mut store = store_with(&["a1", "a2", "b1", "dead", "gone"]);
        let expired = Item::with_ttl(Bytes::from_static(b"v"), version(2), 0, 10);
        assert!(store.apply("dead", Entry::Item(expired)).unwrap().is_applied());
        let tombstone = Tombstone { version: version(2), deleted_at_ms: 0 };
        assert!(store.apply("gone", Entry::Tombstone(tombstone)).unwrap().is_applied());
        let all = KeyPattern::All;
        assert_eq!(keys_page(&store, &all, None, 10, 100), (strings(&["a1", "a2", "b1"]), None));
        // The expired item is live before its expiry.
        assert_eq!(keys_page(&store, &all, None, 10, 5).0, strings(&["a1", "a2", "b1", "dead"]));
        let glob = KeyPattern::parse("?1").unwrap();
        assert_eq!(keys_page(&store, &glob, None, 10, 100), (strings(&["a1", "b1"]), None));
    }

    #[test]
    fn page_resumes_after_its_cursor_and_stops_past_a_prefix() {
        let store = store_with(&["a1", "a2", "a3", "b1", "b2"]);
        let all = KeyPattern::All;
        let (keys, next) = keys_page(&store, &all, None, 2, 0);
        assert_eq!((keys, next.as_deref()), (strings(&["a1", "a2"]), Some("a2")));
        let (keys, next) = keys_page(&store, &all, Some("a2"), 2, 0);
        assert_eq!((keys, next.as_deref()), (strings(&["a3", "b1"]), Some("b1")));
        assert_eq!(keys_page(&store, &all, Some("b1"), 2, 0), (strings(&["b2"]), None));
        let prefix = KeyPattern::parse("a").unwrap();
        assert_eq!(
            keys_page(&store, &prefix, Some("a1"), 2, 0),
            (strings(&["a2", "a3"]), Some("a3".into()))
        );
        assert_eq!(keys_page(&store, &prefix, Some("a3"), 2, 0), (Vec::new(), None));
    }

    #[test]
    fn page_scan_is_bounded_and_resumable() {
        let keys: Vec<String> = (0..KEYS_PAGE_SCAN_MAX + 3).map(|n| format!("k{n:06}")).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let store = store_with(&refs);
        let rare = KeyPattern::parse("k*9999*").unwrap();
        let (first, next) = keys_page(&store, &rare, None, 10, 0);
        let next = next.expect("the scan stopped at its limit");
        assert_eq!(next, keys[KEYS_PAGE_SCAN_MAX - 1]);
        let (second, end) = keys_page(&store, &rare, Some(&next), 10, 0);
        assert_eq!(end, None);
        let expected: Vec<&String> = keys.iter().filter(|key| rare.matches(key)).collect();
        assert_eq!(first.iter().chain(&second).collect::<Vec<_>>(), expected);
    }

    #[test]
    fn listing_dedups_sorts_and_truncates_at_max() {
        let mut listing = KeyListing::new(0);
        listing.add(strings(&["b", "c"]), false);
        listing.add(strings(&["a", "b"]), false);
        listing.add_partial(NodeId::new("n3").unwrap());
        listing.add_partial(NodeId::new("n2").unwrap());
        let list = listing.finish();
        assert_eq!(list.keys, strings(&["a", "b", "c"]));
        assert!(!list.truncated);
        assert_eq!(list.partial, vec![NodeId::new("n2").unwrap(), NodeId::new("n3").unwrap()]);

        let mut listing = KeyListing::new(2);
        listing.add(strings(&["c", "d"]), false);
        listing.add(strings(&["a", "c"]), false);
        let list = listing.finish();
        assert_eq!((list.keys, list.truncated), (strings(&["a", "c"]), true));

        let mut listing = KeyListing::new(3);
        listing.add(strings(&["a", "b"]), false);
        listing.add(strings(&["b", "c"]), false);
        assert!(!listing.finish().truncated, "exactly max keys is not truncated");

        let mut listing = KeyListing::new(0);
        listing.add(strings(&["a"]), true);
        assert!(listing.finish().truncated, "a member past its limit truncates");
    }

    #[test]
    fn malformed_pages_are_detected() {
        let all = KeyPattern::All;
        assert!(page_ok(&all, Some("a"), 2, &strings(&["b", "c"]), Some("c")));
        assert!(page_ok(&all, None, 2, &[], None));
        assert!(!page_ok(&all, None, 1, &strings(&["b", "c"]), None), "too many");
        assert!(!page_ok(&all, None, 2, &strings(&["c", "b"]), None), "unsorted");
        assert!(!page_ok(&all, None, 2, &strings(&["b", "b"]), None), "repeated");
        assert!(!page_ok(&all, Some("b"), 2, &strings(&["b"]), None), "not after the cursor");
        assert!(!page_ok(&all, Some("b"), 2, &[], Some("b")), "the cursor does not advance");
        assert!(!page_ok(&all, None, 2, &strings(&["c"]), Some("b")), "next before the keys");
        let prefix = KeyPattern::parse("a").unwrap();
        assert!(!page_ok(&prefix, None, 2, &strings(&["b"]), None), "does not match");
    }
}
