//! [`cache::Transport`] over TCP: one reused connection per peer address, requests
//! multiplexed on it by id, a timeout on every call, and reconnection with a bounded
//! exponential backoff after a failed connect.
//!
//! `Unreachable` means the request was not sent (a failed connect, a backoff, a full
//! queue); a request that went out and got no answer, in time or before its connection
//! broke, is a `Timeout`: it may have been handled.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::BytesMut;
use cache::{LocalBoxFuture, PeerRequest, PeerResponse, Transport, TransportError};
use futures::FutureExt;
use futures::channel::oneshot;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::auth::{Keys, Role};
use crate::frame::{self, FrameError, FrameKind};
use crate::handshake;
use crate::session::{Opener, Sealer, Session};
use crate::stats::NetStats;

/// The first wait after a failed connect; it doubles on each failure in a row.
pub const RECONNECT_BACKOFF_MS_MIN: u64 = 50;
/// The longest wait between connection attempts to one peer.
pub const RECONNECT_BACKOFF_MS_MAX: u64 = 2_000;
/// Peers this node keeps a connection (or a backoff) for.
pub const PEER_COUNT_MAX: usize = 1024;
/// Calls in a row without an answer in time after which a connection is closed and
/// the next call dials again.
pub const TIMEOUTS_IN_A_ROW_MAX: u32 = 3;
/// How long one request may take to write before its connection is closed.
const WRITE_TIMEOUT_MS: u64 = 10_000;
/// How long one connect and handshake may take.
pub const CONNECT_TIMEOUT_MS: u64 = 2_000;
/// Requests queued for one connection's writer; a call beyond it fails at once.
const REQUESTS_QUEUED_MAX: usize = 4096;
/// Calls awaiting an answer on one connection.
const CALLS_PENDING_MAX: usize = 4096;

/// Calls to peers over TCP.
#[derive(Debug)]
pub struct TcpTransport {
    shared: Rc<Shared>,
}

#[derive(Debug)]
struct Shared {
    peers: RefCell<BTreeMap<String, Slot>>,
    stats: Rc<NetStats>,
    keys: Rc<Keys>,
    role: Role,
}

/// A connect under way, awaited by every call that needs it.
type Dialing = futures::future::Shared<LocalBoxFuture<Result<Rc<Connection>, TransportError>>>;

enum Slot {
    Open(Rc<Connection>),
    /// A connect (and handshake) under way.
    Dialing(Dialing),
    /// The last connect failed: calls fail at once until `until`.
    Backoff {
        until: Instant,
        delay_ms: u64,
    },
}

/// One open connection: a writer task, a reader task, the calls awaiting answers.
#[derive(Debug)]
struct Connection {
    /// Frames to write, each with its call's id.
    requests: mpsc::Sender<(u64, BytesMut)>,
    pending: RefCell<BTreeMap<u64, oneshot::Sender<PeerResponse>>>,
    id_next: Cell<u64>,
    closed: Cell<bool>,
    /// Calls in a row that got no answer in time: a peer that froze without closing
    /// the connection (no RST) is given up on after [`TIMEOUTS_IN_A_ROW_MAX`].
    timeouts_in_a_row: Cell<u32>,
    tasks: RefCell<Vec<AbortHandle>>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Slot::Open(connection) => f.debug_tuple("Open").field(connection).finish(),
            Slot::Dialing(_) => f.write_str("Dialing"),
            Slot::Backoff { until, delay_ms } => {
                f.debug_struct("Backoff").field("until", until).field("delay_ms", delay_ms).finish()
            }
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        for task in self.tasks.borrow().iter() {
            task.abort();
        }
    }
}

impl Connection {
    /// Fails every call awaiting an answer (their callers see `Unreachable`).
    fn close(&self) {
        self.closed.set(true);
        self.pending.borrow_mut().clear();
        for task in self.tasks.borrow().iter() {
            task.abort();
        }
    }
}

impl TcpTransport {
    /// A transport that dials as `role`, proving that role's key from `keys`, and
    /// counts into `stats`.
    pub fn new(stats: Rc<NetStats>, keys: Rc<Keys>, role: Role) -> TcpTransport {
        let peers = RefCell::new(BTreeMap::new());
        TcpTransport { shared: Rc::new(Shared { peers, stats, keys, role }) }
    }
}

impl Shared {
    /// The open connection to `address`, connecting if there is none; `Unreachable`
    /// during a backoff or when the connect fails. Calls that arrive while a connect
    /// is under way wait for that one instead of dialing again.
    async fn connection(
        self: &Rc<Self>,
        address: &str,
        deadline: Instant,
    ) -> Result<Rc<Connection>, TransportError> {
        let (backoff_ms, dialing) = match self.peers.borrow().get(address) {
            Some(Slot::Open(connection)) if !connection.closed.get() => {
                return Ok(connection.clone());
            }
            Some(Slot::Backoff { until, .. }) if Instant::now() < *until => {
                return Err(TransportError::Unreachable);
            }
            Some(Slot::Backoff { delay_ms, .. }) => (*delay_ms, None),
            Some(Slot::Dialing(dialing)) => (0, Some(dialing.clone())),
            _ => (0, None),
        };
        let dialing = dialing.unwrap_or_else(|| {
            let dialing = self.clone().dial_task(address.to_owned(), backoff_ms);
            self.remember(address, Slot::Dialing(dialing.clone()));
            dialing
        });
        tokio::time::timeout_at(deadline, dialing).await.unwrap_or(Err(TransportError::Timeout))
    }

    /// Dials `address` in a task of its own, so that it completes (and leaves an open
    /// connection or a backoff behind) even when every caller waiting on it gave up.
    fn dial_task(self: Rc<Self>, address: String, backoff_ms: u64) -> Dialing {
        let task = tokio::task::spawn_local(async move {
            let dialed = tokio::time::timeout(
                Duration::from_millis(CONNECT_TIMEOUT_MS),
                self.dial(&address),
            )
            .await;
            match dialed {
                Ok(Ok((stream, session))) => {
                    let connection = open(stream, session, &address);
                    self.remember(&address, Slot::Open(connection.clone()));
                    Ok(connection)
                }
                Ok(Err(())) | Err(_) => {
                    self.stats.connect_failed();
                    let delay_ms =
                        (backoff_ms * 2).clamp(RECONNECT_BACKOFF_MS_MIN, RECONNECT_BACKOFF_MS_MAX);
                    let until = Instant::now() + Duration::from_millis(delay_ms);
                    self.remember(&address, Slot::Backoff { until, delay_ms });
                    Err(TransportError::Unreachable)
                }
            }
        });
        let joined: LocalBoxFuture<Result<Rc<Connection>, TransportError>> =
            Box::pin(async move { task.await.unwrap_or(Err(TransportError::Closed)) });
        joined.shared()
    }

    /// Connects and proves this side's role; a node that cannot prove the same key is
    /// refused here, before any request goes out.
    async fn dial(&self, address: &str) -> Result<(TcpStream, Session), ()> {
        let mut stream = TcpStream::connect(address).await.map_err(|_| ())?;
        let _ = stream.set_nodelay(true);
        match handshake::dial(&mut stream, &self.keys, self.role).await {
            Ok(session) => Ok((stream, session)),
            Err(error) => {
                self.stats.bad_input(error.name());
                tracing::warn!(target: "cache::net", %address, reason = %error, "handshake failed");
                Err(())
            }
        }
    }

    fn remember(&self, address: &str, slot: Slot) {
        let mut peers = self.peers.borrow_mut();
        if peers.len() >= PEER_COUNT_MAX && !peers.contains_key(address) {
            // Forget a backoff, never a connection or a connect another call is using.
            let forgettable = peers.iter().find(|(_, slot)| matches!(slot, Slot::Backoff { .. }));
            let Some(stale) = forgettable.map(|(key, _)| key.clone()) else { return };
            peers.remove(&stale);
        }
        peers.insert(address.to_owned(), slot);
    }

    async fn call_once(
        self: &Rc<Self>,
        address: String,
        request: PeerRequest,
        timeout: Duration,
    ) -> Result<PeerResponse, TransportError> {
        let deadline = Instant::now() + timeout;
        let connection = self.connection(&address, deadline).await?;
        // It may have closed while this call waited for a connect under way.
        if connection.closed.get() || connection.pending.borrow().len() >= CALLS_PENDING_MAX {
            return Err(TransportError::Unreachable);
        }
        let id = connection.id_next.get();
        connection.id_next.set(id + 1);
        let mut frame = BytesMut::new();
        if let Err(error) = frame::encode(FrameKind::Request, id, &request, &mut frame) {
            tracing::warn!(target: "cache::net", %address, %error, "request not sent");
            return Err(TransportError::Unreachable);
        }
        let (answer, answered) = oneshot::channel();
        connection.pending.borrow_mut().insert(id, answer);
        if connection.requests.try_send((id, frame)).is_err() {
            connection.pending.borrow_mut().remove(&id);
            return Err(TransportError::Unreachable);
        }
        self.stats.sent();
        match tokio::time::timeout_at(deadline, answered).await {
            Ok(Ok(response)) => {
                connection.timeouts_in_a_row.set(0);
                Ok(response)
            }
            // The connection broke after the request went out: it may have been
            // handled, so this is not `Unreachable` (which promises it was not sent).
            Ok(Err(_)) => Err(TransportError::Timeout),
            Err(_) => {
                connection.pending.borrow_mut().remove(&id);
                let in_a_row = connection.timeouts_in_a_row.get() + 1;
                connection.timeouts_in_a_row.set(in_a_row);
                if in_a_row >= TIMEOUTS_IN_A_ROW_MAX {
                    tracing::debug!(target: "cache::net", %address, "no answers: connection closed");
                    connection.close();
                }
                Err(TransportError::Timeout)
            }
        }
    }
}

impl Transport for TcpTransport {
    /// Closes every connection (their tasks end, their sockets close) and forgets every
    /// peer; a later call dials afresh.
    fn shutdown(&self) {
        let peers = std::mem::take(&mut *self.shared.peers.borrow_mut());
        for slot in peers.into_values() {
            if let Slot::Open(connection) = slot {
                connection.close();
            }
        }
    }

    fn call(
        &self,
        address: &str,
        request: PeerRequest,
        timeout: Duration,
    ) -> LocalBoxFuture<Result<PeerResponse, TransportError>> {
        let (transport, address) = (self.shared.clone(), address.to_owned());
        Box::pin(async move {
            let result = transport.call_once(address, request, timeout).await;
            match result {
                Err(TransportError::Timeout) => transport.stats.timed_out(),
                Err(_) => transport.stats.unreachable(),
                Ok(_) => {}
            }
            result
        })
    }
}

/// Starts the writer and reader tasks of a new connection.
fn open(stream: TcpStream, session: Session, address: &str) -> Rc<Connection> {
    let Session { sealer, opener } = session;
    let (read, write) = stream.into_split();
    let (requests, outbox) = mpsc::channel(REQUESTS_QUEUED_MAX);
    let connection = Rc::new(Connection {
        requests,
        pending: RefCell::new(BTreeMap::new()),
        id_next: Cell::new(0),
        closed: Cell::new(false),
        timeouts_in_a_row: Cell::new(0),
        tasks: RefCell::new(Vec::new()),
    });
    let writer =
        tokio::task::spawn_local(write_loop(write, outbox, sealer, Rc::downgrade(&connection)));
    let reader = tokio::task::spawn_local(read_loop(
        read,
        opener,
        Rc::downgrade(&connection),
        address.to_owned(),
    ));
    connection.tasks.borrow_mut().extend([writer.abort_handle(), reader.abort_handle()]);
    connection
}

/// Writes the requests of calls still waiting (a call that gave up is not sent late:
/// a forwarded write must not apply long after its client saw a timeout); closes the
/// connection when a write fails or stalls past [`WRITE_TIMEOUT_MS`].
async fn write_loop(
    mut write: OwnedWriteHalf,
    mut outbox: mpsc::Receiver<(u64, BytesMut)>,
    mut sealer: Sealer,
    connection: Weak<Connection>,
) {
    while let Some((id, mut frame)) = outbox.recv().await {
        let waiting = connection.upgrade().is_some_and(|c| c.pending.borrow().contains_key(&id));
        if !waiting {
            continue;
        }
        sealer.seal(&mut frame);
        let timeout = Duration::from_millis(WRITE_TIMEOUT_MS);
        if !matches!(tokio::time::timeout(timeout, write.write_all(&frame)).await, Ok(Ok(()))) {
            break;
        }
    }
    if let Some(connection) = connection.upgrade() {
        connection.close();
    }
}

async fn read_loop(
    mut read: OwnedReadHalf,
    mut opener: Opener,
    connection: Weak<Connection>,
    address: String,
) {
    let mut buffer = BytesMut::with_capacity(16 << 10);
    let ended: Result<(), FrameError> = loop {
        match frame::decode(&mut buffer) {
            Ok(Some(mut frame)) => {
                if let Err(error) = opener.open(&mut frame) {
                    break Err(error);
                }
                if frame.kind != FrameKind::Response {
                    break Err(FrameError::UnknownKind { kind: frame.kind as u8 });
                }
                let response = match frame::response(&frame) {
                    Ok(response) => response,
                    Err(error) => break Err(error),
                };
                let Some(connection) = connection.upgrade() else { return };
                let waiting = connection.pending.borrow_mut().remove(&frame.request_id);
                // A call that timed out is gone: its late answer is dropped.
                if let Some(waiting) = waiting {
                    let _ = waiting.send(response);
                }
            }
            Ok(None) => match read.read_buf(&mut buffer).await {
                Ok(0) => break frame::finish(&buffer),
                Ok(_) => {}
                Err(_) => break Ok(()),
            },
            Err(error) => break Err(error),
        }
    };
    if let Err(error) = ended {
        tracing::warn!(target: "cache::net", %address, reason = %error, "peer connection closed: bad input");
    }
    if let Some(connection) = connection.upgrade() {
        connection.close();
    }
}
