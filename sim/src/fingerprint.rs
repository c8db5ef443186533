//! The run's fingerprint: a rolling hash over every scheduling decision, timer firing,
//! node event, random draw, message (with a digest of its contents) and decision a
//! node notes with [`note`], plus an optional bounded log of the same events, so that
//! two runs of one seed can be compared event by event.
//!
//! # Determinism
//!
//! A seed's fingerprint is a pure function of the seed and the code: two runs that
//! send the same messages at the same times but with different contents (a version
//! taken from a global counter, a list built in a random hasher's order) have
//! different fingerprints, and [`crate::check_determinism`] names the first message
//! whose contents differ. Message types hash with [`std::hash::Hash`] through
//! [`digest`], a fixed-key hasher: a `Hash` impl that feeds it anything that is not a
//! pure function of the value (an address, a `RandomState`) defeats the check.
//! Fingerprints are comparable on one platform and build (`usize` and the layout of
//! derived hashes may differ between them).

use std::fmt;
use std::hash::{Hash, Hasher};

use crate::context;

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
    pub(crate) const NOTE: u64 = 14;
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
        /// The payload's type, as [`std::any::type_name`] spells it.
        type_name: &'static str,
        /// The payload's [`digest`].
        digest: u64,
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
        /// The payload's [`digest`] (a message lost at send time has no send event).
        digest: u64,
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
    /// The system under test noted a decision with [`note`].
    Note {
        /// What was decided.
        label: &'static str,
        /// The value noted.
        value: u64,
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
            EventKind::NetSend { message, from, to, deliver_ns, type_name, digest } => {
                let type_name = short_type_name(type_name);
                write!(f, "net send #{message} {from} -> {to} {type_name} digest {digest:#018x}")?;
                write!(f, " due at {deliver_ns} ns")
            }
            EventKind::NetDeliver { message, from, to } => {
                write!(f, "net deliver #{message} {from} -> {to}")
            }
            EventKind::NetDrop { message, from, to, cause, digest } => {
                write!(f, "net drop #{message} {from} -> {to} ({cause}) digest {digest:#018x}")
            }
            EventKind::NetHold { message, from, to } => {
                write!(f, "net hold #{message} {from} -> {to}")
            }
            EventKind::NetFault { action } => write!(f, "net {action}"),
            EventKind::Note { label, value } => write!(f, "note {label} = {value:#x}"),
        }
    }
}

/// A type name without its module paths (`Rpc<PeerRequest, u64>`), for event logs.
fn short_type_name(name: &str) -> String {
    let mut short = String::with_capacity(name.len());
    let mut segment_start = 0;
    for c in name.chars() {
        short.push(c);
        if short.ends_with("::") {
            short.truncate(segment_start);
        } else if !(c.is_alphanumeric() || c == '_' || c == ':') {
            segment_start = short.len();
        }
    }
    short
}

/// Folds a decision of the system under test into the run's fingerprint, as an event
/// of the current node at the current virtual time; a no-op outside a simulation.
///
/// Messages are fingerprinted by their contents already; `note` is for what a node
/// decides without saying it (the leader it elected, the version it assigned, the
/// size of a batch). [`digest`] turns a hashable value into a `u64` to note.
///
/// # Determinism
///
/// `value` must be a pure function of the run: a note that differs between two runs
/// of one seed makes [`crate::check_determinism`] fail at that note, naming `label`.
///
/// ```
/// let check = sim::check_determinism(5, |sim| {
///     sim.block_on(async {
///         let leader = sim::rand::range(0..3);
///         sim::fingerprint::note("leader", leader);
///     })
///     .unwrap();
/// });
/// assert!(check.is_ok());
/// sim::fingerprint::note("outside", 1); // no simulation: nothing happens
/// ```
///
/// # Panics
///
/// When the simulation's state is borrowed already: never from a task, a message rule
/// or a payload's `Hash`, `Clone` or `Drop` (the simulator runs those unborrowed).
pub fn note(label: &'static str, value: u64) {
    context::try_with(|shared| {
        let node = shared.current_node.get();
        let now_ns = shared.now_ns.get();
        let Ok(mut world) = shared.world.try_borrow_mut() else {
            panic!("sim::fingerprint::note(\"{label}\") called while the simulation is borrowed")
        };
        let hashed = mix(digest(label), value);
        world
            .fingerprint
            .record(now_ns, node, tag::NOTE, hashed, || EventKind::Note { label, value });
    });
}

/// The digest of `value`: its [`Hash`] fed to a fixed-key hasher, the same on every
/// run (never a `RandomState`). The network fingerprints every payload with it.
///
/// ```
/// use sim::fingerprint::digest;
///
/// assert_eq!(digest(&(1u32, "a")), digest(&(1u32, "a")));
/// assert_ne!(digest(&(1u32, "a")), digest(&(2u32, "a")));
/// ```
pub fn digest<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut hasher = DigestHasher { hash: DIGEST_SEED };
    value.hash(&mut hasher);
    hasher.finish()
}

/// The digest hasher's fixed key.
const DIGEST_SEED: u64 = 0x243f_6a88_85a3_08d3;

/// FxHash-style: one multiply-rotate per 8-byte word, a murmur finaliser at the end.
/// Fast enough to run on every send; not meant to resist an adversary.
struct DigestHasher {
    hash: u64,
}

impl DigestHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(K);
    }
}

impl Hasher for DigestHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self.add(u64::from_le_bytes(word.try_into().expect("chunks of 8 bytes")));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            // The length keeps "a" and "a\0" apart.
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, value: u8) {
        self.add(u64::from(value));
    }

    #[inline]
    fn write_u16(&mut self, value: u16) {
        self.add(u64::from(value));
    }

    #[inline]
    fn write_u32(&mut self, value: u32) {
        self.add(u64::from(value));
    }

    #[inline]
    fn write_u64(&mut self, value: u64) {
        self.add(value);
    }

    #[inline]
    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        let mut hash = self.hash;
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        hash ^ (hash >> 33)
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

    #[test]
    fn digests_see_every_byte_and_are_fixed() {
        assert_eq!(digest(&0u64), digest(&0u64));
        assert_ne!(digest(&0u64), digest(&(0u64, 0u64)));
        assert_ne!(digest("a"), digest("a\0"));
        assert_ne!(digest(&[1u8; 9][..]), digest(&[1u8; 8][..]));
        assert_ne!(digest(&Some(1u32)), digest(&Some(2u32)));
        // A digest that changes between builds would change every pinned fingerprint.
        assert_eq!(digest(&42u64), 0x5e18_397c_240a_21ca, "digest of 42: {:#x}", digest(&42u64));
    }

    #[test]
    fn type_names_lose_their_paths() {
        assert_eq!(short_type_name("u64"), "u64");
        assert_eq!(short_type_name("alloc::string::String"), "String");
        assert_eq!(
            short_type_name("sim::net::rpc::Rpc<cache::message::PeerRequest, (u32, &str)>"),
            "Rpc<PeerRequest, (u32, &str)>"
        );
    }
}
