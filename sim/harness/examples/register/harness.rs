//! The register under test: three replicas and two clients on a simulation, a
//! history of what the clients saw, and the checks that judge it. This is the whole
//! of what a user writes to get sweeps, shrinking and replay.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use sim::net::{Addr, RpcClient, RpcServer};
use sim::{NodeId, Sim};
use sim_harness::{Kind, Knob, Memory, NoFault, Profile, Record, Run, System, Target, Violation};

use crate::register::{Bug, Cell, Client, Request, Response, Transport, handle};

const REPLICAS: usize = 3;
const CLIENTS: usize = 2;
const PORT: u16 = 7;
/// A call with no answer by then is lost.
const CALL_TIMEOUT: Duration = Duration::from_millis(300);
/// After the heal, how long clients get before each must have an operation succeed.
const SETTLE: Duration = Duration::from_secs(2);

/// The system, as the harness sees it.
#[derive(Debug)]
pub(crate) struct Register;

/// One client operation, as the client saw it.
#[derive(Clone, Debug)]
pub(crate) struct Op {
    /// The client.
    pub(crate) client: u32,
    /// A write of this value, or a read (`None`).
    pub(crate) write: Option<u64>,
    /// When it was invoked (virtual ns).
    pub(crate) invoked_ns: u64,
    /// When it ended and what it saw: the version written, or the cell read.
    pub(crate) ended: Option<(u64, Option<Cell>)>,
}

/// The register built on one simulation.
#[derive(Debug)]
pub(crate) struct World {
    replicas: Vec<NodeId>,
    clients: Vec<NodeId>,
    /// Each replica's durable cell: it survives a reboot, not a crash.
    disks: Rc<Vec<RefCell<Cell>>>,
    history: Rc<RefCell<Vec<Op>>>,
}

impl Target<NoFault> for World {
    fn node_count(&self) -> usize {
        REPLICAS + CLIENTS
    }

    fn node(&self, index: usize) -> Option<NodeId> {
        self.replicas.iter().chain(&self.clients).nth(index).copied()
    }

    fn kill(&mut self, sim: &Sim, index: usize, memory: Memory) -> Result<(), String> {
        if memory == Memory::Lost && index < REPLICAS {
            *self.disks[index].borrow_mut() = Cell::default();
        }
        let node = self.node(index).ok_or("no such node")?;
        sim.kill(node).map_err(|error| error.to_string())
    }
}

/// The simulator's side of [`Transport`]: an RPC client on the client's node.
struct SimTransport {
    rpc: RpcClient<Request, Response>,
    replicas: Vec<Addr>,
}

impl Transport for SimTransport {
    fn replicas(&self) -> usize {
        self.replicas.len()
    }

    async fn call(&self, replica: usize, request: Request) -> Option<Response> {
        self.rpc.call(self.replicas[replica], request, CALL_TIMEOUT).await.ok()
    }
}

fn bug(run: &Run<NoFault>) -> Bug {
    match run.knob("bug") {
        Some("read-one") => Bug::ReadOne,
        Some("reuse-version") => Bug::ReuseVersion,
        Some("shun-forever") => Bug::ShunForever,
        _ => Bug::None,
    }
}

fn check_bug(value: &str) -> Result<(), String> {
    match value {
        "none" | "read-one" | "reuse-version" | "shun-forever" => Ok(()),
        other => Err(format!(
            "unknown bug {other:?}: expected none, read-one, reuse-version or shun-forever"
        )),
    }
}

async fn replica(disk: Rc<Vec<RefCell<Cell>>>, index: usize) {
    let server = match RpcServer::<Request, Response>::bind(PORT) {
        Ok(server) => server,
        Err(error) => return tracing::error!(%error, "cannot bind the replica's port"),
    };
    let error = server
        .serve(move |_from, request| {
            let response = handle(&mut disk[index].borrow_mut(), request);
            std::future::ready(response)
        })
        .await;
    tracing::debug!(%error, "replica stopped");
}

async fn client(
    id: u32,
    replicas: Vec<Addr>,
    bug: Bug,
    last_counter: Rc<std::cell::Cell<u64>>,
    history: Rc<RefCell<Vec<Op>>>,
) {
    let rpc = match RpcClient::bind(PORT) {
        Ok(rpc) => rpc,
        Err(error) => return tracing::error!(%error, "cannot bind the client's port"),
    };
    let transport = SimTransport { rpc, replicas };
    let shunned = std::cell::Cell::new(0);
    let client = Client { id, transport, bug, last_counter, shunned };
    loop {
        sim::time::sleep(Duration::from_millis(sim::rand::range(0..50))).await;
        let invoked_ns = sim::time::Instant::now().as_nanos();
        // Values are unique: the client's number, then a count of all operations.
        let write = sim::rand::chance(sim::rand::Ratio::new(1, 2))
            .then(|| (u64::from(id) + 1) * 1_000_000 + history.borrow().len() as u64 + 1);
        let index = history.borrow().len();
        history.borrow_mut().push(Op { client: id, write, invoked_ns, ended: None });
        let seen = match write {
            Some(value) => client.write(value).await.map(|version| Some(Cell { version, value })),
            None => client.read().await.map(Some),
        };
        let now_ns = sim::time::Instant::now().as_nanos();
        history.borrow_mut()[index].ended = seen.map(|cell| (now_ns, cell));
        match (write, seen.flatten()) {
            (Some(value), Some(cell)) => {
                tracing::info!("write {value} -> ok, version {}", cell.version)
            }
            (None, Some(cell)) => {
                tracing::info!("read -> {} (version {})", cell.value, cell.version)
            }
            (Some(value), None) => tracing::info!("write {value} -> unknown"),
            (None, None) => tracing::info!("read -> failed"),
        }
        if seen.is_none() {
            sim::reachable("an operation found too few replicas");
        }
    }
}

impl System for Register {
    type Fault = NoFault;
    type World = World;

    fn command(&self) -> String {
        "cargo run --release -p sim-harness --example register --".to_string()
    }

    fn profiles(&self) -> Vec<Profile<NoFault>> {
        // No `Kind::Crash`: a replica that forgets what it acknowledged breaks any
        // majority protocol. Reboots keep the disk.
        let swarm = vec![
            Kind::Partition,
            Kind::Loss,
            Kind::Duplicate,
            Kind::Latency,
            Kind::Reboot,
            Kind::Pause,
            Kind::Clock,
        ];
        vec![
            Profile::new("swarm", "every fault the register must ride out, drawn per seed", swarm)
                .swarm()
                .latency_tail(),
            Profile::new("partitions", "partitions only", vec![Kind::Partition]),
            Profile::new("reboots", "reboots and pauses", vec![Kind::Reboot, Kind::Pause]),
            Profile::new("none", "no faults", Vec::new()),
        ]
    }

    fn knobs(&self) -> Vec<Knob> {
        vec![Knob {
            name: "bug",
            value: "none|read-one|reuse-version|shun-forever",
            help: "Plant a bug: read-one answers reads from one replica, without write-back; reuse-version lets a write reuse the version of its client's unacknowledged last write; shun-forever stops calling a replica after one timeout, for good",
            default: "none",
            check: check_bug,
        }]
    }

    fn phase_seconds(&self) -> (u64, u64) {
        (10, 5)
    }

    fn node_count(&self, _: &Record) -> usize {
        REPLICAS + CLIENTS
    }

    fn validate(&self, record: &Record) -> Result<(), String> {
        let quiet = record.quiet_seconds.unwrap_or(self.phase_seconds().1);
        if Duration::from_secs(quiet) < SETTLE + Duration::from_secs(1) {
            return Err(format!(
                "quiet={quiet} leaves clients no time to show progress after the heal: give at least {} seconds",
                (SETTLE + Duration::from_secs(1)).as_secs()
            ));
        }
        Ok(())
    }

    fn build(&self, sim: &mut Sim, run: &Run<NoFault>) -> Result<World, String> {
        let disks: Rc<Vec<RefCell<Cell>>> = Rc::new(vec![RefCell::default(); REPLICAS]);
        let history = Rc::new(RefCell::new(Vec::new()));
        let mut replicas = Vec::new();
        for index in 0..REPLICAS {
            let disks = Rc::clone(&disks);
            let node = sim.node(format!("replica{}", index + 1));
            let node = node.init(move || replica(Rc::clone(&disks), index)).try_build();
            replicas.push(node.map_err(|error| error.to_string())?);
        }
        let addrs: Vec<Addr> = replicas.iter().map(|node| Addr::new(*node, PORT)).collect();
        let mut clients = Vec::new();
        for id in 0..CLIENTS as u32 {
            let (addrs, history, bug) = (addrs.clone(), Rc::clone(&history), bug(run));
            let last_counter = Rc::new(std::cell::Cell::new(0));
            let node = sim.node(format!("client{}", id + 1)).init(move || {
                client(id, addrs.clone(), bug, Rc::clone(&last_counter), Rc::clone(&history))
            });
            clients.push(node.try_build().map_err(|error| error.to_string())?);
        }
        Ok(World { replicas, clients, disks, history })
    }

    fn check(&self, sim: &mut Sim, world: &mut World, run: &Run<NoFault>) -> Vec<Violation> {
        let history = world.history.borrow();
        let mut violations = stale_reads(&history);
        let heal_ns = sim.now().as_nanos() - run.quiet.as_nanos() as u64;
        violations.extend(no_progress(&history, heal_ns + SETTLE.as_nanos() as u64));
        violations
    }

    fn stats(&self, world: &World) -> Vec<(&'static str, u64)> {
        let history = world.history.borrow();
        let ok = history.iter().filter(|op| op.ended.is_some()).count() as u64;
        vec![("operations", history.len() as u64), ("ok", ok)]
    }

    fn coverage_points(&self) -> Vec<&'static str> {
        vec!["read wrote back a newer value", "an operation found too few replicas"]
    }
}

/// A read must see every write acknowledged before it began, and every value an
/// earlier read returned: a newer version, or the same version with the same value.
fn stale_reads(history: &[Op]) -> Vec<Violation> {
    let mut violations = Vec::new();
    let ended = |op: &Op| op.ended.map(|(at_ns, cell)| (at_ns, cell.unwrap_or_default()));
    for read in history.iter().filter(|op| op.write.is_none()) {
        let Some((_, seen)) = ended(read) else { continue };
        let newer =
            history.iter().filter_map(|op| Some((op, ended(op)?))).find(|(_, (at_ns, cell))| {
                // Values are unique per write: one version with two values is two
                // writes that no read can order.
                *at_ns < read.invoked_ns
                    && (cell.version > seen.version
                        || (cell.version == seen.version && cell.value != seen.value))
            });
        if let Some((earlier, (at_ns, cell))) = newer {
            let what = if earlier.write.is_some() { "write" } else { "read" };
            violations.push(Violation::safety(
                "stale-read",
                format!(
                    "client{} read {} (version {}) at {} ms, after a {what} by client{} of {} (version {}) ended at {} ms",
                    read.client + 1,
                    seen.value,
                    seen.version,
                    read.invoked_ns / 1_000_000,
                    earlier.client + 1,
                    cell.value,
                    cell.version,
                    at_ns / 1_000_000
                ) + if cell.version == seen.version {
                    ": one version, two values (two writes took it)"
                } else {
                    ""
                },
            ));
        }
    }
    violations
}

/// Once the network has healed and settled, every client gets an operation through.
fn no_progress(history: &[Op], from_ns: u64) -> Vec<Violation> {
    (0..CLIENTS as u32)
        .filter(|client| {
            !history
                .iter()
                .any(|op| op.client == *client && op.invoked_ns >= from_ns && op.ended.is_some())
        })
        .map(|client| {
            let message = format!(
                "client{} had no operation succeed after {} ms",
                client + 1,
                from_ns / 1_000_000
            );
            Violation::liveness("no-progress", message)
        })
        .collect()
}
