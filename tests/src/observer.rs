//! The observer: samples every node's store throughout a run (white-box, from outside
//! the cache) and judges two clauses over time rather than only at the end.
//!
//! - **Acknowledged writes survive** (`lost-write`, `undone-remove`), at every sample:
//!   the newest QUORUM or ALL write acknowledged so far is still held (it or a newer
//!   version) by some node, unless every node seen holding it has lost its memory
//!   since.
//! - **Replication is restored** (`replication-lag`), inside quiet windows: a QUORUM
//!   or ALL write acknowledged in the window, and (with read repair on) a QUORUM or ALL
//!   read that returned a version there, is held by every owner within
//!   [`REPLICATION_BOUND`].
//!
//! Sampling reads stores only; it never touches the simulation, so it cannot change
//! the run it watches.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cache::{Consistency, NodeId, Version};

use crate::checker::{Check, Violation};
use crate::cluster::DistCluster;
use crate::history::{History, Op, OpKind, Outcome};
use crate::quiet::QuietWindows;

/// How often the observer samples the stores.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(500);

/// How long after a write is acknowledged (or a read answered) inside a quiet window
/// every owner must hold it: the cache's RPC timeout (5 s, the longest a replica write
/// may take) plus a second for a hint replay round and read repair.
pub const REPLICATION_BOUND: Duration = Duration::from_secs(6);

/// Violations one check reports at most per run: enough to read, bounded.
const VIOLATIONS_PER_CHECK_MAX: usize = 20;

/// What the observer needs to know of the run's settings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ObserverSettings {
    /// The replication factor.
    pub(crate) replication: usize,
    /// Whether read repair is on (reads then promise repaired owners).
    pub(crate) read_repair: bool,
    /// Whether tombstones may be collected within the run (a short tombstone TTL): a
    /// key that nobody holds any more may then have been removed legitimately.
    pub(crate) tombstones_collected: bool,
    /// How long a crashed node may stay on a live node's ring: the detector's dead
    /// timeout, a heartbeat round and its probes, and slack for a gossip round.
    pub(crate) detector_bound: Duration,
}

/// The plan's node outages, in absolute virtual time.
#[derive(Clone, Debug, Default)]
pub(crate) struct Outages {
    /// Crashes (memory lost, restarted at the end).
    pub(crate) crashes: Vec<Outage>,
    /// Pauses (a paused node's detector is frozen).
    pub(crate) pauses: Vec<Outage>,
    /// Outages that end in a fresh node (crashes, and drains that leave and rejoin).
    pub(crate) restarts: Vec<Outage>,
}

/// A node out of action from `start_ns` to `end_ns` (a crash, or a pause).
#[derive(Clone, Debug)]
pub(crate) struct Outage {
    pub(crate) node: NodeId,
    pub(crate) start_ns: u64,
    pub(crate) end_ns: u64,
}

/// The observer of one run.
#[derive(Debug)]
pub(crate) struct Observer {
    settings: ObserverSettings,
    windows: QuietWindows,
    /// The crashes, pauses and restarts of the plan.
    outages: Outages,
    /// Per key, per node: the newest version the node was seen holding since it last
    /// lost its memory.
    seen: BTreeMap<String, BTreeMap<NodeId, Version>>,
    /// Memory losses of the history already applied to `seen`.
    losses_applied: usize,
    /// (check, key, version) already reported, so that one fault is reported once.
    reported: BTreeSet<(Check, String, Version)>,
    violations: Vec<Violation>,
}

/// Per key, per running node: the version held.
type Holdings = BTreeMap<String, BTreeMap<NodeId, Version>>;

impl Observer {
    pub(crate) fn new(
        settings: ObserverSettings,
        windows: QuietWindows,
        outages: Outages,
    ) -> Observer {
        assert!(settings.replication >= 1);
        Observer {
            settings,
            windows,
            outages,
            seen: BTreeMap::new(),
            losses_applied: 0,
            reported: BTreeSet::new(),
            violations: Vec::new(),
        }
    }

    /// Samples the stores at virtual time `now_ns` and checks both clauses.
    pub(crate) fn sample(&mut self, now_ns: u64, cluster: &DistCluster, history: &History) {
        for loss in &history.memory_losses[self.losses_applied..] {
            for held in self.seen.values_mut() {
                held.remove(&loss.node);
            }
        }
        self.losses_applied = history.memory_losses.len();
        let holdings = holdings(cluster);
        for (key, held) in &holdings {
            let seen = self.seen.entry(key.clone()).or_default();
            for (node, version) in held {
                let known = seen.entry(node.clone()).or_insert_with(|| version.clone());
                if version > known {
                    *known = version.clone();
                }
            }
        }
        let newest_acked = newest_acked_writes(history, now_ns);
        self.check_survival(&holdings, &newest_acked, history);
        if self.windows.at(now_ns).is_some() {
            self.check_replication(now_ns, cluster, &holdings, history);
        }
        self.check_detector(now_ns, cluster, history);
    }

    /// Failure detection: a node crashed for longer than the detector's bound is off
    /// the ring of every running, unpaused node.
    fn check_detector(&mut self, now_ns: u64, cluster: &DistCluster, history: &History) {
        let bound_ns = u64::try_from(self.settings.detector_bound.as_nanos()).unwrap_or(u64::MAX);
        let since_ns = now_ns.saturating_sub(bound_ns);
        let overdue: Vec<NodeId> = self
            .outages
            .crashes
            .iter()
            .filter(|crash| crash.start_ns <= since_ns && now_ns < crash.end_ns)
            .map(|crash| crash.node.clone())
            .collect();
        // A node that is paused, or (re)started or joined within the bound, has not had
        // the time to decide.
        let outages = self.outages.clone();
        let excused = |node: &NodeId| {
            outages
                .pauses
                .iter()
                .any(|p| p.node == *node && p.start_ns <= now_ns && now_ns < p.end_ns)
                || outages.restarts.iter().any(|r| r.node == *node && r.end_ns > since_ns)
                || history.joins.iter().any(|(joined, at_ns)| joined == node && *at_ns > since_ns)
        };
        for crashed in overdue {
            let seeing: Vec<String> = cluster
                .ids()
                .iter()
                .filter(|id| **id != crashed && !excused(id))
                .filter_map(|id| cluster.by_id(id))
                .filter(|node| node.ring().nodes().contains(&crashed))
                .map(|node| node.id().to_string())
                .collect();
            if seeing.is_empty() {
                continue;
            }
            let message = format!(
                "{crashed} crashed more than {:.1}s ago but is still on the ring of {}",
                self.settings.detector_bound.as_secs_f64(),
                seeing.join(",")
            );
            let version = Version::new(0, crashed.clone());
            self.report(Check::DetectorSlow, crashed.as_str(), &version, message, Vec::new());
        }
    }

    /// Lost writes: the newest acknowledged write of each key is still held somewhere,
    /// unless every node seen holding it lost its memory since.
    fn check_survival(
        &mut self,
        holdings: &Holdings,
        newest: &BTreeMap<&str, &Op>,
        history: &History,
    ) {
        for (key, op) in newest {
            let version = acked_version(op).expect("acknowledged writes have versions");
            let held = holdings.get(*key);
            if held.and_then(|held| held.values().max()).is_some_and(|max| max >= version) {
                continue;
            }
            let ack_ns = op.complete_ns.expect("acknowledged");
            let kept_memory = |node: &NodeId| !history.lost_memory_since(node, ack_ns);
            let seen = self.seen.get(*key);
            let keeper = seen
                .and_then(|seen| seen.iter().find(|(_, held)| *held >= version))
                .map(|(node, _)| node.clone())
                .or_else(|| op.holders.iter().find(|node| kept_memory(node)).cloned());
            let Some(keeper) = keeper else { continue };
            // A later remove (at any level) or an expiry may have left a tombstone that
            // was collected since.
            let nothing_held = held.is_none_or(BTreeMap::is_empty);
            if nothing_held && self.settings.tombstones_collected {
                continue;
            }
            let check = if matches!(op.kind, OpKind::Remove) {
                Check::UndoneRemove
            } else {
                Check::LostWrite
            };
            let found = held
                .and_then(|held| held.values().max())
                .map_or_else(|| "nothing".to_string(), |v| format!("{}:{}", v.counter, v.origin));
            let message = format!(
                "{key} acknowledged @{}:{} and held by {keeper} (which kept its memory), but the newest version any node holds is {found}",
                version.counter, version.origin
            );
            self.report(check, key, version, message, vec![op.to_string()]);
        }
    }

    /// Replication lag: inside a quiet window, writes acknowledged and reads answered
    /// there at least [`REPLICATION_BOUND`] ago are held by every owner.
    fn check_replication(
        &mut self,
        now_ns: u64,
        cluster: &DistCluster,
        holdings: &Holdings,
        history: &History,
    ) {
        let window = self.windows.at(now_ns).expect("sampled inside a window");
        let bound_ns = u64::try_from(REPLICATION_BOUND.as_nanos()).unwrap_or(u64::MAX);
        let ring = cluster.ring();
        let mut due: BTreeMap<&str, &Op> = BTreeMap::new();
        for op in &history.ops {
            let Some(done_ns) = op.complete_ns else { continue };
            if op.consistency == Consistency::One
                || done_ns < window.start_ns
                || done_ns.saturating_add(bound_ns) > now_ns
            {
                continue;
            }
            let counts = match op.kind {
                OpKind::Get => self.settings.read_repair,
                _ => op.is_write(),
            };
            let Some(version) = acked_version(op).filter(|_| counts) else { continue };
            let newer = due.get(op.key.as_str()).and_then(|other| acked_version(other));
            if newer.is_none_or(|newer| version > newer) {
                due.insert(op.key.as_str(), op);
            }
        }
        for (key, op) in due {
            let version = acked_version(op).expect("due ops have versions");
            let held = holdings.get(key);
            // An owner holding nothing may have collected a later tombstone already
            // (each node collects by its own clock) when tombstones are collected.
            let collected = self.settings.tombstones_collected;
            let lagging: Vec<String> = ring
                .lookup(key)
                .iter()
                .filter(|owner| match held.and_then(|held| held.get(*owner)) {
                    Some(held) => held < version,
                    None => !collected,
                })
                .map(ToString::to_string)
                .collect();
            if lagging.is_empty() {
                continue;
            }
            let message = format!(
                "{key} @{}:{} is not on owner(s) {} {:.1}s after it was {} inside a quiet window",
                version.counter,
                version.origin,
                lagging.join(","),
                (now_ns - op.complete_ns.expect("completed")) as f64 / 1e9,
                if op.is_write() { "acknowledged" } else { "read" }
            );
            self.report(Check::ReplicationLag, key, version, message, vec![op.to_string()]);
        }
    }

    fn report(
        &mut self,
        check: Check,
        key: &str,
        version: &Version,
        message: String,
        ops: Vec<String>,
    ) {
        if !self.reported.insert((check, key.to_string(), version.clone())) {
            return;
        }
        let count = self.violations.iter().filter(|violation| violation.check == check).count();
        if count < VIOLATIONS_PER_CHECK_MAX {
            self.violations.push(Violation { check, message, ops });
        }
    }

    /// What the observer found, in the order found.
    pub(crate) fn into_violations(self) -> Vec<Violation> {
        self.violations
    }
}

/// Every running node's store.
fn holdings(cluster: &DistCluster) -> Holdings {
    let mut holdings: Holdings = BTreeMap::new();
    for id in cluster.ids() {
        let Some(node) = cluster.by_id(&id) else { continue };
        for (key, entry) in node.local_entries() {
            holdings.entry(key).or_default().insert(id.clone(), entry.version().clone());
        }
    }
    holdings
}

/// The version an acknowledged write wrote, or an answered read returned.
fn acked_version(op: &Op) -> Option<&Version> {
    match &op.outcome {
        Outcome::Ok { version: Some(version), .. } => Some(version),
        _ => None,
    }
}

/// Per key, the newest QUORUM or ALL write acknowledged by `now_ns`.
fn newest_acked_writes(history: &History, now_ns: u64) -> BTreeMap<&str, &Op> {
    let mut newest: BTreeMap<&str, &Op> = BTreeMap::new();
    for op in &history.ops {
        if !op.is_write() || op.consistency == Consistency::One {
            continue;
        }
        if op.complete_ns.is_none_or(|done| done > now_ns) {
            continue;
        }
        let Some(version) = acked_version(op) else { continue };
        let older = newest.get(op.key.as_str()).and_then(|other| acked_version(other));
        if older.is_none_or(|older| version > older) {
            newest.insert(op.key.as_str(), op);
        }
    }
    newest
}
