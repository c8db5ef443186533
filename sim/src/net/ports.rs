//! Each node's port table: which ports are bound, to what, and which are reserved.

use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;

use crate::net::address::{Addr, EPHEMERAL_PORT_COUNT, EPHEMERAL_PORT_MIN, is_ephemeral};
use crate::net::error::NetError;
use crate::net::socket::Mailbox;
use crate::node::NodeId;

/// One taken port.
pub(crate) enum Port {
    /// Held for a later bind by [`crate::net::allocate_port`].
    Reserved,
    /// Bound by the socket whose binding id this is.
    Bound { binding: u64, mailbox: Rc<dyn Mailbox> },
}

impl fmt::Debug for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Port::Reserved => f.write_str("Reserved"),
            Port::Bound { binding, .. } => write!(f, "Bound({binding})"),
        }
    }
}

/// The ports of one node.
#[derive(Debug)]
pub(crate) struct NodePorts {
    node: NodeId,
    ports: BTreeMap<u16, Port>,
    /// Where the next ephemeral search starts: ports are handed out in order, like
    /// Linux's sequential allocator, so a run's ports depend on nothing but its
    /// history.
    ephemeral_next: u16,
}

impl NodePorts {
    pub(crate) fn new(node: NodeId) -> NodePorts {
        NodePorts { node, ports: BTreeMap::new(), ephemeral_next: EPHEMERAL_PORT_MIN }
    }

    /// The next port of the ephemeral range that is neither bound nor reserved.
    fn ephemeral_free(&mut self) -> Result<u16, NetError> {
        assert!(is_ephemeral(self.ephemeral_next));
        let start = u32::from(self.ephemeral_next - EPHEMERAL_PORT_MIN);
        for step in 0..EPHEMERAL_PORT_COUNT {
            let offset = (start + step) % EPHEMERAL_PORT_COUNT;
            let port = EPHEMERAL_PORT_MIN + u16::try_from(offset).expect("offset < 16384");
            if !self.ports.contains_key(&port) {
                let next = (offset + 1) % EPHEMERAL_PORT_COUNT;
                self.ephemeral_next =
                    EPHEMERAL_PORT_MIN + u16::try_from(next).expect("next < 16384");
                return Ok(port);
            }
        }
        Err(NetError::PortsExhausted { node: self.node })
    }

    /// Reserves a free ephemeral port.
    pub(crate) fn reserve(&mut self) -> Result<Addr, NetError> {
        let port = self.ephemeral_free()?;
        let previous = self.ports.insert(port, Port::Reserved);
        assert!(previous.is_none(), "an ephemeral search returns a free port");
        Ok(Addr::new(self.node, port))
    }

    /// Releases a reservation that was never bound; false when `port` is not reserved.
    pub(crate) fn release(&mut self, port: u16) -> bool {
        if matches!(self.ports.get(&port), Some(Port::Reserved)) {
            self.ports.remove(&port);
            return true;
        }
        false
    }

    /// Binds `port` (0: the next free ephemeral port). Binding a reserved port
    /// consumes the reservation.
    pub(crate) fn bind(
        &mut self,
        port: u16,
        binding: u64,
        mailbox: Rc<dyn Mailbox>,
    ) -> Result<Addr, NetError> {
        let port = if port == 0 { self.ephemeral_free()? } else { port };
        assert_ne!(port, 0);
        if let Some(Port::Bound { .. }) = self.ports.get(&port) {
            return Err(NetError::AddrInUse { addr: Addr::new(self.node, port) });
        }
        self.ports.insert(port, Port::Bound { binding, mailbox });
        Ok(Addr::new(self.node, port))
    }

    /// Frees `port` if `binding` still holds it (a killed node's ports may have been
    /// bound again by its next incarnation).
    pub(crate) fn unbind(&mut self, port: u16, binding: u64) -> Option<Rc<dyn Mailbox>> {
        match self.ports.get(&port) {
            Some(Port::Bound { binding: holder, .. }) if *holder == binding => {}
            _ => return None,
        }
        match self.ports.remove(&port) {
            Some(Port::Bound { mailbox, .. }) => Some(mailbox),
            _ => unreachable!("the port was just seen bound"),
        }
    }

    /// The mailbox bound at `port`, if any.
    pub(crate) fn mailbox(&self, port: u16) -> Option<&Rc<dyn Mailbox>> {
        match self.ports.get(&port) {
            Some(Port::Bound { mailbox, .. }) => Some(mailbox),
            _ => None,
        }
    }

    /// Frees every port (the node was killed) and returns the bound mailboxes, to be
    /// closed outside the world's borrow.
    pub(crate) fn clear(&mut self) -> Vec<Rc<dyn Mailbox>> {
        let ports = std::mem::take(&mut self.ports);
        let mailboxes: Vec<_> = ports
            .into_values()
            .filter_map(|port| match port {
                Port::Bound { mailbox, .. } => Some(mailbox),
                Port::Reserved => None,
            })
            .collect();
        assert!(self.ports.is_empty());
        mailboxes
    }
}

#[cfg(test)]
mod tests {
    use std::any::Any;
    use std::task::Waker;

    use super::*;
    use crate::net::address::EPHEMERAL_PORT_MAX;
    use crate::net::stats::DropCause;

    struct Nothing;

    impl Mailbox for Nothing {
        fn deliver(
            &self,
            _from: Addr,
            payload: Box<dyn Any>,
            _wakers: &mut Vec<Waker>,
        ) -> Result<(), (DropCause, Box<dyn Any>)> {
            Err((DropCause::WrongType, payload))
        }
        fn refuse(&self, _tag: u64, _to: Addr, _wakers: &mut Vec<Waker>) {}
        fn close(&self) {}
        fn is_closed(&self) -> bool {
            false
        }
    }

    fn mailbox() -> Rc<dyn Mailbox> {
        Rc::new(Nothing)
    }

    #[test]
    fn ephemeral_ports_go_in_order_skip_taken_and_wrap() {
        let mut ports = NodePorts::new(NodeId::MAIN);
        assert_eq!(ports.bind(0, 1, mailbox()).unwrap().port(), 49152);
        assert_eq!(ports.bind(49154, 2, mailbox()).unwrap().port(), 49154);
        assert_eq!(ports.reserve().unwrap().port(), 49153);
        assert_eq!(ports.bind(0, 3, mailbox()).unwrap().port(), 49155);
        // A freed port is not reused until the cursor comes round again.
        assert!(ports.unbind(49152, 1).is_some());
        assert_eq!(ports.bind(0, 4, mailbox()).unwrap().port(), 49156);
        ports.ephemeral_next = EPHEMERAL_PORT_MAX;
        assert_eq!(ports.bind(0, 5, mailbox()).unwrap().port(), 65535);
        assert_eq!(ports.bind(0, 6, mailbox()).unwrap().port(), 49152);
    }

    #[test]
    fn exhaustion_is_an_error_not_a_loop() {
        let mut ports = NodePorts::new(NodeId::MAIN);
        for _ in 0..EPHEMERAL_PORT_COUNT {
            ports.reserve().unwrap();
        }
        assert_eq!(ports.reserve(), Err(NetError::PortsExhausted { node: NodeId::MAIN }));
        assert!(matches!(ports.bind(0, 1, mailbox()), Err(NetError::PortsExhausted { .. })));
        // A fixed port outside the range still binds.
        assert_eq!(ports.bind(80, 1, mailbox()).unwrap().port(), 80);
    }

    #[test]
    fn reserved_port_binds_once_and_stale_unbind_is_ignored() {
        let mut ports = NodePorts::new(NodeId::MAIN);
        let addr = ports.reserve().unwrap();
        assert!(ports.mailbox(addr.port()).is_none());
        ports.bind(addr.port(), 7, mailbox()).unwrap();
        let again = ports.bind(addr.port(), 8, mailbox());
        assert_eq!(again.unwrap_err(), NetError::AddrInUse { addr });
        assert!(!ports.release(addr.port()), "a bound port is not a reservation");
        assert!(ports.unbind(addr.port(), 8).is_none(), "binding 8 never held it");
        assert!(ports.mailbox(addr.port()).is_some());
        assert_eq!(ports.clear().len(), 1);
        assert!(ports.mailbox(addr.port()).is_none());
        assert!(ports.unbind(addr.port(), 7).is_none());
    }
}
