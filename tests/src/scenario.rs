//! One scenario body, two worlds: [`ScenarioCluster`] is what a data-path test needs of
//! a cluster, implemented by [`DistCluster`] on the simulator and, with the `net`
//! feature, by `RealCluster` on 127.0.0.1.
//!
//! A body is an async function of the cluster; [`on_sim`] runs it inside a simulation
//! (its waits are virtual time), and `on_real` on a tokio runtime (its waits are real,
//! and short).

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use cache::{CacheNode, NodeId, Options, OptionsBuilder, Ring};
use sim::Sim;

use crate::cluster::{DistCluster, find_owner_key, setup_in_process_cluster_rf};

/// A scenario body's future.
pub type ScenarioFuture = Pin<Box<dyn Future<Output = ()>>>;

/// Candidate keys searched for a given ordered owner list.
pub const KEY_CANDIDATES_MAX: u64 = 1_000_000;

/// What a scenario body drives, whichever runtime it runs on.
pub trait ScenarioCluster {
    /// The running node `name` (`n1`…`nN`).
    ///
    /// # Panics
    ///
    /// When no node of that name is running (failing the test).
    fn node(&self, name: &str) -> Rc<CacheNode>;

    /// The cluster's ring, every member on it.
    fn ring(&self) -> Ring;

    /// The nodes' options.
    fn options(&self) -> &Options;

    /// Stops node `name` for good: it loses what it held and answers nothing.
    ///
    /// # Panics
    ///
    /// For an unknown node.
    fn kill(&self, name: &str);

    /// Waits long enough for in-flight replica writes, hints and repairs to land
    /// (virtual seconds on the simulator, a fraction of a real second on loopback).
    fn settle(&self) -> ScenarioFuture;
}

/// A key starting with `prefix` whose owners are exactly `owners`, in order.
///
/// # Panics
///
/// When no such key exists among [`KEY_CANDIDATES_MAX`] candidates.
pub fn key_owned_by(cluster: &dyn ScenarioCluster, prefix: &str, owners: &[&str]) -> String {
    let owners: Vec<NodeId> = owners.iter().map(|name| NodeId::new(name).unwrap()).collect();
    find_owner_key(&cluster.ring(), prefix, &owners, KEY_CANDIDATES_MAX)
        .unwrap_or_else(|| panic!("no key has owners {owners:?} on this ring"))
}

/// Virtual time a simulated cluster settles for (beyond the RPC timeout of 5 s).
const SIM_SETTLE: Duration = Duration::from_secs(6);

impl ScenarioCluster for DistCluster {
    fn node(&self, name: &str) -> Rc<CacheNode> {
        self.by_name(name).unwrap_or_else(|| panic!("node {name} is not running"))
    }

    fn ring(&self) -> Ring {
        DistCluster::ring(self).clone()
    }

    fn options(&self) -> &Options {
        DistCluster::options(self)
    }

    fn kill(&self, name: &str) {
        let id = NodeId::new(name).unwrap_or_else(|error| panic!("{name}: {error}"));
        DistCluster::kill(self, &id).unwrap_or_else(|error| panic!("{error}"));
    }

    fn settle(&self) -> ScenarioFuture {
        Box::pin(sim::time::sleep(SIM_SETTLE))
    }
}

/// Runs `body` on an `n`-node simulated cluster with replication factor
/// `replication`, inside `sim`.
///
/// # Errors
///
/// A fixture error or a simulation failure (a panic in the body among them), as text.
pub fn on_sim(
    sim: &mut Sim,
    n: usize,
    replication: usize,
    options: OptionsBuilder,
    body: impl FnOnce(Rc<dyn ScenarioCluster>) -> ScenarioFuture,
) -> Result<(), String> {
    let cluster = setup_in_process_cluster_rf(sim, n, replication, options)
        .map_err(|error| error.to_string())?;
    let cluster: Rc<dyn ScenarioCluster> = Rc::new(cluster);
    sim.block_on(body(cluster)).map_err(|error| error.to_string())
}
