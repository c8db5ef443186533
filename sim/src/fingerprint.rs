//! The run's fingerprint: a rolling hash over every scheduling decision, timer firing,
//! node event and random draw, plus an optional bounded log of the same events, so that
//! two runs of one seed can be compared event by event.

use std::fmt;

use crate::net::{Addr, DropCause};
use crate::node::NodeId;

/// Tags mixed into the hash ahead of each event's value.
pub(crate) mod tag {
    pub(crate) const SPAWN: u64 = 1;
    pub(crate) const POLL: u64 = 2;
    pub(crate) const ADVANCE: u64 = 3;
    pub(crate) const TIMER: u64 = 4;
    pub(crate) const DRAW: u64 = 5;
    pub(crate) const NODE: u64 = 6;
    pub(crate) const BUGGIFY: u64 = 7;
    pub(crate) const CLOCK: u64 = 8;
    pub(crate) const NET_SEND: u64 = 9;
    pub(crate) const NET_DELIVER: u64 = 10;
    pub(crate) const NET_DROP: u64 = 11;
    pub(crate) const NET_HOLD: u64 = 12;
    pub(crate) const NET_FAULT: u64 = 13;
}

/// One recorded event of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Position in the run (0 is the first event).
    pub index: u64,
    /// Virtual nanoseconds since the start of the run.
    pub time_ns: u64,
    /// The node the event belongs to.
    pub node: NodeId,
    /// What happened.
    pub kind: EventKind,
}

/// What an [`Event`] was.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// A task was spawned (`task` is its sequence number within the run).
    Spawn {
        /// The task's sequence number.
        task: u64,
        /// The task's name.
        name: String,
    },
    /// The scheduler chose a task to poll.
    Poll {
        /// The task's sequence number.
        task: u64,
        /// The task's name.
        name: String,
    },
    /// Virtual time jumped to the next timer.
    Advance,
    /// A timer fired.
    Timer {
        /// The timer's sequence number.
        timer: u64,
    },
    /// A node drew a random number.
    Draw {
        /// The value drawn.
        value: u64,
    },
    /// A node was killed, restarted, paused or resumed.
    Node {
        /// What happened to it.
        action: &'static str,
    },
    /// A buggify call site was evaluated.
    Buggify {
        /// The call site.
        site: String,
        /// Whether it fired.
        fired: bool,
    },
    /// A node's clock offset or drift was changed.
    Clock {
        /// The new offset (ns) or drift (ppm).
        value: i64,
    },
    /// A message (or a copy of it) was put on the wire.
    NetSend {
        /// The message's id (unique per copy, in send order).
        message: u64,
        /// The sender.
        from: Addr,
        /// The destination.
        to: Addr,
        /// When it is due, in virtual nanoseconds since the start of the run.
        deliver_ns: u64,
    },
    /// A message reached its destination's receive queue.
    NetDeliver {
        /// The message's id.
        message: u64,
        /// The sender.
        from: Addr,
        /// The destination.
        to: Addr,
    },
    /// A message was dropped.
    NetDrop {
        /// The message's id.
        message: u64,
        /// The sender.
        from: Addr,
        /// The destination.
        to: Addr,
        /// Why.
        cause: DropCause,
    },
    /// A clogged link held a message.
    NetHold {
        /// The message's id.
        message: u64,
        /// The sender.
        from: Addr,
        /// The destination.
        to: Addr,
    },
    /// A network fault or setting changed (partition, heal, clog, link config, …).
    NetFault {
        /// What changed.
        action: &'static str,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.time_ns / 1_000_000_000;
        let micros = (self.time_ns % 1_000_000_000) / 1_000;
        write!(f, "#{} [{seconds:>4}.{micros:06}s node#{}] ", self.index, self.node.index())?;
        match &self.kind {
            EventKind::Spawn { task, name } => write!(f, "spawn task {task} '{name}'"),
            EventKind::Poll { task, name } => write!(f, "poll task {task} '{name}'"),
            EventKind::Advance => write!(f, "advance time"),
            EventKind::Timer { timer } => write!(f, "fire timer {timer}"),
            EventKind::Draw { value } => write!(f, "random draw {value:#018x}"),
            EventKind::Node { action } => write!(f, "node {action}"),
            EventKind::Buggify { site, fired } => write!(f, "buggify {site} fired={fired}"),
            EventKind::Clock { value } => write!(f, "clock set to {value}"),
            EventKind::NetSend { message, from, to, deliver_ns } => {
                write!(f, "net send #{message} {from} -> {to} due at {deliver_ns} ns")
            }
            EventKind::NetDeliver { message, from, to } => {
                write!(f, "net deliver #{message} {from} -> {to}")
            }
            EventKind::NetDrop { message, from, to, cause } => {
                write!(f, "net drop #{message} {from} -> {to} ({cause})")
            }
            EventKind::NetHold { message, from, to } => {
                write!(f, "net hold #{message} {from} -> {to}")
            }
            EventKind::NetFault { action } => write!(f, "net {action}"),
        }
    }
}

/// The rolling hash, the event count and, when enabled, the event log.
#[derive(Debug)]
pub(crate) struct Fingerprint {
    hash: u64,
    count: u64,
    log: Option<EventLog>,
}

/// The first `max` events of a run.
#[derive(Debug)]
pub(crate) struct EventLog {
    pub(crate) events: Vec<Event>,
    pub(crate) max: usize,
}

impl Fingerprint {
    /// A fingerprint that also logs up to `event_log_max` events (0: no log).
    pub(crate) fn new(event_log_max: usize) -> Fingerprint {
        let log = (event_log_max > 0).then(|| EventLog { events: Vec::new(), max: event_log_max });
        Fingerprint { hash: 0x6a09_e667_f3bc_c908, count: 0, log }
    }

    /// Whether events are being logged (callers skip building labels otherwise).
    pub(crate) fn logging(&self) -> bool {
        self.log.as_ref().is_some_and(|log| log.events.len() < log.max)
    }

    /// Mixes one event into the hash; logs it when the log is on and not full.
    #[inline]
    pub(crate) fn record(
        &mut self,
        time_ns: u64,
        node: NodeId,
        tag: u64,
        value: u64,
        describe: impl FnOnce() -> EventKind,
    ) {
        self.hash = mix(self.hash, tag | (u64::from(node.raw()) << 8));
        self.hash = mix(self.hash, value);
        self.hash = mix(self.hash, time_ns);
        let index = self.count;
        self.count += 1;
        if let Some(log) = &mut self.log
            && log.events.len() < log.max
        {
            log.events.push(Event { index, time_ns, node, kind: describe() });
        }
    }

    pub(crate) fn hash(&self) -> u64 {
        self.hash
    }

    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    pub(crate) fn take_log(&mut self) -> Option<EventLog> {
        let max = self.log.as_ref()?.max;
        self.log.replace(EventLog { events: Vec::new(), max })
    }
}

/// One round of a multiply-rotate mix (as in FxHash, with a final avalanche step).
#[inline]
fn mix(hash: u64, value: u64) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    (hash.rotate_left(5) ^ value).wrapping_mul(K) ^ (hash >> 29)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_matters_and_log_is_bounded() {
        let mut a = Fingerprint::new(2);
        let mut b = Fingerprint::new(0);
        a.record(0, NodeId::MAIN, tag::POLL, 1, || EventKind::Advance);
        a.record(0, NodeId::MAIN, tag::POLL, 2, || EventKind::Advance);
        a.record(0, NodeId::MAIN, tag::POLL, 3, || EventKind::Advance);
        b.record(0, NodeId::MAIN, tag::POLL, 2, || unreachable!("logging is off"));
        b.record(0, NodeId::MAIN, tag::POLL, 1, || unreachable!("logging is off"));
        b.record(0, NodeId::MAIN, tag::POLL, 3, || unreachable!("logging is off"));
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a.count(), 3);
        assert_eq!(a.take_log().unwrap().events.len(), 2);
        assert!(b.take_log().is_none());
    }
}
