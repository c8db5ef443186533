//! Request/response on top of endpoints: request ids, virtual-time timeouts, and a
//! server loop that answers with an async handler.
//!
//! Requests and responses travel as one message type, [`Rpc`], so rules can see and
//! pick them (`meta.downcast_ref::<Rpc<Req, Resp>>()`). Delivery is at most once per
//! copy: a duplicated request runs the handler twice, a duplicated or late response is
//! discarded by the client (see [`RpcClient::stale_responses`]). A server that models
//! a call over a reliable stream (TCP), where the network never hands one request over
//! twice, opts in to [`RpcServer::at_most_once`]: it then runs each request once.

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::future::{Future, poll_fn};
use std::hash::Hash;
use std::marker::PhantomData;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::net::address::Addr;
use crate::net::endpoint::Endpoint;
use crate::net::error::NetError;
use crate::net::socket::{Mailbox, Socket};
use crate::net::stats::DropCause;

/// Calls one client may have pending at once.
pub const CALLS_PENDING_MAX: usize = 4096;

/// Request ids an [`RpcServer::at_most_once`] server remembers to refuse duplicates:
/// a duplicate arrives within a link's latency, long before this many other requests.
pub const AT_MOST_ONCE_REQUESTS_MAX: usize = 4096;

/// The message an RPC client and server exchange.
///
/// # Determinism
///
/// `Req` and `Resp` must be [`Hash`], as for [`Endpoint`]: each request and
/// response is fingerprinted by its contents when it is sent.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Rpc<Req, Resp> {
    /// A call.
    Request {
        /// Unique in the simulation: the client's socket binding in the high 32 bits,
        /// a count of its calls (from 1) in the low ones.
        id: u64,
        /// The request.
        body: Req,
    },
    /// The answer to the request with the same id.
    Response {
        /// The request's id.
        id: u64,
        /// The response.
        body: Resp,
    },
}

/// Why a call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RpcError {
    /// No response before the deadline. A lost request, a lost response, a partition,
    /// a dead server and (by default) an absent server all look like this, as on a
    /// real network.
    Timeout,
    /// The client's node was killed.
    Closed,
    /// Nothing is bound at the server's address; only for a client that opted in with
    /// [`RpcClient::with_refused_errors`], like a refused connection.
    NoEndpoint {
        /// The address called.
        addr: Addr,
    },
    /// The client has [`CALLS_PENDING_MAX`] calls pending.
    TooManyCalls {
        /// The limit.
        max: usize,
    },
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpcError::Timeout => write!(f, "rpc timed out"),
            RpcError::Closed => write!(f, "rpc client is closed: its node was killed"),
            RpcError::NoEndpoint { addr } => {
                write!(f, "connection refused: nothing is bound at {addr}")
            }
            RpcError::TooManyCalls { max } => {
                write!(f, "too many rpc calls pending: at most {max}")
            }
        }
    }
}

impl std::error::Error for RpcError {}

/// The calling side: sends requests from its own port and matches responses by id.
///
/// # Determinism
///
/// `Req` and `Resp` must be [`Hash`]: every request is fingerprinted by its contents
/// when it is sent (see [`Endpoint`]).
///
/// ```
/// use std::time::Duration;
/// use sim::net::{RpcClient, RpcServer};
///
/// let mut sim = sim::Sim::new(3);
/// let server = sim.node("server").build();
/// let addr = sim.allocate_port(server).unwrap();
/// sim.spawn_on(server, "serve", async move {
///     let server = RpcServer::<u64, u64>::bind(addr.port()).unwrap();
///     server.serve(|_from, n| async move { n * 2 }).await;
/// })
/// .unwrap();
/// let doubled = sim
///     .block_on(async move {
///         let client = RpcClient::<u64, u64>::bind(0).unwrap();
///         client.call(addr, 21, Duration::from_secs(1)).await
///     })
///     .unwrap();
/// assert_eq!(doubled, Ok(42));
/// ```
pub struct RpcClient<Req, Resp> {
    socket: Socket,
    calls: Rc<Calls<Req, Resp>>,
    refused_errors: bool,
}

impl<Req, Resp> fmt::Debug for RpcClient<Req, Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcClient").field("addr", &self.socket.addr()).finish_non_exhaustive()
    }
}

impl<Req: Clone + Hash + 'static, Resp: Clone + Hash + 'static> RpcClient<Req, Resp> {
    /// Binds a client on the current node (port 0: an ephemeral port).
    ///
    /// # Errors
    ///
    /// As [`Endpoint::bind`].
    ///
    /// # Panics
    ///
    /// Outside a running simulation.
    #[track_caller]
    pub fn bind(port: u16) -> Result<RpcClient<Req, Resp>, NetError> {
        let calls = Rc::new(Calls::<Req, Resp>::new());
        let socket = Socket::bind(port, Rc::clone(&calls) as Rc<dyn Mailbox>)?;
        // Ids unique in the whole run, so that a server can tell a duplicate from a new
        // call of a client that rebound the same address (after a restart, say).
        calls.state.borrow_mut().id_last = socket.binding() << 32;
        Ok(RpcClient { socket, calls, refused_errors: false })
    }

    /// Opts in to [`RpcError::NoEndpoint`]: a call to a live, reachable node with
    /// nothing bound at the port fails at once instead of timing out.
    #[must_use]
    pub fn with_refused_errors(mut self, on: bool) -> RpcClient<Req, Resp> {
        self.refused_errors = on;
        self
    }

    /// Sends `request` to `to` and waits at most `timeout` of virtual time for the
    /// response. Dropping the future abandons the call; a late response is discarded.
    ///
    /// # Errors
    ///
    /// [`RpcError::Timeout`] at the deadline, [`RpcError::Closed`] when the client's
    /// node was killed, [`RpcError::NoEndpoint`] when opted in and refused,
    /// [`RpcError::TooManyCalls`] past [`CALLS_PENDING_MAX`].
    ///
    /// # Panics
    ///
    /// Outside a running simulation, or when `to` names a node this simulation does
    /// not have.
    pub async fn call(&self, to: Addr, request: Req, timeout: Duration) -> Result<Resp, RpcError> {
        let id = self.calls.register(to)?;
        let _pending = PendingGuard { calls: &self.calls, id };
        let tag = self.refused_errors.then_some(id);
        let request = Rpc::<Req, Resp>::Request { id, body: request };
        self.socket.send(to, request, tag).map_err(|_| RpcError::Closed)?;
        let response = poll_fn(|cx| self.calls.poll_outcome(id, cx));
        crate::time::timeout(timeout, response).await.unwrap_or(Err(RpcError::Timeout))
    }

    /// The client's address: servers answer here.
    pub fn local_addr(&self) -> Addr {
        self.socket.addr()
    }

    /// Calls waiting for their response.
    pub fn pending_count(&self) -> usize {
        self.calls.state.borrow().pending.len()
    }

    /// Responses that matched no pending call (late, duplicated, or from an address
    /// other than the one called) and were discarded.
    pub fn stale_responses(&self) -> u64 {
        self.calls.state.borrow().stale
    }
}

/// Removes an abandoned call, so that its response counts as stale.
struct PendingGuard<'a, Req, Resp> {
    calls: &'a Calls<Req, Resp>,
    id: u64,
}

impl<Req, Resp> Drop for PendingGuard<'_, Req, Resp> {
    fn drop(&mut self) {
        let removed = self.calls.state.borrow_mut().remove(self.id);
        drop(removed);
    }
}

struct Pending<Resp> {
    id: u64,
    to: Addr,
    waker: Option<Waker>,
    outcome: Option<Result<Resp, RpcError>>,
}

struct CallsState<Resp> {
    /// By id. Ids only grow, so a new call appends; a vector rather than a map, since
    /// a client usually has one or a few calls pending and a map would allocate a
    /// node whenever it goes from empty to one entry.
    pending: Vec<Pending<Resp>>,
    id_last: u64,
    stale: u64,
    closed: bool,
}

impl<Resp> CallsState<Resp> {
    fn find(&mut self, id: u64) -> Option<&mut Pending<Resp>> {
        let index = self.pending.binary_search_by_key(&id, |pending| pending.id).ok()?;
        Some(&mut self.pending[index])
    }

    fn remove(&mut self, id: u64) -> Option<Pending<Resp>> {
        let index = self.pending.binary_search_by_key(&id, |pending| pending.id).ok()?;
        Some(self.pending.remove(index))
    }
}

/// A client's receive side: routes each response to its pending call.
struct Calls<Req, Resp> {
    state: RefCell<CallsState<Resp>>,
    _request: PhantomData<Req>,
}

impl<Req, Resp> Calls<Req, Resp> {
    fn new() -> Calls<Req, Resp> {
        let state = CallsState { pending: Vec::new(), id_last: 0, stale: 0, closed: false };
        Calls { state: RefCell::new(state), _request: PhantomData }
    }

    fn register(&self, to: Addr) -> Result<u64, RpcError> {
        let mut state = self.state.borrow_mut();
        if state.closed {
            return Err(RpcError::Closed);
        }
        if state.pending.len() >= CALLS_PENDING_MAX {
            return Err(RpcError::TooManyCalls { max: CALLS_PENDING_MAX });
        }
        state.id_last += 1;
        let id = state.id_last;
        assert!(state.pending.last().is_none_or(|last| last.id < id), "ids only grow");
        state.pending.push(Pending { id, to, waker: None, outcome: None });
        Ok(id)
    }

    fn poll_outcome(&self, id: u64, cx: &mut Context<'_>) -> Poll<Result<Resp, RpcError>> {
        let mut state = self.state.borrow_mut();
        let pending = state.find(id).expect("a call is pending until it returns");
        if let Some(outcome) = pending.outcome.take() {
            state.remove(id);
            return Poll::Ready(outcome);
        }
        match &pending.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => pending.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Settles call `id` if it is pending on `to` and not settled yet.
    fn settle(
        &self,
        id: u64,
        to: Addr,
        outcome: Result<Resp, RpcError>,
        wakers: &mut Vec<Waker>,
    ) -> bool {
        let mut state = self.state.borrow_mut();
        match state.find(id) {
            Some(pending) if pending.to == to && pending.outcome.is_none() => {
                pending.outcome = Some(outcome);
                wakers.extend(pending.waker.take());
                true
            }
            _ => {
                state.stale += 1;
                false
            }
        }
    }
}

impl<Req: 'static, Resp: 'static> Mailbox for Calls<Req, Resp> {
    fn deliver(
        &self,
        from: Addr,
        payload: Box<dyn Any>,
        wakers: &mut Vec<Waker>,
    ) -> Result<(), (DropCause, Box<dyn Any>)> {
        assert!(!self.state.borrow().closed, "a closed client is no longer in the port table");
        let message = payload
            .downcast::<Rpc<Req, Resp>>()
            .map_err(|payload| (DropCause::WrongType, payload))?;
        match *message {
            Rpc::Response { id, body } => {
                if !self.settle(id, from, Ok(body), wakers) {
                    tracing::trace!(target: "sim::net", %from, id, "stale rpc response");
                }
                Ok(())
            }
            request @ Rpc::Request { .. } => {
                Err((DropCause::WrongType, Box::new(request) as Box<dyn Any>))
            }
        }
    }

    fn refuse(&self, tag: u64, to: Addr, wakers: &mut Vec<Waker>) {
        self.settle(tag, to, Err(RpcError::NoEndpoint { addr: to }), wakers);
    }

    fn close(&self) {
        let wakers: Vec<Waker> = {
            let mut state = self.state.borrow_mut();
            state.closed = true;
            state
                .pending
                .iter_mut()
                .filter_map(|pending| {
                    pending.outcome.get_or_insert(Err(RpcError::Closed));
                    pending.waker.take()
                })
                .collect()
        };
        for waker in wakers {
            waker.wake();
        }
    }

    fn is_closed(&self) -> bool {
        self.state.borrow().closed
    }
}

/// The answering side: an endpoint that receives [`Rpc`] requests.
///
/// # Determinism
///
/// `Req` and `Resp` must be [`Hash`]: every response is fingerprinted by its
/// contents when it is sent (see [`Endpoint`]).
pub struct RpcServer<Req, Resp> {
    endpoint: Endpoint<Rpc<Req, Resp>>,
    /// With [`RpcServer::at_most_once`]: the request ids answered lately.
    answered: Option<Answered>,
}

/// The request ids a server answered lately, oldest first, bounded by
/// [`AT_MOST_ONCE_REQUESTS_MAX`].
#[derive(Debug, Default)]
struct Answered {
    ids: std::collections::BTreeSet<u64>,
    order: std::collections::VecDeque<u64>,
}

impl Answered {
    /// Notes `id`; false when it was noted already (a duplicate).
    fn first_time(&mut self, id: u64) -> bool {
        if !self.ids.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > AT_MOST_ONCE_REQUESTS_MAX {
            let oldest = self.order.pop_front().expect("longer than the limit");
            self.ids.remove(&oldest);
        }
        assert_eq!(self.ids.len(), self.order.len());
        true
    }
}

impl<Req, Resp> fmt::Debug for RpcServer<Req, Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcServer").field("endpoint", &self.endpoint).finish()
    }
}

impl<Req: Clone + Hash + 'static, Resp: Clone + Hash + 'static> RpcServer<Req, Resp> {
    /// Binds a server on the current node.
    ///
    /// # Errors
    ///
    /// As [`Endpoint::bind`].
    ///
    /// # Panics
    ///
    /// Outside a running simulation.
    #[track_caller]
    pub fn bind(port: u16) -> Result<RpcServer<Req, Resp>, NetError> {
        Ok(RpcServer { endpoint: Endpoint::bind(port)?, answered: None })
    }

    /// Runs each request once: a duplicate of a request answered lately (the last
    /// [`AT_MOST_ONCE_REQUESTS_MAX`]) is dropped unanswered, as a reliable stream
    /// (TCP) would never have handed it over. The network's duplication faults then
    /// still reach responses (which the client discards) and plain endpoints.
    #[must_use]
    pub fn at_most_once(mut self) -> RpcServer<Req, Resp> {
        self.answered = Some(Answered::default());
        self
    }

    /// The server's address.
    pub fn local_addr(&self) -> Addr {
        self.endpoint.local_addr()
    }

    /// Answers requests with `handler(from, request)` until the endpoint closes, and
    /// returns why it stopped. Requests are handled concurrently: a handler that
    /// waits (on a timer, on another call) runs in its own task on this node, so a
    /// slow request never holds up the others.
    pub async fn serve<F, Fut>(self, handler: F) -> NetError
    where
        F: Fn(Addr, Req) -> Fut + 'static,
        Fut: Future<Output = Resp> + 'static,
    {
        let endpoint = Rc::new(self.endpoint);
        let mut answered = self.answered;
        loop {
            let (from, message) = match endpoint.recv().await {
                Ok(received) => received,
                Err(error) => return error,
            };
            let Rpc::Request { id, body } = message else {
                tracing::trace!(target: "sim::net", %from, "rpc response sent to a server, ignored");
                continue;
            };
            if answered.as_mut().is_some_and(|answered| !answered.first_time(id)) {
                tracing::trace!(target: "sim::net", %from, id, "duplicate rpc request dropped");
                continue;
            }
            let mut reply = Box::pin(handler(from, body));
            // Most handlers answer without waiting: answer those here and spare a task.
            if let Poll::Ready(body) = poll_fn(|cx| Poll::Ready(reply.as_mut().poll(cx))).await {
                // A send fails only once this node is killed; the next recv says so.
                let _ = endpoint.send_to(from, Rpc::Response { id, body });
                continue;
            }
            let endpoint = Rc::clone(&endpoint);
            drop(crate::spawn_named("rpc handler", async move {
                let body = reply.await;
                let _ = endpoint.send_to(from, Rpc::Response { id, body });
            }));
        }
    }
}
