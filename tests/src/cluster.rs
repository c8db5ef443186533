//! Cluster fixtures: N cache nodes on N simulated nodes, all knowing each other.
//!
//! Each cache node runs inside its simulated node's init task, so that killing the
//! simulated node drops the cache node with everything it holds, and restarting it
//! starts a fresh cache node (no memory) on the same address.

use std::cell::{Cell, Ref, RefCell};
use std::fmt;
use std::rc::Rc;

use cache::{CacheNode, NodeConfig, NodeId, Options, OptionsBuilder, Ring};
use sim::Sim;
use sim::net::NetError;

/// The replication factor of [`setup_in_process_cluster`].
pub const REPLICATION_FACTOR_DEFAULT: usize = 3;
/// Nodes a fixture may have.
pub const CLUSTER_NODES_MAX: usize = 64;
/// Polls the fixture allows its nodes to start in.
const STARTUP_STEPS_MAX: u64 = 100_000;

/// The running cache node of one simulated node: `None` while it is killed.
type Slot = Rc<RefCell<Option<Rc<CacheNode>>>>;

/// Why a fixture could not be set up.
#[derive(Debug)]
pub enum FixtureError {
    /// The node count is out of range.
    NodeCount {
        /// The count given.
        count: usize,
    },
    /// The options are invalid.
    Options(cache::OptionsError),
    /// A port could not be allocated.
    Port(NetError),
    /// The simulation failed (while the nodes started, or on a kill or restart).
    Sim(sim::SimError),
    /// No node of the cluster has this id.
    UnknownNode {
        /// The id given.
        id: NodeId,
    },
    /// A real port could not be bound (real-network fixtures).
    Listen(std::io::Error),
    /// A node could not start (real-network fixtures), or was in the wrong state.
    Start(String),
}

impl fmt::Display for FixtureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FixtureError::NodeCount { count } => {
                write!(
                    f,
                    "invalid node count {count}: a cluster has 1 to {CLUSTER_NODES_MAX} nodes"
                )
            }
            FixtureError::Options(error) => write!(f, "invalid cluster options: {error}"),
            FixtureError::Port(error) => write!(f, "cannot allocate a node port: {error}"),
            FixtureError::Sim(error) => write!(f, "simulation error: {error}"),
            FixtureError::UnknownNode { id } => {
                write!(f, "unknown node {id}: the cluster's nodes are n1 to nN")
            }
            FixtureError::Listen(error) => write!(f, "cannot bind a port on 127.0.0.1: {error}"),
            FixtureError::Start(error) => write!(f, "cannot start a node: {error}"),
        }
    }
}

impl std::error::Error for FixtureError {}

struct Member {
    id: NodeId,
    sim_node: sim::NodeId,
    address: String,
    slot: Slot,
    /// How many times the cache node has started (a restart starts a fresh one).
    starts: Rc<Cell<u32>>,
}

/// An in-process cache cluster on a simulation.
///
/// Dropping it stops every cache node and kills its simulated node: every background
/// task is dropped and every port freed.
pub struct DistCluster {
    handle: sim::Handle,
    members: RefCell<Vec<Member>>,
    ring: RefCell<Ring>,
    options: Options,
    /// Every node's config, read by its init task; [`DistCluster::add_node`] appends.
    configs: Rc<RefCell<Vec<Option<NodeConfig>>>>,
    /// The planted bug every node runs with, if any.
    mutant: Option<cache::Mutant>,
}

impl fmt::Debug for DistCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let members = self.members.borrow();
        let ids: Vec<&str> = members.iter().map(|member| member.id.as_str()).collect();
        f.debug_struct("DistCluster").field("nodes", &ids).finish_non_exhaustive()
    }
}

/// An `n`-node cluster with replication factor 3 (options otherwise as given).
///
/// # Errors
///
/// As [`setup_in_process_cluster_rf`].
pub fn setup_in_process_cluster(
    sim: &mut Sim,
    n: usize,
    options: OptionsBuilder,
) -> Result<DistCluster, FixtureError> {
    setup_in_process_cluster_rf(sim, n, REPLICATION_FACTOR_DEFAULT, options)
}

/// An `n`-node cluster with replication factor `replication`: nodes `n1`…`nN`, each on
/// its own simulated node of the same name, all started and knowing each other.
///
/// # Errors
///
/// An invalid node count or option, or a simulation failure while the nodes start.
pub fn setup_in_process_cluster_rf(
    sim: &mut Sim,
    n: usize,
    replication: usize,
    options: OptionsBuilder,
) -> Result<DistCluster, FixtureError> {
    setup_in_process_cluster_mutant(sim, n, replication, options, None)
}

/// As [`setup_in_process_cluster_rf`], every node running the planted bug `mutant`
/// (see [`cache::Mutant`]): for proving that the checkers catch real bugs.
///
/// # Errors
///
/// As [`setup_in_process_cluster_rf`].
pub fn setup_in_process_cluster_mutant(
    sim: &mut Sim,
    n: usize,
    replication: usize,
    options: OptionsBuilder,
    mutant: Option<cache::Mutant>,
) -> Result<DistCluster, FixtureError> {
    let options = fixture_options(n, replication, options)?;
    let configs: Rc<RefCell<Vec<Option<NodeConfig>>>> = Rc::new(RefCell::new(vec![None; n]));
    let mut members = Vec::with_capacity(n);
    for index in 0..n {
        let name = format!("n{}", index + 1);
        let slot: Slot = Rc::default();
        let starts = Rc::new(Cell::new(0));
        let init = node_init(index, Rc::clone(&configs), (Rc::clone(&slot), Rc::clone(&starts)));
        let sim_node = sim.node(name.clone()).init(init).try_build().map_err(FixtureError::Sim)?;
        let address = allocate_port(sim, sim_node).map_err(FixtureError::Port)?;
        let id = NodeId::new(&name).expect("n1…n64 are valid node ids");
        members.push(Member { id, sim_node, address, slot, starts });
    }
    for (index, member) in members.iter().enumerate() {
        let peers = members.iter().filter(|peer| peer.id != member.id);
        configs.borrow_mut()[index] = Some(NodeConfig {
            id: member.id.clone(),
            address: member.address.clone(),
            peers: peers.map(|peer| (peer.id.clone(), peer.address.clone())).collect(),
            options: options.clone(),
            mutant,
        });
    }
    let ring = fixture_ring(&options, members.iter().map(|member| &member.id));
    let (members, ring) = (RefCell::new(members), RefCell::new(ring));
    let cluster = DistCluster { handle: sim.handle(), members, ring, options, configs, mutant };
    cluster.wait_started(sim)?;
    Ok(cluster)
}

/// The options of an `n`-node fixture with replication factor `replication`, checked
/// (shared by the simulated and the real-network fixtures).
pub(crate) fn fixture_options(
    n: usize,
    replication: usize,
    options: OptionsBuilder,
) -> Result<Options, FixtureError> {
    if n == 0 || n > CLUSTER_NODES_MAX {
        return Err(FixtureError::NodeCount { count: n });
    }
    options.replication_factor(replication).build().map_err(FixtureError::Options)
}

/// The ring every member of a fixture is on.
pub(crate) fn fixture_ring<'a>(
    options: &Options,
    ids: impl IntoIterator<Item = &'a NodeId>,
) -> Ring {
    let mut ring = Ring::new(options.replication_factor(), options.vnode_count_per_node());
    ring.rebuild(ids);
    ring
}

/// The init future of node `index`: start the cache node, publish it in `slot`, count
/// the start in `starts`, and clear the slot when the simulated node is killed.
fn node_init(
    index: usize,
    configs: Rc<RefCell<Vec<Option<NodeConfig>>>>,
    (slot, starts): (Slot, Rc<Cell<u32>>),
) -> impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
    move || {
        let (configs, slot) = (Rc::clone(&configs), Rc::clone(&slot));
        let starts = Rc::clone(&starts);
        Box::pin(async move {
            // Read when the task first runs: the fixture fills the configs after it
            // has built every node (and allocated every address).
            let config =
                configs.borrow()[index].clone().expect("configs are set before the sim runs");
            let node = match cache::start_on_sim(config) {
                Ok(node) => Rc::new(node),
                Err(error) => panic!("cache node n{} failed to start: {error}", index + 1),
            };
            *slot.borrow_mut() = Some(node);
            starts.set(starts.get() + 1);
            let _clear = ClearOnDrop(slot);
            // The node lives until its simulated node is killed.
            std::future::pending::<()>().await;
        })
    }
}

/// Empties a slot (and stops its node) when the init task is dropped by a kill.
struct ClearOnDrop(Slot);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        if let Some(node) = self.0.borrow_mut().take() {
            node.stop();
        }
    }
}

impl DistCluster {
    fn wait_started(&self, sim: &mut Sim) -> Result<(), FixtureError> {
        let slots: Vec<Slot> =
            self.members.borrow().iter().map(|member| Rc::clone(&member.slot)).collect();
        let steps_start = sim.steps();
        let all_started = || slots.iter().all(|slot| slot.borrow().is_some());
        sim.run_until(all_started).map_err(FixtureError::Sim)?;
        assert!(sim.steps() - steps_start < STARTUP_STEPS_MAX);
        Ok(())
    }

    /// The running node with this id; `None` for an unknown id or a killed node.
    pub fn by_id(&self, id: &NodeId) -> Option<Rc<CacheNode>> {
        let members = self.members.borrow();
        let member = members.iter().find(|member| member.id == *id)?;
        member.slot.borrow().clone()
    }

    /// The running node with this name (`"n1"`…), as [`DistCluster::by_id`].
    pub fn by_name(&self, name: &str) -> Option<Rc<CacheNode>> {
        self.by_id(&NodeId::new(name).ok()?)
    }

    /// The running node at `index` (0 is `n1`); `None` when out of range or killed.
    pub fn node(&self, index: usize) -> Option<Rc<CacheNode>> {
        self.members.borrow().get(index)?.slot.borrow().clone()
    }

    /// Every node's id, `n1` first.
    pub fn ids(&self) -> Vec<NodeId> {
        self.members.borrow().iter().map(|member| member.id.clone()).collect()
    }

    /// The simulated node that runs `id`.
    pub fn sim_node(&self, id: &NodeId) -> Option<sim::NodeId> {
        let members = self.members.borrow();
        members.iter().find(|member| member.id == *id).map(|member| member.sim_node)
    }

    /// The address of `id`.
    pub fn address(&self, id: &NodeId) -> Option<String> {
        let members = self.members.borrow();
        members.iter().find(|member| member.id == *id).map(|member| member.address.clone())
    }

    /// The ring of every node the fixture started ([`DistCluster::add_node`] and
    /// [`DistCluster::join_node`] included): the ring every live node converges to
    /// while none is declared dead. Do not hold it across a join.
    pub fn ring(&self) -> Ref<'_, Ring> {
        self.ring.borrow()
    }

    /// How many nodes the cluster has (joined ones included).
    pub fn len(&self) -> usize {
        self.members.borrow().len()
    }

    /// Whether the cluster has no node (never: a fixture starts at least one).
    pub fn is_empty(&self) -> bool {
        self.members.borrow().is_empty()
    }

    /// The options every node runs with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// How many times the cache node of `id` has started: 1 until a restart (or a kill
    /// and restart) starts a fresh one; 0 for an unknown id or one not started yet.
    pub fn start_count(&self, id: &NodeId) -> u32 {
        let members = self.members.borrow();
        members.iter().find(|member| member.id == *id).map_or(0, |member| member.starts.get())
    }

    /// Kills the simulated node of `id`: the cache node loses everything it held.
    ///
    /// # Errors
    ///
    /// For an unknown id.
    pub fn kill(&self, id: &NodeId) -> Result<(), FixtureError> {
        self.handle.kill(self.known_sim_node(id)?).map_err(FixtureError::Sim)
    }

    /// Restarts the simulated node of `id`: a fresh cache node on the same address.
    /// Run the simulation a little for it to start.
    ///
    /// # Errors
    ///
    /// For an unknown id.
    pub fn restart(&self, id: &NodeId) -> Result<(), FixtureError> {
        self.handle.restart(self.known_sim_node(id)?).map_err(FixtureError::Sim)
    }

    /// Starts one more node, `n{N+1}`, that knows every node of the fixture (killed
    /// ones included) and joins through them: they learn of it from its first
    /// heartbeats and gossip. The fixture's ring then includes it. Run the simulation
    /// for the others to learn of it and move its keys to it.
    ///
    /// # Errors
    ///
    /// When the cluster already holds [`CLUSTER_NODES_MAX`] nodes, or when the
    /// simulation fails while the node starts.
    pub fn add_node(&self, sim: &mut Sim) -> Result<NodeId, FixtureError> {
        let (id, slot) = self.start_node(sim)?;
        // Only the new node: a killed one would never start.
        let steps_start = sim.steps();
        sim.run_until(|| slot.borrow().is_some()).map_err(FixtureError::Sim)?;
        assert!(sim.steps() - steps_start < STARTUP_STEPS_MAX);
        Ok(id)
    }

    /// Adds a cache node like [`DistCluster::add_node`], without running the
    /// simulation: it starts when its init task first runs (until then
    /// [`DistCluster::by_id`] has no node for it). For the nemesis, mid-run.
    ///
    /// # Errors
    ///
    /// As for [`DistCluster::add_node`].
    pub fn join_node(&self, sim: &Sim) -> Result<NodeId, FixtureError> {
        self.start_node(sim).map(|(id, _)| id)
    }

    /// Builds the next node and its config, and adds it to the members, the ring and
    /// every other member's config (a restarted member then knows it as a peer).
    fn start_node(&self, sim: &Sim) -> Result<(NodeId, Slot), FixtureError> {
        let index = self.members.borrow().len();
        if index >= CLUSTER_NODES_MAX {
            return Err(FixtureError::NodeCount { count: index + 1 });
        }
        let name = format!("n{}", index + 1);
        let slot: Slot = Rc::default();
        self.configs.borrow_mut().push(None);
        let starts = Rc::new(Cell::new(0));
        let init =
            node_init(index, Rc::clone(&self.configs), (Rc::clone(&slot), Rc::clone(&starts)));
        let sim_node = sim.node(name.clone()).init(init).try_build().map_err(FixtureError::Sim)?;
        let address = allocate_port(sim, sim_node).map_err(FixtureError::Port)?;
        let id = NodeId::new(&name).expect("n1…n64 are valid node ids");
        let mut members = self.members.borrow_mut();
        let peers = members.iter().map(|peer| (peer.id.clone(), peer.address.clone()));
        self.configs.borrow_mut()[index] = Some(NodeConfig {
            id: id.clone(),
            address: address.clone(),
            peers: peers.collect(),
            options: self.options.clone(),
            mutant: self.mutant,
        });
        for config in self.configs.borrow_mut().iter_mut().take(index).flatten() {
            config.peers.push((id.clone(), address.clone()));
        }
        members.push(Member { id: id.clone(), sim_node, address, slot: Rc::clone(&slot), starts });
        self.ring.borrow_mut().rebuild(members.iter().map(|member| &member.id));
        assert_eq!(self.configs.borrow().len(), members.len());
        Ok((id, slot))
    }

    fn known_sim_node(&self, id: &NodeId) -> Result<sim::NodeId, FixtureError> {
        self.sim_node(id).ok_or_else(|| FixtureError::UnknownNode { id: id.clone() })
    }
}

impl Drop for DistCluster {
    fn drop(&mut self) {
        for member in self.members.borrow().iter() {
            if let Some(node) = member.slot.borrow_mut().take() {
                node.stop();
            }
            // Killing drops the node's tasks and frees its ports; a node killed already
            // (or a simulation that ended) has nothing left to free.
            let _ = self.handle.kill(member.sim_node);
        }
    }
}

/// A key whose owners on `ring` are exactly `desired`, in order: plain native brute
/// force over `prefix0`, `prefix1`, … up to `limit` candidates.
pub fn find_owner_key(
    ring: impl std::ops::Deref<Target = Ring>,
    prefix: &str,
    desired: &[NodeId],
    limit: u64,
) -> Option<String> {
    ring.find_key_with_owners(prefix, desired, limit)
}

/// Reserves a free port on `node` and returns its address (`name:port`): the
/// simulated, race-free counterpart of picking a free loopback port.
///
/// # Errors
///
/// For an unknown or killed node, or a full port range.
pub fn allocate_port(sim: &sim::Handle, node: sim::NodeId) -> Result<String, NetError> {
    let addr = sim.allocate_port(node)?;
    let name = sim.node_name(addr.node()).expect("the node exists: a port was just reserved on it");
    Ok(format!("{name}:{}", addr.port()))
}
