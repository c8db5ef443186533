//! The workload: several clients, each on its own simulated node, issue random set,
//! get, remove and key-listing requests (each at its own consistency level, some sets
//! with a TTL) over a key space with hot keys, to cache nodes, through the network like
//! real clients. Now and then several clients hit one key at the same instant (a
//! burst). A client that gets no answer, or an unreachable node, avoids that node for
//! a while and sends its next requests elsewhere. Every request goes into the history.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use cache::{ClientRequest, ClientResponse, Consistency, Entry, NodeId, PeerRequest, PeerResponse};
use sim::Sim;
use sim::net::{Addr, RpcClient, RpcError};
use sim::rand::Ratio;

use crate::bad_input::{BadInput, BadRequest};
use crate::cluster::DistCluster;
use crate::faults::Profile;
use crate::history::{History, OpKind, Outcome};

/// The harness's cap on a value's padding: far below `cache::VALUE_LEN_MAX` (16 MiB),
/// so that a run's memory stays small while large values still cross the network.
pub const VALUE_PAD_MAX: usize = 64 << 10;
/// Keys a workload may have (the `keys` profile uses 1,500).
pub const WORKLOAD_KEYS_MAX: usize = 100_000;
/// Nodes one client avoids at once (more than a cluster has is never needed).
const AVOIDED_MAX: usize = crate::cluster::CLUSTER_NODES_MAX;
/// The key patterns a listing draws from (the workload's keys are `k0`, `k1`, …): all
/// keys, globs and literal prefixes.
const LIST_PATTERNS: [&str; 7] = ["", "k1*", "k?", "k1", "k[0-3]*", "k2?", "k*9"];
/// A listing's `max` when it asks for a limit (else 0: no limit).
const LIST_MAX: usize = 10;

/// The shape of the workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadConfig {
    /// Client nodes.
    pub clients: usize,
    /// Keys in the key space (`k0` … `k{keys-1}`); the cold ones keep appearing for the
    /// first time throughout a run.
    pub keys: usize,
    /// The first `hot_keys` keys are hot: they take `hot_share` of the requests, so
    /// that clients collide and reads follow writes.
    pub hot_keys: usize,
    /// The share of requests that go to the hot keys.
    pub hot_share: Ratio,
    /// The longest pause between a client's requests.
    pub think_ms_max: u64,
    /// How long a client waits for an answer, drawn per request between this and
    /// `request_timeout_max`; then it records the outcome unknown.
    pub request_timeout_min: Duration,
    /// See `request_timeout_min`.
    pub request_timeout_max: Duration,
    /// How long a client avoids a node after a timeout or an unreachable error.
    pub avoid_ms: u64,
    /// The share of sets that carry a TTL, drawn from `ttl_ms_min..=ttl_ms_max`.
    pub ttl_share: Ratio,
    /// The shortest TTL.
    pub ttl_ms_min: u64,
    /// The longest TTL.
    pub ttl_ms_max: u64,
    /// The share of requests that list keys.
    pub list_share: Ratio,
    /// The share of requests that start a burst: every client that sees it pending
    /// sends a request on the same key at the same instant.
    pub burst_share: Ratio,
    /// The share of sets padded to 1–4 KiB; a tenth of these are padded to up to
    /// [`VALUE_PAD_MAX`] instead.
    pub large_value_share: Ratio,
    /// The share of requests that are bad input the cache must refuse (see
    /// `bad_input.rs`).
    pub bad_input_share: Ratio,
    /// Whether bad input includes values over `cache::VALUE_LEN_MAX`: each is
    /// allocated and hashed whole, about as costly as the rest of a default run.
    pub oversized_values: bool,
}

impl Default for WorkloadConfig {
    /// The default workload (every profile but `keys`): 5 clients over 64 keys.
    fn default() -> WorkloadConfig {
        WorkloadConfig {
            clients: 5,
            keys: 64,
            hot_keys: 2,
            hot_share: Ratio::new(3, 4),
            think_ms_max: 200,
            // Below the cache's 5 s RPC timeout: a slow coordinator's answer is then
            // unknown, and the client moves on to another node.
            request_timeout_min: Duration::from_millis(1_500),
            request_timeout_max: Duration::from_millis(3_000),
            avoid_ms: 3_000,
            ttl_share: Ratio::new(1, 5),
            ttl_ms_min: 200,
            ttl_ms_max: 10_000,
            list_share: Ratio::new(1, 25),
            burst_share: Ratio::new(1, 30),
            large_value_share: Ratio::new(1, 10),
            bad_input_share: crate::bad_input::BAD_INPUT_SHARE,
            oversized_values: false,
        }
    }
}

impl WorkloadConfig {
    /// The workload of a profile: `keys` spreads 1,500 keys (so that merkle trees have
    /// many leaves) with a smaller hot share; every other profile has the default.
    pub fn for_profile(profile: Profile) -> WorkloadConfig {
        match profile {
            Profile::Keys => WorkloadConfig {
                clients: 6,
                keys: 1_500,
                hot_keys: 4,
                hot_share: Ratio::new(1, 4),
                oversized_values: true,
                ..WorkloadConfig::default()
            },
            _ => WorkloadConfig::default(),
        }
    }
}

/// A burst: clients that see it pending send a request on `key` at `at_ns`.
#[derive(Clone, Debug)]
struct Burst {
    key: String,
    at_ns: u64,
}

/// What every client shares.
struct Shared {
    cluster: Rc<DistCluster>,
    handle: sim::Handle,
    /// The cluster's nodes and addresses, refreshed when nodes join.
    targets: RefCell<Vec<(NodeId, Addr)>>,
    history: Rc<RefCell<History>>,
    phase: Rc<Cell<ClientPhase>>,
    config: WorkloadConfig,
    burst: RefCell<Option<Burst>>,
}

impl Shared {
    /// The targets, after adding any node that joined since the last call.
    fn targets(&self) -> Vec<(NodeId, Addr)> {
        let ids = self.cluster.ids();
        if ids.len() != self.targets.borrow().len() {
            let targets = ids.into_iter().map(|id| {
                let address = self.cluster.address(&id).expect("cluster nodes have addresses");
                let addr = cache::parse_address(&self.handle, &address).expect("addresses parse");
                (id, addr)
            });
            *self.targets.borrow_mut() = targets.collect();
        }
        self.targets.borrow().clone()
    }
}

/// What the clients are doing; the run's driver moves them on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClientPhase {
    /// Random requests.
    Workload,
    /// Waiting for the probes (polling every [`IDLE_POLL`]).
    Idle,
    /// The probe phase, after the heal: each client writes and reads each of its probe
    /// keys ([`probe_keys`]) at QUORUM, then at ALL, [`PROBE_LANES`] keys or more at once.
    Probe,
    /// Finish the request in flight and stop.
    Stop,
}

/// How often an idle client looks whether the probes have begun.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// Starts the clients; they run the workload until the phase moves on, then the probes,
/// and finish their request when it is [`ClientPhase::Stop`].
///
/// # Errors
///
/// When a client node cannot be created.
pub(crate) fn start_clients(
    sim: &mut Sim,
    cluster: &Rc<DistCluster>,
    history: &Rc<RefCell<History>>,
    phase: &Rc<Cell<ClientPhase>>,
    config: &WorkloadConfig,
) -> Result<(), String> {
    assert!(config.keys >= 1 && config.keys <= WORKLOAD_KEYS_MAX, "{} keys", config.keys);
    assert!(config.hot_keys <= config.keys);
    assert!(config.request_timeout_min <= config.request_timeout_max);
    assert!(config.ttl_ms_min >= 1 && config.ttl_ms_min <= config.ttl_ms_max);
    let shared = Rc::new(Shared {
        cluster: Rc::clone(cluster),
        handle: sim.handle(),
        targets: RefCell::new(Vec::new()),
        history: Rc::clone(history),
        phase: Rc::clone(phase),
        config: config.clone(),
        burst: RefCell::new(None),
    });
    for client in 0..config.clients {
        let node = sim.node(format!("c{}", client + 1)).try_build().map_err(|e| e.to_string())?;
        let shared = Rc::clone(&shared);
        drop(sim.spawn_on(node, "client", client_loop(client, shared)).map_err(|e| e.to_string())?);
    }
    Ok(())
}

/// One client's state between requests.
struct Client {
    index: usize,
    sequence: u64,
    /// Nodes to avoid, each until a virtual time in nanoseconds.
    avoided: Vec<(NodeId, u64)>,
    /// The burst this client joined last, by its time (a client joins a burst once).
    last_burst_ns: u64,
}

async fn client_loop(index: usize, shared: Rc<Shared>) {
    let rpc = RpcClient::<PeerRequest, PeerResponse>::bind(0)
        .expect("a fresh client node has free ports");
    let mut client = Client { index, sequence: 0, avoided: Vec::new(), last_burst_ns: 0 };
    while shared.phase.get() == ClientPhase::Workload {
        let think = Duration::from_millis(sim::rand::range(0..shared.config.think_ms_max + 1));
        sim::time::sleep(think).await;
        if shared.phase.get() != ClientPhase::Workload {
            break;
        }
        let key = match join_or_start_burst(&mut client, &shared) {
            Some(burst) => {
                let now_ns = sim::time::Instant::now().as_nanos();
                sim::time::sleep(Duration::from_nanos(burst.at_ns.saturating_sub(now_ns))).await;
                Some(burst.key)
            }
            None => None,
        };
        client.sequence += 1;
        request_once(&mut client, key, &shared, &rpc).await;
    }
    while shared.phase.get() == ClientPhase::Idle {
        sim::time::sleep(IDLE_POLL).await;
    }
    let keys: Vec<String> = probe_keys(index, &shared.config).collect();
    // Enough lanes that none has more than PROBE_LANE_KEYS_MAX keys.
    let lane_count = keys.len().div_ceil(PROBE_LANE_KEYS_MAX).max(PROBE_LANES);
    let lanes = (0..lane_count).map(|lane| {
        let keys: Vec<String> = keys.iter().skip(lane).step_by(lane_count).cloned().collect();
        probe_lane(index, keys, &shared, &rpc)
    });
    futures::future::join_all(lanes).await;
}

/// Probes one client runs at once, at least, each over its own keys: a client's keys
/// are probed in a few round trips even where the latency tail slows ALL requests.
const PROBE_LANES: usize = 4;
/// Keys one probe lane takes at most; a client with more keys runs more lanes.
const PROBE_LANE_KEYS_MAX: usize = 16;

/// Writes and reads each of `keys` at QUORUM, then at ALL, in order.
async fn probe_lane(
    index: usize,
    keys: Vec<String>,
    shared: &Shared,
    rpc: &RpcClient<PeerRequest, PeerResponse>,
) {
    let mut client = Client { index, sequence: 0, avoided: Vec::new(), last_burst_ns: 0 };
    for key in keys {
        for consistency in [Consistency::Quorum, Consistency::All] {
            for get in [false, true] {
                if shared.phase.get() != ClientPhase::Probe {
                    return;
                }
                let (kind, request) = probe_request(index, &key, consistency, get);
                let probe = Request { key: key.clone(), kind, request, consistency };
                send(&mut client, probe, shared, rpc).await;
            }
        }
    }
}

/// The keys client `index` probes, in order: its share of the keys (key `i` is probed
/// by client `i mod clients`), so that every key is probed once per level.
fn probe_keys(index: usize, config: &WorkloadConfig) -> impl Iterator<Item = String> {
    let clients = config.clients;
    (0..config.keys).filter(move |key| key % clients == index).map(|key| format!("k{key}"))
}

/// How many probes the clients send in all: four per key each probes.
pub(crate) fn probe_count(config: &WorkloadConfig) -> usize {
    (0..config.clients).map(|index| probe_keys(index, config).count() * 4).sum()
}

/// A probe: a get, or a set with no TTL of a value unique to the client, key and level
/// (`c{client}-probe-{key}-{level}`).
fn probe_request(
    index: usize,
    key: &str,
    consistency: Consistency,
    get: bool,
) -> (OpKind, ClientRequest) {
    let key = key.to_string();
    if get {
        return (OpKind::Get, ClientRequest::Get { key, consistency: Some(consistency) });
    }
    let value = format!("c{}-probe-{key}-{consistency}", index + 1);
    let request = ClientRequest::Set {
        key,
        value: Bytes::from(value.clone()),
        ttl: None,
        consistency: Some(consistency),
    };
    (OpKind::Set { value, ttl_ms: None }, request)
}

/// Joins a pending burst this client has not joined yet, or starts one now and then
/// (timed after every client's longest think, so that the others can see it first).
fn join_or_start_burst(client: &mut Client, shared: &Shared) -> Option<Burst> {
    let now_ns = sim::time::Instant::now().as_nanos();
    let pending = shared.burst.borrow().clone().filter(|burst| burst.at_ns > now_ns);
    let burst = match pending {
        Some(burst) if burst.at_ns != client.last_burst_ns => burst,
        Some(_) => return None,
        None if shared.config.clients >= 2 && sim::rand::chance(shared.config.burst_share) => {
            let delay_ms = shared.config.think_ms_max + 1 + sim::rand::range(0..50);
            let key = pick_key(&shared.config);
            let burst = Burst { key, at_ns: now_ns + delay_ms * 1_000_000 };
            *shared.burst.borrow_mut() = Some(burst.clone());
            burst
        }
        None => return None,
    };
    client.last_burst_ns = burst.at_ns;
    Some(burst)
}

/// A non-avoided node (any node when every one is avoided).
fn pick_target(client: &mut Client, shared: &Shared) -> (NodeId, Addr) {
    let now_ns = sim::time::Instant::now().as_nanos();
    client.avoided.retain(|(_, until_ns)| *until_ns > now_ns);
    let targets = shared.targets();
    let open: Vec<&(NodeId, Addr)> = targets
        .iter()
        .filter(|(id, _)| !client.avoided.iter().any(|(avoided, _)| avoided == id))
        .collect();
    match sim::rand::choose(&open) {
        Some(target) => (*target).clone(),
        None => sim::rand::choose(&targets).expect("a cluster has nodes").clone(),
    }
}

/// The consistency level of one request: QUORUM most often.
fn pick_consistency() -> Consistency {
    match sim::rand::range(0..4) {
        0 => Consistency::One,
        1 => Consistency::All,
        _ => Consistency::Quorum,
    }
}

async fn request_once(
    client: &mut Client,
    burst_key: Option<String>,
    shared: &Shared,
    rpc: &RpcClient<PeerRequest, PeerResponse>,
) {
    // A burst is mostly writes, so that concurrent writers meet on one key.
    let in_burst = burst_key.is_some();
    if !in_burst && sim::rand::chance(shared.config.bad_input_share) {
        return send_bad(client, shared, rpc).await;
    }
    let key = burst_key.unwrap_or_else(|| pick_key(&shared.config));
    let (kind, request, consistency) = draw_request(client, &shared.config, &key, in_burst);
    let key = match &kind {
        OpKind::ListKeys { pattern } => pattern.clone(),
        _ => key,
    };
    send(client, Request { key, kind, request, consistency }, shared, rpc).await;
}

/// One request, as recorded and as sent.
struct Request {
    /// The key (a listing's pattern).
    key: String,
    kind: OpKind,
    request: ClientRequest,
    consistency: Consistency,
}

/// Sends `request` to a node the client does not avoid and records it in the history.
async fn send(
    client: &mut Client,
    request: Request,
    shared: &Shared,
    rpc: &RpcClient<PeerRequest, PeerResponse>,
) {
    let (target, addr) = pick_target(client, shared);
    let Request { key, kind, request, consistency } = request;
    let set_value = match &kind {
        OpKind::Set { value, .. } => Some(value.clone()),
        _ => None,
    };
    let invoke_ns = sim::time::Instant::now().as_nanos();
    let index = shared.history.borrow_mut().invoke(
        client.index,
        target.clone(),
        key.clone(),
        kind,
        consistency,
        invoke_ns,
    );
    let timeout = request_timeout(&shared.config);
    tracing::info!(target: "cachesim::client", "{}", shared.history.borrow().ops[index]);
    let answer = rpc.call(addr, PeerRequest::Client(request), timeout).await;
    let avoid = should_avoid(&answer);
    let quorum_failed = matches!(
        answer,
        Ok(PeerResponse::Client(ClientResponse::Written(Err(cache::Error::QuorumFailed { .. }))))
    );
    let set_value = set_value.filter(|_| quorum_failed);
    let outcome = outcome_of(answer);
    // Who holds the version written or read (or newer) as the answer arrives.
    let holders = match &outcome {
        Outcome::Ok { version: Some(version), .. } => holders_of(&shared.cluster, &key, version),
        _ => Vec::new(),
    };
    let complete_ns = sim::time::Instant::now().as_nanos();
    let mut history = shared.history.borrow_mut();
    history.complete(index, complete_ns, outcome, holders);
    tracing::info!(target: "cachesim::client", "{}", history.ops[index]);
    drop(history);
    if let Some((version, holders)) =
        set_value.and_then(|v| applied_anyway(&shared.cluster, &key, &v))
    {
        shared.history.borrow_mut().applied_anyway(index, version, holders);
    }
    if avoid && client.avoided.len() < AVOIDED_MAX {
        client.avoided.push((target, complete_ns + shared.config.avoid_ms * 1_000_000));
    }
}

/// Sends one bad request (see `bad_input.rs`) and records it if the answer breaks the
/// contract. It goes into no operation's history: it must change nothing.
async fn send_bad(
    client: &mut Client,
    shared: &Shared,
    rpc: &RpcClient<PeerRequest, PeerResponse>,
) {
    let (target, addr) = pick_target(client, shared);
    let BadRequest { what, request, expected } =
        crate::bad_input::draw(shared.config.oversized_values);
    let timeout = request_timeout(&shared.config);
    tracing::info!(target: "cachesim::client", client = client.index, node = %target, what, "bad input");
    let answer = rpc.call(addr, PeerRequest::Client(request), timeout).await;
    if let Some(answer) = crate::bad_input::judge(expected, &answer) {
        let at_ns = sim::time::Instant::now().as_nanos();
        shared.history.borrow_mut().bad_inputs.push(BadInput { at_ns, target, what, answer });
    }
}

fn request_timeout(config: &WorkloadConfig) -> Duration {
    let min = u64::try_from(config.request_timeout_min.as_millis()).unwrap_or(u64::MAX);
    let max = u64::try_from(config.request_timeout_max.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(sim::rand::range(min..max + 1))
}

/// The op (as recorded), the request and its level: sets 9 in 20, gets 8, removes 2,
/// and `list_share` of all requests list keys (never in a burst).
fn draw_request(
    client: &Client,
    config: &WorkloadConfig,
    key: &str,
    in_burst: bool,
) -> (OpKind, ClientRequest, Consistency) {
    if !in_burst && sim::rand::chance(config.list_share) {
        let pattern = sim::rand::choose(&LIST_PATTERNS).expect("patterns").to_string();
        let max = if sim::rand::chance(Ratio::new(1, 4)) { LIST_MAX } else { 0 };
        let request = ClientRequest::ListKeys { pattern: pattern.clone(), max };
        // Listing takes no level: recorded as ONE, the level that promises nothing.
        return (OpKind::ListKeys { pattern }, request, Consistency::One);
    }
    let consistency = pick_consistency();
    let key = key.to_string();
    let roll = if in_burst { sim::rand::range(0..12) } else { sim::rand::range(0..19) };
    match roll {
        0..9 => {
            let value = draw_value(client, config);
            let ttl_ms = sim::rand::chance(config.ttl_share)
                .then(|| sim::rand::range(config.ttl_ms_min..config.ttl_ms_max + 1));
            let request = ClientRequest::Set {
                key,
                value: Bytes::from(value.clone()),
                ttl: ttl_ms.map(Duration::from_millis),
                consistency: Some(consistency),
            };
            (OpKind::Set { value, ttl_ms }, request, consistency)
        }
        9..17 => {
            (OpKind::Get, ClientRequest::Get { key, consistency: Some(consistency) }, consistency)
        }
        _ => (
            OpKind::Remove,
            ClientRequest::Remove { key, consistency: Some(consistency) },
            consistency,
        ),
    }
}

/// A value unique to this set (`c{client}-{sequence}`), sometimes padded with `.` to
/// exercise larger values.
fn draw_value(client: &Client, config: &WorkloadConfig) -> String {
    let mut value = format!("c{}-{}", client.index + 1, client.sequence);
    if sim::rand::chance(config.large_value_share) {
        let pad = if sim::rand::chance(Ratio::new(1, 10)) {
            sim::rand::range(4_096..VALUE_PAD_MAX as u64 + 1)
        } else {
            sim::rand::range(1_024..4_097)
        };
        let pad = usize::try_from(pad).expect("pads are small");
        value.push('-');
        value.extend(std::iter::repeat_n('.', pad));
    }
    value
}

/// `hot_share` of the requests go to the hot keys; the rest spread over every key.
fn pick_key(config: &WorkloadConfig) -> String {
    let index = if config.hot_keys > 0 && sim::rand::chance(config.hot_share) {
        sim::rand::range(0..config.hot_keys as u64)
    } else {
        sim::rand::range(0..config.keys as u64)
    };
    format!("k{index}")
}

/// Whether the client should avoid the node it asked: no answer, an unreachable
/// node, or a node that is stopped or draining.
fn should_avoid(answer: &Result<PeerResponse, RpcError>) -> bool {
    match answer {
        Err(_) => true,
        Ok(PeerResponse::Failed(error))
        | Ok(PeerResponse::Client(
            ClientResponse::Written(Err(error)) | ClientResponse::Read(Err(error)),
        )) => matches!(error, cache::Error::Stopped | cache::Error::Draining),
        Ok(_) => false,
    }
}

fn outcome_of(answer: Result<PeerResponse, RpcError>) -> Outcome {
    match answer {
        Ok(PeerResponse::Client(ClientResponse::Written(Ok(version)))) => {
            Outcome::Ok { version: Some(version), value: None }
        }
        Ok(PeerResponse::Client(ClientResponse::Read(Ok(item)))) => match item {
            Some(item) => Outcome::Ok {
                version: Some(item.version),
                value: Some(String::from_utf8_lossy(&item.value).into_owned()),
            },
            None => Outcome::Ok { version: None, value: None },
        },
        Ok(PeerResponse::Client(ClientResponse::Keys(Ok(list)))) => {
            Outcome::Keys { keys: list.keys, partial: list.partial, truncated: list.truncated }
        }
        Ok(PeerResponse::Client(
            ClientResponse::Written(Err(error))
            | ClientResponse::Read(Err(error))
            | ClientResponse::Keys(Err(error)),
        )) => Outcome::Failed(error.to_string()),
        Ok(PeerResponse::Failed(error)) => Outcome::Failed(error.to_string()),
        Ok(other) => Outcome::Failed(format!("unexpected response {other:?}")),
        Err(RpcError::Timeout) => Outcome::Unknown,
        Err(error) => Outcome::Failed(format!("{error:?}")),
    }
}

/// Where a set of `value` that failed with a quorum error was applied: the oldest
/// version any node holds it under, and the nodes that hold that version or newer.
fn applied_anyway(
    cluster: &DistCluster,
    key: &str,
    value: &str,
) -> Option<(cache::Version, Vec<NodeId>)> {
    let nodes = cluster.ids().into_iter().filter_map(|id| cluster.by_id(&id));
    let versions = nodes.filter_map(|node| match node.local_entry(key) {
        Some(Entry::Item(item)) if item.value == value.as_bytes() => Some(item.version),
        _ => None,
    });
    let version = versions.min()?;
    let holders = holders_of(cluster, key, &version);
    Some((version, holders))
}

/// The nodes that hold `version` of `key`, or newer, right now (white-box).
fn holders_of(cluster: &DistCluster, key: &str, version: &cache::Version) -> Vec<NodeId> {
    cluster
        .ids()
        .into_iter()
        .filter(|id| {
            let held = cluster.by_id(id).and_then(|node| node.local_entry(key));
            held.as_ref().map(Entry::version).is_some_and(|held| held >= version)
        })
        .collect()
}
