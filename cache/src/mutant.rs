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
}

impl Mutant {
    /// Every mutant, in a fixed order.
    pub const ALL: [Mutant; 7] = [
        Mutant::SkipVersionCheck,
        Mutant::NoLamportReceive,
        Mutant::MerkleAbsenceDeletes,
        Mutant::HintDropOnError,
        Mutant::QuorumOffByOne,
        Mutant::TombstonesSweptAtOnce,
        Mutant::ReadRepairOlder,
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
