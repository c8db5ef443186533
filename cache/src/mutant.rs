//! Canary bugs: deliberately broken variants of the cache that prove the sweeps find
//! real bugs. Compiled in only with the `mutants` cargo feature (off by default), and
//! then only active on a node whose [`crate::NodeConfig`] names one.

use std::fmt;
use std::str::FromStr;

use crate::node::Inner;

/// A planted bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mutant {
    /// The receiver applies every write, skipping the version check.
    SkipVersionCheck,
    /// The Lamport receive rule is off: a node's counter does not jump past the
    /// versions it receives.
    NoLamportReceive,
    /// Merkle sync takes a key's absence on the peer as a delete.
    MerkleAbsenceDeletes,
    /// Hint replay drops a hint after its first failed delivery.
    HintDropOnError,
    /// A write's quorum counts one acknowledgement too many.
    QuorumOffByOne,
    /// Tombstones are swept at once instead of after their TTL.
    TombstonesSweptAtOnce,
    /// Read repair writes the oldest version it saw instead of the newest, over the
    /// coordinator's own copy without a version check (the reference's §2.8 bug).
    ReadRepairOlder,
    /// Availability: the coordinator replicates a QUORUM or ALL write to every owner
    /// as usual, then answers the client `QuorumFailed` anyway.
    WritesReportFailure,
    /// Read path: a QUORUM or ALL read returns after one answer fewer than its level
    /// needs (at least one).
    ReadQuorumShort,
    /// Replication: the coordinator sends the replica write to every owner but the
    /// last, queues no hint for that one, and counts it as acknowledged.
    ReplicateToFewer,
    /// Hint accounting: hint replay counts a failed delivery as delivered (the hint
    /// leaves the queue and counts as replayed).
    HintReplayCountsFailure,
    /// TTL: reads return expired items, and sweeps never expire items.
    TtlNeverExpires,
    /// Merkle sync compares only the first leaf: differences in every other leaf are
    /// never synced (shows only with more than one leaf).
    MerkleFirstLeafOnly,
    /// Membership change: rebalance sends nothing to a node that joined the ring (only
    /// to owners that were on the baseline ring, restarted ones included).
    JoinNoHandoff,
    /// Tombstone collection: the sweep reads the tombstone TTL as seconds on one side
    /// of the comparison (`age >= ttl / 1000`), so tombstones go 1000 times too early.
    TombstoneTtlSeconds,
    /// A repair path that silently does nothing: read repair finds the stale owners
    /// and counts them, but sends nothing.
    ReadRepairNoop,
    /// A repair path that silently does nothing: rebalance ticks plan, advance and
    /// count, but transfer nothing (and so release nothing).
    RebalanceNoop,
    /// Failure detection: peers are suspected but never declared dead (a peer silent
    /// past `dead_after_ms` is suspected instead).
    DetectorNeverDead,
    /// Failure detection: one failed direct probe declares the peer dead and removes
    /// it, without indirect probes.
    DetectorDeadOnFirstMiss,
    /// Values: a coordinator's replica write of a value longer than 1 KiB sends its
    /// first KiB only, under the write's version (a truncated frame).
    ReplicaValueTruncated,
    /// A failed write: a second after answering a quorum failure, the coordinator
    /// rolls back its own copy of the write (the replicas that acknowledged it keep
    /// theirs; those that did not get it from its hints later).
    QuorumFailureRollsBack,
    /// Hinted handoff: the replay loop never starts; hints are queued and counted, and
    /// stay queued (their books still balance).
    HintReplayNeverStarts,
    /// Bad input: a read of an empty or too long key answers "no item" instead of
    /// refusing the key.
    InvalidKeyReadsNone,
    /// Metrics: the coordinator counts the replica writes of a remove as writes of a
    /// set (a copy-paste slip): `replica_fanout_remove` stays 0.
    FanoutRemovesCountedAsSets,
    /// A repair path that silently does half its work: a merkle sync pulls what the
    /// peer holds newer but never pushes what it holds older (the peer's own syncs
    /// still repair it, later).
    MerklePullOnly,
    /// Outside any task: stopping a node (as a kill does, from a destructor) panics
    /// on a broken assertion. Proves that such a panic ends the run as a crash with its
    /// seed, and never takes a sweep down.
    PanicOnStop,
}

impl Mutant {
    /// Every mutant, in a fixed order.
    pub const ALL: [Mutant; 26] = [
        Mutant::SkipVersionCheck,
        Mutant::NoLamportReceive,
        Mutant::MerkleAbsenceDeletes,
        Mutant::HintDropOnError,
        Mutant::QuorumOffByOne,
        Mutant::TombstonesSweptAtOnce,
        Mutant::ReadRepairOlder,
        Mutant::WritesReportFailure,
        Mutant::ReadQuorumShort,
        Mutant::ReplicateToFewer,
        Mutant::HintReplayCountsFailure,
        Mutant::TtlNeverExpires,
        Mutant::MerkleFirstLeafOnly,
        Mutant::JoinNoHandoff,
        Mutant::TombstoneTtlSeconds,
        Mutant::ReadRepairNoop,
        Mutant::RebalanceNoop,
        Mutant::DetectorNeverDead,
        Mutant::DetectorDeadOnFirstMiss,
        Mutant::ReplicaValueTruncated,
        Mutant::QuorumFailureRollsBack,
        Mutant::HintReplayNeverStarts,
        Mutant::InvalidKeyReadsNone,
        Mutant::FanoutRemovesCountedAsSets,
        Mutant::MerklePullOnly,
        Mutant::PanicOnStop,
    ];

    /// The mutant's name, as the command line spells it.
    pub fn name(self) -> &'static str {
        match self {
            Mutant::SkipVersionCheck => "skip-version-check",
            Mutant::NoLamportReceive => "no-lamport-receive",
            Mutant::MerkleAbsenceDeletes => "merkle-absence-deletes",
            Mutant::HintDropOnError => "hint-drop-on-error",
            Mutant::QuorumOffByOne => "quorum-off-by-one",
            Mutant::TombstonesSweptAtOnce => "tombstones-swept-at-once",
            Mutant::ReadRepairOlder => "read-repair-older",
            Mutant::WritesReportFailure => "writes-report-failure",
            Mutant::ReadQuorumShort => "read-quorum-short",
            Mutant::ReplicateToFewer => "replicate-to-fewer",
            Mutant::HintReplayCountsFailure => "hint-replay-counts-failure",
            Mutant::TtlNeverExpires => "ttl-never-expires",
            Mutant::MerkleFirstLeafOnly => "merkle-first-leaf-only",
            Mutant::JoinNoHandoff => "join-no-handoff",
            Mutant::TombstoneTtlSeconds => "tombstone-ttl-seconds",
            Mutant::ReadRepairNoop => "read-repair-noop",
            Mutant::RebalanceNoop => "rebalance-noop",
            Mutant::DetectorNeverDead => "detector-never-dead",
            Mutant::DetectorDeadOnFirstMiss => "detector-dead-on-first-miss",
            Mutant::ReplicaValueTruncated => "replica-value-truncated",
            Mutant::QuorumFailureRollsBack => "quorum-failure-rolls-back",
            Mutant::HintReplayNeverStarts => "hint-replay-never-starts",
            Mutant::InvalidKeyReadsNone => "invalid-key-reads-none",
            Mutant::FanoutRemovesCountedAsSets => "fanout-removes-counted-as-sets",
            Mutant::MerklePullOnly => "merkle-pull-only",
            Mutant::PanicOnStop => "panic-on-stop",
        }
    }
}

impl fmt::Display for Mutant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mutant {
    type Err = String;

    fn from_str(name: &str) -> Result<Mutant, String> {
        Mutant::ALL.into_iter().find(|mutant| mutant.name() == name).ok_or_else(|| {
            let names: Vec<&str> = Mutant::ALL.iter().map(|mutant| mutant.name()).collect();
            format!("unknown mutant {name:?}: expected one of {}", names.join(", "))
        })
    }
}

impl Inner {
    /// Whether this node runs with the planted bug `mutant`; always false without the
    /// `mutants` feature.
    #[inline]
    pub(crate) fn mutant(&self, mutant: Mutant) -> bool {
        #[cfg(feature = "mutants")]
        {
            self.mutant == Some(mutant)
        }
        #[cfg(not(feature = "mutants"))]
        {
            let _ = mutant;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let names: BTreeSet<&str> = Mutant::ALL.iter().map(|mutant| mutant.name()).collect();
        assert_eq!(names.len(), Mutant::ALL.len());
        let mutants: BTreeSet<Mutant> = Mutant::ALL.into_iter().collect();
        assert_eq!(mutants.len(), Mutant::ALL.len());
        for mutant in Mutant::ALL {
            assert_eq!(mutant.name().parse::<Mutant>(), Ok(mutant));
            assert_eq!(mutant.to_string(), mutant.name());
            assert!(mutant.name().bytes().all(|byte| byte.is_ascii_lowercase() || byte == b'-'));
        }
        let error = "no-such-mutant".parse::<Mutant>().unwrap_err();
        assert!(error.starts_with("unknown mutant \"no-such-mutant\": expected one of"));
        assert!(error.contains("detector-dead-on-first-miss"), "{error}");
    }
}
