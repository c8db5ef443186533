//! Counters: per directed link, and their sum over the network.

use std::collections::BTreeMap;
use std::fmt;

use crate::node::NodeId;

/// Why a message was not delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropCause {
    /// The link's loss ratio.
    Loss,
    /// A partition, at send or at delivery.
    Partition,
    /// A message rule returned [`crate::net::Verdict::Drop`].
    Rule,
    /// The destination node was killed (and maybe restarted) after the send.
    NodeDown,
    /// Nothing was bound at the destination port.
    NoEndpoint,
    /// The destination endpoint's receive queue was full.
    QueueFull,
    /// The destination endpoint receives another message type.
    WrongType,
    /// Too many messages in flight, or held by one clogged link.
    Congestion,
}

impl DropCause {
    /// Every cause, in a fixed order.
    pub const ALL: [DropCause; 8] = [
        DropCause::Loss,
        DropCause::Partition,
        DropCause::Rule,
        DropCause::NodeDown,
        DropCause::NoEndpoint,
        DropCause::QueueFull,
        DropCause::WrongType,
        DropCause::Congestion,
    ];

    /// A short lowercase name, as in traces.
    pub const fn name(self) -> &'static str {
        match self {
            DropCause::Loss => "loss",
            DropCause::Partition => "partition",
            DropCause::Rule => "rule",
            DropCause::NodeDown => "node down",
            DropCause::NoEndpoint => "no endpoint",
            DropCause::QueueFull => "queue full",
            DropCause::WrongType => "wrong type",
            DropCause::Congestion => "congestion",
        }
    }
}

impl fmt::Display for DropCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Dropped messages, by cause.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropStats {
    /// Lost to the link's loss ratio.
    pub loss: u64,
    /// Cut off by a partition.
    pub partition: u64,
    /// Dropped by a message rule.
    pub rule: u64,
    /// Addressed to a node killed after the send.
    pub node_down: u64,
    /// Addressed to a port with nothing bound.
    pub no_endpoint: u64,
    /// Refused by a full receive queue.
    pub queue_full: u64,
    /// Of a type the destination endpoint does not receive.
    pub wrong_type: u64,
    /// Beyond the in-flight or held limits.
    pub congestion: u64,
}

impl DropStats {
    /// The count for one cause.
    pub const fn get(&self, cause: DropCause) -> u64 {
        match cause {
            DropCause::Loss => self.loss,
            DropCause::Partition => self.partition,
            DropCause::Rule => self.rule,
            DropCause::NodeDown => self.node_down,
            DropCause::NoEndpoint => self.no_endpoint,
            DropCause::QueueFull => self.queue_full,
            DropCause::WrongType => self.wrong_type,
            DropCause::Congestion => self.congestion,
        }
    }

    /// All drops.
    pub fn total(&self) -> u64 {
        DropCause::ALL.iter().map(|cause| self.get(*cause)).sum()
    }

    pub(crate) fn count(&mut self, cause: DropCause) {
        let counter = match cause {
            DropCause::Loss => &mut self.loss,
            DropCause::Partition => &mut self.partition,
            DropCause::Rule => &mut self.rule,
            DropCause::NodeDown => &mut self.node_down,
            DropCause::NoEndpoint => &mut self.no_endpoint,
            DropCause::QueueFull => &mut self.queue_full,
            DropCause::WrongType => &mut self.wrong_type,
            DropCause::Congestion => &mut self.congestion,
        };
        *counter += 1;
    }

    fn add(&mut self, other: &DropStats) {
        self.loss += other.loss;
        self.partition += other.partition;
        self.rule += other.rule;
        self.node_down += other.node_down;
        self.no_endpoint += other.no_endpoint;
        self.queue_full += other.queue_full;
        self.wrong_type += other.wrong_type;
        self.congestion += other.congestion;
    }
}

/// What one directed link (or the whole network) did with its messages.
///
/// Every message sent, and every extra copy, is eventually delivered, dropped, or
/// still in flight or held: `sent + duplicated == delivered + dropped.total()` plus
/// [`NetStats::in_flight`] and [`NetStats::held_now`] over the network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Messages sent (`send_to` calls).
    pub sent: u64,
    /// Messages (copies included) that reached an endpoint's receive queue.
    pub delivered: u64,
    /// Extra copies made by the duplication ratio or a rule.
    pub duplicated: u64,
    /// Messages that a clog held (counted once each, when held).
    pub held: u64,
    /// Messages (copies included) dropped, by cause.
    pub dropped: DropStats,
}

impl LinkStats {
    pub(crate) fn add(&mut self, other: &LinkStats) {
        self.sent += other.sent;
        self.delivered += other.delivered;
        self.duplicated += other.duplicated;
        self.held += other.held;
        self.dropped.add(&other.dropped);
    }
}

/// A snapshot of the network's counters; see [`crate::Handle::net_stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// The sum over all links.
    pub total: LinkStats,
    /// Each link that carried a message or a fault, by (from, to) node.
    pub links: BTreeMap<(NodeId, NodeId), LinkStats>,
    /// Messages scheduled for delivery.
    pub in_flight: u64,
    /// Messages held by clogged links right now.
    pub held_now: u64,
}

impl NetStats {
    /// The counters of the link from `from` to `to` (zero if it carried nothing).
    pub fn link(&self, from: NodeId, to: NodeId) -> LinkStats {
        self.links.get(&(from, to)).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_on_their_cause() {
        let mut drops = DropStats::default();
        for (i, cause) in DropCause::ALL.iter().enumerate() {
            for _ in 0..=i {
                drops.count(*cause);
            }
        }
        for (i, cause) in DropCause::ALL.iter().enumerate() {
            assert_eq!(drops.get(*cause), i as u64 + 1, "{cause}");
        }
        assert_eq!(drops.total(), 36);
        let mut sum = LinkStats { sent: 1, dropped: drops, ..LinkStats::default() };
        sum.add(&LinkStats { sent: 2, delivered: 3, ..LinkStats::default() });
        assert_eq!((sum.sent, sum.delivered, sum.dropped.total()), (3, 3, 36));
    }
}
