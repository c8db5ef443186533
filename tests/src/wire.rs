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
//! Request ids are unique in a run: the client socket's binding in the high 32 bits
//! (see [`sim::net::Rpc`]). A node restarted binds a new client socket, so a new
//! binding in a node's hint requests starts a fresh book for its new incarnation, and
//! answers addressed to an old incarnation are not booked to the new one.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use cache::{PeerRequest, PeerResponse, ReplicaCause};
use sim::net::{MessageMeta, Rpc, RuleGuard, Verdict};

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

/// Per simulated node: its current incarnation's hint replays.
#[derive(Debug, Default)]
pub(crate) struct WireBook {
    hints: BTreeMap<sim::NodeId, HintLedger>,
}

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

    fn see(&mut self, meta: &MessageMeta<'_>) {
        let Some(message) = meta.downcast_ref::<Rpc<PeerRequest, PeerResponse>>() else {
            return;
        };
        match message {
            Rpc::Request { id, body: PeerRequest::Replicate { cause: ReplicaCause::Hint, .. } } => {
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
