//! A virtual network: addresses and ports, typed messages, a link model with latency,
//! loss, duplication and reordering, faults, message rules, RPC, and counters.
//!
//! Messages move as Rust values (never serialised) between [`Endpoint`]s bound on
//! nodes. Each delivery is a virtual-time event: the executor jumps straight to the
//! next delivery or timer, so a quiet network costs nothing. Every decision (latency,
//! loss, duplication) is drawn from the network's own random stream and mixed into the
//! run's fingerprint, so a seed replays its network exactly.
//!
//! ```
//! use std::time::Duration;
//! use sim::net::{Endpoint, LinkConfig};
//! use sim::rand::Ratio;
//!
//! let mut sim = sim::Sim::new(7);
//! let a = sim.node("a").build();
//! let b = sim.node("b").build();
//! let b_addr = sim.allocate_port(b).unwrap();
//! sim.set_link_config(a, b, LinkConfig::DEFAULT.with_loss(Ratio::new(1, 10))).unwrap();
//! sim.spawn_on(b, "sink", async move {
//!     let endpoint = Endpoint::<u32>::bind(b_addr.port()).unwrap();
//!     while let Ok((_from, _n)) = endpoint.recv().await {}
//! })
//! .unwrap();
//! sim.spawn_on(a, "source", async move {
//!     let endpoint = Endpoint::<u32>::bind(0).unwrap();
//!     for n in 0..100 {
//!         endpoint.send_to(b_addr, n).unwrap();
//!     }
//! })
//! .unwrap();
//! sim.run_for(Duration::from_secs(1)).unwrap();
//! let link = sim.net_stats().link(a, b);
//! assert_eq!(link.sent, 100);
//! assert_eq!(link.delivered + link.dropped.loss, 100);
//! ```
//!
//! # Map of the module
//!
//! - `address.rs`: [`Addr`] (a node and a port) and the ephemeral range.
//! - `ports.rs`: each node's port table (bound, reserved, the ephemeral cursor).
//! - `socket.rs`: a bound port and its mailbox; `endpoint.rs`: [`Endpoint`].
//! - `link.rs`: [`LinkConfig`] (latency, tail, loss, duplication) and link state.
//! - `network.rs`: the network's state in the world; the send and delivery paths.
//! - `queue.rs`: messages in flight, in delivery order.
//! - `fault.rs`: partitions, clogs, link configs, rules and counters, as
//!   [`crate::Handle`] methods.
//! - `rule.rs`: message rules ([`Verdict`], [`MessageMeta`], [`RuleGuard`]).
//! - `rpc.rs`: [`RpcClient`], [`RpcServer`] and their message, [`Rpc`].
//! - `stats.rs`: [`NetStats`], [`LinkStats`], [`DropCause`].
//! - `error.rs`: [`NetError`].
//!
//! # Semantics worth knowing
//!
//! - A message to a node that is killed (or killed and restarted) after the send is
//!   dropped when it arrives; so is one whose link was cut meanwhile. Messages already
//!   in flight *from* a killed node still arrive: they had left it.
//! - A node always reaches itself: partitions never cut a node's link to itself, but
//!   that link has latency like any other unless configured otherwise.
//! - Sending never blocks and never fails on the network's account: loss is silent to
//!   the sender and counted in [`NetStats`].
//! - Traces: `SIM_LOG=sim::net=trace` prints every send, delivery, hold and drop.

mod address;
mod endpoint;
mod error;
mod fault;
mod link;
mod network;
mod ports;
mod queue;
mod rpc;
mod rule;
mod socket;
mod stats;

pub use address::{Addr, EPHEMERAL_PORT_MAX, EPHEMERAL_PORT_MIN};
pub use endpoint::{Endpoint, QUEUE_MAX_DEFAULT, WAITERS_MAX};
pub use error::NetError;
pub use link::{
    HELD_PER_LINK_MAX, LATENCY_MAX_DEFAULT, LATENCY_MIN_DEFAULT, LatencyTail, LinkConfig,
};
pub use network::IN_FLIGHT_MAX;
pub(crate) use network::Network;
pub use rpc::{AT_MOST_ONCE_REQUESTS_MAX, CALLS_PENDING_MAX, Rpc, RpcClient, RpcError, RpcServer};
pub use rule::{MessageMeta, RULES_MAX, RuleGuard, Verdict};
pub use stats::{DropCause, DropStats, LinkStats, NetStats};

use crate::context;

/// Reserves a free port in the current node's ephemeral range; see
/// [`crate::Handle::allocate_port`].
///
/// # Errors
///
/// When the ephemeral range is full.
///
/// # Panics
///
/// Outside a running simulation.
pub fn allocate_port() -> Result<Addr, NetError> {
    let shared = context::current();
    let node = shared.current_node.get();
    crate::Handle { shared }.allocate_port(node)
}
