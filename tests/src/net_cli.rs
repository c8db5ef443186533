//! `cachesim serve` and `cachesim client`: the cache on a real network, from the
//! command line (feature `net`).
//!
//! Exit status of `client`: 0 done, 1 the key was not found (`get`), 2 bad input, 3
//! the cluster did not do it (unreachable, refused, quorum not reached). `serve` runs
//! until interrupted (Ctrl-C or SIGTERM), then stops the node and exits 0.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cache::{Consistency, NodeConfig, NodeId, Options};
use cache_net::{Client, ClientError, Keys, NetNode, Secret};
use clap::{Args, Subcommand};
use sim_harness::say;

/// The environment variable read for the cluster secret when no file is given.
pub(crate) const SECRET_ENV: &str = "CACHESIM_SECRET";
/// The environment variable read for the client token when no file is given.
pub(crate) const CLIENT_TOKEN_ENV: &str = "CACHESIM_CLIENT_TOKEN";

/// Run one cache node on a real network until interrupted (Ctrl-C or SIGTERM). Peers
/// must prove the cluster secret; refused connections are logged (RUST_LOG, default
/// warn) and counted.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// This node's id (one printable word, for example n1)
    #[arg(long)]
    id: String,
    /// The address to listen on, HOST:PORT (port 0 picks a free port)
    #[arg(long)]
    listen: String,
    /// The address peers dial, when it is not the address bound (behind NAT, 0.0.0.0)
    #[arg(long, value_parser = host_port)]
    advertise: Option<String>,
    /// A peer, as ID@HOST:PORT; repeat for each
    #[arg(long = "peer", value_name = "ID@HOST:PORT")]
    peers: Vec<String>,
    /// A file holding the cluster secret (default: the CACHESIM_SECRET variable)
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// A file holding the token clients must prove (default: the
    /// CACHESIM_CLIENT_TOKEN variable if set; else the cluster secret)
    #[arg(long)]
    client_token_file: Option<PathBuf>,
    /// Let clients in without a token (they still send client requests only)
    #[arg(long)]
    open_clients: bool,
    /// Run with no cluster secret: any peer and any client is let in (a trial on one
    /// machine only)
    #[arg(long)]
    insecure: bool,
    /// Owners per key
    #[arg(long, default_value_t = 3)]
    replication_factor: usize,
    /// Owners that must answer a read: one, quorum or all
    #[arg(long, default_value = "one")]
    read_consistency: Consistency,
    /// Owners that must acknowledge a write: one, quorum or all
    #[arg(long, default_value = "quorum")]
    write_consistency: Consistency,
    /// How long a request to a peer may take, in milliseconds
    #[arg(long, default_value_t = 5_000)]
    rpc_timeout_ms: u64,
}

/// Set, get, remove or list keys through any node of a real cluster. Exit status: 0
/// done, 1 not found (get), 2 bad input, 3 the cluster did not do it (no answer, or a
/// refusal such as a quorum not reached).
#[derive(Debug, Args)]
pub(crate) struct ClientArgs {
    /// The node to ask, HOST:PORT (any node: it forwards as needed)
    #[arg(long, value_parser = host_port)]
    node: String,
    /// A file holding the client token (default: the CACHESIM_CLIENT_TOKEN variable if
    /// set, else the CACHESIM_SECRET variable if set)
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// How long to wait for the answer, in milliseconds (at least 1)
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    timeout_ms: u64,
    /// one, quorum or all (default: the node's own level)
    #[arg(long)]
    consistency: Option<Consistency>,
    #[command(subcommand)]
    op: ClientOp,
}

#[derive(Debug, Subcommand)]
enum ClientOp {
    /// Set KEY to VALUE
    Set {
        /// The key (1 to 1024 bytes)
        key: String,
        /// The value, stored as its UTF-8 bytes
        value: String,
        /// Time to live, in milliseconds, at least 1 (default: for ever)
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        ttl_ms: Option<u64>,
    },
    /// Print KEY's value (exit status 1 when there is none)
    Get {
        /// The key
        key: String,
    },
    /// Remove KEY (a versioned tombstone)
    Remove {
        /// The key
        key: String,
    },
    /// List the cluster's keys matching PATTERN (a glob or a prefix; all by default)
    Keys {
        /// A glob (`user:*`) or a literal prefix; empty for every key
        #[arg(default_value = "")]
        pattern: String,
        /// At most this many (0: no limit)
        #[arg(long, default_value_t = 0)]
        max: usize,
    },
}

/// An input error: the message, and exit status 2.
fn input_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

/// `HOST:PORT` with a port number, checked before anything is dialed.
fn host_port(text: &str) -> Result<String, String> {
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(text.to_owned())
        }
        _ => Err(format!("{text:?} is not HOST:PORT, for example 127.0.0.1:7001")),
    }
}

fn parse_peer(text: &str) -> Result<(NodeId, String), String> {
    let (id, address) = text.split_once('@').ok_or_else(|| {
        format!("--peer {text:?}: expected ID@HOST:PORT, for example n2@127.0.0.1:7002")
    })?;
    let id = NodeId::new(id).map_err(|error| format!("--peer {text:?}: {error}"))?;
    let address = host_port(address).map_err(|error| format!("--peer {text:?}: {error}"))?;
    Ok((id, address))
}

fn optional_secret(file: Option<&PathBuf>, variable: &str) -> Result<Option<Secret>, String> {
    match file {
        Some(path) => Secret::from_file(path).map(Some).map_err(|error| error.to_string()),
        None if std::env::var_os(variable).is_some() => {
            Secret::from_env(variable).map(Some).map_err(|error| error.to_string())
        }
        None => Ok(None),
    }
}

fn serve_keys(args: &ServeArgs) -> Result<Keys, String> {
    let cluster = optional_secret(args.secret_file.as_ref(), SECRET_ENV)?;
    let cluster = match (cluster, args.insecure) {
        (Some(_), true) => {
            return Err(
                "--insecure runs without a secret, yet a secret was given: drop one".to_owned()
            );
        }
        (None, false) => {
            return Err(format!(
                "no cluster secret: pass --secret-file PATH or set {SECRET_ENV} (the same on \
                 every node), or pass --insecure to let any peer in"
            ));
        }
        (cluster, _) => cluster,
    };
    let token = optional_secret(args.client_token_file.as_ref(), CLIENT_TOKEN_ENV)?;
    // Unless told otherwise, clients prove a secret too: without one, anyone who can
    // reach the port could read and write every key.
    let client_token = match (token, args.open_clients) {
        (Some(_), true) => {
            return Err("--open-clients lets clients in without a token, yet a token was \
                        given: drop one"
                .to_owned());
        }
        (Some(token), false) => Some(token),
        (None, true) => None,
        (None, false) => cluster.clone(),
    };
    Ok(Keys { cluster, client_token })
}

fn serve_config(args: &ServeArgs, bound: std::net::SocketAddr) -> Result<NodeConfig, String> {
    let id = NodeId::new(&args.id).map_err(|error| format!("--id {:?}: {error}", args.id))?;
    let peers = args.peers.iter().map(|peer| parse_peer(peer)).collect::<Result<Vec<_>, _>>()?;
    let mut seen = std::collections::BTreeSet::from([&id]);
    for (peer, _) in &peers {
        if !seen.insert(peer) {
            return Err(format!(
                "--peer {peer}: {} (give each peer once, and not this node itself)",
                if *peer == id { "this is the node's own id" } else { "given twice" }
            ));
        }
    }
    let address = match &args.advertise {
        Some(address) => address.clone(),
        None if bound.ip().is_unspecified() => {
            return Err(format!(
                "--listen {} is every interface: pass --advertise HOST:PORT, the address \
                 peers dial",
                args.listen
            ));
        }
        None => bound.to_string(),
    };
    let options = Options::builder()
        .replication_factor(args.replication_factor)
        .read_consistency(args.read_consistency)
        .write_consistency(args.write_consistency)
        .rpc_timeout_ms(args.rpc_timeout_ms)
        .build()
        .map_err(|error| error.to_string())?;
    Ok(NodeConfig::new(id, address, peers, options))
}

/// Logs to stderr at `RUST_LOG` (default `warn`): refused connections and handshakes,
/// failed accepts.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Runs `cachesim serve`.
pub(crate) fn serve(args: &ServeArgs) -> ExitCode {
    init_logging();
    let keys = match serve_keys(args) {
        Ok(keys) => keys,
        Err(message) => return input_error(message),
    };
    let listener = match std::net::TcpListener::bind(&args.listen) {
        Ok(listener) => listener,
        Err(error) => return input_error(format!("cannot listen on {}: {error}", args.listen)),
    };
    let bound = match listener.local_addr() {
        Ok(bound) => bound,
        Err(error) => return input_error(format!("cannot listen on {}: {error}", args.listen)),
    };
    let config = match serve_config(args, bound) {
        Ok(config) => config,
        Err(message) => return input_error(message),
    };
    let secured = keys.cluster.is_some();
    let token = match (&keys.client_token, &keys.cluster) {
        (None, _) => "none: any client gets in",
        (Some(token), Some(cluster)) if token == cluster => "the cluster secret",
        (Some(_), _) => "a token of their own",
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return input_error(format!("cannot start the runtime: {error}")),
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let (id, peer_count) = (config.id.clone(), config.peers.len());
        let node = match NetNode::start(config, listener, keys) {
            Ok(node) => node,
            Err(error) => return input_error(error),
        };
        say!(
            "serving {id} on {bound} ({peer_count} peer(s) given; cluster secret: {}; clients \
             prove: {token})",
            if secured { "yes" } else { "NO (--insecure)" },
        );
        wait_for_stop().await;
        node.stop();
        let stats = node.net_stats();
        say!(
            "stopped {id}: served {} requests on {} connections; refused {:?}",
            stats.requests_served,
            stats.connections_accepted,
            stats.bad_input
        );
        ExitCode::SUCCESS
    })
}

/// Waits for Ctrl-C or SIGTERM.
async fn wait_for_stop() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let terminated = async {
        match terminate.as_mut() {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminated => {}
    }
}

/// Runs `cachesim client`.
pub(crate) fn client(args: &ClientArgs) -> ExitCode {
    init_logging();
    // The token, else the cluster secret (what a node asks of clients by default).
    let token = optional_secret(args.token_file.as_ref(), CLIENT_TOKEN_ENV).and_then(|token| {
        token.map_or_else(|| optional_secret(None, SECRET_ENV), |token| Ok(Some(token)))
    });
    let token = match token {
        Ok(token) => token,
        Err(message) => return input_error(message),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return input_error(format!("cannot start the runtime: {error}")),
    };
    let local = tokio::task::LocalSet::new();
    let timeout = Duration::from_millis(args.timeout_ms);
    let client = Client::new(args.node.clone(), timeout, token);
    local.block_on(&runtime, run_op(&client, args))
}

async fn run_op(client: &Client, args: &ClientArgs) -> ExitCode {
    let level = args.consistency;
    let done = match &args.op {
        ClientOp::Set { key, value, ttl_ms } => {
            let ttl = ttl_ms.map(Duration::from_millis);
            let value = bytes::Bytes::from(value.clone().into_bytes());
            client.set(key, value, ttl, level).await.map(|version| {
                say!("ok: {key} written at version {version}");
            })
        }
        ClientOp::Get { key } => match client.get(key, level).await {
            Ok(Some(item)) => {
                say!("{}", String::from_utf8_lossy(&item.value));
                Ok(())
            }
            Ok(None) => {
                eprintln!("not found: {key}");
                return ExitCode::from(1);
            }
            Err(error) => Err(error),
        },
        ClientOp::Remove { key } => client.remove(key, level).await.map(|version| {
            say!("ok: {key} removed at version {version}");
        }),
        ClientOp::Keys { pattern, max } => client.keys(pattern, *max).await.map(|listed| {
            for key in &listed.keys {
                say!("{key}");
            }
            if listed.truncated {
                eprintln!("(more keys match than listed)");
            }
            if !listed.partial.is_empty() {
                eprintln!("(partial: no full answer from {:?})", listed.partial);
            }
        }),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(ClientError::Cache(error)) if is_input(&error) => input_error(error),
        Err(ClientError::Transport(error)) => {
            eprintln!("error: no answer from {}: {error}", args.node);
            ExitCode::from(3)
        }
        Err(error) => {
            eprintln!("error: {} refused: {error}", args.node);
            ExitCode::from(3)
        }
    }
}

/// The cache's refusals of the request itself (a bad key, value or pattern).
fn is_input(error: &cache::Error) -> bool {
    matches!(
        error,
        cache::Error::InvalidKey { .. }
            | cache::Error::ValueTooLarge { .. }
            | cache::Error::InvalidPattern(_)
    )
}
