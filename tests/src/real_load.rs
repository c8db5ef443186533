//! A bounded load test on a real loopback cluster (feature `net`): clients over TCP,
//! one node killed and restarted empty midway, the history recorded and judged by the
//! simulator's history checks, and the figures a user wants (throughput, latency).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use cache::{Consistency, NodeId, Options, TransportError};
use cache_net::{Client, ClientError, Keys, Secret};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use crate::checker::{Violation, history_checks};
use crate::history::{History, MemoryLoss, OpKind, Outcome};
use crate::quiet::{QuietWindows, Window};
use crate::real_cluster::RealCluster;

/// How the load test runs.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Concurrent clients, each a task with a TCP connection to every node.
    pub clients: usize,
    /// Operations in all (sets, gets and removes at QUORUM).
    pub operations: usize,
    /// Distinct keys the operations pick from.
    pub keys: usize,
    /// How long the killed node stays down before it restarts, empty.
    pub down_for: Duration,
    /// Nodes killed at once midway, from `n3` down (1 to 3). Killing all three loses
    /// every write: the canary that proves the final check can fail.
    pub victims: usize,
    /// A planted bug every node runs with (to prove the checks catch it).
    pub mutant: Option<cache::Mutant>,
}

impl Default for LoadConfig {
    fn default() -> LoadConfig {
        LoadConfig {
            clients: 8,
            operations: 50_000,
            keys: 500,
            down_for: Duration::from_millis(500),
            victims: 1,
            mutant: None,
        }
    }
}

/// What the load test saw.
#[derive(Debug)]
pub struct LoadReport {
    /// Every operation, the kill and the final reads.
    pub history: History,
    /// What the history checks found.
    pub violations: Vec<Violation>,
    /// Wall time of the load phase (not the final reads).
    pub elapsed: Duration,
    /// Operations acknowledged, failed (refused by the cache), not sent (a refused
    /// connect or a backoff: no effect), and of unknown outcome.
    pub counts: (usize, usize, usize, usize),
    /// Latency of acknowledged operations, in microseconds: p50, p99, max.
    pub latency_us: (u64, u64, u64),
}

impl LoadReport {
    /// Acknowledged operations per wall second.
    pub fn throughput(&self) -> f64 {
        self.counts.0 as f64 / self.elapsed.as_secs_f64()
    }
}

/// The shared state of one load run.
struct Load {
    cluster: RealCluster,
    history: RefCell<History>,
    issued: Cell<usize>,
    started: Instant,
    latencies_us: RefCell<Vec<u64>>,
}

impl Load {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Runs the load test: a 3-node cluster with replication 3 on 127.0.0.1, QUORUM reads
/// and writes, `config.clients` clients; once half the operations are issued, `n3` (or
/// more, see [`LoadConfig::victims`]) is killed, and restarted empty
/// `config.down_for` later. After the load, each key is
/// read once at ALL (the probes), and the history checks judge the whole history.
///
/// # Errors
///
/// When the cluster cannot start.
pub fn run_loopback_load(config: &LoadConfig) -> Result<LoadReport, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start a runtime: {error}"))?;
    tokio::task::LocalSet::new().block_on(&runtime, run(config.clone()))
}

async fn run(config: LoadConfig) -> Result<LoadReport, String> {
    let options = Options::builder()
        .read_consistency(Consistency::Quorum)
        .write_consistency(Consistency::Quorum)
        // Anti-entropy runs a few times inside the short run, and repairs the
        // restarted node: every repair path is exercised, not only read repair.
        .merkle_sync_interval_ms(300);
    let secret =
        Secret::new(b"the load test's cluster secret".to_vec()).map_err(|e| e.to_string())?;
    let keys = Keys { cluster: Some(secret), client_token: None };
    let cluster = RealCluster::start_mutant(3, 3, options, keys, config.mutant)
        .map_err(|error| error.to_string())?;
    // Real time for a real network's history (never inside a simulation).
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let load = Rc::new(Load {
        cluster,
        history: RefCell::new(History::default()),
        issued: Cell::new(0),
        started,
        latencies_us: RefCell::new(Vec::new()),
    });
    let clients: Vec<_> = (0..config.clients)
        .map(|client| tokio::task::spawn_local(client_loop(load.clone(), config.clone(), client)))
        .collect();
    let (killed_ns, restarted_ns) = nemesis(&load, &config).await?;
    for client in clients {
        client.await.map_err(|error| format!("a client task failed: {error}"))?;
    }
    let elapsed = load.started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    probe(&load, &config).await;
    let end_ns = load.now_ns();
    // After the restart, a client may still wait out its reconnect backoff to n3.
    let settled_ns = restarted_ns + (cache_net::RECONNECT_BACKOFF_MS_MAX + 1_000) * 1_000_000;
    let windows = QuietWindows::from_windows(vec![
        Window { start_ns: 0, end_ns: killed_ns },
        Window { start_ns: settled_ns.min(end_ns), end_ns },
    ]);
    let history = load.history.borrow().clone();
    let violations = history_checks(&history, 3, &windows);
    Ok(LoadReport {
        counts: counts(&history),
        latency_us: percentiles(&mut load.latencies_us.borrow_mut()),
        history,
        violations,
        elapsed,
    })
}

/// Kills the last `config.victims` nodes once half the operations are issued, and
/// restarts them empty `config.down_for` later.
async fn nemesis(load: &Rc<Load>, config: &LoadConfig) -> Result<(u64, u64), String> {
    assert!((1..=3).contains(&config.victims), "1 to 3 victims");
    while load.issued.get() < config.operations / 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ids = load.cluster.ids();
    let victims = &ids[ids.len() - config.victims..];
    let killed_ns = load.now_ns();
    for victim in victims {
        load.cluster.kill(victim).map_err(|error| error.to_string())?;
        let loss = MemoryLoss { node: victim.clone(), at_ns: killed_ns };
        load.history.borrow_mut().memory_losses.push(loss);
    }
    tokio::time::sleep(config.down_for).await;
    for victim in victims {
        load.cluster.restart(victim).await.map_err(|error| error.to_string())?;
    }
    Ok((killed_ns, load.now_ns()))
}

fn clients_of(load: &Load, timeout: Duration) -> Vec<(NodeId, Client)> {
    load.cluster
        .ids()
        .into_iter()
        .map(|id| {
            let address = load.cluster.address(&id).expect("a member").to_owned();
            (id, Client::new(address, timeout, None))
        })
        .collect()
}

async fn client_loop(load: Rc<Load>, config: LoadConfig, client: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(client as u64);
    let nodes = clients_of(&load, Duration::from_secs(2));
    let mut seq = 0u64;
    loop {
        let issued = load.issued.get();
        if issued >= config.operations {
            return;
        }
        load.issued.set(issued + 1);
        let key = format!("key{}", rng.next_u32() as usize % config.keys);
        let (target, node) = &nodes[rng.next_u32() as usize % nodes.len()];
        let kind = match rng.next_u32() % 20 {
            0..=8 => OpKind::Set { value: format!("c{client}-{seq}"), ttl_ms: None },
            9..=17 => OpKind::Get,
            _ => OpKind::Remove,
        };
        seq += 1;
        one_op(&load, client, target, node, key, kind, Consistency::Quorum).await;
        // A call that fails at once (a backoff) never yields: let the others run.
        tokio::task::yield_now().await;
    }
}

/// Issues one operation and records it.
async fn one_op(
    load: &Load,
    client: usize,
    target: &NodeId,
    node: &Client,
    key: String,
    kind: OpKind,
    level: Consistency,
) {
    let invoke_ns = load.now_ns();
    let index = load.history.borrow_mut().invoke(
        client,
        target.clone(),
        key.clone(),
        kind.clone(),
        level,
        invoke_ns,
    );
    let outcome = match &kind {
        OpKind::Set { value, .. } => {
            let value = bytes::Bytes::from(value.clone().into_bytes());
            written(node.set(&key, value, None, Some(level)).await)
        }
        OpKind::Remove => written(node.remove(&key, Some(level)).await),
        OpKind::Get => match node.get(&key, Some(level)).await {
            Ok(item) => Outcome::Ok {
                version: item.as_ref().map(|item| item.version.clone()),
                value: item.map(|item| String::from_utf8_lossy(&item.value).into_owned()),
            },
            Err(error) => failed(error),
        },
        OpKind::ListKeys { .. } => unreachable!("the load test lists no keys"),
    };
    let complete_ns = load.now_ns();
    if matches!(outcome, Outcome::Ok { .. }) {
        load.latencies_us.borrow_mut().push((complete_ns - invoke_ns) / 1_000);
    }
    load.history.borrow_mut().complete(index, complete_ns, outcome, Vec::new());
}

fn written(result: Result<cache::Version, ClientError>) -> Outcome {
    match result {
        Ok(version) => Outcome::Ok { version: Some(version), value: None },
        Err(error) => failed(error),
    }
}

/// A request that timed out, or whose connection broke after it went out, may have
/// been applied: its outcome is unknown. One that was never sent (`Unreachable`: a
/// refused connect, a backoff) had no effect. The cache's refusals are failures (a
/// write that failed its quorum may still be on the owners that acknowledged it).
fn failed(error: ClientError) -> Outcome {
    match error {
        ClientError::Transport(TransportError::Timeout) => Outcome::Unknown,
        ClientError::Transport(TransportError::Unreachable) => Outcome::NotSent(error.to_string()),
        other => Outcome::Failed(other.to_string()),
    }
}

/// Reads every key once at ALL, through `n1`, as probes.
async fn probe(load: &Load, config: &LoadConfig) {
    let nodes = clients_of(load, Duration::from_secs(5));
    load.history.borrow_mut().probes_from_ns = Some(load.now_ns());
    let (target, node) = &nodes[0];
    for key in 0..config.keys {
        let key = format!("key{key}");
        one_op(load, usize::MAX, target, node, key, OpKind::Get, Consistency::All).await;
    }
}

fn counts(history: &History) -> (usize, usize, usize, usize) {
    let load = history.ops.iter().filter(|op| !history.is_probe(op));
    load.fold((0, 0, 0, 0), |(ok, failed, not_sent, unknown), op| match op.outcome {
        Outcome::Ok { .. } => (ok + 1, failed, not_sent, unknown),
        Outcome::Failed(_) => (ok, failed + 1, not_sent, unknown),
        Outcome::NotSent(_) => (ok, failed, not_sent + 1, unknown),
        _ => (ok, failed, not_sent, unknown + 1),
    })
}

fn percentiles(latencies_us: &mut [u64]) -> (u64, u64, u64) {
    if latencies_us.is_empty() {
        return (0, 0, 0);
    }
    latencies_us.sort_unstable();
    let at = |per_mille: usize| latencies_us[(latencies_us.len() - 1) * per_mille / 1_000];
    (at(500), at(990), latencies_us[latencies_us.len() - 1])
}
