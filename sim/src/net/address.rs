//! Addresses: a node plus a port. There are no IP addresses in the simulation.

use std::fmt;

use crate::context;
use crate::node::NodeId;

/// The first port of each node's ephemeral range (as IANA and Linux suggest).
pub const EPHEMERAL_PORT_MIN: u16 = 49152;
/// The last port of each node's ephemeral range.
pub const EPHEMERAL_PORT_MAX: u16 = 65535;
/// Ports in the ephemeral range: the bound on one ephemeral-port search.
pub(crate) const EPHEMERAL_PORT_COUNT: u32 =
    EPHEMERAL_PORT_MAX as u32 - EPHEMERAL_PORT_MIN as u32 + 1;

/// Where a message goes: a node and a port on it.
///
/// Displays as the node's name and the port, `n3:49152`, while the simulation runs
/// (inside a task or a driving call); elsewhere the name is not at hand and it falls
/// back to the node's id, `node#3:49152`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Addr {
    node: NodeId,
    port: u16,
}

impl Addr {
    /// The address of `port` on `node`.
    pub const fn new(node: NodeId, port: u16) -> Addr {
        Addr { node, port }
    }

    /// The node.
    pub const fn node(self) -> NodeId {
        self.node
    }

    /// The port.
    pub const fn port(self) -> u16 {
        self.port
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Node names live outside the world, so this works even while the world is
        // borrowed (a trace event emitted during a delivery).
        let known = context::try_with(|shared| {
            let exists =
                shared.node_names.try_borrow().is_ok_and(|names| self.node.index() < names.len());
            exists.then(|| shared.node_name(self.node))
        });
        match known.flatten() {
            Some(name) => write!(f, "{name}:{}", self.port),
            None => write!(f, "{}:{}", self.node, self.port),
        }
    }
}

/// Whether `port` lies in the ephemeral range.
pub(crate) fn is_ephemeral(port: u16) -> bool {
    port >= EPHEMERAL_PORT_MIN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_with_node_name_inside_and_id_outside() {
        let mut sim = crate::Sim::new(1);
        let node = sim.node("n3").build();
        let addr = Addr::new(node, 49152);
        assert_eq!(addr.to_string(), "node#1:49152");
        let inside = sim.block_on(async move { addr.to_string() }).unwrap();
        assert_eq!(inside, "n3:49152");
        assert_eq!(addr.node(), node);
        assert_eq!(addr.port(), 49152);
    }

    #[test]
    fn ephemeral_range_is_the_iana_one() {
        assert_eq!(EPHEMERAL_PORT_COUNT, 16384);
        assert!(is_ephemeral(EPHEMERAL_PORT_MIN));
        assert!(is_ephemeral(EPHEMERAL_PORT_MAX));
        assert!(!is_ephemeral(EPHEMERAL_PORT_MIN - 1));
    }
}
