//! The runtime boundary on the `sim` simulator: the only module of this crate that
//! names `sim`.
//!
//! [`start_on_sim`] runs inside a task of a simulated node: it binds the node's peer
//! server on its address's port and an RPC client on an ephemeral port, starts the
//! [`CacheNode`] and serves peers until the node is stopped or its simulated node is
//! killed (which drops every task and frees every port at once).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::panic::Location;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use sim::net::{Addr, NetError, RpcClient, RpcError, RpcServer};

use crate::error::Error;
use crate::message::{PeerRequest, PeerResponse};
use crate::node::{CacheNode, NodeConfig};
use crate::runtime::{LocalBoxFuture, Runtime, TaskGuard, Transport, TransportError};

/// Why a node could not start on the simulator.
#[derive(Debug)]
pub enum StartError {
    /// The node's address is not `name:port` of a simulated node.
    BadAddress {
        /// The address given.
        address: String,
    },
    /// The address's node is not the node this runs on.
    WrongNode {
        /// The address given.
        address: String,
    },
    /// A port could not be bound.
    Bind(NetError),
    /// The cache refused the configuration.
    Node(Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::BadAddress { address } => write!(
                f,
                "invalid node address {address:?}: expected NODE:PORT naming a simulated node, \
                 for example n1:49152"
            ),
            StartError::WrongNode { address } => {
                write!(f, "address {address:?} names another simulated node than the one running")
            }
            StartError::Bind(error) => write!(f, "cannot bind the node's port: {error}"),
            StartError::Node(error) => write!(f, "cannot start the node: {error}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Parses `name:port` into a simulated address.
///
/// # Errors
///
/// When the text is not `NODE:PORT` or names no node of the running simulation.
pub fn parse_address(handle: &sim::Handle, address: &str) -> Result<Addr, StartError> {
    let bad = || StartError::BadAddress { address: address.to_string() };
    let (name, port) = address.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let node = handle.node_id(name).ok_or_else(bad)?;
    Ok(Addr::new(node, port))
}

/// Starts a cache node on the simulated node running this task, serving peers at
/// `config.address` (its port must be free, or reserved with
/// `Handle::allocate_port`).
///
/// # Errors
///
/// A malformed address, a port in use, or a configuration the cache refuses.
///
/// # Panics
///
/// Outside a running simulation.
pub fn start_on_sim(config: NodeConfig) -> Result<CacheNode, StartError> {
    let handle = sim::Handle::current();
    let here = sim::current_node();
    let addr = parse_address(&handle, &config.address)?;
    if addr.node() != here {
        return Err(StartError::WrongNode { address: config.address });
    }
    let server = RpcServer::<PeerRequest, PeerResponse>::bind(addr.port())
        .map_err(StartError::Bind)?
        // Calls between nodes, and from clients, model requests over TCP: a request
        // is handled once (see `Transport`).
        .at_most_once();
    let client = RpcClient::<PeerRequest, PeerResponse>::bind(0).map_err(StartError::Bind)?;
    let runtime = Rc::new(SimRuntime { handle: handle.clone(), node: here });
    let transport =
        Rc::new(SimTransport { handle, client: Rc::new(client), addresses: RefCell::default() });
    let node = CacheNode::start(config, runtime.clone(), transport).map_err(StartError::Node)?;
    let handler = node.peer_handler();
    let serve = server.serve(move |_from, request| handler.handle(request));
    node.attach_task(runtime.spawn(
        "peer server",
        Box::pin(async move {
            let stopped = serve.await;
            tracing::debug!(target: "cache::sim", %stopped, "peer server stopped");
        }),
    ));
    Ok(node)
}

/// Tasks, time and randomness of one simulated node.
struct SimRuntime {
    handle: sim::Handle,
    node: sim::NodeId,
}

impl Runtime for SimRuntime {
    fn spawn(&self, name: &'static str, task: LocalBoxFuture<()>) -> TaskGuard {
        // Tasks run on the cache's own simulated node, even when a test drives the
        // node from the main task, so that killing the node stops them.
        match self.handle.spawn_on(self.node, name, task) {
            Ok(join) => TaskGuard::new(move || join.abort()),
            // A killed node runs nothing: the task is gone already.
            Err(_) => TaskGuard::new(|| {}),
        }
    }

    fn elapsed(&self) -> Duration {
        self.handle.elapsed()
    }

    fn wall_clock_ms(&self) -> u64 {
        let wall = self.handle.wall_clock(self.node).unwrap_or(UNIX_EPOCH);
        let since_epoch = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
    }

    fn sleep(&self, duration: Duration) -> LocalBoxFuture<()> {
        Box::pin(sim::time::sleep(duration))
    }

    fn random_u64(&self) -> u64 {
        sim::rand::u64()
    }

    fn buggify(&self, site: &'static Location<'static>) -> bool {
        sim::buggify_at(site)
    }

    fn reached(&self, name: &'static str) {
        // Through the handle: a harness may call into the node between steps.
        self.handle.reachable(name);
    }
}

/// Peer requests over `sim::net` RPC.
struct SimTransport {
    handle: sim::Handle,
    client: Rc<RpcClient<PeerRequest, PeerResponse>>,
    /// Parsed addresses, so that a call does not parse text.
    addresses: RefCell<BTreeMap<String, Addr>>,
}

impl SimTransport {
    fn resolve(&self, address: &str) -> Option<Addr> {
        if let Some(addr) = self.addresses.borrow().get(address) {
            return Some(*addr);
        }
        let addr = parse_address(&self.handle, address).ok()?;
        self.addresses.borrow_mut().insert(address.to_string(), addr);
        Some(addr)
    }
}

impl Transport for SimTransport {
    fn call(
        &self,
        address: &str,
        request: PeerRequest,
        timeout: Duration,
    ) -> LocalBoxFuture<Result<PeerResponse, TransportError>> {
        let client = Rc::clone(&self.client);
        let addr = self.resolve(address);
        Box::pin(async move {
            let addr = addr.ok_or(TransportError::Unreachable)?;
            client.call(addr, request, timeout).await.map_err(|error| match error {
                RpcError::Timeout => TransportError::Timeout,
                RpcError::Closed => TransportError::Closed,
                _ => TransportError::Unreachable,
            })
        })
    }
}
