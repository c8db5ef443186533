//! The observer: samples every node's store throughout a run (white-box, from outside
//! the cache) and judges two clauses over time rather than only at the end.
//!
//! - **Acknowledged writes survive** (`lost-write`, `undone-remove`), at every sample:
//!   every QUORUM or ALL write acknowledged so far is still held (it or a newer
//!   version) by some node, unless every node that held it when it was acknowledged,
//!   and every node seen holding it at a sample, has lost its memory since (copies
//!   move: a node that took a key over vouches for it as well).
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

use crate::checker::{Check, Violation, related_ops};
use crate::cluster::DistCluster;
use crate::history::{History, Op, OpKind, Outcome};
use crate::quiet::QuietWindows;

/// How often the observer samples the stores.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(500);

/// How long after a write is acknowledged (or a read answered) inside a quiet window
/// every owner must hold it: the cache's RPC timeout (5 s, the longest a replica write
/// may take) plus a second for a hint replay round and read repair.
pub const REPLICATION_BOUND: Duration = Duration::from_secs(6);

/// The message loss the failure detector rides out: with nothing worse than loss at or
/// below this ratio (duplicates, clock skew and the latency tail aside), no running
/// node is ever declared dead. A peer is declared dead only after `dead_after_ms` of
/// failed probes, each with indirect probes through other peers, and every message
/// heard from it counts: at 30 % loss a whole such stretch failing is vanishingly rare.
pub(crate) const FALSE_DEAD_LOSS_MAX: sim::rand::Ratio = sim::rand::Ratio::new(30, 100);

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
    /// Until when (virtual ns) the run promises that no running node is declared dead:
    /// nothing worse than loss below [`FALSE_DEAD_LOSS_MAX`] happens until then. 0: no
    /// such promise.
    pub(crate) alive_until_ns: u64,
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
    seen: Holdings,
    /// Memory losses of the history already applied to `seen`.
    losses_applied: usize,
    /// (check, subject) already reported, so that one fault is reported once.
    reported: BTreeSet<(Check, String)>,
    violations: Vec<Violation>,
    /// The acknowledged writes so far.
    acked: Acked,
}

/// The QUORUM and ALL writes acknowledged so far, per key, newest first, as indices
/// into the history. Kept up to date at each sample: an operation's outcome (and a
/// failed set's applied version, recorded in the same step) is final once it
/// completes, so each operation is filed once, where building the index anew cost a
/// pass over the whole history and a sort per key at every sample.
#[derive(Debug, Default)]
struct Acked {
    by_key: BTreeMap<String, Vec<usize>>,
    /// Operations read but not complete yet.
    pending: Vec<usize>,
    /// Operations of the history read so far.
    read: usize,
}

impl Acked {
    /// Files the operations completed since the last update.
    fn update(&mut self, history: &History) {
        self.pending.extend(self.read..history.ops.len());
        self.read = history.ops.len();
        let mut still_pending = Vec::new();
        for index in std::mem::take(&mut self.pending) {
            let op = &history.ops[index];
            if op.complete_ns.is_none() {
                still_pending.push(index);
                continue;
            }
            let Some(version) = acked_version(op) else { continue };
            if !op.is_write() || op.consistency == Consistency::One {
                continue;
            }
            // Newest first; among equal versions, in history order.
            let ops = self.by_key.entry(op.key.clone()).or_default();
            let at = ops.partition_point(|other| {
                let other_version =
                    acked_version(&history.ops[*other]).expect("filed ops are acked");
                other_version > version || (other_version == version && *other < index)
            });
            ops.insert(at, index);
        }
        self.pending = still_pending;
    }

    /// The acknowledged writes of `key`, newest first.
    fn of<'h>(&self, key: &str, history: &'h History) -> impl Iterator<Item = &'h Op> {
        let ops = self.by_key.get(key).map_or(&[][..], Vec::as_slice);
        ops.iter().map(|index| &history.ops[*index])
    }

    /// Every key with acknowledged writes.
    fn keys(&self) -> impl Iterator<Item = &str> {
        self.by_key.keys().map(String::as_str)
    }
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
            seen: Holdings::new(),
            losses_applied: 0,
            reported: BTreeSet::new(),
            violations: Vec::new(),
            acked: Acked::default(),
        }
    }

    /// Samples the stores at virtual time `now_ns` and checks every clause.
    pub(crate) fn sample(&mut self, now_ns: u64, cluster: &DistCluster, history: &History) {
        self.acked.update(history);
        let (holdings, altered) = holdings(cluster, &self.acked, history);
        self.see(&holdings, history);
        self.report_altered(now_ns, altered);
        let owners_hold_nothing = |key: &str, held: Option<&BTreeMap<NodeId, Version>>| {
            let ring = cluster.ring();
            ring.lookup(key).iter().all(|owner| held.is_none_or(|held| !held.contains_key(owner)))
        };
        self.check_survival(now_ns, &holdings, history, owners_hold_nothing);
        if self.windows.at(now_ns).is_some() {
            self.check_replication(now_ns, cluster, &holdings, history);
        }
        self.check_detector(now_ns, cluster, history);
        self.check_hint_gauges(cluster);
        if now_ns <= self.settings.alive_until_ns {
            self.check_none_dead(now_ns, cluster);
        }
    }

    /// Failure detection the other way: while only messages are lost (below the
    /// promised rate), every running node is on every running node's ring.
    fn check_none_dead(&mut self, now_ns: u64, cluster: &DistCluster) {
        let ids = cluster.ids();
        let mut found = Vec::new();
        for node in ids.iter().filter_map(|id| cluster.by_id(id)) {
            let ring = node.ring();
            let members = ring.nodes();
            let running = ids.iter().filter(|id| cluster.by_id(id).is_some());
            for missing in running.filter(|id| !members.contains(id)) {
                let message = format!(
                    "{} took {missing} off its ring at {:.3}s, though nothing worse than message loss of at most {}% happened",
                    node.id(),
                    now_ns as f64 / 1e9,
                    FALSE_DEAD_LOSS_MAX.numerator() * 100 / FALSE_DEAD_LOSS_MAX.denominator()
                );
                found.push((format!("{missing} off {}", node.id()), message));
            }
        }
        for (subject, message) in found {
            self.report(Check::DetectorFalseDead, subject, message, Vec::new());
        }
    }

    /// A version belongs to one write: a copy that carries an acknowledged write's
    /// version with another value (or a tombstone for a set's version, or a value for
    /// a remove's) has lost that write as surely as if it held nothing.
    fn report_altered(&mut self, now_ns: u64, altered: Vec<(NodeId, &Op)>) {
        for (node, op) in altered {
            let version = acked_version(op).expect("acked");
            let check = if matches!(op.kind, OpKind::Remove) {
                Check::UndoneRemove
            } else {
                Check::LostWrite
            };
            let message = format!(
                "{} acknowledged @{}:{}, but at {:.3}s {node} holds that version with something else than what the write wrote",
                op.key,
                version.counter,
                version.origin,
                now_ns as f64 / 1e9
            );
            let subject = format!("{}@{}:{} altered", op.key, version.counter, version.origin);
            self.report(check, subject, message, vec![op.to_string()]);
        }
    }

    /// Forgets what the nodes that lost their memory since the last sample held, then
    /// notes what every node holds now.
    fn see(&mut self, holdings: &Holdings, history: &History) {
        for loss in &history.memory_losses[self.losses_applied..] {
            for held in self.seen.values_mut() {
                held.remove(&loss.node);
            }
        }
        self.losses_applied = history.memory_losses.len();
        for (key, held) in holdings {
            let seen = self.seen.entry(key.clone()).or_default();
            for (node, version) in held {
                let known = seen.entry(node.clone()).or_insert_with(|| version.clone());
                if version > known {
                    *known = version.clone();
                }
            }
        }
    }

    /// Failure detection: a node crashed for longer than the detector's bound is off
    /// the ring of every running, unpaused node.
    fn check_detector(&mut self, now_ns: u64, cluster: &DistCluster, history: &History) {
        let bound_ns = u64::try_from(self.settings.detector_bound.as_nanos()).unwrap_or(u64::MAX);
        let since_ns = now_ns.saturating_sub(bound_ns);
        // A node frozen meanwhile relays, on resume, news of the crashed node's life it
        // took in before the crash (its refutation, say), which other detectors rightly
        // count as hearing from it: the bound stretches by the longest such freeze.
        let frozen_ns = |crash: &Outage| {
            let pauses = self.outages.pauses.iter().filter(|pause| pause.node != crash.node);
            let overlaps = pauses.map(|pause| {
                pause.end_ns.min(now_ns).saturating_sub(pause.start_ns.max(crash.start_ns))
            });
            overlaps.max().unwrap_or(0)
        };
        let overdue: Vec<(NodeId, u64)> = self
            .outages
            .crashes
            .iter()
            .filter(|crash| {
                let due_ns =
                    crash.start_ns.saturating_add(bound_ns).saturating_add(frozen_ns(crash));
                due_ns <= now_ns && now_ns < crash.end_ns
            })
            .map(|crash| (crash.node.clone(), crash.start_ns))
            .collect();
        // A node that is paused, or was paused, (re)started or joined within the bound,
        // has not had the time to decide: a node that notices its own pause forgives
        // its peers' silence and starts counting again.
        let outages = &self.outages;
        let excused = |node: &NodeId| {
            outages
                .pauses
                .iter()
                .any(|p| p.node == *node && p.start_ns <= now_ns && p.end_ns > since_ns)
                || outages.restarts.iter().any(|r| r.node == *node && r.end_ns > since_ns)
                || history.joins.iter().any(|(joined, at_ns)| joined == node && *at_ns > since_ns)
        };
        let mut found = Vec::new();
        for (crashed, crash_ns) in overdue {
            let seeing: Vec<String> = cluster
                .ids()
                .iter()
                .filter(|id| **id != crashed && !excused(id))
                .filter_map(|id| cluster.by_id(id))
                .filter(|node| node.ring().nodes().contains(&crashed))
                .map(|node| node.id().to_string())
                .collect();
            if !seeing.is_empty() {
                let message = format!(
                    "{crashed} crashed more than {:.1}s ago but is still on the ring of {}",
                    self.settings.detector_bound.as_secs_f64(),
                    seeing.join(",")
                );
                found.push((format!("{crashed} crashed at {crash_ns} ns"), message));
            }
        }
        for (subject, message) in found {
            self.report(Check::DetectorSlow, subject, message, Vec::new());
        }
    }

    /// Lost writes: every acknowledged write of each key is still held (it or a newer
    /// version) somewhere, unless every node that held it at its acknowledgement or at
    /// any sample lost its memory since. Older writes count too: a newer one
    /// whose holders all crashed leaves the older one's promise standing.
    fn check_survival(
        &mut self,
        now_ns: u64,
        holdings: &Holdings,
        history: &History,
        owners_hold_nothing: impl Fn(&str, Option<&BTreeMap<NodeId, Version>>) -> bool,
    ) {
        let mut found = Vec::new();
        for key in self.acked.keys() {
            let held = holdings.get(key);
            let newest_held = held.and_then(|held| held.values().max());
            let mut unheld = self.acked.of(key, history).take_while(|op| {
                newest_held.is_none_or(|newest| newest < acked_version(op).expect("acked"))
            });
            let lost = unheld.find_map(|op| Some((op, self.voucher(op, history)?)));
            let Some((op, keeper)) = lost else { continue };
            // A later remove (at any level) or an expiry may have left a tombstone that
            // the owners have collected since (a stray copy elsewhere may be older).
            if self.settings.tombstones_collected && owners_hold_nothing(key, held) {
                continue;
            }
            let version = acked_version(op).expect("acked");
            let check = if matches!(op.kind, OpKind::Remove) {
                Check::UndoneRemove
            } else {
                Check::LostWrite
            };
            let newest_held = newest_held
                .map_or_else(|| "nothing".to_string(), |v| format!("{}:{}", v.counter, v.origin));
            let message = format!(
                "{key} acknowledged @{}:{} was held by {keeper}, which kept its memory, but at {:.3}s the newest version any node holds is {newest_held}",
                version.counter,
                version.origin,
                now_ns as f64 / 1e9
            );
            let subject = format!("{key}@{}:{}", version.counter, version.origin);
            found.push((check, subject, message, related_ops(history, op)));
        }
        for (check, subject, message, ops) in found {
            self.report(check, subject, message, ops);
        }
    }

    /// A node that held `op`'s write (or newer) at its acknowledgement, or at any
    /// sample since, and has not lost its memory since. (A copy handed over and then
    /// released still vouches: the contract lets a write go only when every node that
    /// held it lost its memory, which a release without a hand-off breaks.)
    fn voucher(&self, op: &Op, history: &History) -> Option<NodeId> {
        let version = acked_version(op).expect("acked");
        let ack_ns = op.complete_ns.expect("acked");
        let at_ack = op.holders.iter().find(|node| !history.lost_memory_since(node, ack_ns));
        let seen = || self.seen.get(&op.key)?.iter().find(|(_, held)| *held >= version);
        at_ack.or_else(|| seen().map(|(node, _)| node)).cloned()
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
            // Writes that failed promise survival (where applied), not replication.
            let counts = match op.kind {
                OpKind::Get => self.settings.read_repair,
                _ => op.is_write() && matches!(op.outcome, Outcome::Ok { .. }),
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
            let subject = format!("{key}@{}:{}", version.counter, version.origin);
            self.report(Check::ReplicationLag, subject, message, vec![op.to_string()]);
        }
    }

    /// Every sample: each running node's hint gauges agree with its queue (see
    /// [`crate::tally::hint_gauges_untrue`]); reported once per node.
    fn check_hint_gauges(&mut self, cluster: &DistCluster) {
        for id in cluster.ids() {
            let Some(node) = cluster.by_id(&id) else { continue };
            for violation in crate::tally::hint_gauges_untrue(cluster, &id, &node) {
                self.report(violation.check, id.to_string(), violation.message, Vec::new());
            }
        }
    }

    fn report(&mut self, check: Check, subject: String, message: String, ops: Vec<String>) {
        if !self.reported.insert((check, subject)) {
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

/// Every running node's store, and the copies that carry an acknowledged write's
/// version with something else than what that write wrote: (node, write).
fn holdings<'h>(
    cluster: &DistCluster,
    acked: &Acked,
    history: &'h History,
) -> (Holdings, Vec<(NodeId, &'h Op)>) {
    let mut holdings: Holdings = BTreeMap::new();
    let mut altered = Vec::new();
    for id in cluster.ids() {
        let Some(node) = cluster.by_id(&id) else { continue };
        // Visited in place: a copy of every store at every sample cost a string and an
        // entry per key.
        node.for_each_local_entry(|key, entry| {
            let version = entry.version();
            let write = acked.of(key, history).find(|op| acked_version(op) == Some(version));
            // An item that expires becomes a tombstone under its own version.
            let expired = |op: &Op| op.ttl_ms().is_some() && entry.is_tombstone();
            let differs = |op: &&Op| !wrote(op, entry) && !expired(op);
            if write.is_some_and(|op| differs(&op)) {
                altered.push((id.clone(), write.expect("found")));
            }
            match holdings.get_mut(key) {
                Some(held) => {
                    held.insert(id.clone(), version.clone());
                }
                None => {
                    holdings
                        .insert(key.to_string(), BTreeMap::from([(id.clone(), version.clone())]));
                }
            }
        });
    }
    (holdings, altered)
}

/// Whether `entry` holds what the write `op` wrote: its bytes compared directly, where
/// hashing both sides (`Content`) cost two passes over values of up to 64 KiB for every
/// copy at every sample.
fn wrote(op: &Op, entry: &cache::Entry) -> bool {
    match (&op.kind, entry) {
        (OpKind::Set { value, .. }, cache::Entry::Item(item)) => {
            item.value[..] == *value.as_bytes()
        }
        (OpKind::Remove, cache::Entry::Tombstone(_)) => true,
        _ => false,
    }
}

/// The version an acknowledged write wrote, or an answered read returned; or, for a
/// set that failed with a quorum error, the version it was applied under anyway (the
/// contract keeps it on the owners that acknowledged it).
fn acked_version(op: &Op) -> Option<&Version> {
    match &op.outcome {
        Outcome::Ok { version: Some(version), .. } => Some(version),
        Outcome::Failed(_) => op.applied_version.as_ref(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> NodeId {
        NodeId::new(name).unwrap()
    }

    fn version(counter: u64, origin: &str) -> Version {
        Version::new(counter, id(origin))
    }

    fn observer(tombstones_collected: bool) -> Observer {
        let settings = ObserverSettings {
            replication: 3,
            read_repair: true,
            tombstones_collected,
            detector_bound: Duration::from_secs(10),
            alive_until_ns: 0,
        };
        Observer::new(settings, QuietWindows::none(), Outages::default())
    }

    fn holdings(entries: &[(&str, Version)]) -> Holdings {
        let mut holdings = Holdings::new();
        for (node, version) in entries {
            holdings.entry("k".to_string()).or_default().insert(id(node), version.clone());
        }
        holdings
    }

    /// The violations one survival check finds, on a fresh observer that saw
    /// `earlier` at a sample before every memory loss of `history`, and sees `now`.
    fn survival(
        history: &History,
        now: &[(&str, Version)],
        earlier: &[(&str, Version)],
        tombstones_collected: bool,
    ) -> Vec<Violation> {
        let mut observer = observer(tombstones_collected);
        observer.see(&holdings(earlier), &History::default());
        observer.see(&holdings(now), history);
        observer.acked.update(history);
        let owners_hold_nothing = |_: &str, held: Option<&BTreeMap<NodeId, Version>>| {
            held.is_none_or(|held| !held.contains_key(&id("n1")))
        };
        observer.check_survival(0, &holdings(now), history, owners_hold_nothing);
        observer.into_violations()
    }

    fn write(history: &mut History, kind: OpKind, counter: u64, holders: &[&str]) {
        let index = history.invoke(0, id("n1"), "k".into(), kind, Consistency::Quorum, 0);
        let acked = Outcome::Ok { version: Some(version(counter, "n1")), value: None };
        history.complete(index, 10, acked, holders.iter().map(|h| id(h)).collect());
    }

    #[test]
    fn an_acknowledged_write_survives_unless_its_holders_lost_memory() {
        let mut history = History::default();
        write(&mut history, OpKind::Set { value: "a".into(), ttl_ms: None }, 5, &["n1", "n2"]);
        let none: &[(&str, Version)] = &[];
        assert!(survival(&history, &[("n3", version(6, "n3"))], none, false).is_empty());
        assert!(survival(&history, &[("n1", version(5, "n1"))], none, false).is_empty());
        let lost = survival(&history, &[("n3", version(4, "n3"))], none, false);
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].check, Check::LostWrite);
        assert!(lost[0].message.contains("held by n1"), "{}", lost[0]);
        // One holder lost its memory: the other still vouches for the write.
        history.memory_losses.push(crate::history::MemoryLoss { node: id("n1"), at_ns: 50 });
        assert_eq!(survival(&history, none, none, false).len(), 1);
        // Both lost it: the contract promises nothing.
        history.memory_losses.push(crate::history::MemoryLoss { node: id("n2"), at_ns: 60 });
        assert!(survival(&history, none, none, false).is_empty());
    }

    #[test]
    fn writes_at_one_and_failed_writes_promise_nothing() {
        let mut history = History::default();
        let index = history.invoke(
            0,
            id("n1"),
            "k".into(),
            OpKind::Set { value: "a".into(), ttl_ms: None },
            Consistency::One,
            0,
        );
        let acked = Outcome::Ok { version: Some(version(9, "n1")), value: None };
        history.complete(index, 10, acked, vec![id("n1")]);
        let index = history.invoke(0, id("n1"), "k".into(), OpKind::Remove, Consistency::All, 20);
        history.complete(index, 30, Outcome::Failed("quorum".into()), vec![id("n1")]);
        assert!(survival(&history, &[], &[], false).is_empty());
    }

    #[test]
    fn holders_at_the_ack_and_at_any_sample_vouch() {
        let mut history = History::default();
        write(&mut history, OpKind::Set { value: "a".into(), ttl_ms: None }, 5, &["n1"]);
        let none: &[(&str, Version)] = &[];
        assert_eq!(survival(&history, none, none, false).len(), 1, "n1 dropped it");
        history.memory_losses.push(crate::history::MemoryLoss { node: id("n1"), at_ns: 50 });
        assert!(survival(&history, none, none, false).is_empty(), "n1 lost it");
        // The copy moved to n3 before n1 lost its memory: n3 vouches for it.
        let earlier: &[(&str, Version)] = &[("n3", version(5, "n1"))];
        let lost = survival(&history, none, earlier, false);
        assert_eq!(lost.len(), 1, "n3 dropped it without losing its memory");
        assert!(lost[0].message.contains("held by n3"), "{}", lost[0]);
        history.memory_losses.push(crate::history::MemoryLoss { node: id("n3"), at_ns: 150 });
        assert!(survival(&history, none, earlier, false).is_empty());
    }

    #[test]
    fn an_older_write_stands_when_the_newer_one_is_lost() {
        let mut history = History::default();
        write(&mut history, OpKind::Set { value: "a".into(), ttl_ms: None }, 5, &["n1"]);
        write(&mut history, OpKind::Set { value: "b".into(), ttl_ms: None }, 6, &["n2"]);
        history.memory_losses.push(crate::history::MemoryLoss { node: id("n2"), at_ns: 50 });
        let lost = survival(&history, &[("n3", version(4, "n3"))], &[], false);
        assert_eq!(lost.len(), 1);
        assert!(lost[0].message.contains("@5:n1"), "{}", lost[0]);
    }

    #[test]
    fn removes_are_undone_and_collected_tombstones_forgiven() {
        let mut history = History::default();
        write(&mut history, OpKind::Remove, 9, &["n1"]);
        let older: &[(&str, Version)] = &[("n2", version(8, "n2"))];
        let undone = survival(&history, older, &[], false);
        assert_eq!(undone.len(), 1);
        assert_eq!(undone[0].check, Check::UndoneRemove);
        // The owner (n1) collected the tombstone; a stray older copy elsewhere remains.
        assert!(survival(&history, older, &[], true).is_empty());
        let on_owner: &[(&str, Version)] = &[("n1", version(8, "n2"))];
        assert_eq!(survival(&history, on_owner, &[], true).len(), 1);
    }
}
