//! The network's operating errors. Misuse (an address on a node of another
//! simulation, a zero queue limit) panics instead: that is a bug, not weather.

use std::fmt;

use crate::net::address::{Addr, EPHEMERAL_PORT_MAX, EPHEMERAL_PORT_MIN};
use crate::node::NodeId;

/// Why a network call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NetError {
    /// Something is bound to the address already (or it is reserved and was bound
    /// once).
    AddrInUse {
        /// The address asked for.
        addr: Addr,
    },
    /// Every port of the node's ephemeral range is bound or reserved.
    PortsExhausted {
        /// The node.
        node: NodeId,
    },
    /// The endpoint's node was killed: the endpoint can neither send nor receive.
    Closed,
    /// No node has this id.
    UnknownNode {
        /// The id given.
        node: NodeId,
        /// How many nodes exist (ids are `0..count`).
        count: usize,
    },
    /// The node is killed: nothing can be bound or reserved on it until it restarts.
    NodeKilled {
        /// The node.
        node: NodeId,
    },
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::AddrInUse { addr } => write!(f, "address {addr} is in use"),
            NetError::PortsExhausted { node } => write!(
                f,
                "no free port on {node}: all of {EPHEMERAL_PORT_MIN}-{EPHEMERAL_PORT_MAX} are \
                 bound or reserved"
            ),
            NetError::Closed => write!(f, "endpoint is closed: its node was killed"),
            NetError::UnknownNode { node, count } => write!(
                f,
                "unknown node {node}: this simulation has nodes 0 to {}",
                count.saturating_sub(1)
            ),
            NetError::NodeKilled { node } => {
                write!(f, "cannot bind a port on {node}: it is killed (restart it first)")
            }
        }
    }
}

impl std::error::Error for NetError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_without_final_period() {
        let node = crate::node::node_id_from_index(2);
        let errors = [
            NetError::AddrInUse { addr: Addr::new(node, 80) },
            NetError::PortsExhausted { node },
            NetError::Closed,
            NetError::UnknownNode { node, count: 2 },
            NetError::NodeKilled { node },
        ];
        for error in errors {
            let message = error.to_string();
            assert!(!message.ends_with('.'), "{message}");
            assert!(message.chars().next().is_some_and(char::is_lowercase), "{message}");
        }
        assert_eq!(errors[0].to_string(), "address node#2:80 is in use");
    }
}
