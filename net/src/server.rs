//! The peer server: accepts connections, reads request frames, answers each through
//! the node's [`PeerHandler`], and closes a connection that sends bad input (with a
//! logged reason and a counter) without disturbing the others.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use cache::{Error, PeerHandler, PeerRequest, PeerResponse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinSet};

use crate::auth::{Keys, Role};
use crate::frame::{self, FrameError, FrameKind};
use crate::handshake;
use crate::session::{Opener, Sealer, Session};
use crate::stats::NetStats;

/// Connections one server keeps open at once; more are closed on accept.
pub const CONNECTION_COUNT_MAX: usize = 1024;
/// Connections still in the handshake at once; more are closed on accept, so that
/// dialers that prove nothing cannot hold every slot.
pub const HANDSHAKING_COUNT_MAX: usize = 64;
/// Requests one connection may have in progress; the server stops reading from it
/// until one ends (backpressure: a peer that does not read its answers stalls itself).
pub const REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX: usize = 256;
/// Answers queued for one connection's writer.
const RESPONSES_QUEUED_MAX: usize = 64;
/// How long one answer may take to write before the connection is closed: its peer
/// stopped reading.
pub const WRITE_TIMEOUT_MS: u64 = 10_000;
/// The read buffer's starting size.
const READ_BUFFER_BYTES: usize = 16 << 10;

/// The open connections; dropping the set (the server stopping) closes every one.
#[derive(Debug, Default)]
struct Connections {
    open: RefCell<BTreeMap<u64, AbortHandle>>,
    id_next: Cell<u64>,
}

impl Drop for Connections {
    fn drop(&mut self) {
        for handle in self.open.borrow().values() {
            handle.abort();
        }
    }
}

/// Serves peers on `listener` until the returned future is dropped (or the listener
/// fails); dropping it closes the listener and every connection it accepted, and
/// cancels the requests they had in progress.
pub(crate) async fn serve(
    listener: TcpListener,
    handler: PeerHandler,
    stats: Rc<NetStats>,
    keys: Rc<Keys>,
) {
    let connections = Rc::new(Connections::default());
    let handshaking = Rc::new(Cell::new(0usize));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: keep serving the others.
                tracing::warn!(target: "cache::net", %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let full = connections.open.borrow().len() >= CONNECTION_COUNT_MAX;
        if full || handshaking.get() >= HANDSHAKING_COUNT_MAX {
            stats.refused();
            tracing::debug!(target: "cache::net", %peer, "connection refused: too many open");
            continue;
        }
        stats.accepted();
        let id = connections.id_next.get();
        connections.id_next.set(id + 1);
        let (handler, stats_task, set) =
            (handler.clone(), stats.clone(), Rc::downgrade(&connections));
        let (keys, handshaking) = (keys.clone(), handshaking.clone());
        let task = tokio::task::spawn_local(async move {
            connection(stream, peer, handler, stats_task.clone(), &keys, &handshaking).await;
            if let Some(set) = set.upgrade() {
                set.open.borrow_mut().remove(&id);
                stats_task.set_open(set.open.borrow().len());
            }
        });
        connections.open.borrow_mut().insert(id, task.abort_handle());
        stats.set_open(connections.open.borrow().len());
    }
}

fn refuse(stats: &NetStats, peer: SocketAddr, error: &FrameError) {
    stats.bad_input(error.name());
    tracing::warn!(target: "cache::net", %peer, reason = %error, "connection closed: bad input");
}

/// Aborts a task when dropped: a connection's writer and requests end with it.
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Counts a connection among those in the handshake while it lives.
struct Handshaking<'a>(&'a Cell<usize>);

impl<'a> Handshaking<'a> {
    fn enter(count: &'a Cell<usize>) -> Handshaking<'a> {
        count.set(count.get() + 1);
        Handshaking(count)
    }
}

impl Drop for Handshaking<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// One connection: the handshake, then frames in and answers out, until it ends,
/// sends bad input, or stops reading its answers.
async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    handler: PeerHandler,
    stats: Rc<NetStats>,
    keys: &Keys,
    handshaking: &Cell<usize>,
) {
    let _ = stream.set_nodelay(true);
    let mut buffer = BytesMut::with_capacity(READ_BUFFER_BYTES);
    let entered = Handshaking::enter(handshaking);
    let (role, session) = match handshake::accept(&mut stream, &mut buffer, keys).await {
        Ok(accepted) => accepted,
        Err(error) => return refuse(&stats, peer, &error),
    };
    drop(entered);
    let Session { sealer, mut opener } = session;
    let (read, write) = stream.into_split();
    let (answers, outbox) = mpsc::channel::<BytesMut>(RESPONSES_QUEUED_MAX);
    let (stalled, writer_ended) = oneshot::channel::<()>();
    let writer = tokio::task::spawn_local(write_loop(write, outbox, sealer, stalled));
    let _writer = AbortOnDrop(writer.abort_handle());
    // Dropping the set (the connection ending, or the server stopping) cancels the
    // requests still in progress.
    let mut requests = JoinSet::new();
    let context = Serving { peer, role, handler, stats: stats.clone(), answers };
    let ended = read_loop(read, buffer, &mut opener, &context, &mut requests, writer_ended).await;
    if let Err(error) = ended {
        refuse(&stats, peer, &error);
        return;
    }
    // A clean end: let the requests in progress answer, then the writer flush.
    while requests.join_next().await.is_some() {}
    drop(context);
    let _ = writer.await;
}

/// What one connection's requests share.
struct Serving {
    peer: SocketAddr,
    role: Role,
    handler: PeerHandler,
    stats: Rc<NetStats>,
    answers: mpsc::Sender<BytesMut>,
}

/// Reads requests and starts each; stops reading while the connection has
/// [`REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX`] in progress (so a peer that does not read
/// its answers stalls itself, holding at most that many). Ends at the peer's EOF, on
/// bad input, or when the writer gave up.
async fn read_loop(
    mut read: OwnedReadHalf,
    mut buffer: BytesMut,
    opener: &mut Opener,
    context: &Serving,
    requests: &mut JoinSet<()>,
    mut writer_ended: oneshot::Receiver<()>,
) -> Result<(), FrameError> {
    loop {
        while requests.try_join_next().is_some() {}
        if requests.len() >= REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX {
            tokio::select! {
                _ = requests.join_next() => continue,
                _ = &mut writer_ended => return Ok(()),
            }
        }
        let Some(mut frame) = frame::decode(&mut buffer)? else {
            tokio::select! {
                read = read.read_buf(&mut buffer) => match read {
                    Ok(0) => return frame::finish(&buffer),
                    Ok(_) => continue,
                    Err(error) => {
                        tracing::debug!(target: "cache::net", peer = %context.peer, %error, "read failed");
                        return Ok(());
                    }
                },
                _ = &mut writer_ended => return Ok(()),
            }
        };
        opener.open(&mut frame)?;
        if frame.kind != FrameKind::Request {
            return Err(FrameError::UnknownKind { kind: frame.kind as u8 });
        }
        let request = frame::request(&frame)?;
        if context.role == Role::Client && !matches!(request, PeerRequest::Client(_)) {
            return Err(FrameError::Forbidden { kind: request.kind() });
        }
        let (handler, answers) = (context.handler.clone(), context.answers.clone());
        let stats = context.stats.clone();
        requests.spawn_local(async move {
            let response = handler.handle(request).await;
            answer(frame.request_id, &response, &answers).await;
            stats.served();
        });
    }
}

/// Writes answers until the queue closes; gives up (and says so on `stalled`) when one
/// write takes longer than [`WRITE_TIMEOUT_MS`]: a peer that stopped reading.
async fn write_loop(
    mut write: OwnedWriteHalf,
    mut outbox: mpsc::Receiver<BytesMut>,
    mut sealer: Sealer,
    stalled: oneshot::Sender<()>,
) {
    while let Some(mut frame) = outbox.recv().await {
        sealer.seal(&mut frame);
        let timeout = Duration::from_millis(WRITE_TIMEOUT_MS);
        if !matches!(tokio::time::timeout(timeout, write.write_all(&frame)).await, Ok(Ok(()))) {
            break;
        }
    }
    let _ = stalled.send(());
}

async fn answer(request_id: u64, response: &PeerResponse, answers: &mpsc::Sender<BytesMut>) {
    let mut frame = BytesMut::new();
    if let Err(error) = frame::encode(FrameKind::Response, request_id, response, &mut frame) {
        // Too large for a frame: the caller gets a failure now, not a timeout later.
        tracing::warn!(target: "cache::net", %error, "answer too large; answering with a failure");
        frame.clear();
        let failed = PeerResponse::Failed(Error::ValueTooLarge {
            value_len: match error {
                FrameError::TooLargeToSend { len } => len,
                _ => 0,
            },
            value_len_max: frame::FRAME_PAYLOAD_BYTES_MAX,
        });
        if frame::encode(FrameKind::Response, request_id, &failed, &mut frame).is_err() {
            return;
        }
    }
    let _ = answers.send(frame).await;
}
