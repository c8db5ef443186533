//! The reference's data-path tests (hypercache.md §3.2), as deterministic simulation
//! tests: each runs over several seeds, with simulated faults instead of sleeps and
//! virtual ports instead of real ones. Replay one seed with `SIM_SEED=S`.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use cache::{Consistency, Entry, Error, Item, Options, OptionsBuilder, Tombstone, Version};
use cachesim::{setup_in_process_cluster, setup_in_process_cluster_rf};

mod support;
use support::{TestResult, id, key_owned_by, node, run};

/// Seeds each test runs unless `SIM_SEEDS` says otherwise.
const SEEDS: u64 = 8;
/// Virtual time for in-flight replica writes and repairs to land (RPC timeout: 5 s).
const SETTLE: Duration = Duration::from_secs(6);

fn options() -> OptionsBuilder {
    Options::builder()
}

fn value_of(item: Option<Item>) -> Option<Vec<u8>> {
    item.map(|item| item.value.to_vec())
}

/// TestDistMemoryForwardingReplication: a write from a non-primary is forwarded to the
/// primary, which replicates it to every owner.
#[test]
fn forward_to_primary_replicates_to_all_owners() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let cluster = setup_in_process_cluster(sim, 5, options()).map_err(|e| e.to_string())?;
        let key = key_owned_by(&cluster, "key", &["n2", "n1", "n3"]);
        let (from_replica, from_outsider) = (node(&cluster, "n1"), node(&cluster, "n5"));
        let key_in = key.clone();
        let (v1, v2) = run(sim, async move {
            let v1 = from_replica.set(&key_in, "one", None).await.unwrap();
            let v2 = from_outsider.set(&key_in, "two", None).await.unwrap();
            (v1, v2)
        })?;
        assert!(v2 > v1);
        assert_eq!(v1.origin, id("n2"), "the primary versions the write");
        sim.run_for(SETTLE).map_err(|e| e.to_string())?;
        for owner in ["n1", "n2", "n3"] {
            let entry = node(&cluster, owner).local_entry(&key);
            assert!(
                matches!(&entry, Some(Entry::Item(item)) if item.value == "two" && item.version == v2),
                "{owner}: {entry:?}"
            );
        }
        for outsider in ["n4", "n5"] {
            assert!(node(&cluster, outsider).local_entry(&key).is_none());
        }
        assert_eq!(node(&cluster, "n1").metrics().counters.forward_set, 1);
        assert_eq!(node(&cluster, "n5").metrics().counters.forward_set, 1);
        assert_eq!(node(&cluster, "n2").metrics().counters.replica_fanout_set, 4);
        assert_eq!(node(&cluster, "n2").metrics().counters.write_forward_promotion, 0);
        Ok(())
    });
}

/// TestDistSet_PromotesOnGenericForwardError: with the primary down, a replica that
/// receives the write promotes itself and coordinates it.
#[test]
fn replica_promotes_itself_when_the_primary_is_down() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        // A static ring: with failure detection on, the dead primary would be pruned
        // and its replica become the primary outright (tested in membership.rs).
        let options = options().heartbeat_interval_ms(0).gossip_interval_ms(0);
        let cluster = setup_in_process_cluster(sim, 5, options).map_err(|e| e.to_string())?;
        let key = key_owned_by(&cluster, "key", &["n2", "n1", "n3"]);
        cluster.kill(&id("n2")).map_err(|e| e.to_string())?;
        let (replica, outsider) = (node(&cluster, "n1"), node(&cluster, "n5"));
        let key_in = key.clone();
        let (v1, v2, read) = run(sim, async move {
            let v1 = replica.set(&key_in, "from-replica", None).await.unwrap();
            let v2 = outsider.set(&key_in, "from-outsider", None).await.unwrap();
            (v1, v2, outsider.get(&key_in).await)
        })?;
        assert_eq!(v1.origin, id("n1"));
        assert_eq!(v2.origin, id("n1"), "the outsider's forward falls through to the next owner");
        assert_eq!(value_of(read.unwrap()), Some(b"from-outsider".to_vec()));
        let promotions = node(&cluster, "n1").metrics().counters.write_forward_promotion;
        assert_eq!(promotions, 2, "n1 coordinated both writes in the primary's place");
        Ok(())
    });
}

/// TestWriteQuorumSuccess: QUORUM succeeds with one replica down.
#[test]
fn quorum_write_succeeds_with_one_replica_down() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let options = options().write_consistency(Consistency::Quorum);
        let cluster = setup_in_process_cluster(sim, 3, options).map_err(|e| e.to_string())?;
        let key = key_owned_by(&cluster, "key", &["n1", "n2", "n3"]);
        cluster.kill(&id("n3")).map_err(|e| e.to_string())?;
        let primary = node(&cluster, "n1");
        let key_in = key.clone();
        let result = run(sim, async move { primary.set(&key_in, "v", None).await })?;
        assert!(result.is_ok(), "{result:?}");
        let metrics = node(&cluster, "n1").metrics().counters;
        assert_eq!((metrics.write_attempts, metrics.write_quorum_failures), (1, 0));
        assert_eq!(metrics.write_acks, 2);
        assert!(node(&cluster, "n2").local_contains(&key));
        Ok(())
    });
}

/// TestWriteQuorumFailure: ALL fails with one replica down, and the write stays where
/// it was applied (documented: no rollback).
#[test]
fn all_write_fails_with_one_replica_down_and_keeps_the_local_write() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let options = options().write_consistency(Consistency::All);
        let cluster = setup_in_process_cluster(sim, 3, options).map_err(|e| e.to_string())?;
        let key = key_owned_by(&cluster, "key", &["n1", "n2", "n3"]);
        cluster.kill(&id("n3")).map_err(|e| e.to_string())?;
        let primary = node(&cluster, "n1");
        let key_in = key.clone();
        let started = sim.now();
        let result = run(sim, async move { primary.set(&key_in, "v", None).await })?;
        assert_eq!(result, Err(Error::QuorumFailed { acks: 2, acks_needed: 3 }));
        assert_eq!(
            sim.now() - started,
            Duration::from_millis(cluster.options().rpc_timeout_ms()),
            "fails at the RPC deadline"
        );
        assert_eq!(node(&cluster, "n1").metrics().counters.write_quorum_failures, 1);
        assert!(node(&cluster, "n1").local_contains(&key), "no rollback on the coordinator");
        assert!(node(&cluster, "n2").local_contains(&key), "no rollback on the replica that acked");
        Ok(())
    });
}

/// TestDistMemoryReadRepair: a replica that lost the key is repaired by a read.
#[test]
fn read_repairs_a_stale_replica() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let options = options().read_consistency(Consistency::Quorum);
        let cluster = setup_in_process_cluster_rf(sim, 2, 2, options).map_err(|e| e.to_string())?;
        let key = key_owned_by(&cluster, "key", &["n1", "n2"]);
        let (primary, replica) = (node(&cluster, "n1"), node(&cluster, "n2"));
        let (key_in, primary_in) = (key.clone(), Rc::clone(&primary));
        run(sim, async move { primary_in.set(&key_in, "v", None).await.unwrap() })?;
        sim.run_for(SETTLE).map_err(|e| e.to_string())?;
        assert!(replica.debug_drop_local(&key).is_some());
        assert!(!replica.local_contains(&key));
        let (key_in, replica_in) = (key.clone(), Rc::clone(&replica));
        let read = run(sim, async move { replica_in.get(&key_in).await })?;
        assert_eq!(value_of(read.map_err(|e| e.to_string())?), Some(b"v".to_vec()));
        sim.run_for(SETTLE).map_err(|e| e.to_string())?;
        assert!(replica.local_contains(&key), "the read repaired the replica");
        assert!(replica.metrics().counters.read_repair > 0);
        assert_eq!(primary.local_entry(&key), replica.local_entry(&key));
        Ok(())
    });
}

/// TestDistMemoryVersionTieBreak: equal counters are decided by origin, the smaller
/// origin winning, and the loser is repaired.
#[test]
fn tie_break_by_origin_and_repair() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let options =
            options().read_consistency(Consistency::All).write_consistency(Consistency::Quorum);
        let cluster = setup_in_process_cluster(sim, 3, options).map_err(|e| e.to_string())?;
        let key = key_owned_by(&cluster, "key", &["n1", "n2", "n3"]);
        let winner = Entry::Item(Item::new(Bytes::from_static(b"a"), Version::new(10, id("n1"))));
        let loser = Entry::Item(Item::new(Bytes::from_static(b"z"), Version::new(10, id("zz"))));
        let applied =
            node(&cluster, "n1").debug_inject(&key, winner.clone()).map_err(|e| e.to_string())?;
        assert!(applied.is_applied());
        for name in ["n2", "n3"] {
            let applied = node(&cluster, name)
                .debug_inject(&key, loser.clone())
                .map_err(|e| e.to_string())?;
            assert!(applied.is_applied());
        }
        let (reader, key_in) = (node(&cluster, "n3"), key.clone());
        let read =
            run(sim, async move { reader.get(&key_in).await })?.map_err(|e| e.to_string())?;
        assert_eq!(value_of(read), Some(b"a".to_vec()));
        sim.run_for(SETTLE).map_err(|e| e.to_string())?;
        for name in ["n1", "n2", "n3"] {
            assert_eq!(node(&cluster, name).local_entry(&key), Some(winner.clone()), "{name}");
        }
        assert!(node(&cluster, "n3").metrics().counters.version_tie_breaks > 0);
        Ok(())
    });
}

/// TestDistMemoryRemoveReplication plus a late older write: a remove writes a
/// versioned tombstone on every owner, and a replica write older than the tombstone,
/// arriving late, is refused everywhere.
#[test]
fn tombstone_beats_a_late_older_write() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let cluster = setup_in_process_cluster(sim, 3, options()).map_err(|e| e.to_string())?;
        let key = key_owned_by(&cluster, "key", &["n2", "n3", "n1"]);
        let client = node(&cluster, "n1");
        let key_in = key.clone();
        let (set_version, removed) = run(sim, async move {
            let version = client.set(&key_in, "doomed", None).await.unwrap();
            let removed = client.remove(&[&key_in]).await.unwrap();
            (version, removed)
        })?;
        assert!(removed[0] > set_version);
        sim.run_for(SETTLE).map_err(|e| e.to_string())?;
        let late = Entry::Item(Item::new(Bytes::from_static(b"doomed"), set_version));
        for name in ["n1", "n2", "n3"] {
            let owner = node(&cluster, name);
            assert!(
                matches!(owner.local_entry(&key), Some(Entry::Tombstone(Tombstone { ref version, .. })) if *version == removed[0]),
                "{name}"
            );
            let outcome = owner.debug_inject(&key, late.clone()).map_err(|e| e.to_string())?;
            assert!(!outcome.is_applied(), "{name} let an older write beat a tombstone");
            assert!(!owner.local_contains(&key));
        }
        let (reader, key_in) = (node(&cluster, "n2"), key.clone());
        assert_eq!(run(sim, async move { reader.get(&key_in).await })?, Ok(None));
        Ok(())
    });
}

/// A late replica write never overwrites a newer value, on any path (here the
/// network: a replica write held back by a message rule until after a newer write).
#[test]
fn late_replica_write_never_overwrites_a_newer_value() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let cluster = setup_in_process_cluster(sim, 3, options()).map_err(|e| e.to_string())?;
        let key = key_owned_by(&cluster, "key", &["n1", "n2", "n3"]);
        // Hold back the first replica write from n1 to n3 for 2 s: the first write's
        // copy reaches n3 after the second write's.
        let (n1, n3) = (cluster.sim_node(&id("n1")).unwrap(), cluster.sim_node(&id("n3")).unwrap());
        let delay_first = std::cell::Cell::new(true);
        let rule = sim.add_rule(move |meta| {
            let is_replica_write = matches!(
                meta.downcast_ref::<sim::net::Rpc<cache::PeerRequest, cache::PeerResponse>>(),
                Some(sim::net::Rpc::Request { body: cache::PeerRequest::Replicate { .. }, .. })
            );
            let on_link = meta.from().node() == n1 && meta.to().node() == n3;
            if on_link && is_replica_write && delay_first.replace(false) {
                sim::net::Verdict::Delay(Duration::from_secs(2))
            } else {
                sim::net::Verdict::Deliver
            }
        });
        let (primary, key_in) = (node(&cluster, "n1"), key.clone());
        let (old, new) = run(sim, async move {
            let old = primary.set(&key_in, "old", None).await.unwrap();
            let new = primary.set(&key_in, "new", None).await.unwrap();
            (old, new)
        })?;
        assert!(new > old);
        sim.run_for(SETTLE).map_err(|e| e.to_string())?;
        drop(rule);
        let held = node(&cluster, "n3").local_entry(&key);
        assert!(
            matches!(&held, Some(Entry::Item(item)) if item.value == "new" && item.version == new),
            "{held:?}"
        );
        assert!(
            node(&cluster, "n3").metrics().counters.apply_stale > 0,
            "the late copy was refused"
        );
        Ok(())
    });
}

/// TestDistMemoryVersioningQuorum, Lamport part: after the primary changes, the new
/// coordinator's versions are newer than the old primary's, even when its wall clock
/// is behind, because it observed them when it received their replica copies.
#[test]
fn versions_after_a_primary_change_follow_lamport() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let cluster = setup_in_process_cluster(sim, 3, options()).map_err(|e| e.to_string())?;
        let key = key_owned_by(&cluster, "key", &["n1", "n2", "n3"]);
        // n2's clock is a minute behind: its wall-clock floor alone would lose.
        sim.set_clock_offset(cluster.sim_node(&id("n2")).unwrap(), -60_000_000_000)
            .map_err(|e| e.to_string())?;
        let (primary, key_in) = (node(&cluster, "n1"), key.clone());
        let before = run(sim, async move { primary.set(&key_in, "before", None).await.unwrap() })?;
        sim.run_for(SETTLE).map_err(|e| e.to_string())?;
        cluster.kill(&id("n1")).map_err(|e| e.to_string())?;
        let (promoted, key_in) = (node(&cluster, "n2"), key.clone());
        let after = run(sim, async move { promoted.set(&key_in, "after", None).await.unwrap() })?;
        assert_eq!(after.origin, id("n2"));
        assert!(after > before, "{after:?} must be newer than {before:?}");
        let (reader, key_in) = (node(&cluster, "n3"), key.clone());
        let read =
            run(sim, async move { reader.get(&key_in).await })?.map_err(|e| e.to_string())?;
        assert_eq!(value_of(read), Some(b"after".to_vec()));
        Ok(())
    });
}

/// A client request's own level overrides the node's: with ALL configured and one
/// owner down, a forwarded QUORUM set succeeds, a set without a level fails at ALL, a
/// get at ALL fails and one at QUORUM reads; a key listing finds the key.
#[test]
fn client_requests_carry_their_own_consistency() {
    use cache::{ClientRequest, ClientResponse, PeerRequest, PeerResponse};
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let options = options().write_consistency(Consistency::All);
        // A static ring, so that the dead owner stays an owner for the ALL read.
        let options = options.read_consistency(Consistency::One).heartbeat_interval_ms(0);
        let options = options.gossip_interval_ms(0);
        let cluster = setup_in_process_cluster(sim, 5, options).map_err(|e| e.to_string())?;
        let key = key_owned_by(&cluster, "key", &["n1", "n2", "n3"]);
        cluster.kill(&id("n3")).map_err(|e| e.to_string())?;
        let outsider = node(&cluster, "n5").peer_handler();
        let (key_in, value) = (key.clone(), Bytes::from_static(b"v"));
        let answers = run(sim, async move {
            let mut answers = Vec::new();
            let requests = [
                ClientRequest::Set {
                    key: key_in.clone(),
                    value: value.clone(),
                    ttl: None,
                    consistency: Some(Consistency::Quorum),
                },
                ClientRequest::Set { key: key_in.clone(), value, ttl: None, consistency: None },
                ClientRequest::Get { key: key_in.clone(), consistency: Some(Consistency::All) },
                ClientRequest::Get { key: key_in.clone(), consistency: Some(Consistency::Quorum) },
                ClientRequest::ListKeys { pattern: "key*".to_string(), max: 0 },
            ];
            for request in requests {
                answers.push(outsider.handle(PeerRequest::Client(request)).await);
            }
            answers
        })?;
        let client = |answer: &PeerResponse| match answer {
            PeerResponse::Client(response) => response.clone(),
            other => panic!("not a client answer: {other:?}"),
        };
        assert!(matches!(client(&answers[0]), ClientResponse::Written(Ok(_))), "{answers:?}");
        // Forwarded, the ALL write fails by the forwarder's RPC deadline (equal to the
        // coordinator's), so the error is `Unreachable` rather than `QuorumFailed`.
        assert!(matches!(client(&answers[1]), ClientResponse::Written(Err(_))), "{answers:?}");
        assert!(matches!(client(&answers[2]), ClientResponse::Read(Err(_))), "{answers:?}");
        assert!(
            matches!(client(&answers[3]), ClientResponse::Read(Ok(Some(ref item))) if item.value == "v"),
            "{answers:?}"
        );
        match client(&answers[4]) {
            ClientResponse::Keys(Ok(list)) => assert_eq!(list.keys, vec![key]),
            other => panic!("{other:?}"),
        }
        Ok(())
    });
}
