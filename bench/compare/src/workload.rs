//! The workload, written once against `crate::rt` (the runtime under test): a small
//! replicated key-value store. Five servers; each key's primary (key mod 5) applies a
//! put, replicates it to the next two servers and answers once one has acknowledged
//! (a quorum of two of three). Servers heartbeat each other every 100 ms. Eight clients
//! on one node each issue 250 operations (half puts, half gets, over 64 keys) and give
//! up on an answer after a second. A nemesis cuts a random server off the network for
//! 300 ms every 500 ms. Every message handed to the workload is counted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::rt::{self, Addr, Ep, World};

/// Servers.
pub const SERVERS: usize = 5;
/// Client tasks (all on one client node).
pub const CLIENTS: usize = 8;
/// Operations per client: 2,000 per seed in all.
pub const OPS_PER_CLIENT: u64 = 250;
const KEYS: u64 = 64;
const PORT: u16 = 7_000;
const HEARTBEAT_PORT: u16 = 7_001;
const CLIENT_PORT: u16 = 7_100;

/// A message of the store.
#[derive(Clone, Debug, Hash)]
pub enum Msg {
    Put { id: u64, key: u64, value: u64 },
    PutAck { id: u64 },
    Get { id: u64, key: u64 },
    GetAck { id: u64, value: u64 },
    Replicate { id: u64, key: u64, value: u64 },
    ReplicateAck { id: u64 },
    Heartbeat { from: u64 },
}

/// What one seed did.
#[derive(Debug, Default)]
pub struct Counters {
    pub delivered: AtomicU64,
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub clients_done: AtomicU64,
}

/// Runs one seed to the end of the clients' operations.
pub fn run_seed(seed: u64) -> Arc<Counters> {
    let counters = Arc::new(Counters::default());
    let mut world = World::new(seed);
    let servers: Vec<rt::Node> = (0..SERVERS).map(|index| world.add_node(index)).collect();
    let client_node = world.add_node(SERVERS);
    let addrs: Vec<Addr> = servers.iter().map(|node| world.addr(node, PORT)).collect();
    for (index, node) in servers.iter().enumerate() {
        world.spawn(node, server(index, addrs.clone(), Arc::clone(&counters)));
        world.spawn(node, heartbeat(index, addrs.clone()));
    }
    for id in 0..CLIENTS as u64 {
        world.spawn(&client_node, client(id, addrs.clone(), Arc::clone(&counters)));
    }
    let cutter = world.cutter(&servers);
    let done = Arc::clone(&counters);
    world.block_on(async move {
        while done.clients_done.load(Ordering::Relaxed) < CLIENTS as u64 {
            rt::sleep(Duration::from_millis(500)).await;
            let victim = (rt::random() % SERVERS as u64) as usize;
            cutter.cut(victim);
            rt::sleep(Duration::from_millis(300)).await;
            cutter.heal(victim);
        }
    });
    counters
}

struct Pending {
    client: Addr,
    id: u64,
}

async fn server(index: usize, servers: Vec<Addr>, counters: Arc<Counters>) {
    let ep = Ep::bind(PORT).await;
    let mut store: BTreeMap<u64, u64> = BTreeMap::new();
    let mut pending: BTreeMap<u64, Pending> = BTreeMap::new();
    loop {
        let (from, msg) = ep.recv().await;
        counters.delivered.fetch_add(1, Ordering::Relaxed);
        match msg {
            Msg::Put { id, key, value } => {
                store.insert(key, value);
                pending.insert(id, Pending { client: from, id });
                for step in 1..=2 {
                    let backup = servers[(index + step) % SERVERS];
                    ep.send(backup, Msg::Replicate { id, key, value }).await;
                }
            }
            Msg::Replicate { id, key, value } => {
                store.insert(key, value);
                ep.send(from, Msg::ReplicateAck { id }).await;
            }
            Msg::ReplicateAck { id } => {
                // The first acknowledgement makes a quorum; later ones find nothing.
                if let Some(put) = pending.remove(&id) {
                    ep.send(put.client, Msg::PutAck { id: put.id }).await;
                }
            }
            Msg::Get { id, key } => {
                let value = store.get(&key).copied().unwrap_or(0);
                ep.send(from, Msg::GetAck { id, value }).await;
            }
            Msg::Heartbeat { .. } | Msg::PutAck { .. } | Msg::GetAck { .. } => {}
        }
    }
}

/// Sends a heartbeat to every other server's main port (where it is counted) every
/// 100 ms.
async fn heartbeat(index: usize, peers: Vec<Addr>) {
    let ep = Ep::bind(HEARTBEAT_PORT).await;
    loop {
        rt::sleep(Duration::from_millis(100)).await;
        for (peer, addr) in peers.iter().enumerate() {
            if peer != index {
                ep.send(*addr, Msg::Heartbeat { from: index as u64 }).await;
            }
        }
    }
}

async fn client(id: u64, servers: Vec<Addr>, counters: Arc<Counters>) {
    let ep = Ep::bind(CLIENT_PORT + id as u16).await;
    for op in 0..OPS_PER_CLIENT {
        let key = rt::random() % KEYS;
        let request = id << 32 | op;
        let primary = servers[(key % SERVERS as u64) as usize];
        let msg = if rt::random() % 2 == 0 {
            Msg::Put { id: request, key, value: op }
        } else {
            Msg::Get { id: request, key }
        };
        ep.send(primary, msg).await;
        let answered = rt::timeout(Duration::from_secs(1), async {
            loop {
                let (_, answer) = ep.recv().await;
                counters.delivered.fetch_add(1, Ordering::Relaxed);
                match answer {
                    Msg::PutAck { id } | Msg::GetAck { id, .. } if id == request => return,
                    _ => {} // a late answer to an earlier request
                }
            }
        })
        .await;
        let counter = if answered.is_some() { &counters.ok } else { &counters.failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    counters.clients_done.fetch_add(1, Ordering::Relaxed);
}
