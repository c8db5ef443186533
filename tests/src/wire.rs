//! The wire book: what the harness sees cross the network, booked apart from what the
//! cache says of itself.
//!
//! A message rule that never changes a verdict watches every cache RPC as it is sent.
//! It books, per sending node, the hint replays (`Replicate` requests whose cause is
//! [`ReplicaCause::Hint`]) and the successful answers (`Replicated`) sent back to them.
//! A node may count a hint delivered only if the wire carried a successful answer to
//! it: `hinted_replayed` never exceeds the answers booked. (A lost or late answer is
//! booked but not counted by a correct node: the inequality, not equality, is the
//! promise.)
//!
//! It also books every replica read (`Read`) with the version it was answered, and
//! every read repair sent (`Replicate` with cause [`ReplicaCause::ReadRepair`]): by
//! whom, to whom, for which key and when, so that the harness sees that a read repaired
//! the owners that answered it stale, whatever else (anti-entropy, a later write)
//! repaired them too.
//!
//! And it books every entry handed to a node as rebalance does it (transfers, and
//! hints for an owner it cannot reach), so that the harness sees rebalance move keys to
//! a node that joined, even where anti-entropy or a later write would have brought
//! them anyway.
//!
//! Request ids are unique in a run: the client socket's binding in the high 32 bits
//! (see [`sim::net::Rpc`]). A node restarted binds a new client socket, so a new
//! binding in a node's hint requests starts a fresh book for its new incarnation, and
//! answers addressed to an old incarnation are not booked to the new one.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use cache::{PeerRequest, PeerResponse, RebalanceRequest, ReplicaCause, Version};
use sim::net::{MessageMeta, Rpc, RuleGuard, Verdict};

use crate::tally::{Tally, tally_see};

/// Unanswered hint replays booked per incarnation. Past it the oldest is forgotten:
/// a request that old timed out long ago, and its caller counted it failed.
const HINTS_UNANSWERED_MAX: usize = 1 << 14;

/// One incarnation's hint replays, as seen on the wire.
#[derive(Clone, Debug, Default)]
struct HintLedger {
    /// The binding of the incarnation's client socket.
    binding: u64,
    /// Hint requests sent and not answered yet, by request id.
    unanswered: BTreeSet<u64>,
    /// Hint requests answered `Replicated`.
    answered: u64,
}

/// Read repairs booked per run at most; past it, later ones are not booked (and the
/// read-repair check stops judging: see [`WireBook::read_repairs_complete`]).
const READ_REPAIRS_MAX: usize = 1 << 16;

/// A replica read (`PeerRequest::Read`) as the wire saw it.
#[derive(Clone, Debug)]
struct ReplicaRead {
    from: sim::NodeId,
    to: sim::NodeId,
    key: String,
    sent_ns: u64,
    /// The version answered (`None` inside: the owner held nothing); `None` until an
    /// answer is sent.
    answer: Option<Option<Version>>,
}

/// Per simulated node: its current incarnation's hint replays; and every replica read
/// and read repair sent.
#[derive(Debug, Default)]
pub(crate) struct WireBook {
    hints: BTreeMap<sim::NodeId, HintLedger>,
    /// (from, to, key) → when each read repair was sent (virtual ns).
    read_repairs: BTreeMap<(sim::NodeId, sim::NodeId, String), Vec<u64>>,
    /// Replica reads by request id.
    reads: BTreeMap<u64, ReplicaRead>,
    /// Read repairs and replica reads booked; past [`READ_REPAIRS_MAX`], no more.
    read_repair_count: usize,
    /// (to, key) → when an entry of `key` was handed to `to` as rebalance does it: a
    /// transfer, or a hint (rebalance queues one for an unreachable owner).
    handed: BTreeMap<(sim::NodeId, String), Vec<u64>>,
    /// Entries booked in `handed`; past [`HANDED_MAX`], no more.
    handed_count: usize,
    /// Per node, the messages its counters promise to count.
    tallies: BTreeMap<sim::NodeId, Tally>,
}

/// Hand-offs booked per run at most (the rebalance check stops judging past it).
const HANDED_MAX: usize = 1 << 20;

impl WireBook {
    /// Installs the watching rule; the book is kept while the guard lives.
    pub(crate) fn install(handle: &sim::Handle) -> (Rc<RefCell<WireBook>>, RuleGuard) {
        let book = Rc::new(RefCell::new(WireBook::default()));
        let watched = Rc::clone(&book);
        let guard = handle.add_rule(move |meta: &MessageMeta<'_>| {
            watched.borrow_mut().see(meta);
            Verdict::Deliver
        });
        (book, guard)
    }

    /// Hint replays of `node`'s current incarnation that the wire saw answered
    /// successfully; `None` if it has sent none.
    pub(crate) fn hints_answered(&self, node: sim::NodeId) -> Option<u64> {
        self.hints.get(&node).map(|ledger| ledger.answered)
    }

    /// Per node, the messages its counters promise to count ([`crate::tally`]).
    pub(crate) fn tallies(&self) -> &BTreeMap<sim::NodeId, Tally> {
        &self.tallies
    }

    /// Whether a read repair of `key` from `from` to `to` was sent within
    /// `from_ns..=to_ns`.
    pub(crate) fn read_repair_sent(
        &self,
        (from, to): (sim::NodeId, sim::NodeId),
        key: &str,
        (from_ns, to_ns): (u64, u64),
    ) -> bool {
        let sent = self.read_repairs.get(&(from, to, key.to_string()));
        sent.is_some_and(|sent| sent.iter().any(|at_ns| (from_ns..=to_ns).contains(at_ns)))
    }

    /// Whether every read repair and replica read sent was booked (none past
    /// [`READ_REPAIRS_MAX`]).
    pub(crate) fn read_repairs_complete(&self) -> bool {
        self.read_repair_count < READ_REPAIRS_MAX
    }

    /// The owners that `coordinator` asked for `key` within `from_ns..=to_ns` (replica
    /// reads) and that answered every such read with a version older than `version` or
    /// with nothing. (Reads of one key through one node may overlap, and the wire
    /// cannot tell their replica reads apart: an owner is stale for a read only if it
    /// answered stale to all of them, its own among them.)
    pub(crate) fn stale_answers(
        &self,
        coordinator: sim::NodeId,
        key: &str,
        (from_ns, to_ns): (u64, u64),
        version: &Version,
    ) -> BTreeSet<sim::NodeId> {
        let mut stale: BTreeMap<sim::NodeId, bool> = BTreeMap::new();
        let asked = self.reads.values().filter(|read| {
            read.from == coordinator && read.key == key && (from_ns..=to_ns).contains(&read.sent_ns)
        });
        for read in asked {
            let older = match &read.answer {
                Some(Some(answered)) => answered < version,
                Some(None) => true,
                None => false,
            };
            *stale.entry(read.to).or_insert(true) &= older;
        }
        stale.into_iter().filter(|(_, stale)| *stale).map(|(owner, _)| owner).collect()
    }

    /// Whether an entry of `key` was handed to `to` at `from_ns` or later as rebalance
    /// does it (a transfer or a hint); `None` if the book overflowed and cannot tell.
    pub(crate) fn handed_to(&self, to: sim::NodeId, key: &str, from_ns: u64) -> Option<bool> {
        if self.handed_count >= HANDED_MAX {
            return None;
        }
        let sent = self.handed.get(&(to, key.to_string()));
        Some(sent.is_some_and(|sent| sent.iter().any(|at_ns| *at_ns >= from_ns)))
    }

    fn hand(&mut self, to: sim::NodeId, key: &str) {
        if self.handed_count >= HANDED_MAX {
            return;
        }
        self.handed_count += 1;
        let at_ns = sim::time::Instant::now().as_nanos();
        self.handed.entry((to, key.to_string())).or_default().push(at_ns);
    }

    /// Books one more read repair or replica read; false past [`READ_REPAIRS_MAX`].
    fn book(&mut self) -> bool {
        if self.read_repair_count == READ_REPAIRS_MAX {
            return false;
        }
        self.read_repair_count += 1;
        true
    }

    fn see(&mut self, meta: &MessageMeta<'_>) {
        let Some(message) = meta.downcast_ref::<Rpc<PeerRequest, PeerResponse>>() else {
            return;
        };
        tally_see(&mut self.tallies, (meta.from().node(), meta.to().node()), message);
        match message {
            // Rebalance hands a key over by a transfer, or by a hint when the new owner
            // cannot be reached.
            Rpc::Request {
                body: PeerRequest::Rebalance(RebalanceRequest::Transfer { entries }),
                ..
            } => {
                entries.iter().for_each(|(key, _)| self.hand(meta.to().node(), key));
            }
            Rpc::Request {
                id,
                body: PeerRequest::Replicate { key, cause: ReplicaCause::Hint, .. },
            } => {
                self.hand(meta.to().node(), key);
                let binding = id >> 32;
                let ledger = self.hints.entry(meta.from().node()).or_default();
                if ledger.binding != binding {
                    *ledger = HintLedger { binding, ..HintLedger::default() };
                }
                if ledger.unanswered.len() == HINTS_UNANSWERED_MAX {
                    ledger.unanswered.pop_first();
                }
                ledger.unanswered.insert(*id);
                assert!(ledger.unanswered.len() <= HINTS_UNANSWERED_MAX);
            }
            Rpc::Request {
                body: PeerRequest::Replicate { key, cause: ReplicaCause::ReadRepair, .. },
                ..
            } => {
                if !self.book() {
                    return;
                }
                let at_ns = sim::time::Instant::now().as_nanos();
                let link = (meta.from().node(), meta.to().node(), key.clone());
                self.read_repairs.entry(link).or_default().push(at_ns);
            }
            Rpc::Request { id, body: PeerRequest::Read { key } } => {
                if !self.book() {
                    return;
                }
                let sent_ns = sim::time::Instant::now().as_nanos();
                let (from, to, key) = (meta.from().node(), meta.to().node(), key.clone());
                self.reads.insert(*id, ReplicaRead { from, to, key, sent_ns, answer: None });
            }
            Rpc::Response { id, body: PeerResponse::Entry(entry) } => {
                if let Some(read) = self.reads.get_mut(id) {
                    read.answer.get_or_insert(entry.as_ref().map(|e| e.version().clone()));
                }
            }
            Rpc::Response { id, body: PeerResponse::Replicated { .. } } => {
                let Some(ledger) = self.hints.get_mut(&meta.to().node()) else { return };
                // A duplicated request may be answered twice: booked once.
                if ledger.unanswered.remove(id) {
                    ledger.answered += 1;
                }
            }
            _ => {}
        }
    }
}
