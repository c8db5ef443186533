//! Failure detection and gossip (hypercache.md §2.11, §2.12) as deterministic
//! simulation tests: heartbeats, indirect probes, suspicion and refutation, removal,
//! rejoin, and stale member lists. Each runs over several seeds with simulated faults
//! (kills, restarts, clogged links) instead of sleeps. Replay one seed with `SIM_SEED=S`.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use cache::{
    CacheNode, Entry, GossipEntry, Item, MembershipRequest, MembershipResponse, NodeState, Options,
    OptionsBuilder, PeerRequest, PeerResponse, Version,
};
use cachesim::{DistCluster, setup_in_process_cluster};
use sim::Sim;

mod support;
use support::{TestResult, id, node};

/// Seeds each test runs unless `SIM_SEEDS` says otherwise.
const SEEDS: u64 = 8;
/// The granularity at which tests watch the cluster.
const STEP: Duration = Duration::from_millis(50);
/// Time for the first heartbeats to record every peer's boot id.
const WARM_UP: Duration = Duration::from_secs(2);

fn live(cluster: &DistCluster, names: &[&str]) -> Vec<Rc<CacheNode>> {
    names.iter().map(|name| node(cluster, name)).collect()
}

fn sim_node(cluster: &DistCluster, name: &str) -> sim::NodeId {
    cluster.sim_node(&id(name)).unwrap()
}

fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
}

/// Runs `sim` in steps of [`STEP`] until `done` holds, for at most `limit`; returns
/// the virtual time it took.
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

/// `member`'s state in `viewer`'s view; `None` once removed (or never known).
fn state_in(viewer: &CacheNode, member: &str) -> Option<NodeState> {
    viewer.membership().get(&id(member)).map(|m| m.state)
}

fn ring_names(viewer: &CacheNode) -> Vec<String> {
    viewer.ring().nodes().iter().map(ToString::to_string).collect()
}

/// TestDistMemoryHeartbeatLiveness and TestHeartbeatSamplingAndTransitions: a killed
/// node is suspected after its first missed probe, then declared dead once silent for
/// `dead_after_ms`, and pruned from every ring; the survivors stay alive.
#[test]
fn killed_node_is_suspected_then_declared_dead_and_pruned() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let cluster =
            setup_in_process_cluster(sim, 5, Options::builder()).map_err(|e| e.to_string())?;
        let options = cluster.options().clone();
        sim.run_for(WARM_UP).map_err(|e| e.to_string())?;
        cluster.kill(&id("n5")).map_err(|e| e.to_string())?;
        let survivors = live(&cluster, &["n1", "n2", "n3", "n4"]);
        let suspected_after = run_until_within(sim, ms(20_000), || {
            survivors.iter().all(|s| state_in(s, "n5") != Some(NodeState::Alive))
        })?;
        assert!(
            survivors.iter().all(|s| state_in(s, "n5") == Some(NodeState::Suspect)),
            "suspect comes before removal"
        );
        let probe_round_ms = options.heartbeat_interval_ms() + 2 * options.probe_timeout_ms();
        assert!(suspected_after <= ms(probe_round_ms + 200), "suspected after {suspected_after:?}");
        let removed_after = suspected_after
            + run_until_within(sim, ms(20_000), || {
                survivors.iter().all(|s| state_in(s, "n5").is_none())
            })?;
        let dead_after = ms(options.dead_after_ms());
        assert!(removed_after <= dead_after + ms(probe_round_ms + 500), "{removed_after:?}");
        assert!(
            removed_after + ms(options.heartbeat_interval_ms() + 100) >= dead_after,
            "removed after {removed_after:?}, before {dead_after:?} of silence"
        );
        for survivor in &survivors {
            assert_eq!(ring_names(survivor), ["n1", "n2", "n3", "n4"], "{}", survivor.id());
            let removal = survivor.membership().removal(&id("n5")).cloned();
            assert!(removal.is_some_and(|r| r.incarnation >= 2), "the removal is remembered");
            let metrics = survivor.metrics();
            assert!(metrics.counters.heartbeat_success > 0);
            assert!(metrics.counters.heartbeat_failure > 0);
            assert!(metrics.counters.nodes_removed >= 1);
            assert!(metrics.membership_version >= 3);
            assert_eq!((metrics.members_alive, metrics.members_suspect), (4, 0));
        }
        let declared: u64 = survivors.iter().map(|s| s.metrics().counters.nodes_dead).sum();
        let suspected: u64 = survivors.iter().map(|s| s.metrics().counters.nodes_suspect).sum();
        assert!(declared >= 1 && suspected >= 1, "dead {declared}, suspect {suspected}");
        Ok(())
    });
}

/// dist_indirect_probe_test, through the loop: with the direct link between n1 and
/// n3 clogged both ways for longer than `dead_after_ms`, n1's probes of n3 fail, but
/// n2 relays them: n3 is never suspected, and n1 never by n3.
#[test]
fn indirect_probe_saves_a_node_whose_direct_link_is_clogged() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let cluster =
            setup_in_process_cluster(sim, 3, Options::builder()).map_err(|e| e.to_string())?;
        sim.run_for(WARM_UP).map_err(|e| e.to_string())?;
        let (n1, n3) = (sim_node(&cluster, "n1"), sim_node(&cluster, "n3"));
        sim.clog(n1, n3).map_err(|e| e.to_string())?;
        sim.clog(n3, n1).map_err(|e| e.to_string())?;
        let nodes = live(&cluster, &["n1", "n2", "n3"]);
        for _ in 0..200 {
            sim.run_for(STEP).map_err(|e| e.to_string())?;
            assert_eq!(state_in(&nodes[0], "n3"), Some(NodeState::Alive));
            assert_eq!(state_in(&nodes[2], "n1"), Some(NodeState::Alive));
        }
        sim.heal();
        for (node, peer) in [(&nodes[0], "n3"), (&nodes[2], "n1")] {
            let counters = node.metrics().counters;
            assert!(counters.heartbeat_failure >= 5, "{peer}: {}", counters.heartbeat_failure);
            assert!(counters.indirect_probe_success >= 5);
            assert!(counters.indirect_probe_refuted >= 5);
            assert_eq!((counters.nodes_suspect, counters.nodes_removed), (0, 0));
        }
        assert_eq!(nodes[1].metrics().counters.heartbeat_failure, 0);
        Ok(())
    });
}

/// dist_indirect_probe_test `ZeroKeepsLegacyBehavior` and TestDistSWIM_SelfRefute,
/// through the loop: without indirect probes a clogged link makes n1 suspect n3; n3
/// hears of it (through n2) and refutes with a higher incarnation. n3 stays on every
/// ring, and after the link heals every view holds it alive at its own incarnation.
#[test]
fn suspected_node_refutes_and_stays_alive() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let options = Options::builder().indirect_probe_count(0);
        let cluster = setup_in_process_cluster(sim, 3, options).map_err(|e| e.to_string())?;
        sim.run_for(WARM_UP).map_err(|e| e.to_string())?;
        let (n1, n3) = (sim_node(&cluster, "n1"), sim_node(&cluster, "n3"));
        sim.clog(n1, n3).map_err(|e| e.to_string())?;
        sim.clog(n3, n1).map_err(|e| e.to_string())?;
        let nodes = live(&cluster, &["n1", "n2", "n3"]);
        for _ in 0..100 {
            sim.run_for(STEP).map_err(|e| e.to_string())?;
            for node in &nodes {
                assert_eq!(ring_names(node), ["n1", "n2", "n3"], "{}", node.id());
            }
        }
        sim.heal();
        sim.run_for(Duration::from_secs(5)).map_err(|e| e.to_string())?;
        assert!(nodes[0].metrics().counters.nodes_suspect > 0, "n1 suspected n3");
        assert!(nodes[2].metrics().counters.gossip_self_refutes > 0, "n3 refuted");
        let incarnation = nodes[2].membership().local().incarnation;
        assert!(incarnation > 1);
        for node in &nodes {
            let n3 = node.membership().get(&id("n3")).cloned().expect("n3 is a member");
            assert_eq!(
                (n3.state, n3.incarnation),
                (NodeState::Alive, incarnation),
                "{}",
                node.id()
            );
            let counters = node.metrics().counters;
            assert_eq!((counters.nodes_dead, counters.nodes_removed), (0, 0));
            let indirect = counters.indirect_probe_success + counters.indirect_probe_failure;
            assert_eq!(indirect + counters.indirect_probe_refuted, 0, "indirect probes are off");
        }
        Ok(())
    });
}

/// TestDistSWIM_SelfRefute, on the wire: a gossip push that claims the receiver is
/// suspect at its current incarnation makes it refute at once; its answer (the pull
/// half) already carries the refutation.
#[test]
fn gossip_claiming_self_suspect_is_refuted_in_the_answer() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let cluster =
            setup_in_process_cluster(sim, 3, Options::builder()).map_err(|e| e.to_string())?;
        let n2 = node(&cluster, "n2");
        let before = n2.membership().local().clone();
        let mut claim = before.to_gossip();
        claim.state = NodeState::Suspect;
        let from = node(&cluster, "n1").membership().local().to_gossip();
        let request =
            PeerRequest::Membership(MembershipRequest::Gossip { from, entries: vec![claim] });
        let handler = n2.peer_handler();
        let response = sim.block_on(handler.handle(request)).map_err(|e| e.to_string())?;
        let PeerResponse::Membership(MembershipResponse::Gossip { entries }) = response else {
            return Err(format!("not a gossip answer: {response:?}"));
        };
        let answered = entries.iter().find(|entry| entry.id == id("n2")).expect("n2 itself");
        assert_eq!(answered.state, NodeState::Alive);
        assert_eq!(answered.incarnation, before.incarnation + 1);
        assert_eq!(n2.membership().local().incarnation, before.incarnation + 1);
        assert_eq!(n2.metrics().counters.gossip_self_refutes, 1);
        // The same claim again is stale now: no second refutation.
        let mut stale = before.to_gossip();
        stale.state = NodeState::Dead;
        assert_eq!(n2.debug_gossip(&[stale]), 1);
        assert_eq!(n2.metrics().counters.gossip_self_refutes, 1);
        Ok(())
    });
}

/// TestDistSWIM_HTTPGossipExchange: a member one node learns of reaches the others by
/// gossip alone.
#[test]
fn gossip_spreads_a_new_member() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let options = Options::builder().heartbeat_interval_ms(0);
        let cluster = setup_in_process_cluster(sim, 4, options).map_err(|e| e.to_string())?;
        let ghost = GossipEntry {
            id: id("ghost"),
            address: "ghost:1".into(),
            state: NodeState::Alive,
            incarnation: 4,
        };
        assert_eq!(node(&cluster, "n1").debug_gossip(&[ghost]), 0);
        let nodes = live(&cluster, &["n1", "n2", "n3", "n4"]);
        run_until_within(sim, ms(30_000), || {
            nodes
                .iter()
                .all(|n| n.membership().get(&id("ghost")).is_some_and(|g| g.incarnation == 4))
        })?;
        for node in &nodes {
            assert!(node.ring().nodes().contains(&id("ghost")), "an alive member is on the ring");
            assert!(node.metrics().counters.gossip_sent > 0);
        }
        Ok(())
    });
}

/// §2.12 and §2.22: a removed node is remembered with its incarnation, so a stale
/// member list (replayed by hand, or held by a node restarted from its seed list)
/// does not bring it back, anywhere.
#[test]
fn stale_member_list_does_not_resurrect_a_removed_node() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let cluster =
            setup_in_process_cluster(sim, 4, Options::builder()).map_err(|e| e.to_string())?;
        sim.run_for(WARM_UP).map_err(|e| e.to_string())?;
        let stale: Vec<GossipEntry> = node(&cluster, "n1").membership().gossip_entries().collect();
        cluster.kill(&id("n4")).map_err(|e| e.to_string())?;
        let survivors = live(&cluster, &["n1", "n2", "n3"]);
        run_until_within(sim, ms(30_000), || {
            survivors.iter().all(|s| state_in(s, "n4").is_none())
        })?;
        for survivor in &survivors {
            assert!(survivor.debug_gossip(&stale) > 0, "the stale entries are counted");
            assert_eq!(state_in(survivor, "n4"), None);
        }
        // n2 restarts from its seed list, which still holds n4 alive; it gossips that
        // list to everyone, and learns of the removal in return.
        cluster.restart(&id("n2")).map_err(|e| e.to_string())?;
        sim.run_for(ms(10_000)).map_err(|e| e.to_string())?;
        for node in live(&cluster, &["n1", "n2", "n3"]) {
            assert_eq!(state_in(&node, "n4"), None, "{} brought n4 back", node.id());
            assert!(node.membership().removal(&id("n4")).is_some(), "{}", node.id());
            assert_eq!(ring_names(&node), ["n1", "n2", "n3"], "{}", node.id());
            if node.id() != &id("n2") {
                assert!(node.metrics().counters.gossip_entries_stale > 0, "{}", node.id());
            }
        }
        Ok(())
    });
}

/// A node killed for long enough to be removed everywhere, then restarted with an
/// empty memory: it learns of its removal from the first answers, refutes past it,
/// rejoins every view through gossip and heartbeats, and gets back every key it owns;
/// the nodes that held its keys meanwhile release them.
#[test]
fn removed_node_restarts_rejoins_and_gets_its_data_back() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let cluster = setup_in_process_cluster(sim, 5, options_fast_rebalance())
            .map_err(|e| e.to_string())?;
        let keys = inject_keys(&cluster, 60)?;
        sim.run_for(WARM_UP).map_err(|e| e.to_string())?;
        cluster.kill(&id("n2")).map_err(|e| e.to_string())?;
        let survivors = live(&cluster, &["n1", "n3", "n4", "n5"]);
        run_until_within(sim, ms(30_000), || {
            survivors.iter().all(|s| state_in(s, "n2").is_none())
        })?;
        let removed_at = survivors[0].membership().removal(&id("n2")).unwrap().incarnation;
        cluster.restart(&id("n2")).map_err(|e| e.to_string())?;
        sim.run_for(STEP).map_err(|e| e.to_string())?;
        let restarted = node(&cluster, "n2");
        assert!(restarted.local_entries().is_empty(), "a restarted node has lost its memory");
        let everyone = live(&cluster, &["n1", "n2", "n3", "n4", "n5"]);
        let took = run_until_within(sim, ms(30_000), || {
            everyone.iter().all(|n| n.ring().nodes() == cluster.ring().nodes())
                && placement_errors(&cluster, &keys).is_empty()
        });
        took.map_err(|e| format!("{e}: {:?}", placement_errors(&cluster, &keys)))?;
        assert!(restarted.membership().local().incarnation > removed_at, "refuted past it");
        assert!(!restarted.local_entries().is_empty());
        Ok(())
    });
}

fn options_fast_rebalance() -> OptionsBuilder {
    Options::builder().rebalance_interval_ms(50)
}

/// Writes `count` keys on their owners (as replica writes would), with versions.
fn inject_keys(cluster: &DistCluster, count: u64) -> Result<Vec<String>, String> {
    let mut keys = Vec::new();
    for index in 0..count {
        let key = format!("key{index}");
        let entry = Entry::Item(Item::new(
            Bytes::from(format!("value{index}")),
            Version::new(index + 1, id("n1")),
        ));
        for owner in cluster.ring().lookup(&key).iter() {
            let owner = cluster.by_id(owner).expect("every node runs");
            let applied = owner.debug_inject(&key, entry.clone()).map_err(|e| e.to_string())?;
            assert!(applied.is_applied());
        }
        keys.push(key);
    }
    Ok(keys)
}

/// Where the keys are not as the fixture's ring says: a running node that holds a key
/// it does not own, or misses one it owns, or holds another version than the primary.
fn placement_errors(cluster: &DistCluster, keys: &[String]) -> Vec<String> {
    let mut errors = Vec::new();
    for key in keys {
        let owners = cluster.ring().lookup(key).to_vec();
        let wanted = owners.first().and_then(|p| cluster.by_id(p)).and_then(|p| p.local_entry(key));
        for node_id in cluster.ids() {
            let Some(node) = cluster.by_id(&node_id) else { continue };
            let held = node.local_entry(key);
            match (owners.contains(&node_id), held.is_some()) {
                (true, false) => errors.push(format!("{node_id} misses {key}")),
                (false, true) => errors.push(format!("{node_id} holds foreign {key}")),
                (true, true) if held != wanted => errors.push(format!("{node_id}: {key} differs")),
                _ => {}
            }
        }
    }
    errors
}
