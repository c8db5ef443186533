//! The peer server: accepts connections, reads request frames, answers each through
//! the node's [`PeerHandler`], and closes a connection that sends bad input (with a
//! logged reason and a counter) without disturbing the others.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;

use bytes::BytesMut;
use cache::{PeerHandler, PeerRequest, PeerResponse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::auth::{Keys, Role};
use crate::frame::{self, FrameError, FrameKind};
use crate::handshake;
use crate::stats::NetStats;

/// Connections one server keeps open at once; more are closed on accept.
pub const CONNECTION_COUNT_MAX: usize = 1024;
/// Requests one connection may have in progress; a peer that sends more is cut off.
pub const REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX: usize = 4096;
/// Answers queued for one connection's writer.
const RESPONSES_QUEUED_MAX: usize = 1024;
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
/// fails); dropping it closes the listener and every connection it accepted.
pub(crate) async fn serve(
    listener: TcpListener,
    handler: PeerHandler,
    stats: Rc<NetStats>,
    keys: Rc<Keys>,
) {
    let connections = Rc::new(Connections::default());
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: keep serving the others.
                tracing::warn!(target: "cache::net", %error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        if connections.open.borrow().len() >= CONNECTION_COUNT_MAX {
            stats.refused();
            tracing::warn!(target: "cache::net", %peer, "connection refused: too many open");
            continue;
        }
        stats.accepted();
        let id = connections.id_next.get();
        connections.id_next.set(id + 1);
        let (handler, stats_task, set) =
            (handler.clone(), stats.clone(), Rc::downgrade(&connections));
        let keys = keys.clone();
        let task = tokio::task::spawn_local(async move {
            connection(stream, peer, handler, stats_task, &keys).await;
            if let Some(set) = set.upgrade() {
                set.open.borrow_mut().remove(&id);
            }
        });
        connections.open.borrow_mut().insert(id, task.abort_handle());
    }
}

fn refuse(stats: &NetStats, peer: SocketAddr, error: &FrameError) {
    stats.bad_input(error.name());
    tracing::warn!(target: "cache::net", %peer, reason = %error, "connection closed: bad input");
}

/// One connection: the handshake, then frames in and answers out, until it ends or
/// sends bad input.
async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    handler: PeerHandler,
    stats: Rc<NetStats>,
    keys: &Keys,
) {
    let _ = stream.set_nodelay(true);
    let mut buffer = BytesMut::with_capacity(READ_BUFFER_BYTES);
    let role = match handshake::accept(&mut stream, &mut buffer, keys).await {
        Ok(role) => role,
        Err(error) => return refuse(&stats, peer, &error),
    };
    let (mut read, mut write) = stream.into_split();
    let (answers, mut outbox) = mpsc::channel::<BytesMut>(RESPONSES_QUEUED_MAX);
    let writer = tokio::task::spawn_local(async move {
        while let Some(frame) = outbox.recv().await {
            if write.write_all(&frame).await.is_err() {
                break;
            }
        }
    });
    let in_flight = Rc::new(Cell::new(0usize));
    let ended = loop {
        match frame::decode(&mut buffer) {
            Ok(Some(frame)) => {
                if frame.kind != FrameKind::Request {
                    break Err(FrameError::UnknownKind { kind: frame.kind as u8 });
                }
                let request = match frame::request(&frame) {
                    Ok(request) => request,
                    Err(error) => break Err(error),
                };
                if role == Role::Client && !matches!(request, PeerRequest::Client(_)) {
                    break Err(FrameError::Forbidden { kind: request.kind() });
                }
                if in_flight.get() >= REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX {
                    tracing::warn!(target: "cache::net", %peer, "too many requests in flight");
                    break Ok(());
                }
                in_flight.set(in_flight.get() + 1);
                let (handler, answers, in_flight, stats) =
                    (handler.clone(), answers.clone(), in_flight.clone(), stats.clone());
                tokio::task::spawn_local(async move {
                    let response = handler.handle(request).await;
                    answer(frame.request_id, &response, &answers).await;
                    stats.served();
                    in_flight.set(in_flight.get() - 1);
                });
            }
            Ok(None) => match read.read_buf(&mut buffer).await {
                Ok(0) => break frame::finish(&buffer),
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(target: "cache::net", %peer, %error, "connection read failed");
                    break Ok(());
                }
            },
            Err(error) => break Err(error),
        }
    };
    if let Err(error) = ended {
        refuse(&stats, peer, &error);
        writer.abort();
        return;
    }
    drop(answers);
    // Answers still being computed hold the queue open; the writer ends with them.
    let _ = writer.await;
}

async fn answer(request_id: u64, response: &PeerResponse, answers: &mpsc::Sender<BytesMut>) {
    let mut frame = BytesMut::new();
    if let Err(error) = frame::encode(FrameKind::Response, request_id, response, &mut frame) {
        // The caller times out; the reason is logged here, where it is known.
        tracing::warn!(target: "cache::net", %error, "answer not sent");
        return;
    }
    let _ = answers.send(frame).await;
}
