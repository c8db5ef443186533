//! [`Error`]: what a cache operation can fail with.
//!
//! Only operating errors live here: those a caller, a peer or the network can cause. A
//! broken invariant is a bug and panics instead.

use std::borrow::Cow;
use std::fmt;

use crate::glob::PatternError;
use crate::node_id::NodeId;
use crate::options::OptionsError;

/// Why a cache operation failed.
///
/// Variants carry numbers and ids, never preformatted text, so that callers can match
/// on them and tests can compare them.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// Fewer owners acknowledged than the consistency level requires. A write that
    /// fails this way is not rolled back: the owners that acknowledged keep it.
    QuorumFailed {
        /// Acknowledgements received, the coordinator's own included.
        acks: usize,
        /// Acknowledgements the consistency level requires.
        acks_needed: usize,
    },
    /// A request to a peer got no answer in time.
    Timeout {
        /// The timeout that expired.
        timeout_ms: u64,
    },
    /// No member has this id.
    UnknownNode {
        /// The id given.
        node: NodeId,
    },
    /// The ring has no live node, so no key has an owner.
    NoOwners,
    /// The node is draining: it refuses writes and still serves reads.
    Draining,
    /// An option is out of its range.
    InvalidOption(OptionsError),
    /// A node id is empty, too long, or not one printable word.
    InvalidNodeId {
        /// The id's length in bytes.
        id_len: usize,
        /// The longest id accepted.
        id_len_max: usize,
    },
    /// A key is empty or too long.
    InvalidKey {
        /// The key's length in bytes.
        key_len: usize,
        /// The longest key accepted.
        key_len_max: usize,
    },
    /// A value is too large.
    ValueTooLarge {
        /// The value's length in bytes.
        value_len: usize,
        /// The largest value accepted.
        value_len_max: usize,
    },
    /// The store holds its maximum number of entries and the write adds a key.
    StoreFull {
        /// The maximum, items and tombstones together.
        entry_count_max: usize,
    },
    /// The membership holds its maximum number of members and the change adds one.
    MembershipFull {
        /// The maximum.
        member_count_max: usize,
    },
    /// The node is stopped: it serves nothing.
    Stopped,
    /// No owner of the key could be reached to coordinate the request.
    Unreachable {
        /// How many owners were tried.
        owners_tried: usize,
    },
    /// The node asked to coordinate does not own the key in its own view.
    NotOwner,
    /// A key pattern (for key listing) is invalid.
    InvalidPattern(PatternError),
    /// A peer answered with a response of the wrong kind (a bug or a version mismatch).
    Protocol {
        /// What was expected.
        expected: Cow<'static, str>,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::QuorumFailed { acks, acks_needed } => {
                write!(f, "quorum not reached: {acks} of {acks_needed} required acks")
            }
            Error::Timeout { timeout_ms } => write!(f, "request timed out after {timeout_ms} ms"),
            Error::UnknownNode { node } => {
                write!(f, "unknown node `{node}`: it is not in this node's membership")
            }
            Error::NoOwners => f.write_str("no owner for the key: the ring has no live node"),
            Error::Draining => {
                f.write_str("node is draining: writes are refused, reads are served")
            }
            Error::InvalidOption(error) => fmt::Display::fmt(error, f),
            Error::InvalidNodeId { id_len, id_len_max } => write!(
                f,
                "invalid node id of {id_len} bytes: accepted 1..={id_len_max} bytes \
                 without whitespace or control characters"
            ),
            Error::InvalidKey { key_len, key_len_max } => {
                write!(f, "invalid key of {key_len} bytes: accepted 1..={key_len_max} bytes")
            }
            Error::ValueTooLarge { value_len, value_len_max } => write!(
                f,
                "value of {value_len} bytes is too large: accepted up to {value_len_max} bytes"
            ),
            Error::StoreFull { entry_count_max } => write!(
                f,
                "store is full: it holds its maximum of {entry_count_max} entries \
                 (items and tombstones)"
            ),
            Error::MembershipFull { member_count_max } => {
                write!(f, "membership is full: it holds its maximum of {member_count_max} members")
            }
            Error::Stopped => f.write_str("node is stopped: start a new node to serve again"),
            Error::Unreachable { owners_tried } => write!(
                f,
                "no owner of the key could be reached ({owners_tried} tried): retry when the \
                 network heals"
            ),
            Error::NotOwner => f.write_str("this node does not own the key in its view"),
            Error::InvalidPattern(error) => fmt::Display::fmt(error, f),
            Error::Protocol { expected } => {
                write!(f, "protocol error: a peer did not answer with {expected}")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::InvalidOption(error) => Some(error),
            Error::InvalidPattern(error) => Some(error),
            _ => None,
        }
    }
}

impl From<PatternError> for Error {
    fn from(error: PatternError) -> Error {
        Error::InvalidPattern(error)
    }
}

impl From<OptionsError> for Error {
    fn from(error: OptionsError) -> Error {
        Error::InvalidOption(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_without_final_period() {
        let errors = [
            Error::QuorumFailed { acks: 1, acks_needed: 2 },
            Error::Timeout { timeout_ms: 5_000 },
            Error::UnknownNode { node: NodeId::new("n9").unwrap() },
            Error::NoOwners,
            Error::Draining,
            Error::InvalidNodeId { id_len: 0, id_len_max: 255 },
            Error::InvalidKey { key_len: 0, key_len_max: 1024 },
            Error::ValueTooLarge { value_len: 9, value_len_max: 8 },
            Error::StoreFull { entry_count_max: 4 },
            Error::MembershipFull { member_count_max: 4 },
        ];
        for error in errors {
            let message = error.to_string();
            let first = message.chars().next().unwrap();
            assert!(first.is_lowercase(), "{message}");
            assert!(!message.ends_with('.'), "{message}");
        }
    }

    #[test]
    fn quorum_failure_names_the_numbers() {
        let error = Error::QuorumFailed { acks: 1, acks_needed: 3 };
        assert_eq!(error.to_string(), "quorum not reached: 1 of 3 required acks");
    }
}
