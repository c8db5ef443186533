//! [`NetNode`]: a cache node serving peers on a real TCP port.

use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;

use cache::{CacheNode, NodeConfig, Runtime};

use crate::auth::{Keys, Role};
use crate::runtime::TokioRuntime;
use crate::server;
use crate::stats::{NetStats, NetStatsSnapshot};
use crate::transport::TcpTransport;

/// Why a node could not start on the network.
#[derive(Debug)]
pub enum StartError {
    /// The listener could not be handed to tokio (or has no local address).
    Listener(std::io::Error),
    /// The cache refused the configuration.
    Node(cache::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Listener(error) => write!(f, "cannot serve on the listener: {error}"),
            StartError::Node(error) => write!(f, "cannot start the node: {error}"),
        }
    }
}

impl std::error::Error for StartError {}

/// A cache node on a real network. Dropping it stops the node, closes its listener
/// (its port is free again) and every connection it accepted, at the runtime's next
/// turn: tokio cancels a task when it next runs, not inside `drop`.
pub struct NetNode {
    node: Rc<CacheNode>,
    stats: Rc<NetStats>,
    local_addr: SocketAddr,
}

impl fmt::Debug for NetNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetNode")
            .field("id", self.node.id())
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl NetNode {
    /// Starts a node serving peers on `listener`, which the caller bound: binding
    /// once and handing the socket over leaves no moment in which another process
    /// could take the port (the reference's `AllocatePort` binds, closes and binds
    /// again). `config.address` is what peers dial; usually the listener's address.
    /// `keys` are what this node proves to its peers and asks of whoever dials it.
    ///
    /// # Errors
    ///
    /// A listener tokio cannot take, or a configuration the cache refuses.
    ///
    /// # Panics
    ///
    /// Outside a `tokio::task::LocalSet` on a current-thread runtime with time and
    /// I/O enabled.
    pub fn start(
        config: NodeConfig,
        listener: std::net::TcpListener,
        keys: Keys,
    ) -> Result<NetNode, StartError> {
        listener.set_nonblocking(true).map_err(StartError::Listener)?;
        let local_addr = listener.local_addr().map_err(StartError::Listener)?;
        let listener = tokio::net::TcpListener::from_std(listener).map_err(StartError::Listener)?;
        let stats = Rc::new(NetStats::default());
        let salt = local_addr.port().into();
        let runtime = Rc::new(TokioRuntime::new(salt));
        let keys = Rc::new(keys);
        let transport = Rc::new(TcpTransport::new(stats.clone(), keys.clone(), Role::Peer));
        let node =
            CacheNode::start(config, runtime.clone(), transport).map_err(StartError::Node)?;
        let serving = server::serve(listener, node.peer_handler(), stats.clone(), keys);
        node.attach_task(runtime.spawn("peer server", Box::pin(serving)));
        Ok(NetNode { node: Rc::new(node), stats, local_addr })
    }

    /// The cache node: its API (`set`, `get`, `remove`, `metrics`, …).
    pub fn node(&self) -> &CacheNode {
        &self.node
    }

    /// The cache node, shared (a test fixture hands it to test bodies); it stops when
    /// this `NetNode` is dropped, whoever still holds it.
    pub fn shared_node(&self) -> Rc<CacheNode> {
        self.node.clone()
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The network layer's counters.
    pub fn net_stats(&self) -> NetStatsSnapshot {
        self.stats.snapshot()
    }

    /// Stops the node (as dropping it does).
    pub fn stop(&self) {
        self.node.stop();
    }
}

impl Drop for NetNode {
    fn drop(&mut self) {
        self.node.stop();
    }
}
