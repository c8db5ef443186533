//! What one node's network layer counted.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

/// Counters of one node's network layer, shared by its server and its transport.
#[derive(Debug, Default)]
pub struct NetStats {
    connections_accepted: Cell<u64>,
    connections_refused: Cell<u64>,
    connections_open: Cell<u64>,
    requests_served: Cell<u64>,
    calls_sent: Cell<u64>,
    calls_timed_out: Cell<u64>,
    calls_unreachable: Cell<u64>,
    connects_failed: Cell<u64>,
    /// Connections closed for bad input, by the frame error's name.
    bad_input: RefCell<BTreeMap<&'static str, u64>>,
}

/// A copy of [`NetStats`] at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetStatsSnapshot {
    /// Connections a node's server accepted.
    pub connections_accepted: u64,
    /// Connections refused at once (over the connection limit).
    pub connections_refused: u64,
    /// Connections the server holds open now (in the handshake or serving).
    pub connections_open: u64,
    /// Requests answered.
    pub requests_served: u64,
    /// Calls this node sent to peers.
    pub calls_sent: u64,
    /// Calls that got no answer in time.
    pub calls_timed_out: u64,
    /// Calls that failed for a closed or refused connection, or during a backoff.
    pub calls_unreachable: u64,
    /// Connection attempts that failed.
    pub connects_failed: u64,
    /// Connections closed for bad input, by reason (`FrameError::name`).
    pub bad_input: BTreeMap<&'static str, u64>,
}

fn bump(counter: &Cell<u64>) {
    counter.set(counter.get().saturating_add(1));
}

impl NetStats {
    pub(crate) fn accepted(&self) {
        bump(&self.connections_accepted);
    }

    pub(crate) fn set_open(&self, count: usize) {
        self.connections_open.set(count as u64);
    }

    pub(crate) fn refused(&self) {
        bump(&self.connections_refused);
    }

    pub(crate) fn served(&self) {
        bump(&self.requests_served);
    }

    pub(crate) fn sent(&self) {
        bump(&self.calls_sent);
    }

    pub(crate) fn timed_out(&self) {
        bump(&self.calls_timed_out);
    }

    pub(crate) fn unreachable(&self) {
        bump(&self.calls_unreachable);
    }

    pub(crate) fn connect_failed(&self) {
        bump(&self.connects_failed);
    }

    pub(crate) fn bad_input(&self, reason: &'static str) {
        *self.bad_input.borrow_mut().entry(reason).or_default() += 1;
    }

    /// The counters now.
    pub fn snapshot(&self) -> NetStatsSnapshot {
        NetStatsSnapshot {
            connections_accepted: self.connections_accepted.get(),
            connections_refused: self.connections_refused.get(),
            connections_open: self.connections_open.get(),
            requests_served: self.requests_served.get(),
            calls_sent: self.calls_sent.get(),
            calls_timed_out: self.calls_timed_out.get(),
            calls_unreachable: self.calls_unreachable.get(),
            connects_failed: self.connects_failed.get(),
            bad_input: self.bad_input.borrow().clone(),
        }
    }
}
