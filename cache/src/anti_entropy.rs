//! Merkle anti-entropy (§2.10): compare trees with a peer and pull what differs.
//!
//! A sync ([`CacheNode::sync_with`]) is a pull in three steps, each a request to the
//! peer:
//!
//! 1. [`MerkleRequest::Summary`]: the peer's tree over the keys both nodes own, in its
//!    view of the ring (the root and the leaf hashes). The receiver builds its own tree
//!    over the keys both own in *its* view, with the same leaf count, and compares the
//!    roots, then the leaves ([`MerkleTree::diff`]).
//! 2. [`MerkleRequest::Leaves`]: the `(key, version)` pairs of the differing leaves, at
//!    most [`MERKLE_LEAVES_PER_REQUEST_MAX`] leaves a request.
//! 3. [`MerkleRequest::Fetch`]: the entries of the listed keys whose version is newer
//!    than the one held (or that are not held), at most [`MERKLE_KEYS_PER_FETCH_MAX`]
//!    keys a request; each goes through the receiver's version check
//!    (`Inner::apply_local`), which also moves its Lamport clock.
//!
//! Two rules keep a sync from losing data (§2.22 item 4, where the reference fails):
//!
//! - **Absence is never a delete.** A key the peer does not list is not pulled, and
//!   nothing local is ever removed: a delete travels as a tombstone, which is an entry
//!   like any other and wins by its version.
//! - **Only keys both nodes own are exchanged.** Both sides filter by their own ring
//!   view, and the receiver checks again that it owns each key it applies, so a sync
//!   with a node that is not a co-owner exchanges nothing.
//!
//! Autosync runs one round every `merkle_sync_interval_ms` with a random peer among
//! those that share keys with this node, with an adaptive backoff ([`AntiEntropy`]).
//! The tree is pure (`merkle.rs`); this file is its thin async shell.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::{Rc, Weak};
use std::time::Duration;

use crate::error::Error;
use crate::membership::NodeState;
use crate::merkle::{MerkleHash, MerkleTree, is_valid_leaf_count, leaf_count_for, leaf_index};
use crate::message::{PeerRequest, PeerResponse, ReplicaCause};
use crate::node::{CacheNode, Inner};
use crate::node_id::NodeId;
use crate::options::Options;
use crate::ring::Ring;
use crate::runtime::TransportError;
use crate::store::Entry;
use crate::version::Version;

/// The most leaves one [`MerkleRequest::Leaves`] asks for.
pub const MERKLE_LEAVES_PER_REQUEST_MAX: usize = 64;
/// The most keys one [`MerkleRequest::Fetch`] asks for.
pub const MERKLE_KEYS_PER_FETCH_MAX: usize = 256;
/// The bytes of keys and values past which a [`MerkleResponse::Entries`] stops adding
/// entries (it always holds at least one): the receiver asks again for the rest.
pub const MERKLE_FETCH_BYTES_MAX: usize = 4 << 20;
/// The largest `merkle_backoff_factor_max` an option may ask for.
pub const MERKLE_BACKOFF_FACTOR_MAX: u64 = 64;
/// Rounds a starting node spends pulling from peers it cannot reach yet.
pub const BOOTSTRAP_ROUNDS_MAX: u32 = 30;
/// The wait between two bootstrap rounds.
const BOOTSTRAP_ROUND_WAIT_MS: u64 = 1_000;

const _: () = assert!(MERKLE_LEAVES_PER_REQUEST_MAX >= 1);
const _: () = assert!(MERKLE_KEYS_PER_FETCH_MAX >= 1);
// One fetch of the largest values still ends: at least one entry an answer.
const _: () = assert!(MERKLE_FETCH_BYTES_MAX >= 1);
const _: () = assert!(MERKLE_BACKOFF_FACTOR_MAX.is_power_of_two());

/// Anti-entropy state: the autosync backoff.
///
/// The wait before the next round is `interval × factor`. A clean round (nothing
/// differed) doubles the factor up to the maximum; a round that found differences
/// resets it to 1; a failed round (the peer did not answer) says nothing about
/// divergence and leaves it as it is.
#[derive(Debug)]
pub(crate) struct AntiEntropy {
    backoff_factor: u64,
    backoff_factor_max: u64,
    /// Rounds made, for the rotation over peers; `None` until the first round, which
    /// starts the rotation at a random peer.
    rotation: Option<u64>,
    /// Clean rounds in a row since the last dirty round or doubling.
    clean_streak: usize,
}

/// How an autosync round ended, for the backoff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RoundOutcome {
    /// The trees were equal.
    Clean,
    /// The trees differed.
    Dirty,
    /// The sync failed.
    Failed,
}

impl AntiEntropy {
    pub(crate) fn new(options: &Options) -> AntiEntropy {
        let backoff_factor_max = options.merkle_backoff_factor_max();
        assert!(backoff_factor_max >= 1);
        assert!(backoff_factor_max <= MERKLE_BACKOFF_FACTOR_MAX);
        AntiEntropy { backoff_factor: 1, backoff_factor_max, rotation: None, clean_streak: 0 }
    }

    /// The current backoff factor: rounds wait this many intervals.
    pub(crate) fn backoff_factor(&self) -> u64 {
        self.backoff_factor
    }

    /// Stops backing off: the next round comes within one interval.
    pub(crate) fn reset_backoff(&mut self) {
        self.backoff_factor = 1;
        self.clean_streak = 0;
    }

    /// The index of the next round's peer among `peer_count`: a rotation (starting at
    /// `random`), so that every peer that shares keys is synced with within
    /// `peer_count` rounds.
    pub(crate) fn next_peer(&mut self, peer_count: usize, random: u64) -> usize {
        assert!(peer_count > 0);
        let rotation = self.rotation.get_or_insert(random % peer_count as u64);
        let index = *rotation % peer_count as u64;
        *rotation = rotation.wrapping_add(1);
        usize::try_from(index).expect("below the peer count")
    }

    /// Records a round's outcome; returns the new factor. The factor doubles only after
    /// `peer_count` clean rounds in a row: a full rotation that compared this node with
    /// every peer sharing keys and found nothing. Backing off sooner would leave some
    /// pairs unchecked for long after a heal.
    pub(crate) fn record(&mut self, outcome: RoundOutcome, peer_count: usize) -> u64 {
        match outcome {
            RoundOutcome::Clean => {
                self.clean_streak += 1;
                if self.clean_streak >= peer_count.max(1) {
                    self.clean_streak = 0;
                    self.backoff_factor = (self.backoff_factor * 2).min(self.backoff_factor_max);
                }
            }
            RoundOutcome::Dirty => {
                self.clean_streak = 0;
                self.backoff_factor = 1;
            }
            RoundOutcome::Failed => {}
        }
        assert!(self.backoff_factor >= 1);
        assert!(self.backoff_factor <= self.backoff_factor_max);
        self.backoff_factor
    }
}

/// An anti-entropy request.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MerkleRequest {
    /// The responder's tree over the keys it and `requester` both own in its view.
    Summary {
        /// The node that syncs.
        requester: NodeId,
        /// How many entries the requester shares with the responder: the responder
        /// sizes the leaves for the larger side.
        entry_count: usize,
    },
    /// The `(key, version)` pairs of these leaves of that tree.
    Leaves {
        /// The node that syncs.
        requester: NodeId,
        /// The tree's leaf count, as the summary announced it.
        leaf_count: usize,
        /// The leaves, ascending, at most [`MERKLE_LEAVES_PER_REQUEST_MAX`].
        leaves: Vec<usize>,
    },
    /// The entries of these keys, among those the responder shares with `requester`.
    Fetch {
        /// The node that syncs.
        requester: NodeId,
        /// The keys, ascending, at most [`MERKLE_KEYS_PER_FETCH_MAX`].
        keys: Vec<String>,
    },
}

/// The answer to a [`MerkleRequest`].
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MerkleResponse {
    /// Answers [`MerkleRequest::Summary`].
    Summary {
        /// The root of the tree.
        root: MerkleHash,
        /// The leaf hashes: their count is the tree's leaf count.
        leaves: Vec<MerkleHash>,
    },
    /// Answers [`MerkleRequest::Leaves`]: the shared entries of those leaves, in key
    /// order.
    Leaves {
        /// `(key, version)`, tombstones included.
        entries: Vec<(String, Version)>,
    },
    /// Answers [`MerkleRequest::Fetch`].
    Entries {
        /// The entries held and shared among the keys answered, in key order.
        entries: Vec<(String, Entry)>,
        /// How many of the keys asked for were answered, from the first: at least one,
        /// fewer than all when the answer reached [`MERKLE_FETCH_BYTES_MAX`].
        answered_count: usize,
    },
    /// The request broke the protocol (a leaf count, leaf or key list out of range).
    Malformed,
}

/// What one sync did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncReport {
    /// The peer synced with.
    pub peer: NodeId,
    /// The trees' leaf count (0 when nothing was compared).
    pub leaf_count: usize,
    /// Leaves whose hashes differed.
    pub leaves_differing: usize,
    /// `(key, version)` pairs the peer listed for those leaves.
    pub keys_listed: usize,
    /// Entries fetched: listed with a newer version than the one held, or not held.
    pub keys_fetched: usize,
    /// Entries applied (newer than what was held when they arrived).
    pub keys_pulled: usize,
    /// Entries this node held newer than the peer (or that the peer lacked), sent to
    /// the peer and acknowledged: a sync converges both sides.
    pub keys_pushed: usize,
}

impl SyncReport {
    fn new(peer: NodeId) -> SyncReport {
        SyncReport {
            peer,
            leaf_count: 0,
            leaves_differing: 0,
            keys_listed: 0,
            keys_fetched: 0,
            keys_pushed: 0,
            keys_pulled: 0,
        }
    }

    /// Whether the two trees were equal (nothing differed, nothing was pulled).
    pub fn is_clean(&self) -> bool {
        self.leaves_differing == 0
    }
}

impl CacheNode {
    /// Pulls from `peer` what differs on the keys both own: compares merkle trees,
    /// then lists the differing leaves, then fetches the entries newer than those held
    /// and applies them through the version check. Nothing local is ever deleted, and
    /// keys that either node does not own (in its own view) are not exchanged. A sync
    /// with this node itself does nothing.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownNode`] for a peer that is not a member; [`Error::Timeout`] or
    /// [`Error::Unreachable`] when it does not answer; [`Error::Protocol`] for an
    /// answer that breaks the protocol; [`Error::StoreFull`]; [`Error::Stopped`]. The
    /// entries applied before an error stay applied.
    pub async fn sync_with(&self, peer: &NodeId) -> Result<SyncReport, Error> {
        self.inner.check_running()?;
        Inner::sync_with(&self.inner, peer).await
    }

    /// This node's merkle tree over the entries it shares with `peer` (keys both own
    /// in this node's view), with `leaf_count` leaves: two replicas have converged on
    /// their shared keys when their trees with each other are equal.
    ///
    /// # Panics
    ///
    /// When `leaf_count` is not a power of two in `1..=MERKLE_LEAF_COUNT_MAX`.
    pub fn merkle_tree_with(&self, peer: &NodeId, leaf_count: usize) -> MerkleTree {
        let state = self.inner.state.borrow();
        let (ring, id) = (&state.ring, &self.inner.id);
        let shared = state.store.iter().filter(|(key, _)| shares(ring, key, id, peer));
        MerkleTree::build(leaf_count, shared.map(|(key, entry)| (key, entry.version())))
    }
}

/// Whether nodes `a` and `b` both own `key` on `ring`.
fn shares(ring: &Ring, key: &str, a: &NodeId, b: &NodeId) -> bool {
    let owners = ring.lookup(key);
    owners.contains(a) && owners.contains(b)
}

/// The answering side.
impl Inner {
    /// Answers an anti-entropy request.
    pub(crate) async fn handle_anti_entropy(
        inner: &Rc<Inner>,
        request: MerkleRequest,
    ) -> MerkleResponse {
        match request {
            MerkleRequest::Summary { requester, entry_count } => {
                inner.merkle_summary(&requester, entry_count)
            }
            MerkleRequest::Leaves { requester, leaf_count, leaves } => {
                inner.merkle_leaves(&requester, leaf_count, &leaves)
            }
            MerkleRequest::Fetch { requester, keys } => inner.merkle_fetch(&requester, &keys),
        }
    }

    fn merkle_summary(&self, requester: &NodeId, entry_count_requester: usize) -> MerkleResponse {
        let state = self.state.borrow();
        let shared: Vec<(&str, &Version)> = state
            .store
            .iter()
            .filter(|(key, _)| shares(&state.ring, key, &self.id, requester))
            .map(|(key, entry)| (key, entry.version()))
            .collect();
        let entry_count = shared.len().max(entry_count_requester);
        let leaf_count = leaf_count_for(entry_count, self.options.merkle_chunk_size());
        let tree = MerkleTree::build(leaf_count, shared);
        MerkleResponse::Summary { root: tree.root(), leaves: tree.leaves().to_vec() }
    }

    fn merkle_leaves(
        &self,
        requester: &NodeId,
        leaf_count: usize,
        leaves: &[usize],
    ) -> MerkleResponse {
        let well_formed = is_valid_leaf_count(leaf_count)
            && !leaves.is_empty()
            && leaves.len() <= MERKLE_LEAVES_PER_REQUEST_MAX
            && leaves.iter().all(|&leaf| leaf < leaf_count);
        if !well_formed {
            return MerkleResponse::Malformed;
        }
        let mut wanted = vec![false; leaf_count];
        leaves.iter().for_each(|&leaf| wanted[leaf] = true);
        let state = self.state.borrow();
        let entries: Vec<(String, Version)> = state
            .store
            .iter()
            .filter(|(key, _)| wanted[leaf_index(key, leaf_count)])
            .filter(|(key, _)| shares(&state.ring, key, &self.id, requester))
            .map(|(key, entry)| (key.to_string(), entry.version().clone()))
            .collect();
        assert!(entries.len() <= state.store.len());
        MerkleResponse::Leaves { entries }
    }

    fn merkle_fetch(&self, requester: &NodeId, keys: &[String]) -> MerkleResponse {
        if keys.is_empty() || keys.len() > MERKLE_KEYS_PER_FETCH_MAX {
            return MerkleResponse::Malformed;
        }
        // Fault point: a partial answer of one key; the requester asks for the rest.
        let answered_max = if self.buggify() { 1 } else { keys.len() };
        let state = self.state.borrow();
        let mut entries = Vec::new();
        let (mut answered_count, mut bytes) = (0, 0);
        for key in keys {
            if bytes >= MERKLE_FETCH_BYTES_MAX || answered_count == answered_max {
                break; // The requester asks again for the rest.
            }
            answered_count += 1;
            let Some(entry) = state.store.entry(key) else { continue };
            if !shares(&state.ring, key, &self.id, requester) {
                continue;
            }
            bytes += key.len() + entry.as_item().map_or(0, |item| item.value.len());
            entries.push((key.clone(), entry.clone()));
        }
        assert!(answered_count >= 1);
        assert!(entries.len() <= answered_count);
        MerkleResponse::Entries { entries, answered_count }
    }
}

/// The pulling side.
impl Inner {
    pub(crate) async fn sync_with(inner: &Rc<Inner>, peer: &NodeId) -> Result<SyncReport, Error> {
        let mut report = SyncReport::new(peer.clone());
        if *peer == inner.id {
            return Ok(report);
        }
        if inner.address_of(peer).is_none() {
            return Err(Error::UnknownNode { node: peer.clone() });
        }
        let shared = inner.shared_entries(peer);
        let (leaf_count, mut differing) = inner.sync_compare(peer, &shared).await?;
        drop(shared);
        report.leaf_count = leaf_count;
        report.leaves_differing = differing.len();
        if inner.buggify() && differing.len() > 1 {
            // Fault point: a partial round that lists only half the differing leaves;
            // the round still counts as dirty, so the next one comes soon.
            differing.truncate(differing.len() / 2);
        }
        // Bounded: at most MERKLE_LEAF_COUNT_MAX / MERKLE_LEAVES_PER_REQUEST_MAX batches.
        for batch in differing.chunks(MERKLE_LEAVES_PER_REQUEST_MAX) {
            let listing = inner.sync_list(peer, leaf_count, batch).await?;
            report.keys_listed += listing.len();
            let mut pushes = inner.sync_pushes(peer, leaf_count, batch, &listing);
            if inner.mutant(crate::Mutant::MerklePullOnly) {
                pushes.clear(); // The canary: what the peer holds older stays older.
            }
            if inner.mutant(crate::Mutant::MerkleAbsenceDeletes) {
                // The canary: what the peer lacks is taken as deleted.
                let listed: BTreeSet<&str> = listing.iter().map(|(key, _)| key.as_str()).collect();
                let absent = pushes.iter().filter(|(key, _)| !listed.contains(key.as_str()));
                let mut state = inner.state.borrow_mut();
                absent.for_each(|(key, _)| drop(state.store.drop_local(key)));
            }
            let wanted = inner.sync_wanted(listing);
            for keys in wanted.chunks(MERKLE_KEYS_PER_FETCH_MAX) {
                inner.sync_fetch(peer, keys, &mut report).await?;
            }
            // Push what the peer lacks or holds older, through its ownership guard and
            // version check, like any replica write. Never a delete.
            for (key, entry) in pushes {
                let pushed =
                    inner.send_replica_write(peer, key, entry, ReplicaCause::AntiEntropy).await;
                report.keys_pushed += usize::from(pushed);
                if pushed {
                    inner.reached("anti-entropy pushed a key");
                }
            }
        }
        assert!(report.keys_pulled <= report.keys_fetched);
        assert!(report.keys_fetched <= report.keys_listed);
        if report.is_clean() {
            assert_eq!(report.keys_listed, 0);
        }
        tracing::debug!(
            target: "cache::anti_entropy",
            node = %inner.id, %peer, leaves = report.leaves_differing,
            pulled = report.keys_pulled, "merkle sync"
        );
        Ok(report)
    }

    /// The entries of `batch`'s leaves that this node holds newer than `listing` (the
    /// peer's) says, or that the peer lacks; at most [`MERKLE_KEYS_PER_FETCH_MAX`].
    fn sync_pushes(
        &self,
        peer: &NodeId,
        leaf_count: usize,
        batch: &[usize],
        listing: &[(String, Version)],
    ) -> Vec<(String, Entry)> {
        let theirs: BTreeMap<&str, &Version> =
            listing.iter().map(|(key, version)| (key.as_str(), version)).collect();
        let state = self.state.borrow();
        state
            .store
            .iter()
            .filter(|(key, _)| batch.binary_search(&leaf_index(key, leaf_count)).is_ok())
            .filter(|(key, _)| shares(&state.ring, key, &self.id, peer))
            .filter(|(key, entry)| theirs.get(key).is_none_or(|held| entry.version() > *held))
            .take(MERKLE_KEYS_PER_FETCH_MAX)
            .map(|(key, entry)| (key.to_string(), entry.clone()))
            .collect()
    }

    /// The `(key, version)` of every entry this node shares with `peer`, in key order.
    fn shared_entries(&self, peer: &NodeId) -> Vec<(String, Version)> {
        let state = self.state.borrow();
        state
            .store
            .iter()
            .filter(|(key, _)| shares(&state.ring, key, &self.id, peer))
            .map(|(key, entry)| (key.to_string(), entry.version().clone()))
            .collect()
    }

    /// Step 1: the peer's summary against the local tree; returns the leaf count and
    /// the differing leaves.
    async fn sync_compare(
        &self,
        peer: &NodeId,
        shared: &[(String, Version)],
    ) -> Result<(usize, Vec<usize>), Error> {
        let request =
            MerkleRequest::Summary { requester: self.id.clone(), entry_count: shared.len() };
        let fetch_started = self.runtime.elapsed();
        let MerkleResponse::Summary { root, leaves } = self.call_merkle(peer, request).await?
        else {
            return Err(Error::Protocol { expected: Cow::Borrowed("a merkle summary") });
        };
        let fetch_ns = elapsed_ns(self.runtime.elapsed(), fetch_started);
        // The peer's root must be the root of its leaves: checked on both sides.
        let remote = MerkleTree::from_leaves(leaves).filter(|tree| tree.root() == root).ok_or(
            Error::Protocol {
                expected: Cow::Borrowed("a merkle summary whose root matches its leaves"),
            },
        )?;
        let build_started = self.runtime.elapsed();
        let local = MerkleTree::build(
            remote.leaf_count(),
            shared.iter().map(|(key, version)| (key.as_str(), version)),
        );
        let diff_started = self.runtime.elapsed();
        let mut differing = local.diff(&remote);
        if self.mutant(crate::Mutant::MerkleFirstLeafOnly) {
            differing.retain(|&leaf| leaf == 0); // The canary: only the first leaf counts.
        }
        let diff_ended = self.runtime.elapsed();
        let metrics = &mut self.state.borrow_mut().metrics;
        metrics.merkle_fetch_ns = fetch_ns;
        metrics.merkle_build_ns = elapsed_ns(diff_started, build_started);
        metrics.merkle_diff_ns = elapsed_ns(diff_ended, diff_started);
        metrics.merkle_syncs += u64::from(!differing.is_empty());
        if !differing.is_empty() {
            self.reached("anti-entropy found differing leaves");
        }
        Ok((remote.leaf_count(), differing))
    }

    /// Step 2: the peer's `(key, version)` pairs of one batch of differing leaves.
    async fn sync_list(
        &self,
        peer: &NodeId,
        leaf_count: usize,
        batch: &[usize],
    ) -> Result<Vec<(String, Version)>, Error> {
        assert!(!batch.is_empty());
        assert!(batch.len() <= MERKLE_LEAVES_PER_REQUEST_MAX);
        assert!(batch.is_sorted());
        let request = MerkleRequest::Leaves {
            requester: self.id.clone(),
            leaf_count,
            leaves: batch.to_vec(),
        };
        let MerkleResponse::Leaves { entries } = self.call_merkle(peer, request).await? else {
            return Err(Error::Protocol { expected: Cow::Borrowed("a merkle leaf listing") });
        };
        let in_order = entries.windows(2).all(|pair| pair[0].0 < pair[1].0);
        let in_batch = entries
            .iter()
            .all(|(key, _)| batch.binary_search(&leaf_index(key, leaf_count)).is_ok());
        if !in_order || !in_batch {
            return Err(Error::Protocol {
                expected: Cow::Borrowed("the keys of the leaves asked for, in order"),
            });
        }
        Ok(entries)
    }

    /// The listed keys worth fetching: owned here, and newer than what is held here (or
    /// not held). A key held here and not listed is left alone: absence is not a delete.
    fn sync_wanted(&self, listing: Vec<(String, Version)>) -> Vec<String> {
        let state = self.state.borrow();
        let listed_count = listing.len();
        let wanted: Vec<String> = listing
            .into_iter()
            .filter(|(key, _)| state.ring.is_owner(key, &self.id))
            .filter(|(key, version)| state.store.version(key).is_none_or(|held| version > held))
            .map(|(key, _)| key)
            .collect();
        assert!(wanted.len() <= listed_count);
        wanted
    }

    /// Step 3: fetches `keys` (at most [`MERKLE_KEYS_PER_FETCH_MAX`]) and applies them.
    async fn sync_fetch(
        &self,
        peer: &NodeId,
        keys: &[String],
        report: &mut SyncReport,
    ) -> Result<(), Error> {
        assert!(!keys.is_empty());
        assert!(keys.len() <= MERKLE_KEYS_PER_FETCH_MAX);
        assert!(keys.is_sorted(), "listed in key order: answers are checked by binary search");
        let mut remaining = keys;
        // Each answer covers at least one key: at most `keys.len()` requests.
        for _request in 0..keys.len() {
            if remaining.is_empty() {
                break;
            }
            let request =
                MerkleRequest::Fetch { requester: self.id.clone(), keys: remaining.to_vec() };
            let response = self.call_merkle(peer, request).await?;
            let MerkleResponse::Entries { entries, answered_count } = response else {
                return Err(Error::Protocol { expected: Cow::Borrowed("merkle entries") });
            };
            if answered_count == 0 || answered_count > remaining.len() {
                return Err(Error::Protocol {
                    expected: Cow::Borrowed("merkle entries for the keys asked for"),
                });
            }
            let (answered, rest) = remaining.split_at(answered_count);
            self.sync_apply(answered, entries, report)?;
            remaining = rest;
        }
        assert!(remaining.is_empty());
        Ok(())
    }

    /// Applies fetched entries through the version check, each only if this node still
    /// owns its key.
    fn sync_apply(
        &self,
        answered: &[String],
        entries: Vec<(String, Entry)>,
        report: &mut SyncReport,
    ) -> Result<(), Error> {
        if !entries.iter().all(|(key, _)| answered.binary_search(key).is_ok()) {
            return Err(Error::Protocol {
                expected: Cow::Borrowed("merkle entries for the keys asked for"),
            });
        }
        for (key, entry) in entries {
            if !self.state.borrow().ring.is_owner(&key, &self.id) {
                continue; // The ring changed during the sync.
            }
            report.keys_fetched += 1;
            if self.apply_local(&key, entry)?.is_applied() {
                report.keys_pulled += 1;
                self.state.borrow_mut().metrics.merkle_keys_pulled += 1;
                self.reached("anti-entropy pulled a key");
            }
        }
        Ok(())
    }

    /// Sends one anti-entropy request.
    async fn call_merkle(
        &self,
        peer: &NodeId,
        request: MerkleRequest,
    ) -> Result<MerkleResponse, Error> {
        match self.call(peer, PeerRequest::AntiEntropy(request)).await {
            Ok(PeerResponse::AntiEntropy(MerkleResponse::Malformed)) => Err(Error::Protocol {
                expected: Cow::Borrowed("a merkle answer to a well-formed request"),
            }),
            Ok(PeerResponse::AntiEntropy(response)) => Ok(response),
            Ok(PeerResponse::Failed(error)) => Err(error),
            Ok(_) => Err(Error::Protocol { expected: Cow::Borrowed("a merkle answer") }),
            Err(TransportError::Timeout) => {
                Err(Error::Timeout { timeout_ms: self.options.rpc_timeout_ms() })
            }
            Err(TransportError::Unreachable | TransportError::Closed) => {
                Err(Error::Unreachable { owners_tried: 1 })
            }
        }
    }
}

/// Autosync.
impl Inner {
    /// Starts the autosync loop, unless its interval is 0.
    pub(crate) fn start_anti_entropy(inner: &Rc<Inner>) {
        if inner.options.merkle_sync_interval_ms() == 0 {
            return;
        }
        inner.state.borrow_mut().metrics.auto_sync_backoff_factor = 1;
        let task = Inner::auto_sync_loop(Rc::downgrade(inner));
        let guard = inner.runtime.spawn("anti-entropy", Box::pin(task));
        inner.keep_task(guard);
        let bootstrap = Inner::bootstrap_loop(Rc::downgrade(inner));
        let guard = inner.runtime.spawn("anti-entropy bootstrap", Box::pin(bootstrap));
        inner.keep_task(guard);
    }

    /// A node starts with an empty store, on its first start as after a crash: it pulls
    /// what it owns from every peer, at once and without waiting for a peer to notice
    /// that it is back (a crash before the first heartbeat is noticed by nobody). On a
    /// cluster's first start every store is empty and this pulls nothing. A peer that
    /// cannot be reached is tried again each round, for [`BOOTSTRAP_ROUNDS_MAX`] rounds;
    /// after that autosync covers it.
    async fn bootstrap_loop(node: Weak<Inner>) {
        let mut pending: Option<Vec<NodeId>> = None;
        let Some(inner) = node.upgrade() else { return };
        // Fault point: one round fewer; autosync covers what the last round missed.
        let rounds_max = BOOTSTRAP_ROUNDS_MAX - u32::from(inner.buggify());
        drop(inner);
        for _ in 0..rounds_max {
            let Some(inner) = node.upgrade() else { return };
            if inner.check_running().is_err() {
                return;
            }
            let peers = pending.take().unwrap_or_else(|| {
                let state = inner.state.borrow();
                state
                    .membership
                    .members()
                    .map(|member| member.id.clone())
                    .filter(|id| *id != inner.id)
                    .collect()
            });
            inner.state.borrow_mut().metrics.bootstrap_syncs += peers.len() as u64;
            let syncs = peers.iter().map(|peer| Inner::sync_with(&inner, peer));
            let results = futures::future::join_all(syncs).await;
            let left: Vec<NodeId> = peers
                .into_iter()
                .zip(results)
                .filter(|(_, result)| result.is_err())
                .map(|(peer, _)| peer)
                .collect();
            if left.is_empty() {
                return;
            }
            pending = Some(left);
            let wait = inner.runtime.sleep(Duration::from_millis(BOOTSTRAP_ROUND_WAIT_MS));
            drop(inner);
            wait.await;
        }
    }

    /// One round per wait until the node stops (its guard cancels the task) or is
    /// dropped. Holds the node only during a round, never while it sleeps.
    async fn auto_sync_loop(node: Weak<Inner>) {
        loop {
            // The backoff's wait, one interval at a time, so that a reset (a ring
            // change) cuts a long wait short.
            let mut intervals_waited = 0;
            loop {
                let sleep = {
                    let Some(inner) = node.upgrade() else { return };
                    let factor = inner.anti_entropy.borrow().backoff_factor();
                    if intervals_waited >= factor {
                        break;
                    }
                    let first = intervals_waited == 0;
                    inner.runtime.sleep(Duration::from_millis(inner.auto_sync_wait_ms(first)))
                };
                sleep.await;
                intervals_waited += 1;
            }
            let Some(inner) = node.upgrade() else { return };
            if inner.check_running().is_err() {
                return;
            }
            Inner::auto_sync_round(&inner).await;
        }
    }

    /// One interval, the first of a wait with a jitter of up to a quarter of the
    /// interval, so that nodes started together do not sync in lockstep.
    fn auto_sync_wait_ms(&self, first: bool) -> u64 {
        let interval_ms = self.options.merkle_sync_interval_ms();
        assert!(interval_ms > 0, "the loop runs only with an interval");
        let jitter_ms = if first { self.runtime.random_u64() % (interval_ms / 4 + 1) } else { 0 };
        interval_ms + jitter_ms
    }

    /// Syncs with one random peer that shares keys with this node, and records it.
    async fn auto_sync_round(inner: &Rc<Inner>) {
        if inner.buggify() {
            return; // Fault point: a skipped round (a busy node); the next one comes.
        }
        let peers = inner.anti_entropy_peers();
        if peers.is_empty() {
            return; // Nobody shares keys with this node (one node, or a replication of 1).
        }
        let random = inner.runtime.random_u64();
        let peer = &peers[inner.anti_entropy.borrow_mut().next_peer(peers.len(), random)];
        let started = inner.runtime.elapsed();
        let result = Inner::sync_with(inner, peer).await;
        let round_ns = elapsed_ns(inner.runtime.elapsed(), started);
        let outcome = match &result {
            Ok(report) if report.is_clean() => RoundOutcome::Clean,
            Ok(_) => RoundOutcome::Dirty,
            Err(error) => {
                tracing::debug!(target: "cache::anti_entropy", node = %inner.id, %peer, %error, "autosync failed");
                RoundOutcome::Failed
            }
        };
        let factor = inner.anti_entropy.borrow_mut().record(outcome, peers.len());
        let metrics = &mut inner.state.borrow_mut().metrics;
        metrics.auto_sync_loops += 1;
        metrics.last_auto_sync_ns = round_ns;
        metrics.auto_sync_clean_ticks += u64::from(outcome == RoundOutcome::Clean);
        metrics.auto_sync_failures += u64::from(outcome == RoundOutcome::Failed);
        metrics.auto_sync_backoff_factor = factor;
    }

    /// The alive members that own some key together with this node, by id: the owners
    /// of each ring arc that this node owns.
    fn anti_entropy_peers(&self) -> Vec<NodeId> {
        let state = self.state.borrow();
        let ring = &state.ring;
        let peer_count_max = ring.nodes().len().saturating_sub(1);
        let mut peers = BTreeSet::new();
        // Bounded by the ring's vnodes; stops early once every node is a peer.
        for (hash, _) in ring.vnodes() {
            if peers.len() == peer_count_max {
                break;
            }
            let owners = ring.lookup_hash(hash);
            if owners.contains(&self.id) {
                peers.extend(owners.iter().filter(|owner| **owner != self.id).cloned());
            }
        }
        let alive =
            |peer: &NodeId| state.membership.get(peer).is_some_and(|m| m.state == NodeState::Alive);
        let peers: Vec<NodeId> = peers.into_iter().filter(alive).collect();
        assert!(peers.len() <= peer_count_max);
        assert!(!peers.contains(&self.id));
        peers
    }
}

/// Nanoseconds from `start` to `end` of the runtime's monotonic clock.
fn elapsed_ns(end: Duration, start: Duration) -> u64 {
    assert!(end >= start, "the runtime's clock is monotonic");
    u64::try_from((end - start).as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::OptionsError;

    fn anti_entropy(factor_max: u64) -> AntiEntropy {
        let options = Options::builder()
            .merkle_sync_interval_ms(1_000)
            .merkle_backoff_factor_max(factor_max)
            .build()
            .unwrap();
        AntiEntropy::new(&options)
    }

    #[test]
    fn backoff_doubles_on_clean_rounds_up_to_the_max_and_resets_on_differences() {
        let mut state = anti_entropy(8);
        assert_eq!(state.backoff_factor() * 1_000, 1_000);
        let factors: Vec<u64> = (0..5).map(|_| state.record(RoundOutcome::Clean, 1)).collect();
        assert_eq!(factors, [2, 4, 8, 8, 8]);
        assert_eq!(state.backoff_factor() * 1_000, 8_000);
        assert_eq!(state.record(RoundOutcome::Failed, 1), 8, "a failure says nothing");
        assert_eq!(state.record(RoundOutcome::Dirty, 1), 1);
        // With three peers, a doubling takes three clean rounds: a full rotation.
        let factors: Vec<u64> = (0..6).map(|_| state.record(RoundOutcome::Clean, 3)).collect();
        assert_eq!(factors, [1, 1, 2, 2, 2, 4]);
        assert_eq!(state.record(RoundOutcome::Dirty, 3), 1);
        assert_eq!(state.backoff_factor() * 1_000, 1_000);
    }

    #[test]
    fn backoff_max_of_one_turns_backoff_off() {
        let mut state = anti_entropy(1);
        for _ in 0..4 {
            assert_eq!(state.record(RoundOutcome::Clean, 1), 1);
        }
        assert_eq!(state.backoff_factor() * 1_000, 1_000);
    }

    #[test]
    fn options_are_validated() {
        let defaults = Options::default();
        assert_eq!(defaults.merkle_sync_interval_ms(), 10_000);
        assert_eq!(defaults.merkle_chunk_size(), 128);
        assert_eq!(defaults.merkle_backoff_factor_max(), 8);
        assert!(Options::builder().merkle_sync_interval_ms(0).build().is_ok());
        let error = Options::builder().merkle_chunk_size(0).build().unwrap_err();
        assert!(
            matches!(&error, OptionsError::OutOfRange { option, .. } if option == "merkle_chunk_size")
        );
        let error = Options::builder().merkle_backoff_factor_max(0).build().unwrap_err();
        assert_eq!(error.to_string(), "option `merkle_backoff_factor_max` is 0: accepted 1..=64");
        let error = Options::builder().merkle_backoff_factor_max(65).build();
        assert!(error.is_err());
    }

    #[test]
    fn sharing_needs_both_nodes_among_the_owners() {
        let nodes: Vec<NodeId> =
            ["n1", "n2", "n3", "n4"].iter().map(|n| n.parse().unwrap()).collect();
        let mut ring = Ring::new(2, 16);
        ring.rebuild(&nodes);
        let key = ring.find_key_with_owners("k", &nodes[..2], 100_000).unwrap();
        assert!(shares(&ring, &key, &nodes[0], &nodes[1]));
        assert!(shares(&ring, &key, &nodes[1], &nodes[0]));
        assert!(!shares(&ring, &key, &nodes[0], &nodes[2]));
        assert!(!shares(&ring, &key, &nodes[2], &nodes[3]));
    }
}
