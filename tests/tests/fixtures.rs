//! The cluster fixtures themselves: lookup, owner-key search, ports, restart, and that
//! dropping a cluster leaves nothing running.

use std::collections::BTreeSet;
use std::time::Duration;

use cache::{NodeId, Options};
use cachesim::{
    FixtureError, allocate_port, find_owner_key, setup_in_process_cluster,
    setup_in_process_cluster_rf,
};
use sim::Sim;

mod support;
use support::id;

#[test]
fn by_id_finds_running_nodes_only() {
    let mut sim = Sim::new(1);
    let cluster = setup_in_process_cluster(&mut sim, 3, Options::builder()).unwrap();
    assert_eq!(cluster.ids(), [id("n1"), id("n2"), id("n3")]);
    for name in ["n1", "n2", "n3"] {
        assert_eq!(cluster.by_id(&id(name)).unwrap().id(), &id(name));
    }
    assert!(cluster.by_id(&id("n4")).is_none());
    cluster.kill(&id("n2")).unwrap();
    assert!(cluster.by_id(&id("n2")).is_none(), "a killed node is not running");
    assert!(matches!(cluster.kill(&id("n9")), Err(FixtureError::UnknownNode { .. })));
    assert_eq!(cluster.ring().nodes().len(), 3);
}

#[test]
fn restart_gives_a_fresh_node_on_the_same_address() {
    let mut sim = Sim::new(2);
    let cluster = setup_in_process_cluster(&mut sim, 3, Options::builder()).unwrap();
    let n1 = cluster.by_id(&id("n1")).unwrap();
    sim.block_on(async move { n1.set("k", "v", None).await.unwrap() }).unwrap();
    sim.run_for(Duration::from_secs(1)).unwrap();
    assert!(cluster.by_id(&id("n2")).unwrap().local_entry("k").is_some());
    cluster.restart(&id("n2")).unwrap();
    sim.run_for(Duration::from_millis(10)).unwrap();
    let fresh = cluster.by_id(&id("n2")).expect("restarted");
    assert!(fresh.local_entry("k").is_none(), "a restarted node has lost its memory");
    assert_eq!(fresh.address(), cluster.address(&id("n2")).unwrap());
    // It serves again: a write reaches it.
    let n1 = cluster.by_id(&id("n1")).unwrap();
    sim.block_on(async move { n1.set("k", "w", None).await.unwrap() }).unwrap();
    sim.run_for(Duration::from_secs(1)).unwrap();
    assert!(fresh.local_contains("k"));
}

#[test]
fn find_owner_key_returns_exactly_the_ordered_owners() {
    let mut sim = Sim::new(3);
    let cluster = setup_in_process_cluster(&mut sim, 5, Options::builder()).unwrap();
    let mut found = 0;
    for order in [["n1", "n2", "n3"], ["n3", "n1", "n5"], ["n5", "n4", "n2"]] {
        let desired: Vec<NodeId> = order.iter().map(|name| id(name)).collect();
        if let Some(key) = find_owner_key(cluster.ring(), "probe", &desired, 1_000_000) {
            assert!(key.starts_with("probe"));
            assert_eq!(cluster.ring().lookup(&key).to_vec(), desired);
            assert_eq!(cluster.by_id(&id(order[1])).unwrap().owners(&key), desired);
            found += 1;
        }
    }
    assert!(found >= 2, "most ordered triples exist on a 5×64 ring");
    assert_eq!(find_owner_key(cluster.ring(), "p", &[id("n1"), id("n1")], 1000), None);
}

#[test]
fn allocated_ports_never_collide() {
    let sim = Sim::new(4);
    let node = sim.node("host").build();
    let addresses: BTreeSet<String> =
        (0..500).map(|_| allocate_port(&sim, node).unwrap()).collect();
    assert_eq!(addresses.len(), 500);
    assert!(addresses.iter().all(|address| address.starts_with("host:")));
    let again: BTreeSet<String> = {
        let other = Sim::new(99);
        let node = other.node("host").build();
        (0..500).map(|_| allocate_port(&other, node).unwrap()).collect()
    };
    assert_eq!(addresses, again, "allocation is deterministic, whatever the seed");
}

#[test]
fn dropping_the_cluster_stops_every_task_and_frees_every_port() {
    let mut sim = Sim::new(5);
    let cluster = setup_in_process_cluster_rf(&mut sim, 4, 2, Options::builder()).unwrap();
    let n1 = cluster.by_id(&id("n1")).unwrap();
    sim.block_on(async move {
        for i in 0..20 {
            n1.set(&format!("k{i}"), "v", None).await.unwrap();
        }
    })
    .unwrap();
    assert!(sim.task_count() > 0);
    let sim_nodes: Vec<_> = cluster.ids().iter().map(|id| cluster.sim_node(id).unwrap()).collect();
    drop(cluster);
    sim.run_for(Duration::from_secs(10)).unwrap();
    assert_eq!(sim.task_count(), 0, "no task of the cluster survives it");
    assert_eq!(sim.timer_count(), 0);
    // Restarting a node runs its init again, which binds the node's address: that
    // succeeds only if the drop freed the port.
    for node in sim_nodes {
        sim.restart(node).unwrap();
    }
    sim.run_for(Duration::from_secs(1)).unwrap();
    assert!(sim.task_count() >= 4, "the restarted nodes run");
}

#[test]
fn bad_fixture_arguments_are_errors() {
    let mut sim = Sim::new(6);
    let error = setup_in_process_cluster(&mut sim, 0, Options::builder()).unwrap_err();
    assert!(error.to_string().contains("invalid node count 0"), "{error}");
    let error = setup_in_process_cluster_rf(&mut sim, 3, 0, Options::builder()).unwrap_err();
    assert!(error.to_string().contains("replication_factor"), "{error}");
}
