//! Helpers shared by the scenario tests (each test binary uses a subset).

#![allow(dead_code)]

use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use cache::{CacheNode, NodeId};
use cachesim::{DistCluster, find_owner_key};
use sim::Sim;

/// A seeded test body's result: the error text names what failed.
pub(crate) type TestResult = Result<(), String>;

/// Candidate keys a test searches for a given ordered owner list.
pub(crate) const KEY_CANDIDATES_MAX: u64 = 1_000_000;

/// The node id `name`.
pub(crate) fn id(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

/// The node ids `names`.
pub(crate) fn ids(names: &[&str]) -> Vec<NodeId> {
    names.iter().map(|name| id(name)).collect()
}

/// The running node `name`; panics (failing the test) when it is not running.
pub(crate) fn node(cluster: &DistCluster, name: &str) -> Rc<CacheNode> {
    cluster.by_name(name).unwrap_or_else(|| panic!("node {name} is not running"))
}

/// A key starting with `prefix` whose owners are exactly `owners`, in order.
pub(crate) fn key_owned_by(cluster: &DistCluster, prefix: &str, owners: &[&str]) -> String {
    find_owner_key(cluster.ring(), prefix, &ids(owners), KEY_CANDIDATES_MAX)
        .unwrap_or_else(|| panic!("no key has owners {owners:?} on this ring"))
}

/// Runs `future` on `sim` to completion; a simulation failure becomes the error text.
pub(crate) fn run<T: 'static>(
    sim: &mut Sim,
    future: impl Future<Output = T> + 'static,
) -> Result<T, String> {
    sim.block_on(future).map_err(|error| error.to_string())
}

/// Runs `sim` for `duration`; a simulation failure becomes the error text.
pub(crate) fn run_for(sim: &mut Sim, duration: Duration) -> TestResult {
    sim.run_for(duration).map_err(|error| error.to_string())
}
