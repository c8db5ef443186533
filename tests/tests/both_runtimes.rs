//! Data-path scenarios written once and run on both runtimes: on the simulator over
//! several seeds, and (with `--features net`) on three or five real nodes on
//! 127.0.0.1. The bodies know nothing of either world: they drive a
//! `ScenarioCluster`, and wait with `settle()`.

use std::rc::Rc;

use cache::{Consistency, Entry, Error, Options, OptionsBuilder, Tombstone};
use cachesim::{ScenarioCluster, ScenarioFuture, key_owned_by, on_sim};

/// Seeds each scenario runs on the simulator.
const SEEDS: u64 = 8;

/// Runs one scenario on the simulator (`NAME_on_sim`) and on real ports
/// (`NAME_on_real`, feature `net`).
macro_rules! on_both {
    ($name:ident, $nodes:expr, $replication:expr, $options:expr, $body:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn on_sim() {
                sim::run_seeds(SEEDS, |sim| {
                    super::on_sim(sim, $nodes, $replication, $options, $body)
                });
            }

            #[cfg(feature = "net")]
            #[test]
            fn on_real() {
                cachesim::on_real($nodes, $replication, $options, $body).unwrap();
            }
        }
    };
}

fn value(entry: Option<Entry>) -> Option<Vec<u8>> {
    match entry {
        Some(Entry::Item(item)) => Some(item.value.to_vec()),
        _ => None,
    }
}

/// A write from a non-primary is forwarded to the primary, which versions it and
/// replicates it to every owner; the other nodes hold nothing.
fn forward_to_primary(cluster: Rc<dyn ScenarioCluster>) -> ScenarioFuture {
    Box::pin(async move {
        let key = key_owned_by(&*cluster, "key", &["n2", "n1", "n3"]);
        let written = cluster.node("n5").set(&key, "two", None).await.unwrap();
        assert_eq!(written.origin.as_str(), "n2", "the primary versions the write");
        cluster.settle().await;
        for owner in ["n1", "n2", "n3"] {
            assert_eq!(
                value(cluster.node(owner).local_entry(&key)),
                Some(b"two".to_vec()),
                "{owner}"
            );
        }
        for outsider in ["n4", "n5"] {
            assert!(cluster.node(outsider).local_entry(&key).is_none(), "{outsider}");
        }
        assert_eq!(cluster.node("n5").metrics().counters.forward_set, 1);
    })
}
on_both!(forward_to_primary_replicates, 5, 3, Options::builder(), forward_to_primary);

fn quorum_options() -> OptionsBuilder {
    Options::builder().write_consistency(Consistency::Quorum).read_consistency(Consistency::Quorum)
}

/// QUORUM writes and reads go on with one owner down; ALL writes fail, and the owners
/// that acknowledged keep the value (no rollback).
fn quorum_with_one_owner_down(cluster: Rc<dyn ScenarioCluster>) -> ScenarioFuture {
    Box::pin(async move {
        let key = key_owned_by(&*cluster, "key", &["n1", "n2", "n3"]);
        cluster.kill("n3");
        let primary = cluster.node("n1");
        primary.set(&key, "v", None).await.unwrap();
        let read = cluster.node("n2").get(&key).await.unwrap().unwrap();
        assert_eq!(&read.value[..], b"v");
        let counters = primary.metrics().counters;
        assert_eq!((counters.write_attempts, counters.write_quorum_failures), (1, 0));
        let all = cluster.node("n2").peer_handler();
        let answer = all
            .handle(cache::PeerRequest::Client(cache::ClientRequest::Set {
                key: key.clone(),
                value: bytes::Bytes::from_static(b"w"),
                ttl: None,
                consistency: Some(Consistency::All),
            }))
            .await;
        assert!(
            matches!(
                answer,
                cache::PeerResponse::Client(cache::ClientResponse::Written(Err(
                    Error::QuorumFailed { .. } | Error::Unreachable { .. }
                )))
            ),
            "{answer:?}"
        );
        assert_eq!(value(cluster.node("n1").local_entry(&key)), Some(b"w".to_vec()));
    })
}
on_both!(quorum_survives_an_owner_down, 3, 3, quorum_options(), quorum_with_one_owner_down);

/// A replica that lost its copy is repaired by a QUORUM read through it.
fn read_repair(cluster: Rc<dyn ScenarioCluster>) -> ScenarioFuture {
    Box::pin(async move {
        let key = key_owned_by(&*cluster, "key", &["n1", "n2", "n3"]);
        cluster.node("n1").set(&key, "v", None).await.unwrap();
        cluster.settle().await;
        let replica = cluster.node("n2");
        assert!(replica.debug_drop_local(&key).is_some());
        let read = replica.get(&key).await.unwrap().unwrap();
        assert_eq!(&read.value[..], b"v");
        cluster.settle().await;
        assert!(replica.local_contains(&key), "the read repaired the replica");
        assert!(replica.metrics().counters.read_repair > 0);
    })
}
on_both!(read_repairs_a_lost_copy, 3, 3, quorum_options(), read_repair);

/// A remove leaves a versioned tombstone on every owner, and a late copy of the older
/// value is refused everywhere.
fn tombstone(cluster: Rc<dyn ScenarioCluster>) -> ScenarioFuture {
    Box::pin(async move {
        let key = key_owned_by(&*cluster, "key", &["n2", "n3", "n1"]);
        let client = cluster.node("n1");
        let set = client.set(&key, "doomed", None).await.unwrap();
        let removed = client.remove(&[&key]).await.unwrap()[0].clone();
        assert!(removed > set);
        cluster.settle().await;
        let late = Entry::Item(cache::Item::new(bytes::Bytes::from_static(b"doomed"), set));
        for name in ["n1", "n2", "n3"] {
            let owner = cluster.node(name);
            assert!(
                matches!(owner.local_entry(&key), Some(Entry::Tombstone(Tombstone { ref version, .. })) if *version == removed),
                "{name}"
            );
            assert!(!owner.debug_inject(&key, late.clone()).unwrap().is_applied(), "{name}");
        }
        assert_eq!(cluster.node("n2").get(&key).await, Ok(None));
    })
}
on_both!(tombstone_beats_a_late_older_write, 3, 3, Options::builder(), tombstone);
