//! [`Client`]: the cache's client protocol over TCP, against any node.

use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use cache::{
    ClientRequest, ClientResponse, Consistency, Item, KeyList, PeerRequest, PeerResponse,
    Transport, TransportError, Version,
};

use crate::auth::{Keys, Role, Secret};
use crate::stats::{NetStats, NetStatsSnapshot};
use crate::transport::TcpTransport;

/// Why a client call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// The node did not answer (down, unreachable, or slower than the timeout).
    Transport(TransportError),
    /// The node answered with the cache's error.
    Cache(cache::Error),
    /// The node answered with a response of the wrong kind.
    Protocol {
        /// The response's kind, as debug text.
        got: String,
    },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Transport(error) => write!(f, "{error}"),
            ClientError::Cache(error) => write!(f, "{error}"),
            ClientError::Protocol { got } => write!(f, "unexpected answer from the node: {got}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// A client of one node; every call is a request of the cache's client protocol,
/// served by that node (which coordinates or forwards it) as its own API would.
#[derive(Debug)]
pub struct Client {
    transport: TcpTransport,
    stats: Rc<NetStats>,
    address: String,
    timeout: Duration,
}

impl Client {
    /// A client of the node at `address` (`host:port`), each call waiting at most
    /// `timeout`, proving `token` when the node asks for one. Connects on the first
    /// call.
    pub fn new(address: impl Into<String>, timeout: Duration, token: Option<Secret>) -> Client {
        let stats = Rc::new(NetStats::default());
        let keys = Rc::new(Keys { cluster: None, client_token: token });
        let transport = TcpTransport::new(stats.clone(), keys, Role::Client);
        Client { transport, stats, address: address.into(), timeout }
    }

    async fn call(&self, request: ClientRequest) -> Result<ClientResponse, ClientError> {
        let request = PeerRequest::Client(request);
        match self.transport.call(&self.address, request, self.timeout).await {
            Ok(PeerResponse::Client(response)) => Ok(response),
            Ok(PeerResponse::Failed(error)) => Err(ClientError::Cache(error)),
            Ok(other) => Err(ClientError::Protocol { got: format!("{other:?}") }),
            Err(error) => Err(ClientError::Transport(error)),
        }
    }

    /// Sets `key` to `value`; returns the version written.
    ///
    /// # Errors
    ///
    /// A [`ClientError`]: no answer, or the cache's refusal (quorum failed, bad key…).
    pub async fn set(
        &self,
        key: &str,
        value: impl Into<Bytes>,
        ttl: Option<Duration>,
        consistency: Option<Consistency>,
    ) -> Result<Version, ClientError> {
        let request =
            ClientRequest::Set { key: key.to_owned(), value: value.into(), ttl, consistency };
        match self.call(request).await? {
            ClientResponse::Written(written) => written.map_err(ClientError::Cache),
            other => Err(ClientError::Protocol { got: format!("{other:?}") }),
        }
    }

    /// Reads `key`: the live item, or `None`.
    ///
    /// # Errors
    ///
    /// As [`Client::set`].
    pub async fn get(
        &self,
        key: &str,
        consistency: Option<Consistency>,
    ) -> Result<Option<Item>, ClientError> {
        match self.call(ClientRequest::Get { key: key.to_owned(), consistency }).await? {
            ClientResponse::Read(read) => read.map_err(ClientError::Cache),
            other => Err(ClientError::Protocol { got: format!("{other:?}") }),
        }
    }

    /// Removes `key` (a tombstone); returns its version.
    ///
    /// # Errors
    ///
    /// As [`Client::set`].
    pub async fn remove(
        &self,
        key: &str,
        consistency: Option<Consistency>,
    ) -> Result<Version, ClientError> {
        match self.call(ClientRequest::Remove { key: key.to_owned(), consistency }).await? {
            ClientResponse::Written(written) => written.map_err(ClientError::Cache),
            other => Err(ClientError::Protocol { got: format!("{other:?}") }),
        }
    }

    /// Lists the cluster's live keys matching `pattern` (empty for all, a glob, or a
    /// prefix), at most `max` of them (0 for no limit).
    ///
    /// # Errors
    ///
    /// As [`Client::set`]; an invalid pattern is the cache's error.
    pub async fn keys(&self, pattern: &str, max: usize) -> Result<KeyList, ClientError> {
        match self.call(ClientRequest::ListKeys { pattern: pattern.to_owned(), max }).await? {
            ClientResponse::Keys(listed) => listed.map_err(ClientError::Cache),
            other => Err(ClientError::Protocol { got: format!("{other:?}") }),
        }
    }

    /// The client's network counters.
    pub fn net_stats(&self) -> NetStatsSnapshot {
        self.stats.snapshot()
    }
}
