//! Drain (hypercache.md §2.14), the cluster-wide key listing (§2.15) and the local
//! sweeps (§2.6, §2.20) as deterministic simulation tests. Ports the TestDistDrain_*
//! and TestDistListKeys_* tests of §3.2; the sweeps have no reference test (the
//! reference's expiration loop deletes everything, §2.20). Replay one seed with
//! `SIM_SEED=S`.

use std::rc::Rc;
use std::time::Duration;

use cache::{
    CacheNode, Consistency, Entry, Error, KeyList, Metrics, Options, PatternError, Tombstone,
    Version,
};
use cachesim::{DistCluster, setup_in_process_cluster};
use sim::Sim;

mod support;
use support::{TestResult, id, key_owned_by, node, run, run_for};

/// Seeds each test runs unless `SIM_SEEDS` says otherwise.
const SEEDS: u64 = 8;
/// Virtual time for in-flight replica writes to land (RPC timeout: 5 s).
const SETTLE: Duration = Duration::from_secs(6);

fn counters(cluster: &DistCluster, name: &str) -> Metrics {
    node(cluster, name).metrics().counters
}

fn names(cluster: &DistCluster) -> Vec<String> {
    cluster.ids().iter().map(|id| id.to_string()).collect()
}

/// Sets every key (value `v`, optional TTL) from `from`, one after the other.
fn set_keys(
    sim: &mut Sim,
    from: Rc<CacheNode>,
    keys: &[String],
    ttl: Option<Duration>,
) -> Result<Vec<Version>, String> {
    let keys = keys.to_vec();
    run(sim, async move {
        let mut versions = Vec::with_capacity(keys.len());
        for key in keys {
            versions.push(from.set(&key, "v", ttl).await.map_err(|e| e.to_string())?);
        }
        Ok::<_, String>(versions)
    })?
}

fn list(
    sim: &mut Sim,
    from: Rc<CacheNode>,
    pattern: &str,
    max: usize,
) -> Result<Result<KeyList, Error>, String> {
    let pattern = pattern.to_string();
    run(sim, async move { from.list_keys(&pattern, max).await })
}

fn numbered(prefix: &str, range: std::ops::RangeInclusive<usize>) -> Vec<String> {
    range.map(|n| format!("{prefix}{n}")).collect()
}

fn sorted(mut keys: Vec<String>) -> Vec<String> {
    keys.sort();
    keys
}

/// TestDistDrain_RejectsNewWrites and _HealthFlipsTo503's idempotence: a draining node
/// refuses writes with `Draining` and still serves reads; a second drain changes
/// nothing; it still applies the replica writes its peers coordinate.
#[test]
fn drain_refuses_writes_and_serves_reads() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let cluster =
            setup_in_process_cluster(sim, 3, Options::builder()).map_err(|e| e.to_string())?;
        let key = key_owned_by(&cluster, "key", &["n1", "n2", "n3"]);
        let other = key_owned_by(&cluster, "other", &["n2", "n1", "n3"]);
        set_keys(sim, node(&cluster, "n1"), std::slice::from_ref(&key), None)?;
        let drained = node(&cluster, "n1");
        assert!(!drained.is_draining());
        drained.drain();
        drained.drain();
        assert!(drained.is_draining());
        assert_eq!(drained.metrics().counters.drains, 1, "drains counts once");
        let (client, key_in) = (Rc::clone(&drained), key.clone());
        let (set, removed, read) = run(sim, async move {
            let set = client.set(&key_in, "refused", None).await;
            let removed = client.remove(&[&key_in]).await;
            (set, removed, client.get(&key_in).await)
        })?;
        assert_eq!(set, Err(Error::Draining));
        assert_eq!(removed, Err(Error::Draining));
        assert_eq!(read.map(|item| item.map(|item| item.value)), Ok(Some("v".into())));
        // A write coordinated by a peer still reaches the draining node as a replica.
        let version = set_keys(sim, node(&cluster, "n2"), std::slice::from_ref(&other), None)?;
        run_for(sim, SETTLE)?;
        let held = drained.local_entry(&other);
        assert!(matches!(&held, Some(Entry::Item(item)) if item.version == version[0]), "{held:?}");
        for name in ["n2", "n3"] {
            assert!(!node(&cluster, name).is_draining());
            assert_eq!(counters(&cluster, name).drains, 0);
        }
        Ok(())
    });
}

/// TestDistListKeys_ClusterWideDedup: 50 keys on a 5-node RF3 cluster are listed once
/// each, sorted, from any node, with nothing truncated or partial. Expired items are
/// not listed.
#[test]
fn list_keys_dedups_across_the_cluster() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let cluster =
            setup_in_process_cluster(sim, 5, Options::builder()).map_err(|e| e.to_string())?;
        let keys = numbered("key-", 1..=50);
        set_keys(sim, node(&cluster, "n1"), &keys, None)?;
        set_keys(
            sim,
            node(&cluster, "n2"),
            &numbered("ephemeral-", 1..=5),
            Some(Duration::from_secs(1)),
        )?;
        run_for(sim, SETTLE)?;
        for name in names(&cluster) {
            let list = list(sim, node(&cluster, &name), "", 0)?.map_err(|e| e.to_string())?;
            assert_eq!(list.keys, sorted(keys.clone()), "from {name}");
            assert!(!list.truncated);
            assert!(list.partial.is_empty(), "{:?}", list.partial);
        }
        Ok(())
    });
}

/// TestDistListKeys_PrefixFilter and _GlobFilter: a plain pattern is a prefix; `?`,
/// `*` and classes make a glob that matches whole keys.
#[test]
fn list_keys_filters_by_prefix_and_glob() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let cluster =
            setup_in_process_cluster(sim, 5, Options::builder()).map_err(|e| e.to_string())?;
        let first = numbered("first-", 1..=15);
        let mut keys = first.clone();
        keys.extend(numbered("second-", 1..=5));
        set_keys(sim, node(&cluster, "n1"), &keys, None)?;
        run_for(sim, SETTLE)?;
        let cases: [(&str, Vec<String>); 6] = [
            ("first-", first.clone()),
            ("second-", numbered("second-", 1..=5)),
            ("first-?", numbered("first-", 1..=9)),
            ("first-1[0-2]", numbered("first-", 10..=12)),
            ("*-1?", numbered("first-", 10..=15)),
            ("[!f]*", numbered("second-", 1..=5)),
        ];
        for (pattern, expected) in cases {
            let list = list(sim, node(&cluster, "n3"), pattern, 0)?.map_err(|e| e.to_string())?;
            assert_eq!(list.keys, sorted(expected), "pattern {pattern:?}");
            assert!(!list.truncated && list.partial.is_empty());
        }
        Ok(())
    });
}

/// TestDistListKeys_MaxTruncates: `max` returns the first keys in order and says the
/// list is truncated; a `max` at or above the count truncates nothing.
#[test]
fn list_keys_max_truncates() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let cluster =
            setup_in_process_cluster(sim, 5, Options::builder()).map_err(|e| e.to_string())?;
        let keys = sorted(numbered("key-", 1..=50));
        set_keys(sim, node(&cluster, "n1"), &keys, None)?;
        run_for(sim, SETTLE)?;
        let list = list(sim, node(&cluster, "n2"), "", 10)?.map_err(|e| e.to_string())?;
        assert!(list.truncated);
        assert_eq!(list.keys, keys[..10]);
        let list = list_all(sim, &cluster, 49)?;
        assert!(list.truncated);
        assert_eq!(list.keys, keys[..49]);
        for max in [50, 51] {
            let list = list_all(sim, &cluster, max)?;
            assert!(!list.truncated, "max {max}");
            assert_eq!(list.keys, keys);
        }
        Ok(())
    });
}

fn list_all(sim: &mut Sim, cluster: &DistCluster, max: usize) -> Result<KeyList, String> {
    list(sim, node(cluster, "n4"), "", max)?.map_err(|e| e.to_string())
}

/// TestDistListKeys_InvalidPattern: an unclosed class is refused before any node is
/// asked, with a message that names the pattern and what is accepted.
#[test]
fn list_keys_refuses_an_invalid_pattern() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let cluster =
            setup_in_process_cluster(sim, 2, Options::builder()).map_err(|e| e.to_string())?;
        let started = sim.now();
        let error = list(sim, node(&cluster, "n1"), "[unclosed", 0)?.unwrap_err();
        assert_eq!(sim.now(), started, "refused without asking anyone");
        let expected = PatternError::UnclosedClass { pattern: "[unclosed".into(), position: 0 };
        assert_eq!(error, Error::InvalidPattern(expected));
        let message = error.to_string();
        assert!(message.contains("`[unclosed`"), "{message}");
        assert!(message.contains("accepted"), "{message}");
        Ok(())
    });
}

/// A node that does not answer is reported in `partial`; the keys it holds are still
/// listed from their other owners.
#[test]
fn list_keys_reports_a_partitioned_node_as_partial() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let cluster =
            setup_in_process_cluster(sim, 5, Options::builder()).map_err(|e| e.to_string())?;
        let keys = sorted(numbered("key-", 1..=20));
        set_keys(sim, node(&cluster, "n1"), &keys, None)?;
        run_for(sim, SETTLE)?;
        let (rest, away): (Vec<_>, Vec<_>) = cluster
            .ids()
            .iter()
            .map(|id| cluster.sim_node(id).unwrap())
            .partition(|node| *node != cluster.sim_node(&id("n5")).unwrap());
        sim.partition(&rest, &away).map_err(|e| e.to_string())?;
        let list = list(sim, node(&cluster, "n1"), "", 0)?.map_err(|e| e.to_string())?;
        assert_eq!(list.partial, vec![id("n5")]);
        assert_eq!(list.keys, keys, "RF3: every key has an owner that answered");
        assert!(!list.truncated);
        sim.heal();
        Ok(())
    });
}

/// The expiry sweep turns expired items into tombstones of the same version, locally
/// on each owner, and touches nothing else: no item that has not expired, no other
/// node, and no delete is sent (the reference's loop deleted everything, §2.20).
#[test]
fn expiry_sweep_removes_only_expired_items_and_only_locally() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let cluster =
            setup_in_process_cluster(sim, 4, Options::builder()).map_err(|e| e.to_string())?;
        let short = key_owned_by(&cluster, "short", &["n1", "n2", "n3"]);
        let long = key_owned_by(&cluster, "long", &["n2", "n3", "n4"]);
        let forever = key_owned_by(&cluster, "forever", &["n3", "n4", "n1"]);
        let client = node(&cluster, "n1");
        let v_short = set_keys(
            sim,
            Rc::clone(&client),
            std::slice::from_ref(&short),
            Some(Duration::from_secs(2)),
        )?;
        let v_long = set_keys(
            sim,
            Rc::clone(&client),
            std::slice::from_ref(&long),
            Some(Duration::from_secs(3600)),
        )?;
        set_keys(sim, client, std::slice::from_ref(&forever), None)?;
        run_for(sim, SETTLE)?;
        for name in ["n1", "n2", "n3"] {
            let held = node(&cluster, name).local_entry(&short);
            assert!(
                matches!(&held, Some(Entry::Tombstone(Tombstone { version, .. })) if *version == v_short[0]),
                "{name}: the expired item is a tombstone of its own version, not a new delete: {held:?}"
            );
            assert_eq!(counters(&cluster, name).items_expired, 1, "{name}");
        }
        assert!(node(&cluster, "n4").local_entry(&short).is_none(), "nothing reached a non-owner");
        assert_eq!(counters(&cluster, "n4").items_expired, 0);
        for name in ["n2", "n3", "n4"] {
            let held = node(&cluster, name).local_entry(&long);
            assert!(
                matches!(&held, Some(Entry::Item(item)) if item.version == v_long[0]),
                "{name}"
            );
        }
        for name in ["n3", "n4", "n1"] {
            assert!(node(&cluster, name).local_contains(&forever), "{name}");
        }
        for name in names(&cluster) {
            let metrics = counters(&cluster, &name);
            assert_eq!((metrics.forward_remove, metrics.replica_fanout_remove), (0, 0), "{name}");
        }
        let (reader, key_in) = (node(&cluster, "n4"), short.clone());
        assert_eq!(run(sim, async move { reader.get(&key_in).await })?, Ok(None));
        Ok(())
    });
}

/// The tombstone sweep purges the tombstones older than `tombstone_ttl_ms` and keeps
/// the younger ones and every item.
#[test]
fn tombstone_sweep_purges_only_old_tombstones() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let options = Options::builder().tombstone_ttl_ms(60_000);
        let cluster = setup_in_process_cluster(sim, 3, options).map_err(|e| e.to_string())?;
        let keys: Vec<String> = ["old", "young", "live"].iter().map(|k| k.to_string()).collect();
        let client = node(&cluster, "n1");
        set_keys(sim, Rc::clone(&client), &keys, None)?;
        let remove = |sim: &mut Sim, key: &str| -> TestResult {
            let (client, key) = (Rc::clone(&client), key.to_string());
            run(sim, async move { client.remove(&[&key]).await })?
                .map(drop)
                .map_err(|e| e.to_string())
        };
        remove(sim, "old")?;
        run_for(sim, Duration::from_secs(40))?;
        remove(sim, "young")?;
        run_for(sim, Duration::from_secs(25))?;
        // "old" is 65 s old, past the TTL; "young" is 25 s old.
        for name in names(&cluster) {
            let owner = node(&cluster, &name);
            assert_eq!(owner.local_entry("old"), None, "{name}");
            assert!(matches!(owner.local_entry("young"), Some(Entry::Tombstone(_))), "{name}");
            assert!(owner.local_contains("live"), "{name}");
            assert!(owner.metrics().counters.tombstones_purged >= 1, "{name}");
            assert_eq!(owner.metrics().tombstones_active, 1, "{name}");
        }
        Ok(())
    });
}

/// The documented limit of tombstone purging (maintenance.rs, "The resurrection
/// risk"): a replica away for longer than the tombstone TTL (and so the hint TTL)
/// still holds the deleted item, and after the purge a read at ALL brings it back.
#[test]
fn a_replica_away_past_the_tombstone_ttl_resurrects_a_deleted_key() {
    sim::run_seeds(SEEDS, |sim| -> TestResult {
        let options = Options::builder()
            .heartbeat_interval_ms(0)
            .suspect_after_ms(0)
            .dead_after_ms(0)
            .gossip_interval_ms(0)
            .merkle_sync_interval_ms(0)
            .hint_ttl_ms(10_000)
            .tombstone_ttl_ms(20_000)
            .read_consistency(Consistency::All);
        let cluster = setup_in_process_cluster(sim, 3, options).map_err(|e| e.to_string())?;
        let key = key_owned_by(&cluster, "key", &["n1", "n2", "n3"]);
        set_keys(sim, node(&cluster, "n1"), std::slice::from_ref(&key), None)?;
        run_for(sim, SETTLE)?;
        let (away, rest) = (
            cluster.sim_node(&id("n3")).unwrap(),
            ["n1", "n2"].map(|n| cluster.sim_node(&id(n)).unwrap()),
        );
        sim.partition(&rest, &[away]).map_err(|e| e.to_string())?;
        let (client, key_in) = (node(&cluster, "n1"), key.clone());
        run(sim, async move { client.remove(&[&key_in]).await })?.map_err(|e| e.to_string())?;
        run_for(sim, Duration::from_secs(30))?;
        assert_eq!(counters(&cluster, "n1").hinted_expired, 1, "the tombstone's hint expired");
        assert_eq!(node(&cluster, "n1").local_entry(&key), None, "the tombstone was purged");
        sim.heal();
        let (reader, key_in) = (node(&cluster, "n1"), key.clone());
        let read =
            run(sim, async move { reader.get(&key_in).await })?.map_err(|e| e.to_string())?;
        assert!(read.is_some(), "the deleted key came back from n3");
        Ok(())
    });
}
