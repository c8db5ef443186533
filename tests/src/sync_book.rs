//! The sync book: anti-entropy's promise in each direction, watched at the wire.
//!
//! A sync (cache `anti_entropy.rs`) is a pull and a push: node A lists the leaves where
//! its tree and peer B's differ, fetches what B holds newer, and pushes what B holds
//! older or lacks. B's own syncs with A repair whatever A's fail to do, so a sync that
//! only pulls, or only pushes, still converges, and the end state cannot tell. The
//! book holds each sync to both halves.
//!
//! When B's listing of some leaves leaves B for A, the book reads, white-box, both
//! nodes' copies and owners of the keys in those leaves:
//! - **pull**: B listed a key newer than A held it (or A held none), and A owns it: A
//!   must fetch and apply it;
//! - **push**: A holds a key of those leaves that B listed older or not at all, and
//!   both own it (in A's view, and in B's, whose ownership guard refuses a copy it
//!   does not own): A must send it, unless more than
//!   [`cache::MERKLE_KEYS_PER_FETCH_MAX`] keys qualify (the most a sync pushes per
//!   batch).
//!
//! It reads them again once the sync has ended: when no sync message between the two
//! has crossed the wire for [`SYNC_IDLE_NS`]. A promise is broken if the copy that
//! should have changed still holds the very version it held, while nothing else
//! changed (A's copy, for a push) and both nodes kept their incarnation. A copy changed
//! by anything (the sync, a write, a hint, the peer's own sync) is not judged. The run
//! judges only promises whose span lies in a quiet window (no fault can have cut the
//! sync short), in runs without buggify (whose fault points fail syncs on purpose),
//! and, for a tombstone (or an item with a TTL, which becomes one), in runs that do not
//! collect tombstones (a node may collect it before it is fetched, or after it is
//! pushed).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use cache::{
    CacheNode, Entry, MerkleRequest, MerkleResponse, NodeId, PeerRequest, PeerResponse,
    ReplicaCause, Version,
};
use sim::net::{MessageMeta, Rpc, RuleGuard, Verdict};

use crate::checker::{Check, Violation};
use crate::cluster::DistCluster;
use crate::quiet::QuietWindows;

/// Listings booked per run at most; later ones are not.
const LISTINGS_MAX: usize = 1 << 14;
/// Pushes in flight booked at most; past it the oldest is forgotten.
const PUSHES_MAX: usize = 1 << 12;
/// Broken promises kept per run at most.
const BROKEN_MAX: usize = 64;
/// How long after its last message a sync has surely ended, in a quiet window: a
/// round trip there takes at most twice the latency tail's 400 ms.
pub(crate) const SYNC_IDLE_NS: u64 = 2_000_000_000;

/// One key a listing obliges A to sync, with what both nodes held then.
#[derive(Clone, Debug)]
struct Listed {
    key: String,
    /// A's copy's version (`None`: A held nothing).
    mine: Option<Version>,
    /// B's copy's version.
    theirs: Option<Version>,
    /// Whether the copy to sync (B's for a pull, A's for a push) was a tombstone, or an
    /// item with a TTL (which becomes one): where tombstones are collected, the
    /// receiver may collect it again before it is judged, or the sender before it
    /// is fetched.
    may_vanish: bool,
    direction: Direction,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Pull,
    Push,
}

/// One listing B sent A, and the keys it obliges A to sync.
#[derive(Clone, Debug)]
struct Listing {
    /// A and B.
    pair: (NodeId, NodeId),
    at_ns: u64,
    /// Both nodes' start counts then (a restart voids the listing).
    starts: (u32, u32),
    keys: Vec<Listed>,
}

/// A promise found broken, with the span it covers.
#[derive(Clone, Debug)]
pub(crate) struct Broken {
    from_ns: u64,
    to_ns: u64,
    /// A copy that may be collected (not judged where tombstones are).
    may_vanish: bool,
    message: String,
}

/// What one `Leaves` request asked: A, B, the leaf count and the leaves.
type Asked = (NodeId, NodeId, usize, Vec<usize>);

/// The book: leaves asked, listings pending, promises broken.
pub(crate) struct SyncBook {
    cluster: Rc<DistCluster>,
    /// `Leaves` requests in flight, by request id.
    asked: BTreeMap<u64, Asked>,
    /// Pushes (`Replicate` requests of anti-entropy) in flight, by request id.
    pushes: BTreeSet<u64>,
    /// Per (A, B) simulated nodes: when a sync message between them last crossed.
    activity_ns: BTreeMap<(sim::NodeId, sim::NodeId), u64>,
    /// Listings awaiting the end of their sync, per (A, B) simulated nodes.
    pending: BTreeMap<(sim::NodeId, sim::NodeId), Vec<Listing>>,
    /// No pending listing is due before this.
    next_due_ns: u64,
    listing_count: usize,
    broken: Vec<Broken>,
}

impl SyncBook {
    /// Installs the watching rule on `cluster`'s simulation; the book is kept while the
    /// guard lives.
    pub(crate) fn install(
        handle: &sim::Handle,
        cluster: &Rc<DistCluster>,
    ) -> (Rc<RefCell<SyncBook>>, RuleGuard) {
        let book = Rc::new(RefCell::new(SyncBook {
            cluster: Rc::clone(cluster),
            asked: BTreeMap::new(),
            pushes: BTreeSet::new(),
            activity_ns: BTreeMap::new(),
            pending: BTreeMap::new(),
            next_due_ns: u64::MAX,
            listing_count: 0,
            broken: Vec::new(),
        }));
        let watched = Rc::clone(&book);
        let guard = handle.add_rule(move |meta: &MessageMeta<'_>| {
            watched.borrow_mut().see(meta);
            Verdict::Deliver
        });
        (book, guard)
    }

    fn see(&mut self, meta: &MessageMeta<'_>) {
        let now_ns = sim::time::Instant::now().as_nanos();
        if now_ns >= self.next_due_ns {
            self.judge_due(now_ns);
        }
        let Some(message) = meta.downcast_ref::<Rpc<PeerRequest, PeerResponse>>() else {
            return;
        };
        let (from, to) = (meta.from().node(), meta.to().node());
        match message {
            Rpc::Request { id, body: PeerRequest::AntiEntropy(request) } => {
                self.activity_ns.insert((from, to), now_ns);
                if let MerkleRequest::Leaves { requester, leaf_count, leaves } = request
                    && self.asked.len() < LISTINGS_MAX
                    && let Some(peer) = self.cache_id(to)
                {
                    self.asked.insert(*id, (requester.clone(), peer, *leaf_count, leaves.clone()));
                }
            }
            Rpc::Request {
                id,
                body: PeerRequest::Replicate { cause: ReplicaCause::AntiEntropy, .. },
            } => {
                self.activity_ns.insert((from, to), now_ns);
                if self.pushes.len() == PUSHES_MAX {
                    self.pushes.pop_first(); // Long answered or timed out.
                }
                self.pushes.insert(*id);
            }
            Rpc::Response { id, body } => {
                // An answer to A's sync: to a merkle request, or to a push.
                let answers_sync = matches!(body, PeerResponse::AntiEntropy(_))
                    || (matches!(body, PeerResponse::Replicated { .. }) && self.pushes.remove(id));
                if answers_sync && let Some(at_ns) = self.activity_ns.get_mut(&(to, from)) {
                    *at_ns = now_ns;
                }
                if let PeerResponse::AntiEntropy(MerkleResponse::Leaves { entries }) = body
                    && let Some(asked) = self.asked.remove(id)
                {
                    self.book_listing((to, from), asked, entries, now_ns);
                }
            }
            _ => {}
        }
    }

    /// The cache id of a simulated node of the cluster.
    fn cache_id(&self, sim_node: sim::NodeId) -> Option<NodeId> {
        self.cluster.ids().into_iter().find(|id| self.cluster.sim_node(id) == Some(sim_node))
    }

    /// Books B's listing for A: the keys it obliges A to pull or push.
    fn book_listing(
        &mut self,
        sim_pair: (sim::NodeId, sim::NodeId),
        (mine, theirs, leaf_count, leaves): Asked,
        entries: &[(String, Version)],
        now_ns: u64,
    ) {
        let (Some(a), Some(b)) = (self.cluster.by_id(&mine), self.cluster.by_id(&theirs)) else {
            return;
        };
        if self.listing_count >= LISTINGS_MAX {
            return;
        }
        let version =
            |node: &CacheNode, key: &str| node.local_entry(key).map(|e| e.version().clone());
        let may_vanish = |node: &CacheNode, key: &str| match node.local_entry(key) {
            Some(Entry::Tombstone(_)) => true,
            Some(Entry::Item(item)) => item.expires_at_ms.is_some(),
            None => false,
        };
        let listed = |key: &str, direction| Listed {
            key: key.to_string(),
            mine: version(&a, key),
            theirs: version(&b, key),
            may_vanish: may_vanish(if direction == Direction::Pull { &b } else { &a }, key),
            direction,
        };
        let mut keys: Vec<Listed> = entries
            .iter()
            .filter(|(key, listed)| version(&a, key).is_none_or(|held| held < *listed))
            .filter(|(key, _)| a.is_owner(key))
            .map(|(key, _)| listed(key, Direction::Pull))
            .collect();
        let pushes = pushes_owed(&a, (&theirs, &b), (leaf_count, &leaves), entries);
        keys.extend(pushes.iter().map(|key| listed(key, Direction::Push)));
        if keys.is_empty() {
            return;
        }
        self.listing_count += 1;
        let starts = (self.cluster.start_count(&mine), self.cluster.start_count(&theirs));
        let listing = Listing { pair: (mine, theirs), at_ns: now_ns, starts, keys };
        self.pending.entry(sim_pair).or_default().push(listing);
        self.next_due_ns = self.next_due_ns.min(now_ns + SYNC_IDLE_NS);
    }

    /// Judges the listings whose sync has ended by `now_ns`.
    fn judge_due(&mut self, now_ns: u64) {
        let mut next_due_ns = u64::MAX;
        let pairs: Vec<(sim::NodeId, sim::NodeId)> = self.pending.keys().copied().collect();
        for sim_pair in pairs {
            let due_ns = self.activity_ns.get(&sim_pair).copied().unwrap_or(0) + SYNC_IDLE_NS;
            if due_ns > now_ns {
                next_due_ns = next_due_ns.min(due_ns);
                continue;
            }
            let listings = self.pending.remove(&sim_pair).unwrap_or_default();
            for listing in listings {
                for broken in self.judge_listing(&listing, now_ns) {
                    if self.broken.len() < BROKEN_MAX {
                        self.broken.push(broken);
                    }
                }
            }
        }
        self.next_due_ns = next_due_ns;
    }

    fn judge_listing(&self, listing: &Listing, now_ns: u64) -> Vec<Broken> {
        let (mine, theirs) = &listing.pair;
        let (Some(a), Some(b)) = (self.cluster.by_id(mine), self.cluster.by_id(theirs)) else {
            return Vec::new();
        };
        let starts = (self.cluster.start_count(mine), self.cluster.start_count(theirs));
        if starts != listing.starts {
            return Vec::new();
        }
        let version =
            |node: &CacheNode, key: &str| node.local_entry(key).map(|e| e.version().clone());
        let mut broken = Vec::new();
        for listed in &listing.keys {
            let key = listed.key.as_str();
            if version(&a, key) != listed.mine {
                continue; // A's copy changed: pulled, or written meanwhile.
            }
            let message = match listed.direction {
                Direction::Pull if a.is_owner(key) => format!(
                    "{mine} listed {key}@{} on {theirs}, newer than its own {}, and the sync ended without pulling it",
                    shown(listed.theirs.as_ref()),
                    shown(listed.mine.as_ref()),
                ),
                Direction::Push if version(&b, key) == listed.theirs && b.is_owner(key) => format!(
                    "{mine} held {key}@{}, and {theirs} {}; the sync ended without pushing it",
                    shown(listed.mine.as_ref()),
                    match &listed.theirs {
                        Some(version) => format!("an older {version}"),
                        None => "nothing".to_string(),
                    },
                ),
                _ => continue,
            };
            let may_vanish = listed.may_vanish;
            broken.push(Broken { from_ns: listing.at_ns, to_ns: now_ns, may_vanish, message });
        }
        broken
    }

    /// Judges every listing whose sync has ended, and forgets the rest: call it before
    /// anything rewrites every key (the probe phase).
    pub(crate) fn settle(&mut self, now_ns: u64) {
        self.judge_due(now_ns);
        self.pending.clear();
        self.next_due_ns = u64::MAX;
    }

    /// Liveness: the promises broken inside one quiet window (see the module doc).
    pub(crate) fn violations(
        &self,
        windows: &QuietWindows,
        tombstones_collected: bool,
    ) -> Vec<Violation> {
        self.broken
            .iter()
            .filter(|broken| windows.around(broken.from_ns, broken.to_ns).is_some())
            .filter(|broken| !(tombstones_collected && broken.may_vanish))
            .map(|broken| Violation {
                check: Check::SyncOneWay,
                message: format!(
                    "{} (listed at {:.3}s, judged at {:.3}s)",
                    broken.message,
                    broken.from_ns as f64 / 1e9,
                    broken.to_ns as f64 / 1e9
                ),
                ops: Vec::new(),
            })
            .collect()
    }
}

/// The keys of the listed leaves that A owes B a push: A holds them, both own them in
/// A's view, and B listed them older or not at all (A's rule); and B owns them in its
/// own view (B's guard). Empty if more qualify by A's rule than a sync pushes.
fn pushes_owed(
    a: &CacheNode,
    (peer, b): (&NodeId, &CacheNode),
    (leaf_count, leaves): (usize, &[usize]),
    listing: &[(String, Version)],
) -> Vec<String> {
    let theirs: BTreeMap<&str, &Version> =
        listing.iter().map(|(key, version)| (key.as_str(), version)).collect();
    // Visited in place, where it copied the whole store at every listing.
    let mut qualifying: Vec<String> = Vec::new();
    a.for_each_local_entry(|key, entry| {
        if leaves.binary_search(&cache::leaf_index(key, leaf_count)).is_ok()
            && a.is_owner(key)
            && a.owners(key).contains(peer)
            && theirs.get(key).is_none_or(|held| entry.version() > *held)
        {
            qualifying.push(key.to_string());
        }
    });
    if qualifying.len() > cache::MERKLE_KEYS_PER_FETCH_MAX {
        return Vec::new();
    }
    qualifying.into_iter().filter(|key| b.is_owner(key)).collect()
}

fn shown(version: Option<&Version>) -> String {
    version.map_or_else(|| "nothing".to_string(), ToString::to_string)
}
