//! [`RealCluster`]: N cache nodes on 127.0.0.1, each on a port it was handed bound
//! (feature `net`), the real-network counterpart of [`crate::DistCluster`].

use std::cell::RefCell;
use std::fmt;
use std::net::TcpListener;
use std::rc::Rc;
use std::time::Duration;

use cache::{CacheNode, NodeConfig, NodeId, Options, OptionsBuilder, Ring};
use cache_net::{Keys, NetNode};

use crate::cluster::{FixtureError, fixture_options, fixture_ring};
use crate::scenario::{ScenarioCluster, ScenarioFuture};

/// Real time a loopback cluster settles for: replica writes take well under a
/// millisecond here, hint replays run every 200 ms.
const REAL_SETTLE: Duration = Duration::from_millis(500);
/// Tries, 10 ms apart, at binding a killed node's port again.
const BIND_AGAIN_TRIES_MAX: u32 = 100;
/// How long a whole scenario may take on the real network.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(60);

struct RealMember {
    id: NodeId,
    address: String,
    config: NodeConfig,
    node: RefCell<Option<NetNode>>,
}

/// A cache cluster on real TCP ports of 127.0.0.1, all nodes knowing each other.
///
/// Dropping it stops every node; their ports are free again at the runtime's next
/// turn.
pub struct RealCluster {
    members: Vec<RealMember>,
    ring: Ring,
    options: Options,
    keys: Keys,
}

impl fmt::Debug for RealCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<(&str, &str)> = self
            .members
            .iter()
            .map(|member| (member.id.as_str(), member.address.as_str()))
            .collect();
        f.debug_struct("RealCluster").field("nodes", &nodes).finish_non_exhaustive()
    }
}

impl RealCluster {
    /// Starts `n` nodes `n1`…`nN` with replication factor `replication`, each on a
    /// listener bound to `127.0.0.1:0` and handed to it (no port is guessed, and none
    /// can be taken between allocation and use), all proving `keys`.
    ///
    /// # Errors
    ///
    /// An invalid node count or option, or a port that cannot be bound.
    ///
    /// # Panics
    ///
    /// Outside a tokio `LocalSet` on a current-thread runtime with I/O and time.
    pub fn start(
        n: usize,
        replication: usize,
        options: OptionsBuilder,
        keys: Keys,
    ) -> Result<RealCluster, FixtureError> {
        RealCluster::start_mutant(n, replication, options, keys, None)
    }

    /// As [`RealCluster::start`], every node running the planted bug `mutant`: for
    /// proving that the real-network checks catch real bugs.
    ///
    /// # Errors
    ///
    /// As [`RealCluster::start`].
    pub fn start_mutant(
        n: usize,
        replication: usize,
        options: OptionsBuilder,
        keys: Keys,
        mutant: Option<cache::Mutant>,
    ) -> Result<RealCluster, FixtureError> {
        let options = fixture_options(n, replication, options)?;
        let listeners = (0..n)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(FixtureError::Listen)?;
        let addresses = listeners
            .iter()
            .map(|listener| listener.local_addr().map(|address| address.to_string()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(FixtureError::Listen)?;
        let ids: Vec<NodeId> =
            (1..=n).map(|index| NodeId::new(&format!("n{index}")).expect("n1…n64")).collect();
        let mut members = Vec::with_capacity(n);
        for (index, listener) in listeners.into_iter().enumerate() {
            let peers = (0..n)
                .filter(|other| *other != index)
                .map(|other| (ids[other].clone(), addresses[other].clone()))
                .collect();
            let mut config =
                NodeConfig::new(ids[index].clone(), &addresses[index], peers, options.clone());
            config.mutant = mutant;
            let node = NetNode::start(config.clone(), listener, keys.clone())
                .map_err(|error| FixtureError::Start(error.to_string()))?;
            let (id, address) = (ids[index].clone(), addresses[index].clone());
            members.push(RealMember { id, address, config, node: RefCell::new(Some(node)) });
        }
        let ring = fixture_ring(&options, &ids);
        Ok(RealCluster { members, ring, options, keys })
    }

    fn member(&self, id: &NodeId) -> Result<&RealMember, FixtureError> {
        let found = self.members.iter().find(|member| member.id == *id);
        found.ok_or_else(|| FixtureError::UnknownNode { id: id.clone() })
    }

    /// The running node with this id; `None` for an unknown id or a stopped node.
    pub fn by_id(&self, id: &NodeId) -> Option<Rc<CacheNode>> {
        let member = self.member(id).ok()?;
        member.node.borrow().as_ref().map(NetNode::shared_node)
    }

    /// The network counters of node `id`, while it runs.
    pub fn net_stats(&self, id: &NodeId) -> Option<cache_net::NetStatsSnapshot> {
        let member = self.member(id).ok()?;
        member.node.borrow().as_ref().map(NetNode::net_stats)
    }

    /// The address node `id` serves on.
    pub fn address(&self, id: &NodeId) -> Option<&str> {
        self.member(id).ok().map(|member| member.address.as_str())
    }

    /// The ids `n1`…`nN`.
    pub fn ids(&self) -> Vec<NodeId> {
        self.members.iter().map(|member| member.id.clone()).collect()
    }

    /// Stops node `id`: it loses everything it held.
    ///
    /// # Errors
    ///
    /// For an unknown id.
    pub fn kill(&self, id: &NodeId) -> Result<(), FixtureError> {
        drop(self.member(id)?.node.borrow_mut().take());
        Ok(())
    }

    /// Starts a fresh node (no memory) for `id` on its old address, after a kill. Its
    /// port was freed when it was killed; binding it again can fail if another process
    /// took it meanwhile (the one place this fixture binds a port it did not pick).
    ///
    /// # Errors
    ///
    /// For an unknown id, a node still running, or a port taken meanwhile.
    pub async fn restart(&self, id: &NodeId) -> Result<(), FixtureError> {
        let member = self.member(id)?;
        if member.node.borrow().is_some() {
            return Err(FixtureError::Start(format!("{id} is running: kill it first")));
        }
        let listener = bind_again(&member.address).await?;
        let node = NetNode::start(member.config.clone(), listener, self.keys.clone())
            .map_err(|error| FixtureError::Start(error.to_string()))?;
        *member.node.borrow_mut() = Some(node);
        Ok(())
    }
}

/// Tries to bind a port a killed node held: its listener closes when its cancelled
/// task next runs, so the first tries may find it taken still.
async fn bind_again(address: &str) -> Result<TcpListener, FixtureError> {
    let mut tries_left = BIND_AGAIN_TRIES_MAX;
    loop {
        tokio::task::yield_now().await;
        match TcpListener::bind(address) {
            Ok(listener) => return Ok(listener),
            Err(error) if tries_left == 0 => return Err(FixtureError::Listen(error)),
            Err(_) => tries_left -= 1,
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl ScenarioCluster for RealCluster {
    fn node(&self, name: &str) -> Rc<CacheNode> {
        let id = NodeId::new(name).unwrap_or_else(|error| panic!("{name}: {error}"));
        self.by_id(&id).unwrap_or_else(|| panic!("node {name} is not running"))
    }

    fn ring(&self) -> Ring {
        self.ring.clone()
    }

    fn options(&self) -> &Options {
        &self.options
    }

    fn kill(&self, name: &str) {
        let id = NodeId::new(name).unwrap_or_else(|error| panic!("{name}: {error}"));
        RealCluster::kill(self, &id).unwrap_or_else(|error| panic!("{error}"));
    }

    fn settle(&self) -> ScenarioFuture {
        Box::pin(tokio::time::sleep(REAL_SETTLE))
    }
}

/// Runs `body` on an `n`-node cluster on 127.0.0.1 (a cluster secret on, to run the
/// handshake too), on a fresh current-thread runtime, within a minute.
///
/// # Errors
///
/// A fixture error, or a body that did not finish in time, as text. A panic in the
/// body fails the calling test as it is.
pub fn on_real(
    n: usize,
    replication: usize,
    options: OptionsBuilder,
    body: impl FnOnce(Rc<dyn ScenarioCluster>) -> ScenarioFuture,
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start a runtime: {error}"))?;
    let local = tokio::task::LocalSet::new();
    let secret = cache_net::Secret::new(b"the test cluster's secret".to_vec())
        .map_err(|error| error.to_string())?;
    let keys = Keys { cluster: Some(secret), client_token: None };
    local.block_on(&runtime, async move {
        let cluster =
            RealCluster::start(n, replication, options, keys).map_err(|e| e.to_string())?;
        let cluster: Rc<dyn ScenarioCluster> = Rc::new(cluster);
        tokio::time::timeout(SCENARIO_TIMEOUT, body(cluster))
            .await
            .map_err(|_| format!("the scenario took more than {SCENARIO_TIMEOUT:?}"))
    })
}
