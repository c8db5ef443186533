//! Merkle anti-entropy (hypercache.md §2.10, and the bugs of §2.22 item 4 it must not
//! copy), as deterministic simulation tests over several seeds. Replay one seed with
//! `SIM_SEED=S`.
//!
//! Hint replay and rebalancing are off in these tests (they could repair what merkle
//! is meant to repair); failure detection and gossip run as usual. Manual syncs run
//! with autosync off, so that only the sync under test moves data.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use cache::{
    CacheNode, Entry, Error, Item, MERKLE_KEYS_PER_FETCH_MAX, Options, OptionsBuilder, SyncReport,
    Tombstone, Version,
};
use cachesim::setup_in_process_cluster;
use sim::Sim;

mod support;
use support::{KEY_CANDIDATES_MAX, TestResult, id, key_owned_by, node};

/// Seeds each test runs unless `SIM_SEEDS` says otherwise.
const SEEDS: u64 = 8;
/// Virtual time for in-flight replica writes to land (RPC timeout: 5 s).
const SETTLE: Duration = Duration::from_secs(6);
/// Leaves of the trees the tests compare replicas with.
const CHECK_LEAF_COUNT: usize = 16;

/// No background repair but the one under test: hints, rebalancing and autosync off.
fn manual_options() -> OptionsBuilder {
    Options::builder()
        .hint_replay_interval_ms(0)
        .rebalance_interval_ms(0)
        .merkle_sync_interval_ms(0)
}

/// Autosync every second (backoff up to 8×); hints and rebalancing off.
fn autosync_options() -> OptionsBuilder {
    Options::builder()
        .hint_replay_interval_ms(0)
        .rebalance_interval_ms(0)
        .merkle_sync_interval_ms(1_000)
        .merkle_backoff_factor_max(8)
}

/// The first key `{prefix}{i}` that satisfies `wanted`.
fn key_where(prefix: &str, wanted: impl Fn(&str) -> bool) -> String {
    (0..KEY_CANDIDATES_MAX)
        .map(|index| format!("{prefix}{index}"))
        .find(|key| wanted(key))
        .unwrap_or_else(|| panic!("no key `{prefix}…` has the placement wanted"))
}

fn item(value: &'static str, counter: u64, origin: &str) -> Entry {
    Entry::Item(Item::new(Bytes::from_static(value.as_bytes()), Version::new(counter, id(origin))))
}

fn inject(node: &CacheNode, key: &str, entry: Entry) -> TestResult {
    let outcome = node.debug_inject(key, entry).map_err(|e| e.to_string())?;
    assert!(outcome.is_applied(), "{}: the injected entry is not newer", node.id());
    Ok(())
}

fn sync(sim: &mut Sim, receiver: &Rc<CacheNode>, peer: &str) -> Result<SyncReport, String> {
    let (receiver, peer) = (Rc::clone(receiver), id(peer));
    let result = sim.block_on(async move { receiver.sync_with(&peer).await });
    result.map_err(|e| e.to_string())?.map_err(|e| e.to_string())
}

/// Whether `a` and `b` hold the same entries on the keys they share.
fn converged(a: &CacheNode, b: &CacheNode) -> bool {
    a.merkle_tree_with(b.id(), CHECK_LEAF_COUNT) == b.merkle_tree_with(a.id(), CHECK_LEAF_COUNT)
}

/// Goal: a sync repairs divergent replicas (§2.10). Method: three owners of 20 keys;
/// n2 loses two keys, n3 holds an older version of three others; each syncs with n1
/// and must end with n1's entries, fetching exactly the keys that differed.
#[test]
fn sync_repairs_divergent_replicas() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        // Two entries a leaf: the 20 keys spread over 16 leaves.
        let options = manual_options().merkle_chunk_size(2);
        let cluster = setup_in_process_cluster(sim, 3, options).map_err(|e| e.to_string())?;
        let (n1, n2, n3) = (node(&cluster, "n1"), node(&cluster, "n2"), node(&cluster, "n3"));
        let keys: Vec<String> = (0..20).map(|index| format!("key-{index}")).collect();
        for key in &keys {
            for owner in [&n1, &n2, &n3] {
                inject(owner, key, item("new", 10, "n1"))?;
            }
        }
        assert!(converged(&n1, &n2) && converged(&n1, &n3));
        for key in &keys[..2] {
            assert!(n2.debug_drop_local(key).is_some());
        }
        for key in &keys[2..5] {
            assert!(n3.debug_drop_local(key).is_some());
            inject(&n3, key, item("old", 5, "n3"))?;
        }
        assert!(!converged(&n1, &n2) && !converged(&n1, &n3));

        let report = sync(sim, &n2, "n1")?;
        assert!(!report.is_clean());
        assert_eq!((report.keys_fetched, report.keys_pulled), (2, 2), "{report:?}");
        let report = sync(sim, &n3, "n1")?;
        assert_eq!((report.keys_fetched, report.keys_pulled), (3, 3), "{report:?}");
        assert!(report.leaves_differing <= 3);
        assert!(report.keys_listed < keys.len(), "only the differing leaves are listed");
        for key in &keys {
            let newest = Some(item("new", 10, "n1"));
            assert_eq!(n2.local_entry(key), newest, "n2 {key}");
            assert_eq!(n3.local_entry(key), newest, "n3 {key}");
        }
        assert!(converged(&n1, &n2) && converged(&n1, &n3) && converged(&n2, &n3));
        assert_eq!(n3.metrics().counters.merkle_keys_pulled, 3);
        assert_eq!(n3.metrics().counters.merkle_syncs, 1);
        // Once converged, a sync is clean and moves nothing.
        let report = sync(sim, &n3, "n1")?;
        assert!(report.is_clean(), "{report:?}");
        assert_eq!((report.keys_listed, report.keys_fetched), (0, 0));
        assert_eq!(n3.metrics().counters.merkle_syncs, 1);
        Ok(())
    });
}

/// Goal: absence on the peer is never a delete (§2.22 item 4: the reference tombstones
/// what the peer lacks). Method: n2 holds a key n1 lacks and a key newer than n1's;
/// n2 syncs with n1 and keeps both; n1 then pulls them from n2.
#[test]
fn sync_never_deletes_on_absence() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let cluster =
            setup_in_process_cluster(sim, 3, manual_options()).map_err(|e| e.to_string())?;
        let (n1, n2) = (node(&cluster, "n1"), node(&cluster, "n2"));
        inject(&n2, "only-on-n2", item("mine", 3, "n2"))?;
        inject(&n1, "newer-on-n2", item("old", 3, "n1"))?;
        inject(&n2, "newer-on-n2", item("new", 4, "n2"))?;

        let report = sync(sim, &n2, "n1")?;
        assert!(!report.is_clean(), "the trees differ");
        assert_eq!(report.keys_pulled, 0, "nothing on n1 is newer: {report:?}");
        assert_eq!(n2.local_entry("only-on-n2"), Some(item("mine", 3, "n2")));
        assert_eq!(n2.local_entry("newer-on-n2"), Some(item("new", 4, "n2")));
        assert_eq!(n2.metrics().tombstones_active, 0, "no tombstone was made up");
        // The sync is push-pull: what n2 holds newer, or n1 lacks, went to n1.
        assert_eq!(report.keys_pushed, 2, "{report:?}");
        assert_eq!(n1.local_entry("only-on-n2"), Some(item("mine", 3, "n2")));
        assert_eq!(n1.local_entry("newer-on-n2"), Some(item("new", 4, "n2")));
        assert!(converged(&n1, &n2));
        assert!(sync(sim, &n1, "n2")?.is_clean());
        Ok(())
    });
}

/// Goal: a tombstone beats a stale replica during sync, both ways, so a sync never
/// resurrects a deleted key. Method: set then remove through the cluster; n3 is given
/// back the old item (as a replica that missed the delete); syncs between n3 and n1 in
/// both directions leave the tombstone everywhere.
#[test]
fn tombstone_beats_a_stale_replica_during_sync() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let cluster =
            setup_in_process_cluster(sim, 3, manual_options()).map_err(|e| e.to_string())?;
        let key = key_owned_by(&cluster, "key", &["n1", "n2", "n3"]);
        let (n1, n3) = (node(&cluster, "n1"), node(&cluster, "n3"));
        let (client, key_in) = (Rc::clone(&n1), key.clone());
        let (set_version, removed) = sim
            .block_on(async move {
                let version = client.set(&key_in, "doomed", None).await.unwrap();
                (version, client.remove(&[&key_in]).await.unwrap())
            })
            .map_err(|e| e.to_string())?;
        sim.run_for(SETTLE).map_err(|e| e.to_string())?;
        let tombstone = n1.local_entry(&key);
        assert!(
            matches!(&tombstone, Some(Entry::Tombstone(Tombstone { version, .. })) if *version == removed[0])
        );
        assert!(n3.debug_drop_local(&key).is_some());
        let stale = Entry::Item(Item::new(Bytes::from_static(b"doomed"), set_version));
        inject(&n3, &key, stale.clone())?;
        assert!(n3.local_contains(&key));

        // The tombstone holder syncing: it pulls nothing (the item is older) and pushes
        // its tombstone, which replaces the stale item.
        let report = sync(sim, &n1, "n3")?;
        assert_eq!((report.keys_fetched, report.keys_pulled), (0, 0), "{report:?}");
        assert_eq!(report.keys_pushed, 1, "{report:?}");
        assert_eq!(n1.local_entry(&key), tombstone, "the tombstone holder keeps it");
        // The same delete; each node dates its tombstone by its own clock.
        let deleted = |entry: Option<Entry>| match entry {
            Some(Entry::Tombstone(Tombstone { version, .. })) => Some(version),
            _ => None,
        };
        assert_eq!(deleted(n3.local_entry(&key)), Some(removed[0].clone()));
        // The stale replica syncing: it pulls the tombstone and pushes nothing.
        assert!(n3.debug_drop_local(&key).is_some());
        inject(&n3, &key, stale.clone())?;
        let report = sync(sim, &n3, "n1")?;
        assert_eq!((report.keys_pulled, report.keys_pushed), (1, 0), "{report:?}");
        assert_eq!(deleted(n3.local_entry(&key)), Some(removed[0].clone()));
        assert!(!n3.local_contains(&key));
        assert!(converged(&n1, &n3));
        let (reader, key_in) = (Rc::clone(&n3), key.clone());
        let read =
            sim.block_on(async move { reader.get(&key_in).await }).map_err(|e| e.to_string())?;
        assert_eq!(read, Ok(None));
        Ok(())
    });
}

/// Goal: a sync only exchanges keys that both nodes own, each in its own view (§2.22
/// item 4). Method: five nodes; n1 holds keys of every placement, strays it does not
/// own included; each other node syncs with n1 and must end holding exactly the keys
/// that it and n1 both own, while n1 loses nothing.
#[test]
fn sync_does_not_pull_keys_the_receiver_does_not_own() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let cluster =
            setup_in_process_cluster(sim, 5, manual_options()).map_err(|e| e.to_string())?;
        let n1 = node(&cluster, "n1");
        let ring = cluster.ring();
        let owns = |key: &str, name: &str| ring.is_owner(key, &id(name));
        // At least one key of each placement that matters for n4, then plenty of others.
        let mut keys = vec![
            key_where("shared", |key| owns(key, "n1") && owns(key, "n4")),
            key_where("not-n4", |key| owns(key, "n1") && !owns(key, "n4")),
            key_where("stray", |key| !owns(key, "n1") && owns(key, "n4")),
        ];
        keys.extend((0..40).map(|index| format!("key-{index}")));
        for key in &keys {
            inject(&n1, key, item("v", 7, "n1"))?;
        }
        for name in ["n2", "n3", "n4", "n5"] {
            let receiver = node(&cluster, name);
            let report = sync(sim, &receiver, "n1")?;
            let expected: Vec<&String> =
                keys.iter().filter(|key| owns(key, "n1") && owns(key, name)).collect();
            assert_eq!(report.keys_pulled, expected.len(), "{name}: {report:?}");
            for key in &keys {
                let held = receiver.local_entry(key).is_some();
                assert_eq!(held, expected.contains(&key), "{name} {key}");
            }
        }
        assert!(node(&cluster, "n4").local_entry(&keys[2]).is_none(), "a stray is not exchanged");
        assert_eq!(n1.local_entries().len(), keys.len(), "the syncs removed nothing from n1");
        Ok(())
    });
}

/// Goal: a replica that lost everything is refilled by one sync, over several leaves
/// and several fetches. Method: n1 alone holds more keys than one fetch carries; n2
/// syncs with n1; both trees end equal.
#[test]
fn sync_refills_an_empty_replica_in_bounded_fetches() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let cluster =
            setup_in_process_cluster(sim, 3, manual_options()).map_err(|e| e.to_string())?;
        let (n1, n2) = (node(&cluster, "n1"), node(&cluster, "n2"));
        let key_count = MERKLE_KEYS_PER_FETCH_MAX * 2 + 100;
        for index in 0..key_count {
            inject(&n1, &format!("bulk-{index}"), item("v", 1 + index as u64, "n1"))?;
        }
        let report = sync(sim, &n2, "n1")?;
        assert!(report.leaf_count > 1, "{report:?}");
        assert_eq!(report.leaves_differing, report.leaf_count);
        assert_eq!(report.keys_listed, key_count);
        assert_eq!(report.keys_pulled, key_count);
        assert_eq!(n2.local_entries(), n1.local_entries());
        assert!(converged(&n1, &n2));
        Ok(())
    });
}

/// Goal: a sync with a peer that does not answer fails and changes nothing; a sync with
/// oneself or an unknown node does nothing. Method: kill n3, sync n2 with it.
#[test]
fn sync_with_a_dead_or_unknown_peer_fails_cleanly() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let cluster =
            setup_in_process_cluster(sim, 3, manual_options()).map_err(|e| e.to_string())?;
        let n2 = node(&cluster, "n2");
        inject(&n2, "k", item("v", 1, "n2"))?;
        cluster.kill(&id("n3")).map_err(|e| e.to_string())?;
        let error = sync(sim, &n2, "n3").unwrap_err();
        assert!(error.contains("timed out") || error.contains("reached"), "{error}");
        assert_eq!(n2.local_entry("k"), Some(item("v", 1, "n2")));
        let report = sync(sim, &n2, "n2")?;
        assert_eq!(report.leaf_count, 0, "a sync with oneself compares nothing");
        let (receiver, unknown) = (Rc::clone(&n2), id("n9"));
        let result = sim.block_on(async move { receiver.sync_with(&unknown).await });
        assert_eq!(result.map_err(|e| e.to_string())?, Err(Error::UnknownNode { node: id("n9") }));
        Ok(())
    });
}

/// Goal: autosync converges a replica within bounded virtual time. Method: autosync
/// every 1 s with a backoff of at most 8×; after a quiet period (the backoff at its
/// maximum) n2 loses every key and n3 gets an older version of one; both must be
/// repaired within the longest wait (8 s + a quarter-interval of jitter) plus slack.
#[test]
fn autosync_converges_a_replica_within_bounded_time() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let cluster =
            setup_in_process_cluster(sim, 3, autosync_options()).map_err(|e| e.to_string())?;
        let (n1, n2, n3) = (node(&cluster, "n1"), node(&cluster, "n2"), node(&cluster, "n3"));
        let client = Rc::clone(&n1);
        sim.block_on(async move {
            for index in 0..10 {
                client.set(&format!("key-{index}"), "v", None).await.unwrap();
            }
        })
        .map_err(|e| e.to_string())?;
        sim.run_for(Duration::from_secs(20)).map_err(|e| e.to_string())?;
        assert!(converged(&n1, &n2) && converged(&n1, &n3));
        for index in 0..10 {
            assert!(n2.debug_drop_local(&format!("key-{index}")).is_some());
        }
        let newest = n3.local_entry("key-3").expect("replicated");
        assert!(n3.debug_drop_local("key-3").is_some());
        inject(&n3, "key-3", item("stale", 1, "n3"))?;

        // The longest wait (8 s + 250 ms of jitter) until n2's and n3's next rounds, then
        // rounds at the base rate (1.25 s at most) until each has picked a peer that has
        // what it lacks: half the peers do, so ten more rounds fail to with odds of 1/1024.
        let handle = sim.handle();
        let bound = Duration::from_millis(8_250 + 10 * 1_250);
        let started = handle.elapsed();
        let all_converged = || converged(&n1, &n2) && converged(&n1, &n3) && converged(&n2, &n3);
        sim.run_until(|| all_converged() || handle.elapsed() - started > bound)
            .map_err(|e| e.to_string())?;
        assert!(all_converged(), "not converged within {bound:?}");
        assert_eq!(n3.local_entry("key-3"), Some(newest));
        assert_eq!(n2.local_entries(), n1.local_entries());
        // Pulled by n2, or pushed to it by a peer's round: anti-entropy did it.
        let syncs: u64 =
            [&n1, &n2, &n3].iter().map(|node| node.metrics().counters.merkle_syncs).sum();
        assert!(syncs >= 1, "no sync found the differences");
        assert!(n2.metrics().counters.auto_sync_loops > 0);
        Ok(())
    });
}

/// Goal: the adaptive backoff (§2.10) grows on clean rounds and resets on a round that
/// finds differences. Method: a quiet cluster autosyncs until every node's factor is at
/// its maximum; then n1 alone gets a key, and the round in which n2 pulls it resets
/// n2's factor to 1.
#[test]
fn autosync_backoff_grows_on_clean_rounds_and_resets_on_differences() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let cluster =
            setup_in_process_cluster(sim, 3, autosync_options()).map_err(|e| e.to_string())?;
        // Clean rounds at about 1, 3, 7 and 15 s: the factor is 8 after the third.
        sim.run_for(Duration::from_secs(16)).map_err(|e| e.to_string())?;
        for name in ["n1", "n2", "n3"] {
            let counters = node(&cluster, name).metrics().counters;
            assert_eq!(counters.auto_sync_backoff_factor, 8, "{name}: {counters:?}");
            assert!(counters.auto_sync_clean_ticks >= 3, "{name}: {counters:?}");
            assert_eq!(counters.auto_sync_failures, 0, "{name}");
            assert_eq!(counters.merkle_syncs, 0, "{name}");
            assert_eq!(counters.auto_sync_loops, counters.auto_sync_clean_ticks, "{name}");
        }
        let (n1, n2) = (node(&cluster, "n1"), node(&cluster, "n2"));
        let key = key_owned_by(&cluster, "key", &["n1", "n2", "n3"]);
        inject(&n1, &key, item("v", 100, "n1"))?;
        // n2 rounds every 8 s (+ jitter) and picks n1 half the time (n3 lacks the key
        // until it pulls it too): ten rounds all missing it have odds of 1/1024.
        let handle = sim.handle();
        let (started, bound) = (handle.elapsed(), Duration::from_millis(10 * 8_250));
        sim.run_until(|| n2.local_entry(&key).is_some() || handle.elapsed() - started > bound)
            .map_err(|e| e.to_string())?;
        assert!(n2.local_entry(&key).is_some(), "n2 did not pull the key within {bound:?}");
        // The round that found the difference (n2 pulling, or n1 or n3 pushing) reset
        // that node's factor once it ended (a push lands before its round ends).
        sim.run_for(Duration::from_millis(500)).map_err(|e| e.to_string())?;
        let dirty: Vec<_> = [&n1, &n2, node(&cluster, "n3").as_ref()]
            .iter()
            .map(|node| node.metrics().counters)
            .filter(|counters| counters.merkle_syncs >= 1)
            .collect();
        assert!(!dirty.is_empty(), "some round found the difference");
        assert!(
            dirty.iter().any(|counters| counters.auto_sync_backoff_factor == 1),
            "a dirty round reset the factor"
        );
        Ok(())
    });
}
