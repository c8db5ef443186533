//! Tests of whole nodes on the simulator: a few cache nodes on their own simulated
//! nodes, driven through their API from the simulation's main task.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use crate::consistency::Consistency;
use crate::mutant::Mutant;
use crate::node::{CacheNode, NodeConfig};
use crate::node_id::NodeId;
use crate::options::Options;
use crate::sim_runtime::start_on_sim;

type Slot = Rc<RefCell<Option<Rc<CacheNode>>>>;
type Configs = Rc<RefCell<Vec<Option<NodeConfig>>>>;

/// Steps a cluster's start may take at most.
const START_STEPS_MAX: u64 = 100_000;

struct Cluster {
    slots: Vec<Slot>,
    sim_nodes: Vec<sim::NodeId>,
}

impl Cluster {
    /// Starts one cache node per entry of `options` (`n1`, `n2`, …), all knowing each
    /// other.
    fn start(sim: &mut sim::Sim, options: &[Options]) -> Cluster {
        Cluster::start_with(sim, options, None)
    }

    /// As [`Cluster::start`], every node running the planted bug `mutant`.
    fn start_with(sim: &mut sim::Sim, options: &[Options], mutant: Option<Mutant>) -> Cluster {
        #[cfg(not(feature = "mutants"))]
        assert!(mutant.is_none(), "planted bugs need the `mutants` feature");
        let configs: Configs = Rc::new(RefCell::new(vec![None; options.len()]));
        let (mut slots, mut sim_nodes, mut members) = (Vec::new(), Vec::new(), Vec::new());
        for index in 0..options.len() {
            let name = format!("n{}", index + 1);
            let slot: Slot = Rc::default();
            let init = node_init(index, Rc::clone(&configs), Rc::clone(&slot));
            let sim_node = sim.node(name.clone()).init(init).build();
            let addr = sim.handle().allocate_port(sim_node).unwrap();
            members.push((NodeId::new(&name).unwrap(), format!("{name}:{}", addr.port())));
            slots.push(slot);
            sim_nodes.push(sim_node);
        }
        for (index, (id, address)) in members.iter().enumerate() {
            let peers = members.iter().filter(|(peer, _)| peer != id).cloned().collect();
            configs.borrow_mut()[index] = Some(NodeConfig {
                id: id.clone(),
                address: address.clone(),
                peers,
                options: options[index].clone(),
                #[cfg(feature = "mutants")]
                mutant,
            });
        }
        let cluster = Cluster { slots, sim_nodes };
        cluster.wait_started(sim);
        cluster
    }

    fn wait_started(&self, sim: &mut sim::Sim) {
        let steps_start = sim.steps();
        sim.run_until(|| self.slots.iter().all(|slot| slot.borrow().is_some())).unwrap();
        assert!(sim.steps() - steps_start < START_STEPS_MAX);
    }

    fn node(&self, index: usize) -> Option<Rc<CacheNode>> {
        self.slots[index].borrow().clone()
    }
}

fn node_init(
    index: usize,
    configs: Configs,
    slot: Slot,
) -> impl Fn() -> Pin<Box<dyn Future<Output = ()>>> {
    move || {
        let (configs, slot) = (Rc::clone(&configs), Rc::clone(&slot));
        Box::pin(async move {
            let config = configs.borrow()[index].clone().expect("set before the sim runs");
            let node = Rc::new(start_on_sim(config).expect("the node starts"));
            *slot.borrow_mut() = Some(node);
            let _clear = ClearOnDrop(slot);
            std::future::pending::<()>().await;
        })
    }
}

/// Empties a slot (and stops its node) when a kill drops the init task.
struct ClearOnDrop(Slot);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        if let Some(node) = self.0.borrow_mut().take() {
            node.stop();
        }
    }
}

/// Options with every background loop and repair path off.
fn quiet_options() -> crate::options::OptionsBuilder {
    Options::builder()
        .heartbeat_interval_ms(0)
        .suspect_after_ms(0)
        .dead_after_ms(0)
        .gossip_interval_ms(0)
        .hint_ttl_ms(0)
        .merkle_sync_interval_ms(0)
        .rebalance_interval_ms(0)
        .sweep_interval_ms(0)
}

/// A read at ALL finds one owner without the key; returns whether that owner holds
/// it again a second later.
fn stale_owner_repaired(read_repair: bool, mutant: Option<Mutant>) -> bool {
    let mut sim = sim::Sim::new(7);
    let options = quiet_options()
        .read_consistency(Consistency::All)
        .write_consistency(Consistency::All)
        .read_repair(read_repair)
        .build()
        .unwrap();
    let cluster = Cluster::start_with(&mut sim, &vec![options; 3], mutant);
    let (n1, n2) = (cluster.node(0).unwrap(), cluster.node(1).unwrap());
    sim.block_on({
        let n1 = Rc::clone(&n1);
        async move { n1.set("k", "v", None).await.unwrap() }
    })
    .unwrap();
    assert!(n2.local_entry("k").is_some(), "an ALL write reaches every owner");
    assert!(n2.debug_drop_local("k").is_some());
    let item = sim.block_on(async move { n1.get("k").await.unwrap() }).unwrap();
    assert_eq!(item.map(|item| item.value), Some(bytes::Bytes::from_static(b"v")));
    sim.run_for(Duration::from_secs(1)).unwrap();
    n2.local_entry("k").is_some()
}

#[test]
fn read_repair_repairs_a_stale_owner_when_on_and_never_when_off() {
    assert!(stale_owner_repaired(true, None));
    assert!(!stale_owner_repaired(false, None));
}

#[cfg(feature = "mutants")]
#[test]
fn read_repair_noop_repairs_nothing() {
    assert!(!stale_owner_repaired(true, Some(Mutant::ReadRepairNoop)));
}

/// An ALL write on three nodes running `mutant`: its outcome, and how many nodes hold
/// the key afterwards.
#[cfg(feature = "mutants")]
fn write_all(mutant: Mutant) -> (Result<crate::version::Version, crate::error::Error>, usize) {
    let mut sim = sim::Sim::new(7);
    let options = quiet_options().write_consistency(Consistency::All).build().unwrap();
    let cluster = Cluster::start_with(&mut sim, &vec![options; 3], Some(mutant));
    let n1 = cluster.node(0).unwrap();
    let outcome = sim.block_on(async move { n1.set("k", "v", None).await }).unwrap();
    sim.run_for(Duration::from_secs(1)).unwrap();
    let held = (0..3).filter(|&index| cluster.node(index).unwrap().local_contains("k")).count();
    (outcome, held)
}

#[cfg(feature = "mutants")]
#[test]
fn writes_report_failure_replicates_then_fails() {
    let (outcome, held) = write_all(Mutant::WritesReportFailure);
    assert!(matches!(outcome, Err(crate::error::Error::QuorumFailed { .. })), "{outcome:?}");
    assert_eq!(held, 3);
}

#[cfg(feature = "mutants")]
#[test]
fn replicate_to_fewer_acknowledges_with_a_copy_missing() {
    let (outcome, held) = write_all(Mutant::ReplicateToFewer);
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(held, 2);
}

/// One client operation through node `index`, whatever its outcome.
async fn operate(node: Rc<CacheNode>, step: usize) {
    // Four operations in a row on each key: writes, then a read, then a remove.
    let key = format!("k{}", (step / 4) % 8);
    match step % 4 {
        0 | 1 => drop(node.set(&key, format!("v{step}"), None).await),
        2 => drop(node.get(&key).await),
        _ => drop(node.remove(&[key.as_str()]).await),
    }
}

/// Runs client operations `steps` through the live nodes, 50 ms apart.
fn workload(sim: &mut sim::Sim, cluster: &Cluster, steps: std::ops::Range<usize>) {
    for step in steps {
        if let Some(node) = cluster.node(step % cluster.slots.len()) {
            sim.block_on(operate(node, step)).unwrap();
        }
        sim.run_for(Duration::from_millis(50)).unwrap();
    }
}

/// The cache's buggify sites reached in one seed's run: a workload, a crash and a
/// restart, a key listing, then quiet time for the background loops.
fn cache_sites_reached(seed: u64) -> Vec<String> {
    let mut sim = sim::Builder::new().seed(seed).buggify(true).build();
    // Reads at ONE on some nodes and at QUORUM on others: both read paths run.
    let options: Vec<Options> = (0..5)
        .map(|index| {
            let read = if index < 2 { Consistency::One } else { Consistency::Quorum };
            Options::builder().read_consistency(read).build().unwrap()
        })
        .collect();
    let cluster = Cluster::start(&mut sim, &options);
    workload(&mut sim, &cluster, 0..100);
    // Shorter than `dead_after_ms`: the node comes back as the same member and its
    // bootstrap sync pulls what it missed.
    sim.kill(cluster.sim_nodes[4]).unwrap();
    workload(&mut sim, &cluster, 100..140);
    sim.restart(cluster.sim_nodes[4]).unwrap();
    cluster.wait_started(&mut sim);
    workload(&mut sim, &cluster, 200..300);
    let n1 = cluster.node(0).unwrap();
    sim.block_on(async move { drop(n1.list_keys("*", 0).await) }).unwrap();
    sim.run_for(Duration::from_secs(30)).unwrap();
    let sites = sim.buggify_sites().into_iter().map(|(site, _)| site);
    sites.filter(|site| site.contains("cache/src/")).collect()
}

#[test]
fn buggify_reaches_fifteen_cache_sites_each_its_own() {
    let sites: std::collections::BTreeSet<String> = (1..=3).flat_map(cache_sites_reached).collect();
    eprintln!("{} cache sites reached: {sites:#?}", sites.len());
    let files: std::collections::BTreeSet<&str> =
        sites.iter().map(|site| site.split(':').next().unwrap()).collect();
    assert!(sites.len() >= 15, "{} sites reached: {sites:#?}", sites.len());
    assert!(files.len() >= 8, "sites spread over the cache's files: {files:?}");
    assert!(sites.iter().all(|site| !site.contains("sim_runtime.rs")), "{sites:#?}");
}
