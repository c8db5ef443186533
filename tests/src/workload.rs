//! The workload: several clients, each on its own simulated node, issue random set,
//! get and remove requests over a small key space (hot keys collide) to random cache
//! nodes, through the network like real clients. Every request goes into the history.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use cache::{ClientRequest, ClientResponse, Consistency, Entry, NodeId, PeerRequest, PeerResponse};
use sim::Sim;
use sim::net::{Addr, RpcClient, RpcError};
use sim::rand::Ratio;

use crate::cluster::DistCluster;
use crate::history::{History, OpKind, Outcome};

/// The shape of the workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadConfig {
    /// Client nodes.
    pub clients: usize,
    /// Keys in the key space; the first two are hot (three requests in four), the rest
    /// keep appearing for the first time throughout a run.
    pub keys: usize,
    /// The longest pause between a client's requests.
    pub think_ms_max: u64,
    /// How long a client waits for an answer before recording the outcome unknown.
    pub request_timeout: Duration,
}

impl Default for WorkloadConfig {
    fn default() -> WorkloadConfig {
        WorkloadConfig {
            clients: 3,
            keys: 32,
            think_ms_max: 200,
            request_timeout: Duration::from_secs(12),
        }
    }
}

/// What every client shares.
struct Shared {
    cluster: Rc<DistCluster>,
    targets: Vec<(NodeId, Addr)>,
    history: Rc<RefCell<History>>,
    stop: Rc<Cell<bool>>,
    config: WorkloadConfig,
    read_consistency: Consistency,
    write_consistency: Consistency,
}

/// Starts the clients; they run until `stop` is set, then finish their request.
///
/// # Errors
///
/// When a client node cannot be created.
pub(crate) fn start_clients(
    sim: &mut Sim,
    cluster: &Rc<DistCluster>,
    history: &Rc<RefCell<History>>,
    stop: &Rc<Cell<bool>>,
    config: &WorkloadConfig,
) -> Result<(), String> {
    let handle = sim.handle();
    let targets = cluster
        .ids()
        .into_iter()
        .map(|id| {
            let address = cluster.address(&id).expect("cluster nodes have addresses");
            let addr = cache::parse_address(&handle, address).expect("cluster addresses parse");
            (id, addr)
        })
        .collect();
    let options = cluster.options();
    let shared = Rc::new(Shared {
        cluster: Rc::clone(cluster),
        targets,
        history: Rc::clone(history),
        stop: Rc::clone(stop),
        config: config.clone(),
        read_consistency: options.read_consistency(),
        write_consistency: options.write_consistency(),
    });
    for client in 0..config.clients {
        let node = sim.node(format!("c{}", client + 1)).try_build().map_err(|e| e.to_string())?;
        let shared = Rc::clone(&shared);
        drop(sim.spawn_on(node, "client", client_loop(client, shared)).map_err(|e| e.to_string())?);
    }
    Ok(())
}

async fn client_loop(client: usize, shared: Rc<Shared>) {
    let rpc = RpcClient::<PeerRequest, PeerResponse>::bind(0)
        .expect("a fresh client node has free ports");
    let mut sequence = 0u64;
    while !shared.stop.get() {
        let think = Duration::from_millis(sim::rand::range(0..shared.config.think_ms_max + 1));
        sim::time::sleep(think).await;
        if shared.stop.get() {
            break;
        }
        sequence += 1;
        request_once(client, sequence, &shared, &rpc).await;
    }
}

async fn request_once(
    client: usize,
    sequence: u64,
    shared: &Shared,
    rpc: &RpcClient<PeerRequest, PeerResponse>,
) {
    let (target, addr) = sim::rand::choose(&shared.targets).expect("a cluster has nodes").clone();
    let key = pick_key(shared.config.keys);
    let (kind, request, consistency) = match sim::rand::range(0..20) {
        0..9 => {
            let value = format!("c{}-{sequence}", client + 1);
            let request = ClientRequest::Set {
                key: key.clone(),
                value: Bytes::from(value.clone()),
                ttl: None,
                consistency: Some(shared.write_consistency),
            };
            (OpKind::Set { value }, request, shared.write_consistency)
        }
        9..18 => (
            OpKind::Get,
            ClientRequest::Get { key: key.clone(), consistency: Some(shared.read_consistency) },
            shared.read_consistency,
        ),
        _ => (
            OpKind::Remove,
            ClientRequest::Remove { key: key.clone(), consistency: Some(shared.write_consistency) },
            shared.write_consistency,
        ),
    };
    let invoke_ns = sim::time::Instant::now().as_nanos();
    let index = shared.history.borrow_mut().invoke(
        client,
        target,
        key.clone(),
        kind,
        consistency,
        invoke_ns,
    );
    let answer = rpc.call(addr, PeerRequest::Client(request), shared.config.request_timeout).await;
    let outcome = outcome_of(answer);
    let holders = match &outcome {
        Outcome::Ok { version: Some(version), value: None } => {
            holders_of(&shared.cluster, &key, version)
        }
        _ => Vec::new(),
    };
    let complete_ns = sim::time::Instant::now().as_nanos();
    shared.history.borrow_mut().complete(index, complete_ns, outcome, holders);
}

/// Three requests in four go to the two hot keys, so that clients collide and reads
/// follow writes; the rest spread over the cold keys, which keep appearing for the
/// first time throughout the run.
fn pick_key(keys: usize) -> String {
    let index = if sim::rand::chance(Ratio::new(3, 4)) {
        sim::rand::range(0..keys.min(2) as u64)
    } else {
        sim::rand::range(0..keys as u64)
    };
    format!("k{index}")
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
        Ok(PeerResponse::Client(
            ClientResponse::Written(Err(error)) | ClientResponse::Read(Err(error)),
        )) => Outcome::Failed(error.to_string()),
        Ok(PeerResponse::Failed(error)) => Outcome::Failed(error.to_string()),
        Ok(other) => Outcome::Failed(format!("unexpected response {other:?}")),
        Err(RpcError::Timeout) => Outcome::Unknown,
        Err(error) => Outcome::Failed(format!("{error:?}")),
    }
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
