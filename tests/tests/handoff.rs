//! Hinted handoff (hypercache.md §2.9) as deterministic simulation tests: a replica
//! write that its replica did not acknowledge is queued as a hint and replayed until
//! it is delivered or expires. Ports TestHintedHandoffReplay,
//! TestDistHintReplay_RetainsOnGenericReplayError, TestHintGlobalCaps and
//! TestDistMigrationRetry_QueuesHintOnTransportError (§3.2), with partitions, kills and
//! restarts instead of sleeps and transport swaps. Replay one seed with `SIM_SEED=S`.
//!
//! Most tests turn off the loops that could also bring a replica up to date (failure
//! detection, gossip, rebalancing, anti-entropy), so that what a replica holds after a
//! heal is what the hints delivered; the first test runs every loop at its default.

use std::rc::Rc;
use std::time::Duration;

use cache::{CacheNode, Entry, Metrics, Options, OptionsBuilder, Version};
use cachesim::{DistCluster, setup_in_process_cluster};
use sim::Sim;

mod support;
use support::{TestResult, id, key_owned_by, node, run, run_for};

/// Seeds each test runs unless `SIM_SEEDS` says otherwise.
const SEEDS: u64 = 8;
/// The RPC timeout of the quiet tests: a replica write to a cut node fails after it.
const RPC_TIMEOUT_MS: u64 = 500;
/// Virtual time for failed replica writes to time out and queue their hints.
const QUEUE: Duration = Duration::from_millis(2 * RPC_TIMEOUT_MS);
/// Virtual time for a replay round to run and land after a heal.
const REPLAY: Duration = Duration::from_secs(2);

/// Every loop that could repair a replica is off; hints replay every 100 ms.
fn quiet() -> OptionsBuilder {
    Options::builder()
        .heartbeat_interval_ms(0)
        .suspect_after_ms(0)
        .dead_after_ms(0)
        .gossip_interval_ms(0)
        .rebalance_interval_ms(0)
        .merkle_sync_interval_ms(0)
        .rpc_timeout_ms(RPC_TIMEOUT_MS)
        .hint_replay_interval_ms(100)
}

fn counters(cluster: &DistCluster, name: &str) -> Metrics {
    node(cluster, name).metrics().counters
}

fn sim_nodes(cluster: &DistCluster, names: &[&str]) -> Vec<sim::NodeId> {
    names.iter().map(|name| cluster.sim_node(&id(name)).unwrap()).collect()
}

fn partition(sim: &Sim, cluster: &DistCluster, a: &[&str], b: &[&str]) -> TestResult {
    sim.partition(&sim_nodes(cluster, a), &sim_nodes(cluster, b)).map_err(|e| e.to_string())
}

/// Sets each `(key, value)` from `from`, 10 ms apart (so that their replica writes
/// time out, and their hints queue, in this order); returns the versions.
fn set_all(
    sim: &mut Sim,
    from: Rc<CacheNode>,
    writes: &[(String, String)],
) -> Result<Vec<Version>, String> {
    let writes = writes.to_vec();
    run(sim, async move {
        let mut versions = Vec::new();
        for (key, value) in writes {
            versions.push(from.set(&key, value, None).await.map_err(|e| e.to_string())?);
            sim::time::sleep(Duration::from_millis(10)).await;
        }
        Ok::<_, String>(versions)
    })?
}

/// Whether `name` holds exactly `value` at `version` for `key`.
fn holds(cluster: &DistCluster, name: &str, key: &str, value: &str, version: &Version) -> bool {
    matches!(
        node(cluster, name).local_entry(key),
        Some(Entry::Item(item)) if item.value == value.as_bytes() && item.version == *version
    )
}

/// TestHintedHandoffReplay / TestDistSet_PromotesOnGenericForwardError, with every
/// loop at its default: a replica cut off when a write is replicated misses it, the
/// coordinator queues a hint when the replica write times out, and the replay after
/// the heal delivers it.
#[test]
fn hint_queued_for_a_partitioned_replica_is_replayed_after_heal() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let cluster =
            setup_in_process_cluster(sim, 3, Options::builder()).map_err(|e| e.to_string())?;
        let key = key_owned_by(&cluster, "key", &["n1", "n2", "n3"]);
        partition(sim, &cluster, &["n1", "n2"], &["n3"])?;
        let writes = [(key.clone(), "v".to_string())];
        let version = set_all(sim, node(&cluster, "n1"), &writes)?[0].clone();
        assert!(node(&cluster, "n3").local_entry(&key).is_none());
        // Heal before the detector suspects anyone; the lost replica write still times
        // out (5 s) and becomes a hint, replayed within the next 200 ms.
        run_for(sim, Duration::from_secs(1))?;
        sim.heal();
        run_for(sim, Duration::from_secs(6))?;
        assert!(
            holds(&cluster, "n3", &key, "v", &version),
            "{:?}",
            node(&cluster, "n3").local_entry(&key)
        );
        let metrics = counters(&cluster, "n1");
        assert_eq!(metrics.hinted_queued, 1);
        assert_eq!(metrics.hinted_replayed, 1);
        assert_eq!((metrics.hinted_dropped, metrics.hinted_expired), (0, 0));
        assert_eq!(metrics.hinted_bytes, 0);
        assert_eq!(node(&cluster, "n1").hints_queued(), 0);
        Ok(())
    });
}

/// TestDistHintReplay_RetainsOnGenericReplayError: while the replica stays cut off,
/// every replay fails and the hint stays queued (never dropped after an error); after
/// the heal it is delivered once.
#[test]
fn hint_stays_queued_while_replays_fail_and_is_delivered_after_heal() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let cluster = setup_in_process_cluster(sim, 3, quiet()).map_err(|e| e.to_string())?;
        let key = key_owned_by(&cluster, "key", &["n1", "n2", "n3"]);
        partition(sim, &cluster, &["n1", "n2"], &["n3"])?;
        let writes = [(key.clone(), "v".to_string())];
        let version = set_all(sim, node(&cluster, "n1"), &writes)?[0].clone();
        // About 15 replay rounds, each failing at the RPC timeout.
        run_for(sim, Duration::from_secs(10))?;
        let coordinator = node(&cluster, "n1");
        assert_eq!(coordinator.hints_queued_for(&id("n3")), 1, "a failed replay keeps its hint");
        let metrics = coordinator.metrics().counters;
        assert_eq!((metrics.hinted_queued, metrics.hinted_replayed), (1, 0));
        assert_eq!((metrics.hinted_expired, metrics.hinted_dropped), (0, 0));
        assert_eq!(metrics.hinted_bytes, (key.len() + 1) as u64);
        assert!(node(&cluster, "n3").local_entry(&key).is_none());
        sim.heal();
        run_for(sim, REPLAY)?;
        assert!(holds(&cluster, "n3", &key, "v", &version));
        let metrics = coordinator.metrics().counters;
        assert_eq!((metrics.hinted_queued, metrics.hinted_replayed), (1, 1));
        assert_eq!((coordinator.hints_queued(), metrics.hinted_bytes), (0, 0));
        Ok(())
    });
}

/// TestDistMigrationRetry_QueuesHintOnTransportError / TestDistFailureRecovery: a
/// replica that is down keeps its hints (replayed by hand here, the replay loop off),
/// and gets them when it comes back, empty, after a restart.
#[test]
fn hint_is_delivered_to_a_replica_that_restarts_empty() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let options = quiet().hint_replay_interval_ms(0);
        let cluster = setup_in_process_cluster(sim, 3, options).map_err(|e| e.to_string())?;
        let key = key_owned_by(&cluster, "key", &["n1", "n2", "n3"]);
        cluster.kill(&id("n3")).map_err(|e| e.to_string())?;
        let writes = [(key.clone(), "v".to_string())];
        let version = set_all(sim, node(&cluster, "n1"), &writes)?[0].clone();
        run_for(sim, QUEUE)?;
        let coordinator = node(&cluster, "n1");
        for _ in 0..3 {
            let replayer = Rc::clone(&coordinator);
            let delivered = run(sim, async move { replayer.replay_hints().await })?;
            assert_eq!(delivered, Ok(0));
            assert_eq!(coordinator.hints_queued_for(&id("n3")), 1);
        }
        cluster.restart(&id("n3")).map_err(|e| e.to_string())?;
        run_for(sim, Duration::from_millis(100))?;
        assert!(node(&cluster, "n3").local_entry(&key).is_none(), "it restarted empty");
        let replayer = Rc::clone(&coordinator);
        assert_eq!(run(sim, async move { replayer.replay_hints().await })?, Ok(1));
        assert!(holds(&cluster, "n3", &key, "v", &version));
        let metrics = coordinator.metrics().counters;
        assert_eq!((metrics.hinted_queued, metrics.hinted_replayed), (1, 1));
        assert_eq!(coordinator.hints_queued(), 0);
        Ok(())
    });
}

/// A node's hint queue is capped: past `hint_count_per_node_max` its oldest hints are
/// dropped (counted as `hinted_dropped`), and only the newest reach the replica.
#[test]
fn per_node_hint_cap_drops_the_oldest() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let options = quiet().hint_count_per_node_max(3);
        let cluster = setup_in_process_cluster(sim, 3, options).map_err(|e| e.to_string())?;
        let writes: Vec<(String, String)> = (0..5)
            .map(|n| {
                (key_owned_by(&cluster, &format!("cap{n}-"), &["n1", "n2", "n3"]), format!("v{n}"))
            })
            .collect();
        partition(sim, &cluster, &["n1", "n2"], &["n3"])?;
        let versions = set_all(sim, node(&cluster, "n1"), &writes)?;
        run_for(sim, QUEUE)?;
        let metrics = counters(&cluster, "n1");
        assert_eq!((metrics.hinted_queued, metrics.hinted_dropped), (5, 2));
        assert_eq!(metrics.hinted_global_dropped, 0);
        assert_eq!(node(&cluster, "n1").hints_queued_for(&id("n3")), 3);
        sim.heal();
        run_for(sim, REPLAY)?;
        for (n, ((key, value), version)) in writes.iter().zip(&versions).enumerate() {
            let held = node(&cluster, "n3").local_entry(key);
            if n < 2 {
                assert!(held.is_none(), "the oldest hint {n} was dropped, yet n3 holds {held:?}");
            } else {
                assert!(holds(&cluster, "n3", key, value, version), "hint {n}: {held:?}");
            }
        }
        assert_eq!(counters(&cluster, "n1").hinted_replayed, 3);
        Ok(())
    });
}

/// TestHintGlobalCaps, count: past `hint_count_max` hints in all queues together, the
/// NEW hint is refused (counted as `hinted_global_dropped`); queued ones stay.
#[test]
fn global_hint_count_cap_rejects_the_newest() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let options = quiet().hint_count_per_node_max(2).hint_count_max(3);
        let cluster = setup_in_process_cluster(sim, 4, options).map_err(|e| e.to_string())?;
        let to_n3 = |n: usize| key_owned_by(&cluster, &format!("a{n}-"), &["n1", "n2", "n3"]);
        let to_n4 = |n: usize| key_owned_by(&cluster, &format!("b{n}-"), &["n1", "n2", "n4"]);
        let writes: Vec<(String, String)> = [to_n3(1), to_n4(1), to_n3(2), to_n4(2)]
            .into_iter()
            .map(|key| (key, "v".into()))
            .collect();
        partition(sim, &cluster, &["n1", "n2"], &["n3", "n4"])?;
        let versions = set_all(sim, node(&cluster, "n1"), &writes)?;
        run_for(sim, QUEUE)?;
        let coordinator = node(&cluster, "n1");
        let metrics = coordinator.metrics().counters;
        assert_eq!((metrics.hinted_queued, metrics.hinted_global_dropped), (3, 1));
        assert_eq!(metrics.hinted_dropped, 0);
        assert_eq!(coordinator.hints_queued_for(&id("n3")), 2);
        assert_eq!(coordinator.hints_queued_for(&id("n4")), 1);
        sim.heal();
        run_for(sim, REPLAY)?;
        assert!(holds(&cluster, "n3", &writes[0].0, "v", &versions[0]));
        assert!(holds(&cluster, "n4", &writes[1].0, "v", &versions[1]));
        assert!(holds(&cluster, "n3", &writes[2].0, "v", &versions[2]));
        assert!(node(&cluster, "n4").local_entry(&writes[3].0).is_none(), "the newest was refused");
        Ok(())
    });
}

/// TestHintGlobalCaps, bytes: a hint that would pass `hint_bytes_max` (keys plus
/// values) is refused; `hinted_bytes` never passes it.
#[test]
fn global_hint_byte_cap_rejects_what_does_not_fit() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        const BYTES_MAX: u64 = 64;
        let options = quiet().hint_bytes_max(BYTES_MAX);
        let cluster = setup_in_process_cluster(sim, 3, options).map_err(|e| e.to_string())?;
        let writes: Vec<(String, String)> = (0..6)
            .map(|n| {
                (key_owned_by(&cluster, &format!("b{n}-"), &["n1", "n2", "n3"]), "x".repeat(20))
            })
            .collect();
        // The queue's rule: a hint is queued if it fits in what is left.
        let (mut queued, mut bytes) = (0_u64, 0_u64);
        for (key, value) in &writes {
            let size = (key.len() + value.len()) as u64;
            if bytes + size <= BYTES_MAX {
                (queued, bytes) = (queued + 1, bytes + size);
            }
        }
        assert!((1..writes.len() as u64).contains(&queued), "the cap must refuse some, not all");
        partition(sim, &cluster, &["n1", "n2"], &["n3"])?;
        set_all(sim, node(&cluster, "n1"), &writes)?;
        run_for(sim, QUEUE)?;
        let metrics = counters(&cluster, "n1");
        assert_eq!(metrics.hinted_queued, queued);
        assert_eq!(metrics.hinted_global_dropped, writes.len() as u64 - queued);
        assert_eq!(metrics.hinted_bytes, bytes);
        assert!(metrics.hinted_bytes <= BYTES_MAX);
        sim.heal();
        run_for(sim, REPLAY)?;
        let metrics = counters(&cluster, "n1");
        assert_eq!((metrics.hinted_replayed, metrics.hinted_bytes), (queued, 0));
        Ok(())
    });
}

/// A hint whose TTL runs out while its replica is away is dropped and counted as
/// expired, never delivered.
#[test]
fn expired_hint_is_dropped() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let options = quiet().hint_ttl_ms(2_000);
        let cluster = setup_in_process_cluster(sim, 3, options).map_err(|e| e.to_string())?;
        let key = key_owned_by(&cluster, "key", &["n1", "n2", "n3"]);
        partition(sim, &cluster, &["n1", "n2"], &["n3"])?;
        set_all(sim, node(&cluster, "n1"), &[(key.clone(), "v".into())])?;
        run_for(sim, QUEUE)?;
        assert_eq!(node(&cluster, "n1").hints_queued_for(&id("n3")), 1);
        run_for(sim, Duration::from_secs(3))?;
        let metrics = counters(&cluster, "n1");
        assert_eq!((metrics.hinted_queued, metrics.hinted_expired), (1, 1));
        assert_eq!((metrics.hinted_replayed, metrics.hinted_bytes), (0, 0));
        assert_eq!(node(&cluster, "n1").hints_queued(), 0);
        sim.heal();
        run_for(sim, REPLAY)?;
        assert!(
            node(&cluster, "n3").local_entry(&key).is_none(),
            "an expired hint is not replayed"
        );
        assert_eq!(counters(&cluster, "n1").hinted_replayed, 0);
        Ok(())
    });
}

/// A newer hint for the same replica and key supersedes the queued one: one hint,
/// the newest version, is delivered.
#[test]
fn newer_hint_supersedes_the_queued_one() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let cluster = setup_in_process_cluster(sim, 3, quiet()).map_err(|e| e.to_string())?;
        let key = key_owned_by(&cluster, "key", &["n1", "n2", "n3"]);
        partition(sim, &cluster, &["n1", "n2"], &["n3"])?;
        let writes = [(key.clone(), "one".to_string()), (key.clone(), "two".to_string())];
        let versions = set_all(sim, node(&cluster, "n1"), &writes)?;
        assert!(versions[1] > versions[0]);
        run_for(sim, QUEUE)?;
        let coordinator = node(&cluster, "n1");
        assert_eq!(coordinator.metrics().counters.hinted_queued, 2);
        assert_eq!(coordinator.hints_queued_for(&id("n3")), 1, "one hint per replica and key");
        assert_eq!(coordinator.metrics().counters.hinted_bytes, (key.len() + 3) as u64);
        sim.heal();
        run_for(sim, REPLAY)?;
        assert!(holds(&cluster, "n3", &key, "two", &versions[1]));
        assert_eq!(coordinator.metrics().counters.hinted_replayed, 1);
        Ok(())
    });
}

/// A late hint replay never overwrites a newer value (§2.22 item 1): n1 holds a hint
/// with an old write for n3 while n2, coordinating in n1's place, gives n3 a newer
/// write; after the heal n1's replay reaches n3, which refuses it as stale.
#[test]
fn late_hint_replay_never_overwrites_a_newer_value() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let cluster = setup_in_process_cluster(sim, 3, quiet()).map_err(|e| e.to_string())?;
        let key = key_owned_by(&cluster, "key", &["n1", "n2", "n3"]);
        partition(sim, &cluster, &["n1"], &["n3"])?;
        let old = set_all(sim, node(&cluster, "n1"), &[(key.clone(), "old".into())])?[0].clone();
        run_for(sim, QUEUE)?;
        assert_eq!(node(&cluster, "n1").hints_queued_for(&id("n3")), 1);
        // Cut n1 off entirely: n2's forward to n1 fails and n2 coordinates the write.
        partition(sim, &cluster, &["n1"], &["n2", "n3"])?;
        let new = set_all(sim, node(&cluster, "n2"), &[(key.clone(), "new".into())])?[0].clone();
        assert!(new > old, "{new:?} after {old:?}");
        assert!(holds(&cluster, "n3", &key, "new", &new));
        let stale_before = counters(&cluster, "n3").apply_stale;
        sim.heal();
        run_for(sim, REPLAY)?;
        for name in ["n1", "n2", "n3"] {
            assert!(
                holds(&cluster, name, &key, "new", &new),
                "{name}: {:?}",
                node(&cluster, name).local_entry(&key)
            );
        }
        let metrics = counters(&cluster, "n1");
        assert_eq!(metrics.hinted_replayed, 1, "the stale hint was delivered, and refused");
        assert!(counters(&cluster, "n3").apply_stale > stale_before);
        assert_eq!(node(&cluster, "n1").hints_queued(), 0);
        assert_eq!(counters(&cluster, "n2").hinted_replayed, 1, "n1 got the new write by hint");
        Ok(())
    });
}

/// Removes are hinted too (the reference's are not): a replica away for less than the
/// hint TTL gets the tombstone when it comes back, and a read at ALL finds nothing.
#[test]
fn a_missed_remove_is_delivered_by_hint() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let options = quiet().read_consistency(cache::Consistency::All);
        let cluster = setup_in_process_cluster(sim, 3, options).map_err(|e| e.to_string())?;
        let key = key_owned_by(&cluster, "key", &["n1", "n2", "n3"]);
        set_all(sim, node(&cluster, "n1"), &[(key.clone(), "v".into())])?;
        run_for(sim, REPLAY)?;
        partition(sim, &cluster, &["n1", "n2"], &["n3"])?;
        let (client, key_in) = (node(&cluster, "n1"), key.clone());
        let removed =
            run(sim, async move { client.remove(&[&key_in]).await })?.map_err(|e| e.to_string())?;
        run_for(sim, Duration::from_secs(5))?;
        assert!(node(&cluster, "n3").local_contains(&key), "n3 missed the remove");
        sim.heal();
        run_for(sim, REPLAY)?;
        let held = node(&cluster, "n3").local_entry(&key);
        assert!(
            matches!(&held, Some(Entry::Tombstone(tombstone)) if tombstone.version == removed[0]),
            "{held:?}"
        );
        let (reader, key_in) = (node(&cluster, "n2"), key.clone());
        assert_eq!(run(sim, async move { reader.get(&key_in).await })?, Ok(None));
        Ok(())
    });
}
