//! [`Consistency`]: how many owners must answer a read or acknowledge a write.

use std::fmt;
use std::str::FromStr;

use crate::ring::REPLICATION_FACTOR_MAX;

/// How many of a key's owners must answer a read or acknowledge a write.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Consistency {
    /// One owner.
    One,
    /// A majority of the owners: `⌊n/2⌋ + 1`.
    Quorum,
    /// Every owner.
    All,
}

impl Consistency {
    /// The answers needed out of `owner_count` owners: ONE = 1, QUORUM = ⌊n/2⌋ + 1,
    /// ALL = n.
    ///
    /// The count is of the owners the ring returned for the key, which is fewer than
    /// the replication factor when the ring has fewer nodes.
    ///
    /// # Panics
    ///
    /// When `owner_count` is 0 (a key without owners has no quorum: the caller reports
    /// [`crate::Error::NoOwners`] first) or above [`REPLICATION_FACTOR_MAX`].
    pub fn required(self, owner_count: usize) -> usize {
        assert!(owner_count >= 1, "a key without owners has no quorum");
        assert!(owner_count <= REPLICATION_FACTOR_MAX);
        let required = match self {
            Consistency::One => 1,
            Consistency::Quorum => owner_count / 2 + 1,
            Consistency::All => owner_count,
        };
        assert!(required >= 1);
        assert!(required <= owner_count);
        required
    }

    /// The name, as in the reference: `"ONE"`, `"QUORUM"` or `"ALL"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::One => "ONE",
            Consistency::Quorum => "QUORUM",
            Consistency::All => "ALL",
        }
    }
}

impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A consistency name that is none of `ONE`, `QUORUM` and `ALL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseConsistencyError;

impl fmt::Display for ParseConsistencyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown consistency level: accepted ONE, QUORUM or ALL (any case)")
    }
}

impl std::error::Error for ParseConsistencyError {}

impl FromStr for Consistency {
    type Err = ParseConsistencyError;

    fn from_str(name: &str) -> Result<Consistency, ParseConsistencyError> {
        [Consistency::One, Consistency::Quorum, Consistency::All]
            .into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(name))
            .ok_or(ParseConsistencyError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_acks_table() {
        // (owners, ONE, QUORUM, ALL)
        let table = [(1, 1, 1, 1), (2, 1, 2, 2), (3, 1, 2, 3), (4, 1, 3, 4), (5, 1, 3, 5)];
        for (owners, one, quorum, all) in table {
            assert_eq!(Consistency::One.required(owners), one, "ONE of {owners}");
            assert_eq!(Consistency::Quorum.required(owners), quorum, "QUORUM of {owners}");
            assert_eq!(Consistency::All.required(owners), all, "ALL of {owners}");
        }
    }

    #[test]
    #[should_panic(expected = "a key without owners has no quorum")]
    fn required_panics_without_owners() {
        Consistency::Quorum.required(0);
    }

    #[test]
    fn parses_and_prints_names() {
        for level in [Consistency::One, Consistency::Quorum, Consistency::All] {
            assert_eq!(level.to_string().parse::<Consistency>(), Ok(level));
        }
        assert_eq!("quorum".parse::<Consistency>(), Ok(Consistency::Quorum));
        assert_eq!("two".parse::<Consistency>(), Err(ParseConsistencyError));
    }
}
