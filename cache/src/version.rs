//! [`Version`] and [`LamportClock`]: what orders the writes of one key.
//!
//! Every write carries a version: a Lamport counter plus the node that issued it. The
//! reference keeps a per-node counter that never moves when a node sees a higher one
//! (§2.22 item 3), so after a primary change the new primary's writes could lose to
//! older ones. [`LamportClock::observe`] is the receive rule that fixes that: a node's
//! next version is above every version it has seen.

use std::cmp::Ordering;
use std::fmt;

use crate::node_id::NodeId;

/// The version of one write: a Lamport counter and the node that issued it.
///
/// Versions are totally ordered, and greater means newer. The counter decides first. On
/// equal counters the *smaller* origin id is newer, the reference's tie-break
/// (`chooseNewer`, §2.7), so that ported tie-break tests keep their meaning. Two
/// versions are equal only when the counter, the origin and the boot are.
///
/// The boot is the issuing node's boot id, the last tie-break: a node that restarts
/// loses its counter with its memory, and with its clock set back it can issue a
/// counter it issued before the crash. Without the boot, two different writes would
/// share one version, replicas holding either would each refuse the other, and a
/// read could pair one write's value with the other's version (swarm 6919 found it).
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Version {
    /// The Lamport counter.
    pub counter: u64,
    /// The node that issued the version.
    pub origin: NodeId,
    /// The issuing node's boot id (0 for versions made by hand).
    pub boot: u64,
}

impl Version {
    /// A version from its parts, with boot 0.
    pub fn new(counter: u64, origin: NodeId) -> Version {
        Version { counter, origin, boot: 0 }
    }

    /// Whether `self` wins over `other` under last-write-wins.
    pub fn is_newer_than(&self, other: &Version) -> bool {
        self > other
    }

    /// Whether `self` and `other` differ but share a counter: a concurrent write that
    /// the origin (or boot) tie-break decides (counted as a tie-break in the metrics).
    pub fn ties_with(&self, other: &Version) -> bool {
        self.counter == other.counter && self != other
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Version) -> Ordering {
        // Reversed origin: on a tie the smaller id is the greater (newer) version.
        self.counter
            .cmp(&other.counter)
            .then_with(|| other.origin.cmp(&self.origin))
            .then_with(|| self.boot.cmp(&other.boot))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Version) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.counter, self.origin)?;
        if self.boot != 0 {
            write!(f, "#{:x}", self.boot)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One node's Lamport clock: issues this node's versions.
///
/// The node must [`observe`](LamportClock::observe) every version it receives (a
/// forwarded write, a replica write, a read result, a repair, a hint, a migration), so
/// that what it issues next is newer than all of them.
///
/// A restarted node starts again from zero unless it is given a counter with
/// [`LamportClock::starting_at`]; until it observes its peers' versions, its writes
/// lose to the writes they have seen.
#[derive(Clone, Debug)]
pub struct LamportClock {
    node: NodeId,
    counter: u64,
    boot: u64,
}

impl LamportClock {
    /// A clock for `node` that has issued and seen nothing.
    pub fn new(node: NodeId) -> LamportClock {
        LamportClock::starting_at(node, 0)
    }

    /// A clock for `node` whose next version is above `counter` (a restarted node can
    /// resume from a persisted counter).
    pub fn starting_at(node: NodeId, counter: u64) -> LamportClock {
        LamportClock { node, counter, boot: 0 }
    }

    /// Stamps every version issued from now on with `boot`, the node's boot id, so
    /// that a restarted node never issues a version it issued before (see
    /// [`Version::boot`]).
    pub fn set_boot(&mut self, boot: u64) {
        self.boot = boot;
    }

    /// The node this clock issues versions for.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// The highest counter issued or observed so far.
    pub fn counter(&self) -> u64 {
        self.counter
    }

    /// Issues the next version of this node: newer than every version issued or
    /// observed so far.
    ///
    /// # Panics
    ///
    /// When the counter is at `u64::MAX`, which takes 2^64 writes or a corrupt peer.
    pub fn tick(&mut self) -> Version {
        assert!(self.counter < u64::MAX, "lamport counter of `{}` overflowed", self.node);
        self.counter += 1;
        let version = Version { counter: self.counter, origin: self.node.clone(), boot: self.boot };
        assert!(version.counter > 0);
        version
    }

    /// The receive rule: after this, [`tick`](LamportClock::tick) returns a version
    /// newer than `version`.
    pub fn observe(&mut self, version: &Version) {
        let counter_before = self.counter;
        self.counter = self.counter.max(version.counter);
        assert!(self.counter >= counter_before);
        assert!(self.counter >= version.counter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> NodeId {
        NodeId::new(name).unwrap()
    }

    fn version(counter: u64, origin: &str) -> Version {
        Version::new(counter, id(origin))
    }

    #[test]
    fn a_restarted_node_never_reissues_a_version() {
        let mut before = LamportClock::new(id("n1"));
        before.set_boot(1);
        let first = before.tick();
        // Restarted with its memory lost: the same counter again, another boot.
        let mut after = LamportClock::new(id("n1"));
        after.set_boot(2);
        let second = after.tick();
        assert_eq!(first.counter, second.counter);
        assert_ne!(first, second);
        assert!(first.ties_with(&second));
        assert_eq!(first.cmp(&second), second.cmp(&first).reverse());
    }

    #[test]
    fn counter_decides_first() {
        assert!(version(2, "z").is_newer_than(&version(1, "a")));
        assert!(!version(1, "a").is_newer_than(&version(2, "z")));
    }

    #[test]
    fn tie_goes_to_the_smaller_origin() {
        // The reference's chooseNewer: equal versions, lexicographically smaller origin wins.
        let low = version(7, "node-a");
        let high = version(7, "zzzz");
        assert!(low.is_newer_than(&high));
        assert!(!high.is_newer_than(&low));
        assert!(low.ties_with(&high));
        assert_eq!(low.clone().max(high.clone()), low);
    }

    #[test]
    fn order_is_total_and_consistent_with_equality() {
        let versions = [version(1, "a"), version(1, "b"), version(2, "a"), version(0, "c")];
        for a in &versions {
            for b in &versions {
                assert_eq!(a == b, a.cmp(b) == Ordering::Equal, "{a} vs {b}");
                assert_eq!(a.cmp(b), b.cmp(a).reverse(), "{a} vs {b}");
            }
        }
        assert!(!version(3, "a").ties_with(&version(3, "a")));
    }

    #[test]
    fn tick_issues_increasing_versions_for_the_node() {
        let mut clock = LamportClock::new(id("n1"));
        let first = clock.tick();
        let second = clock.tick();
        assert_eq!(first, version(1, "n1"));
        assert_eq!(second, version(2, "n1"));
        assert_eq!(clock.counter(), 2);
        assert_eq!(first.to_string(), "1@n1");
    }

    #[test]
    fn observe_jumps_past_received_versions() {
        let mut clock = LamportClock::new(id("n1"));
        clock.observe(&version(41, "n2"));
        let next = clock.tick();
        assert!(next.is_newer_than(&version(41, "n2")));
        assert_eq!(next.counter, 42);
        // An older version never moves the clock back.
        clock.observe(&version(3, "n3"));
        assert_eq!(clock.tick().counter, 43);
    }

    #[test]
    fn next_tick_beats_everything_observed_in_any_order() {
        // A small deterministic generator: each round observes a few arbitrary versions
        // from any origin, then the next tick must beat all of them, even ties.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let origins = ["a", "n1", "zz"];
        let mut clock = LamportClock::new(id("n1"));
        for _round in 0..1_000 {
            let mut seen = Vec::new();
            for _ in 0..(next() % 4) {
                let counter = next() % 10_000;
                let origin = origins[(next() % 3) as usize];
                let received = version(counter, origin);
                clock.observe(&received);
                seen.push(received);
            }
            let issued = clock.tick();
            for received in &seen {
                assert!(issued.is_newer_than(received), "{issued} vs {received}");
            }
        }
    }

    #[test]
    fn starting_at_resumes_above_the_counter() {
        let mut clock = LamportClock::starting_at(id("n1"), 100);
        assert_eq!(clock.tick().counter, 101);
    }

    #[test]
    #[should_panic(expected = "lamport counter of `n1` overflowed")]
    fn tick_panics_on_overflow() {
        let mut clock = LamportClock::starting_at(id("n1"), u64::MAX);
        clock.tick();
    }
}
