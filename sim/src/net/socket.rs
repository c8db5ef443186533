//! A socket: one bound port and the mailbox that receives its messages. Endpoints
//! and RPC clients are sockets with different mailboxes.

use std::any::Any;
use std::fmt;
use std::hash::Hash;
use std::rc::Rc;
use std::task::Waker;

use crate::context;
use crate::net::address::Addr;
use crate::net::error::NetError;
use crate::net::network::Envelope;
use crate::net::stats::DropCause;
use crate::world::Shared;

/// Where the network puts the messages of one bound port.
///
/// The network calls `deliver` and `refuse` while it holds the world's borrow: an
/// implementation only moves data and hands wakers back, it never calls user code.
pub(crate) trait Mailbox {
    /// Takes one delivered message, pushing the wakers to wake into `wakers`; on
    /// refusal hands the payload back with the reason.
    fn deliver(
        &self,
        from: Addr,
        payload: Box<dyn Any>,
        wakers: &mut Vec<Waker>,
    ) -> Result<(), (DropCause, Box<dyn Any>)>;

    /// A message sent with refusal tag `tag` found nothing bound at `to`.
    fn refuse(&self, tag: u64, to: Addr, wakers: &mut Vec<Waker>);

    /// The socket's node was killed: fail waiters and drop queued messages. Called
    /// outside the world's borrow.
    fn close(&self);

    fn is_closed(&self) -> bool;
}

/// One bound port; dropping it frees the port.
pub(crate) struct Socket {
    shared: Rc<Shared>,
    addr: Addr,
    binding: u64,
    mailbox: Rc<dyn Mailbox>,
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket").field("addr", &self.addr).field("binding", &self.binding).finish()
    }
}

impl Socket {
    /// Binds `port` (0: an ephemeral port) on the current node.
    ///
    /// # Panics
    ///
    /// Outside a running simulation.
    #[track_caller]
    pub(crate) fn bind(port: u16, mailbox: Rc<dyn Mailbox>) -> Result<Socket, NetError> {
        let shared = context::current();
        let node = shared.current_node.get();
        let (addr, binding) = shared.net_bind(node, port, Rc::clone(&mailbox))?;
        assert_eq!(addr.node(), node);
        assert!(port == 0 || addr.port() == port);
        Ok(Socket { shared, addr, binding, mailbox })
    }

    /// The binding id: unique among every socket this simulation ever bound.
    pub(crate) fn binding(&self) -> u64 {
        self.binding
    }

    pub(crate) fn addr(&self) -> Addr {
        self.addr
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.mailbox.is_closed()
    }

    /// Puts `message` on the wire to `to`. A refusal tag asks the network to tell this
    /// socket's mailbox when nothing is bound at `to`. The payload's digest is taken
    /// here, before the world is borrowed: `Hash` is user code.
    pub(crate) fn send<T: Clone + Hash + 'static>(
        &self,
        to: Addr,
        message: T,
        refusal_tag: Option<u64>,
    ) -> Result<(), NetError> {
        if self.mailbox.is_closed() {
            return Err(NetError::Closed);
        }
        self.shared.net_send(Envelope::new(self.addr, to, message, refusal_tag));
        Ok(())
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.shared.net_unbind(self.addr, self.binding);
    }
}
