//! The runtime boundary: the only way the cache reaches tasks, time, randomness and
//! the network.
//!
//! A node runs on one thread, so nothing here is `Send`. The `sim` adapter
//! (`sim_runtime.rs`) implements both traits on the simulator; a real runtime
//! (tokio's current-thread runtime over TCP) can implement them without touching the
//! cache's logic.

use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::time::Duration;

use crate::message::{PeerRequest, PeerResponse};

/// A boxed, single-threaded future.
pub type LocalBoxFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// Tasks, time and randomness for one node.
pub trait Runtime {
    /// Starts a background task on this node. Dropping the returned guard cancels it;
    /// [`TaskGuard::detach`] lets it run to its end.
    fn spawn(&self, name: &'static str, task: LocalBoxFuture<()>) -> TaskGuard;

    /// Monotonic time since the runtime started.
    fn elapsed(&self) -> Duration;

    /// This node's wall clock, in Unix milliseconds (TTLs and tombstone times). It may
    /// jump backwards when the clock is set back.
    fn wall_clock_ms(&self) -> u64;

    /// Completes after `duration`.
    fn sleep(&self, duration: Duration) -> LocalBoxFuture<()>;

    /// A random number from this node's stream.
    fn random_u64(&self) -> u64;

    /// Whether to take the rare path at `site` on purpose (simulation fault points;
    /// always false on a real runtime). `site` is the cache's own call site, so that
    /// the simulator switches each one on or off by itself.
    fn buggify(&self, site: &'static Location<'static>) -> bool {
        let _ = site;
        false
    }

    /// Marks an interesting state as reached, by name (a coverage point: the simulator
    /// counts them, and a sweep names those no seed reached; nothing on a real
    /// runtime).
    fn reached(&self, name: &'static str) {
        let _ = name;
    }
}

/// Requests between cache nodes.
///
/// A call is delivered to its handler at most once, as over TCP: a client write is not
/// idempotent (each coordination issues a new version), so a request handled twice
/// could apply a completed write again after a later one (keys 942 found it over a
/// network that duplicated a client's remove). Responses may be lost, never doubled.
pub trait Transport {
    /// Sends `request` to the node at `address` and waits at most `timeout` for its
    /// response.
    fn call(
        &self,
        address: &str,
        request: PeerRequest,
        timeout: Duration,
    ) -> LocalBoxFuture<Result<PeerResponse, TransportError>>;

    /// Closes whatever the transport holds open (connections to peers): the node
    /// stopped. Calls in progress fail; later calls may fail at once. The default does
    /// nothing (the simulator frees a node's ports when it is killed).
    fn shutdown(&self) {}
}

/// Why a peer request got no response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportError {
    /// No response in time (the peer may be down, partitioned or slow).
    Timeout,
    /// The peer's address is unknown or refused the request.
    Unreachable,
    /// This node's own transport is closed.
    Closed,
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Timeout => f.write_str("peer request timed out"),
            TransportError::Unreachable => f.write_str("peer is unreachable"),
            TransportError::Closed => f.write_str("transport is closed"),
        }
    }
}

impl std::error::Error for TransportError {}

/// Cancels a background task when dropped, unless detached.
#[must_use = "dropping a TaskGuard cancels its task; call detach() to let it run"]
pub struct TaskGuard {
    cancel: Option<Box<dyn FnOnce()>>,
}

impl fmt::Debug for TaskGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskGuard").field("armed", &self.cancel.is_some()).finish()
    }
}

impl TaskGuard {
    /// A guard that runs `cancel` when dropped.
    pub fn new(cancel: impl FnOnce() + 'static) -> TaskGuard {
        TaskGuard { cancel: Some(Box::new(cancel)) }
    }

    /// Lets the task run to its end.
    pub fn detach(mut self) {
        self.cancel = None;
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if let Some(cancel) = self.cancel.take() {
            cancel();
        }
    }
}
