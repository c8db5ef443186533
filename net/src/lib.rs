//! The cache on a real network: the same [`cache::CacheNode`] that runs on the
//! simulator, on tokio's current-thread runtime over TCP.
//!
//! # Map of the crate
//!
//! - `frame.rs`: the wire. Length-prefixed frames with a magic, a protocol version, a
//!   kind and a request id; payloads in `postcard`; a limit per frame checked on the
//!   header; typed [`FrameError`]s.
//! - `runtime.rs`: [`TokioRuntime`], the cache's `Runtime` on tokio (tasks on the
//!   current `LocalSet`, the OS clocks).
//! - `transport.rs`: [`TcpTransport`], the cache's `Transport`: one reused connection
//!   per peer, requests multiplexed by id, a timeout per call, reconnection with a
//!   bounded backoff.
//! - `server.rs`: the peer server; a connection that sends bad input is closed with a
//!   logged reason and a counter, and the others go on.
//! - `auth.rs`: [`Secret`], [`Keys`], the mutual HMAC-SHA256 challenge–response
//!   that opens every connection; `handshake.rs` runs it on each side.
//! - `session.rs`: after the handshake, every frame carries a MAC keyed from it
//!   ([`Session`]), so the proof holds for the whole connection.
//! - `node.rs`: [`NetNode`], a node on a listener the caller bound.
//! - `client.rs`: [`Client`], the cache's client protocol against any node.
//! - `stats.rs`: [`NetStats`], the network layer's counters.
//!
//! This crate is where the cache meets the OS: it reads the OS clocks (each read is
//! allowed on its line). Nothing here is compiled by the simulator's users, and the
//! cache compiled for this crate does not contain the simulator.

#![deny(missing_docs)]

mod auth;
mod client;
pub mod frame;
pub mod handshake;
mod node;
mod runtime;
mod server;
mod session;
mod stats;
mod transport;

pub use crate::auth::{
    Keys, NONCE_BYTES, Role, SECRET_BYTES_MAX, SECRET_BYTES_MIN, Secret, SecretError,
};
pub use crate::client::{Client, ClientError};
pub use crate::frame::{FRAME_PAYLOAD_BYTES_MAX, FrameError, PROTOCOL_VERSION};
pub use crate::node::{NetNode, StartError};
pub use crate::runtime::TokioRuntime;
pub use crate::server::{
    CONNECTION_COUNT_MAX, HANDSHAKING_COUNT_MAX, REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX,
    WRITE_TIMEOUT_MS,
};
pub use crate::session::{Opener, Sealer, Session, TAG_BYTES};
pub use crate::stats::{NetStats, NetStatsSnapshot};
pub use crate::transport::{
    CONNECT_TIMEOUT_MS, PEER_COUNT_MAX, RECONNECT_BACKOFF_MS_MAX, RECONNECT_BACKOFF_MS_MIN,
    TIMEOUTS_IN_A_ROW_MAX, TcpTransport,
};
