//! Rebalance on join and leave (hypercache.md §2.13) as deterministic simulation
//! tests: a join moves ownership and data, a leave re-replicates, a restarted node
//! gets its data back, strays drain once, receivers guard ownership, and an idle
//! cluster stays silent. Each runs over several seeds; replay one with `SIM_SEED=S`.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use cache::{
    CacheNode, Entry, Error, Item, Options, OptionsBuilder, PeerRequest, PeerResponse,
    RebalanceRequest, RebalanceResponse, TransferOutcome, Version,
};
use cachesim::{DistCluster, find_owner_key, setup_in_process_cluster};
use sim::Sim;

mod support;
use support::{TestResult, id, node};

/// Seeds each test runs unless `SIM_SEEDS` says otherwise.
const SEEDS: u64 = 8;
/// The granularity at which tests watch the cluster.
const STEP: Duration = Duration::from_millis(50);
/// The longest a test waits for the cluster to converge.
const CONVERGENCE_MAX: Duration = Duration::from_secs(30);

fn running(cluster: &DistCluster) -> Vec<Rc<CacheNode>> {
    cluster.ids().iter().filter_map(|id| cluster.by_id(id)).collect()
}

/// Fast rebalance ticks, as in the reference's rebalance tests.
fn options() -> OptionsBuilder {
    Options::builder().rebalance_interval_ms(50)
}

/// Runs `sim` in steps of [`STEP`] until `done` holds, for at most `limit`.
fn run_until_within(
    sim: &mut Sim,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> Result<Duration, String> {
    let start = sim.now();
    loop {
        if done() {
            return Ok(sim.now() - start);
        }
        if sim.now() - start >= limit {
            return Err(format!("condition not reached within {limit:?}"));
        }
        sim.run_for(STEP).map_err(|e| e.to_string())?;
    }
}

fn entry(index: u64) -> Entry {
    Entry::Item(Item::new(Bytes::from(format!("value{index}")), Version::new(index + 1, id("n1"))))
}

/// Writes `count` keys on their owners on the fixture's ring (as the reference's
/// `populateKeys` does, with `DebugInject`).
fn inject_keys(cluster: &DistCluster, count: u64) -> Result<Vec<String>, String> {
    let mut keys = Vec::new();
    for index in 0..count {
        let key = format!("key{index}");
        for owner in cluster.ring().lookup(&key).iter() {
            let owner = cluster.by_id(owner).expect("every node runs");
            let applied = owner.debug_inject(&key, entry(index)).map_err(|e| e.to_string())?;
            assert!(applied.is_applied());
        }
        keys.push(key);
    }
    Ok(keys)
}

/// Where the keys are not as `ring` says: a running node that holds a key it does not
/// own, misses one it owns, or holds another entry than written.
fn placement_errors(cluster: &DistCluster, ring: &cache::Ring, keys: &[String]) -> Vec<String> {
    let mut errors = Vec::new();
    for (index, key) in (0..).zip(keys) {
        let owners = ring.lookup(key).to_vec();
        for node_id in cluster.ids() {
            let Some(node) = cluster.by_id(&node_id) else { continue };
            let held = node.local_entry(key);
            match (owners.contains(&node_id), held) {
                (true, None) => errors.push(format!("{node_id} misses {key}")),
                (false, Some(_)) => errors.push(format!("{node_id} holds foreign {key}")),
                (true, Some(held)) if held != entry(index) => {
                    errors.push(format!("{node_id}: {key} is {held:?}"));
                }
                _ => {}
            }
        }
    }
    errors
}

/// Runs until every running node's ring has `ring`'s nodes and every key sits exactly
/// on its owners.
fn converge(
    sim: &mut Sim,
    cluster: &DistCluster,
    ring: &cache::Ring,
    keys: &[String],
) -> Result<Duration, String> {
    let nodes = running(cluster);
    let took = run_until_within(sim, CONVERGENCE_MAX, || {
        nodes.iter().all(|node| node.ring().nodes() == ring.nodes())
            && placement_errors(cluster, ring, keys).is_empty()
    });
    took.map_err(|error| {
        let errors = placement_errors(cluster, ring, keys);
        format!("{error}: {} misplaced, first {:?}", errors.len(), errors.first())
    })
}

fn rebalance_counters(node: &CacheNode) -> [u64; 6] {
    let c = node.metrics().counters;
    [
        c.rebalanced_keys,
        c.rebalanced_primary,
        c.rebalance_batches,
        c.rebalanced_replica_diff,
        c.rebalance_throttle,
        c.rebalance_replica_diff_throttle,
    ]
}

fn sum(cluster: &DistCluster, field: impl Fn(&cache::Metrics) -> u64) -> u64 {
    running(cluster).iter().map(|node| field(&node.metrics().counters)).sum()
}

/// TestDistRebalanceJoin and TestDistRebalanceThrottle: a node joins through the
/// existing members; every key it owns moves to it (as primary or replica), the nodes
/// it displaced release theirs, the moves are batched and throttled, and the cluster
/// is quiet again afterwards.
#[test]
fn join_moves_ownership_and_data() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let options = options().rebalance_batch_size(8);
        let cluster = setup_in_process_cluster(sim, 4, options).map_err(|e| e.to_string())?;
        let keys = inject_keys(&cluster, 400)?;
        sim.run_for(Duration::from_secs(1)).map_err(|e| e.to_string())?;
        let joined = cluster.add_node(sim).map_err(|e| e.to_string())?;
        assert_eq!(joined, id("n5"));
        let ring = cluster.ring().clone();
        converge(sim, &cluster, &ring, &keys)?;
        let n5 = node(&cluster, "n5");
        let primaries = keys.iter().filter(|k| ring.lookup(k).primary() == Some(&joined));
        assert!(primaries.clone().count() > 0);
        assert!(
            primaries.clone().all(|key| n5.local_contains(key)),
            "the new primary holds its keys"
        );
        let owned = keys.iter().filter(|key| ring.is_owner(key, &joined)).count();
        assert!(owned < keys.len() * 8 / 10, "n5 owns {owned} of {}", keys.len());
        assert!(sum(&cluster, |c| c.rebalanced_primary) > 0);
        assert!(sum(&cluster, |c| c.rebalanced_keys) >= owned as u64);
        assert!(sum(&cluster, |c| c.rebalance_batches) > 0);
        assert!(sum(&cluster, |c| c.rebalance_throttle) > 0, "batches of 8 wait for a slot");
        let before: Vec<[u64; 6]> =
            running(&cluster).iter().map(|n| rebalance_counters(n)).collect();
        sim.run_for(Duration::from_secs(3)).map_err(|e| e.to_string())?;
        let after: Vec<[u64; 6]> =
            running(&cluster).iter().map(|n| rebalance_counters(n)).collect();
        assert_eq!(before, after, "quiet once converged");
        Ok(())
    });
}

/// TestDistRebalanceLeave, with a strong assertion: a node killed and declared dead
/// leaves; every key it owned is copied to its new owners, so that every key is again
/// on exactly its owners on the smaller ring.
#[test]
fn leave_rereplicates_to_the_new_owners() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let cluster = setup_in_process_cluster(sim, 5, options()).map_err(|e| e.to_string())?;
        let keys = inject_keys(&cluster, 200)?;
        sim.run_for(Duration::from_secs(1)).map_err(|e| e.to_string())?;
        cluster.kill(&id("n5")).map_err(|e| e.to_string())?;
        let mut ring = cluster.ring().clone();
        ring.rebuild(&[id("n1"), id("n2"), id("n3"), id("n4")]);
        let moved = keys.iter().filter(|key| cluster.ring().is_owner(key, &id("n5"))).count();
        assert!(moved > 0);
        converge(sim, &cluster, &ring, &keys)?;
        assert!(sum(&cluster, |c| c.rebalanced_keys) >= moved as u64);
        assert!(sum(&cluster, |c| c.rebalanced_replica_diff + c.rebalanced_primary) > 0);
        assert!(sum(&cluster, |c| c.nodes_removed) >= 4);
        Ok(())
    });
}

/// A node restarted quickly, before anyone declares it dead: it comes back with an
/// empty memory on the same ring, and its peers, seeing a new boot id in its acks,
/// copy back every key it owns.
#[test]
fn quickly_restarted_node_gets_its_data_back() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        // Anti-entropy off: its bootstrap sync would refill the node on its own.
        let options = options().merkle_sync_interval_ms(0);
        let cluster = setup_in_process_cluster(sim, 5, options).map_err(|e| e.to_string())?;
        let keys = inject_keys(&cluster, 200)?;
        sim.run_for(Duration::from_secs(2)).map_err(|e| e.to_string())?;
        let boot_id = node(&cluster, "n2").boot_id();
        cluster.kill(&id("n2")).map_err(|e| e.to_string())?;
        sim.run_for(Duration::from_millis(300)).map_err(|e| e.to_string())?;
        cluster.restart(&id("n2")).map_err(|e| e.to_string())?;
        sim.run_for(STEP).map_err(|e| e.to_string())?;
        let n2 = node(&cluster, "n2");
        assert_ne!(n2.boot_id(), boot_id);
        assert!(n2.local_entries().is_empty(), "a restarted node has lost its memory");
        let ring = cluster.ring().clone();
        converge(sim, &cluster, &ring, &keys)?;
        let owned = keys.iter().filter(|key| ring.is_owner(key, &id("n2"))).count();
        assert_eq!(n2.local_entries().len(), owned);
        assert_eq!(sum(&cluster, |c| c.nodes_removed), 0, "never declared dead");
        Ok(())
    });
}

/// TestDistRebalance_IdleClusterIsSilent: a converged cluster with fast rebalance,
/// heartbeat and gossip loops moves nothing, tick after tick.
#[test]
fn idle_cluster_is_silent() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let cluster =
            setup_in_process_cluster(sim, 5, idle_options()).map_err(|e| e.to_string())?;
        let writer = node(&cluster, "n1");
        sim.block_on(async move {
            for index in 0..20 {
                writer.set(&format!("idle{index}"), "v", None).await.unwrap();
            }
        })
        .map_err(|e| e.to_string())?;
        sim.run_for(Duration::from_secs(5)).map_err(|e| e.to_string())?;
        assert_silent(&cluster);
        Ok(())
    });
}

/// TestDistRebalance_IdleClusterUnderTrafficIsSilent: steady writes from every node,
/// 2 ms apart for 2 s, move nothing either: replica writes only reach owners.
#[test]
fn idle_cluster_under_traffic_is_silent() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let cluster =
            setup_in_process_cluster(sim, 5, idle_options()).map_err(|e| e.to_string())?;
        let nodes = running(&cluster);
        let written = sim
            .block_on(async move {
                let mut written = 0;
                for index in 0..1_000_usize {
                    let writer = &nodes[index % nodes.len()];
                    written +=
                        usize::from(writer.set(&format!("t{index}"), "v", None).await.is_ok());
                    sim::time::sleep(Duration::from_millis(2)).await;
                }
                written
            })
            .map_err(|e| e.to_string())?;
        assert_eq!(written, 1_000);
        sim.run_for(Duration::from_secs(1)).map_err(|e| e.to_string())?;
        assert_silent(&cluster);
        Ok(())
    });
}

/// The reference's steady-state options: rebalance every 50 ms, gossip every 30 ms,
/// heartbeats every 100 ms (the reference's 20 ms is below the simulated network's
/// 20 ms worst round trip).
fn idle_options() -> OptionsBuilder {
    options()
        .gossip_interval_ms(30)
        .heartbeat_interval_ms(100)
        .probe_timeout_ms(50)
        .suspect_after_ms(400)
        .dead_after_ms(1_000)
}

fn assert_silent(cluster: &DistCluster) {
    for node in running(cluster) {
        assert_eq!(rebalance_counters(&node), [0; 6], "{} moved keys", node.id());
        let counters = node.metrics().counters;
        assert!(counters.heartbeat_success > 0, "the loops ran");
        assert!(counters.gossip_sent > 0);
        assert_eq!(counters.nodes_removed, 0);
    }
}

/// TestDistRebalance_LostOwnershipDrainsOnce: a key injected on a node that does not
/// own it is handed to its owners once, then released; later ticks move nothing.
#[test]
fn lost_ownership_drains_once() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let cluster = setup_in_process_cluster(sim, 5, options()).map_err(|e| e.to_string())?;
        let mut strays = Vec::new();
        for (index, node_id) in (0..).zip(cluster.ids()) {
            let key = (0..)
                .map(|j| format!("stuck-{node_id}-{j}"))
                .find(|key| !cluster.ring().is_owner(key, &node_id))
                .expect("some key is foreign");
            let applied = node(&cluster, node_id.as_str()).debug_inject(&key, entry(index));
            assert!(applied.unwrap().is_applied());
            strays.push((node_id, key));
        }
        sim.run_for(Duration::from_secs(1)).map_err(|e| e.to_string())?;
        let counters: Vec<[u64; 6]> =
            running(&cluster).iter().map(|n| rebalance_counters(n)).collect();
        for ((node_id, key), counters) in strays.iter().zip(&counters) {
            let holder = node(&cluster, node_id.as_str());
            assert_eq!(holder.metrics().counters.rebalanced_primary, 1, "{node_id}");
            assert_eq!(counters[0], 3, "{node_id}: to each of the three owners");
            assert!(holder.local_entry(key).is_none(), "{node_id} released {key}");
            for owner in cluster.ring().lookup(key).iter() {
                assert!(cluster.by_id(owner).unwrap().local_entry(key).is_some(), "{owner}");
            }
        }
        sim.run_for(Duration::from_secs(1)).map_err(|e| e.to_string())?;
        let later: Vec<[u64; 6]> =
            running(&cluster).iter().map(|n| rebalance_counters(n)).collect();
        assert_eq!(counters, later, "drained once");
        Ok(())
    });
}

/// TestDistRebalance_ApplyOwnershipGuardRefusesForeignWrites: a replica write or a
/// rebalance transfer sent to a node that does not own the key is refused and not
/// stored.
#[test]
fn ownership_guard_refuses_foreign_writes() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let cluster = setup_in_process_cluster(sim, 5, options()).map_err(|e| e.to_string())?;
        let owners = [id("n1"), id("n2"), id("n3")];
        let key = find_owner_key(cluster.ring(), "guard", &owners, 1_000_000).expect("a key");
        let outsider = node(&cluster, "n4").peer_handler();
        let replicate = PeerRequest::Replicate {
            key: key.clone(),
            entry: entry(1),
            cause: cache::ReplicaCause::Write,
        };
        let transfer = PeerRequest::Rebalance(RebalanceRequest::Transfer {
            entries: vec![(key.clone(), entry(1))],
        });
        let (replicated, transferred) = sim
            .block_on(
                async move { (outsider.handle(replicate).await, outsider.handle(transfer).await) },
            )
            .map_err(|e| e.to_string())?;
        assert_eq!(replicated, PeerResponse::Failed(Error::NotOwner));
        let refused = RebalanceResponse::Transferred { outcomes: vec![TransferOutcome::NotOwner] };
        assert_eq!(transferred, PeerResponse::Rebalance(refused));
        let n4 = node(&cluster, "n4");
        assert!(n4.local_entry(&key).is_none());
        assert_eq!(n4.metrics().counters.write_apply_refused, 2);
        // An owner takes the same transfer.
        let owner = node(&cluster, "n2").peer_handler();
        let transfer = PeerRequest::Rebalance(RebalanceRequest::Transfer {
            entries: vec![(key.clone(), entry(1))],
        });
        let taken =
            sim.block_on(async move { owner.handle(transfer).await }).map_err(|e| e.to_string())?;
        let applied = RebalanceResponse::Transferred { outcomes: vec![TransferOutcome::Applied] };
        assert_eq!(taken, PeerResponse::Rebalance(applied));
        assert_eq!(node(&cluster, "n2").local_entry(&key), Some(entry(1)));
        Ok(())
    });
}
