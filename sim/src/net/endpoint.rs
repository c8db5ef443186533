//! Endpoints: a bound port that sends and receives one message type.

use std::any::Any;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::hash::Hash;
use std::marker::PhantomData;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::net::address::Addr;
use crate::net::error::NetError;
use crate::net::socket::{Mailbox, Socket};
use crate::net::stats::DropCause;

/// Messages an endpoint's receive queue holds unless configured otherwise; past it,
/// deliveries are dropped as [`DropCause::QueueFull`].
pub const QUEUE_MAX_DEFAULT: usize = 1024;
/// Tasks waiting on one endpoint at once. Every waiter is woken by each delivery; a
/// crowd this large is a bug in the caller.
pub const WAITERS_MAX: usize = 1024;

/// A bound port on the current node that sends and receives messages of type `M`.
///
/// Messages move as values, never serialised: `M` must be `Clone` so that the
/// network can duplicate them. A message of another type sent to this endpoint's
/// address is dropped at delivery and counted as [`DropCause::WrongType`].
///
/// # Determinism
///
/// `M` must be [`Hash`]: every send folds a digest of the message
/// ([`crate::fingerprint::digest`], one fixed-key hash over the payload, no
/// allocation) into the run's fingerprint, so two runs that send the same messages at
/// the same times with different contents differ, and the determinism check names the
/// send. Derive `Hash`; a manual impl must hash only what the message says (no
/// addresses, no `RandomState`), or a deterministic run looks non-deterministic.
///
/// Dropping the endpoint frees its port; killing its node frees the port and closes
/// the endpoint, after which sends and receives fail with [`NetError::Closed`].
///
/// ```
/// use sim::net::Endpoint;
///
/// let mut sim = sim::Sim::new(1);
/// let server = sim.node("server").build();
/// sim.spawn_on(server, "echo", async {
///     let endpoint = Endpoint::<String>::bind(80).unwrap();
///     loop {
///         let (from, text) = endpoint.recv().await.unwrap();
///         endpoint.send_to(from, text.to_uppercase()).unwrap();
///     }
/// })
/// .unwrap();
/// let reply = sim
///     .block_on(async move {
///         let endpoint = Endpoint::<String>::bind(0).unwrap();
///         endpoint.send_to(sim::net::Addr::new(server, 80), "hi".to_string()).unwrap();
///         endpoint.recv().await.unwrap()
///     })
///     .unwrap();
/// assert_eq!(reply.1, "HI");
/// ```
pub struct Endpoint<M> {
    socket: Socket,
    inbox: Rc<Inbox<M>>,
}

impl<M> fmt::Debug for Endpoint<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint").field("addr", &self.socket.addr()).finish_non_exhaustive()
    }
}

impl<M: Clone + Hash + 'static> Endpoint<M> {
    /// Binds `port` on the current node; port 0 takes the node's next free ephemeral
    /// port (49152–65535, in order). A port reserved by [`crate::net::allocate_port`]
    /// can be bound once.
    ///
    /// # Errors
    ///
    /// [`NetError::AddrInUse`] when the port is bound already,
    /// [`NetError::PortsExhausted`] when port 0 finds no free port.
    ///
    /// # Panics
    ///
    /// Outside a running simulation.
    #[track_caller]
    pub fn bind(port: u16) -> Result<Endpoint<M>, NetError> {
        let inbox = Rc::new(Inbox::<M>::new());
        let socket = Socket::bind(port, Rc::clone(&inbox) as Rc<dyn Mailbox>)?;
        Ok(Endpoint { socket, inbox })
    }

    /// Sends `message` to `to`. Never blocks: the message is in flight (or lost) when
    /// this returns.
    ///
    /// # Errors
    ///
    /// [`NetError::Closed`] when the endpoint's node was killed.
    ///
    /// # Panics
    ///
    /// When `to` names a node this simulation does not have (an address carried over
    /// from another run).
    pub fn send_to(&self, to: Addr, message: M) -> Result<(), NetError> {
        self.socket.send(to, message, None)
    }

    /// Waits for the next message and returns its sender and itself. Cancel-safe: a
    /// `recv` dropped before it completes (a lost `select!` branch) takes nothing.
    ///
    /// # Errors
    ///
    /// [`NetError::Closed`] when the endpoint's node was killed.
    pub async fn recv(&self) -> Result<(Addr, M), NetError> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next message; see [`Endpoint::recv`]. Several tasks may wait on
    /// one endpoint: each delivery wakes them all, and one of them gets the message.
    ///
    /// # Errors
    ///
    /// [`NetError::Closed`] when the endpoint's node was killed.
    ///
    /// # Panics
    ///
    /// When more than [`WAITERS_MAX`] tasks wait at once.
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Result<(Addr, M), NetError>> {
        let mut state = self.inbox.state.borrow_mut();
        if let Some(message) = state.queue.pop_front() {
            return Poll::Ready(Ok(message));
        }
        if state.closed {
            return Poll::Ready(Err(NetError::Closed));
        }
        if !state.waiters.iter().any(|waiter| waiter.will_wake(cx.waker())) {
            assert!(
                state.waiters.len() < WAITERS_MAX,
                "more than {WAITERS_MAX} tasks wait on one endpoint"
            );
            state.waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// The next message if one is queued, without waiting.
    ///
    /// # Errors
    ///
    /// [`NetError::Closed`] when the endpoint's node was killed.
    pub fn try_recv(&self) -> Result<Option<(Addr, M)>, NetError> {
        let mut state = self.inbox.state.borrow_mut();
        match state.queue.pop_front() {
            Some(message) => Ok(Some(message)),
            None if state.closed => Err(NetError::Closed),
            None => Ok(None),
        }
    }

    /// This endpoint's address.
    pub fn local_addr(&self) -> Addr {
        self.socket.addr()
    }

    /// Messages waiting in the receive queue.
    pub fn queue_len(&self) -> usize {
        self.inbox.state.borrow().queue.len()
    }

    /// Sets the receive-queue limit (default [`QUEUE_MAX_DEFAULT`]). Messages queued
    /// beyond a lowered limit stay; new ones are dropped until the queue drains.
    ///
    /// # Panics
    ///
    /// When `queue_max` is zero.
    pub fn set_queue_max(&self, queue_max: usize) {
        assert!(queue_max > 0, "an endpoint's receive queue must hold at least one message");
        self.inbox.state.borrow_mut().queue_max = queue_max;
    }

    /// Messages of another type than `M` sent to this endpoint, dropped at delivery
    /// (and traced at warn): a receiver that sees this grow has a peer speaking another
    /// protocol on its port.
    pub fn wrong_type_count(&self) -> u64 {
        self.inbox.state.borrow().wrong_type_count
    }

    /// Whether the endpoint's node was killed.
    pub fn is_closed(&self) -> bool {
        self.socket.is_closed()
    }
}

/// An endpoint's receive side, shared with the network's port table.
pub(crate) struct Inbox<M> {
    state: RefCell<InboxState<M>>,
    _message: PhantomData<M>,
}

struct InboxState<M> {
    queue: VecDeque<(Addr, M)>,
    queue_max: usize,
    waiters: Vec<Waker>,
    closed: bool,
    /// Messages of another type sent here, dropped.
    wrong_type_count: u64,
}

impl<M> Inbox<M> {
    fn new() -> Inbox<M> {
        let state = InboxState {
            queue: VecDeque::new(),
            queue_max: QUEUE_MAX_DEFAULT,
            waiters: Vec::new(),
            closed: false,
            wrong_type_count: 0,
        };
        Inbox { state: RefCell::new(state), _message: PhantomData }
    }
}

impl<M: 'static> Mailbox for Inbox<M> {
    fn deliver(
        &self,
        from: Addr,
        payload: Box<dyn Any>,
        wakers: &mut Vec<Waker>,
    ) -> Result<(), (DropCause, Box<dyn Any>)> {
        let mut state = self.state.borrow_mut();
        assert!(!state.closed, "a closed inbox is no longer in the port table");
        let message = payload.downcast::<M>().map_err(|payload| {
            state.wrong_type_count += 1;
            (DropCause::WrongType, payload)
        })?;
        if state.queue.len() >= state.queue_max {
            return Err((DropCause::QueueFull, message as Box<dyn Any>));
        }
        state.queue.push_back((from, *message));
        wakers.append(&mut state.waiters);
        assert!(state.waiters.is_empty());
        Ok(())
    }

    fn refuse(&self, _tag: u64, _to: Addr, _wakers: &mut Vec<Waker>) {
        // Plain endpoints never ask to hear about refusals.
    }

    fn close(&self) {
        let (queue, waiters) = {
            let mut state = self.state.borrow_mut();
            state.closed = true;
            (std::mem::take(&mut state.queue), std::mem::take(&mut state.waiters))
        };
        // Messages and wakers are released with nothing borrowed.
        drop(queue);
        for waiter in waiters {
            waiter.wake();
        }
    }

    fn is_closed(&self) -> bool {
        self.state.borrow().closed
    }
}
