//! The checkers: they read the history and, white-box, the nodes' stores, and decide.
//! Each checks one clause of the consistency contract (README, "Consistency contract").

use std::collections::BTreeMap;
use std::fmt;

use cache::{Consistency, Entry, NodeId, Version};

use crate::cluster::DistCluster;
use crate::history::{History, Op, OpKind, Outcome, shown};
use crate::quiet::QuietWindows;
use crate::wire::WireBook;

/// Which clause of the contract a violation breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Check {
    /// A read returned a value that no set ever wrote.
    PhantomRead,
    /// With nothing failing, a read whose quorum meets a completed write's missed it.
    StaleRead,
    /// An acknowledged QUORUM or ALL write was held by fewer nodes than its level
    /// requires when it was acknowledged.
    UnderReplicated,
    /// An acknowledged QUORUM or ALL write was lost while a node that held it kept its
    /// memory.
    LostWrite,
    /// An acknowledged QUORUM or ALL remove was undone by an older write.
    UndoneRemove,
    /// A hint left a node's queue without being delivered, expired, superseded or
    /// dropped by a cap: the cache lost a replica write silently.
    HintLost,
    /// After heal and the quiet period, live owners of a key disagree.
    Divergence,
    /// After convergence, a key has more copies than the replication factor.
    ExtraCopies,
    /// An operation wholly inside a quiet window did not succeed.
    Unavailable,
    /// Inside a quiet window, an acknowledged write (or a repaired read) was not on
    /// every owner within the replication bound.
    ReplicationLag,
    /// A read returned a value whose TTL had run out before the read started.
    ExpiredRead,
    /// A crashed node stayed on a live node's ring past the failure detector's bound.
    DetectorSlow,
    /// With nothing worse than message loss below the promised rate, a running node
    /// was declared dead (taken off another's ring).
    DetectorFalseDead,
    /// Inside a quiet window, a QUORUM or ALL read left an owner it found stale
    /// unrepaired: no read repair to it crossed the wire.
    ReadRepairMissing,
    /// A node joined and came to own a key held before it joined, but rebalance never
    /// handed the key to it (by a transfer or a hint).
    RebalanceMissing,
    /// Hints were still queued at the end of the quiet period, with every node up.
    HintsStuck,
    /// A node's counter disagrees with the messages the wire saw it send or receive.
    CounterUntrue,
    /// A request the cache must refuse (an empty or too long key, a value over the
    /// limit, a malformed pattern) was answered otherwise.
    BadInputAccepted,
    /// Inside a quiet window, an anti-entropy sync left a key it listed unrepaired in
    /// one direction: it did not pull what the peer held newer, or did not push what
    /// the peer held older.
    SyncOneWay,
}

impl Check {
    /// The checker's name.
    pub fn name(self) -> &'static str {
        match self {
            Check::PhantomRead => "phantom-read",
            Check::StaleRead => "stale-read",
            Check::UnderReplicated => "under-replicated",
            Check::LostWrite => "lost-write",
            Check::UndoneRemove => "undone-remove",
            Check::HintLost => "hint-lost",
            Check::Divergence => "divergence",
            Check::ExtraCopies => "extra-copies",
            Check::Unavailable => "unavailable",
            Check::ReplicationLag => "replication-lag",
            Check::ExpiredRead => "expired-read",
            Check::DetectorSlow => "detector-slow",
            Check::DetectorFalseDead => "detector-false-dead",
            Check::ReadRepairMissing => "read-repair-missing",
            Check::RebalanceMissing => "rebalance-missing",
            Check::HintsStuck => "hints-stuck",
            Check::CounterUntrue => "counter-untrue",
            Check::BadInputAccepted => "bad-input-accepted",
            Check::SyncOneWay => "sync-one-way",
        }
    }
}

/// One broken clause, with the operations involved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The clause.
    pub check: Check,
    /// What is wrong.
    pub message: String,
    /// The operations involved, printed with their virtual times.
    pub ops: Vec<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.check.name(), self.message)?;
        for op in &self.ops {
            write!(f, "\n      {op}")?;
        }
        Ok(())
    }
}

/// The newest entry of every key across all running nodes, and each node's version.
pub(crate) struct FinalState {
    /// Per key: node → what it holds (tombstones included).
    held: BTreeMap<String, BTreeMap<NodeId, Held>>,
    /// Per key: the number of nodes holding any entry.
    copies: BTreeMap<String, usize>,
}

/// What one node holds of a key: the version and what it says.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Held {
    version: Version,
    content: Content,
    /// Whether it is an item with a TTL (which becomes a tombstone under its own version
    /// when it expires, by each node's clock).
    expires: bool,
}

impl Held {
    /// Whether `self` and `other` hold the same write: one version, one content (or
    /// an item with a TTL and the tombstone its expiry left on another node).
    fn agrees(&self, other: &Held) -> bool {
        let expired = |a: &Held, b: &Held| a.expires && b.content == Content::Tombstone;
        self.version == other.version
            && (self.content == other.content || expired(self, other) || expired(other, self))
    }
}

/// What an entry says, as a digest: a value (whatever its expiry) or a tombstone
/// (whenever each node stored it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Content {
    /// A live or expired item with a value of this digest.
    Value(u64),
    /// A tombstone.
    Tombstone,
}

impl Content {
    /// What `entry` says.
    pub(crate) fn of(entry: &Entry) -> Content {
        match entry {
            Entry::Item(item) => Content::Value(sim::fingerprint::digest(&item.value[..])),
            Entry::Tombstone(_) => Content::Tombstone,
        }
    }
}

impl FinalState {
    /// Reads every running node's store.
    pub(crate) fn read(cluster: &DistCluster) -> FinalState {
        FinalState::read_nodes(cluster, &cluster.ids())
    }

    /// Reads the stores of `ids` (those running).
    pub(crate) fn read_nodes(cluster: &DistCluster, ids: &[NodeId]) -> FinalState {
        let mut held: BTreeMap<String, BTreeMap<NodeId, Held>> = BTreeMap::new();
        let mut copies: BTreeMap<String, usize> = BTreeMap::new();
        for id in ids {
            let Some(node) = cluster.by_id(id) else { continue };
            for (key, entry) in node.local_entries() {
                let (content, version) = (Content::of(&entry), entry.version().clone());
                let expires = matches!(&entry, Entry::Item(item) if item.expires_at_ms.is_some());
                let held_now = Held { version, content, expires };
                held.entry(key.clone()).or_default().insert(id.clone(), held_now);
                if matches!(entry, Entry::Item(_)) {
                    *copies.entry(key).or_default() += 1;
                }
            }
        }
        FinalState { held, copies }
    }

    /// The newest entry any node holds of `key` (of two with one version and different
    /// contents, either: the other owner differs from it then).
    fn newest(&self, key: &str) -> Option<&Held> {
        self.held.get(key)?.values().max()
    }
}

/// Safety: a read returns only a value that some set wrote (whatever the set's
/// outcome: a failed or unknown set may still have been applied), a set that had
/// started before the read ended; and when the version it returned is one that a
/// write was acknowledged with, the value is that write's. (A set may be applied under
/// several versions: a forward that timed out may have been applied before the next
/// owner coordinated it again. A version belongs to one write only.)
pub(crate) fn phantom_reads(history: &History) -> Vec<Violation> {
    let mut written: BTreeMap<(&str, &str), &Op> = BTreeMap::new();
    let mut by_version: BTreeMap<(&str, &Version), &Op> = BTreeMap::new();
    for op in &history.ops {
        if let OpKind::Set { value, .. } = &op.kind {
            let previous = written.insert((op.key.as_str(), value.as_str()), op);
            assert!(previous.is_none(), "the workload writes each value once: {value}");
        }
        if let (true, Outcome::Ok { version: Some(version), .. }) = (op.is_write(), &op.outcome) {
            by_version.insert((op.key.as_str(), version), op);
        }
    }
    let phantom = |read: &Op, message: String, other: Option<&Op>| {
        let mut ops = vec![read.to_string()];
        ops.extend(other.map(ToString::to_string));
        Violation { check: Check::PhantomRead, message, ops }
    };
    let mut violations = Vec::new();
    for read in history.ops.iter().filter(|op| matches!(op.kind, OpKind::Get)) {
        let Outcome::Ok { value: Some(value), version } = &read.outcome else { continue };
        let Some(set) = written.get(&(read.key.as_str(), value.as_str())) else {
            let message =
                format!("read of {} returned {:?}, which no set wrote", read.key, shown(value));
            violations.push(phantom(read, message, None));
            continue;
        };
        let read_end = read.complete_ns.expect("answered reads completed");
        if set.invoke_ns > read_end {
            let message =
                format!("read of {} returned {value:?} before the set of it started", read.key);
            violations.push(phantom(read, message, Some(set)));
            continue;
        }
        let owner = version.as_ref().and_then(|v| by_version.get(&(read.key.as_str(), v)));
        if let Some(owner) = owner.filter(|owner| owner.index != set.index) {
            let message = format!(
                "read of {} returned {value:?} with the version of another write",
                read.key
            );
            violations.push(phantom(read, message, Some(owner)));
        }
    }
    violations
}

/// Safety: a read never returns a value whose TTL ran out before the read started.
/// Expiry is set by the coordinator's wall clock when it versions the set (no earlier
/// than the set's invocation), and judged by the reading node's clock, so the two
/// clocks' skew (`skew_ns_max`, the largest offset and drift the plan puts on any
/// clock) is allowed on top of the TTL.
pub(crate) fn expired_reads(history: &History, skew_ns_max: u64) -> Vec<Violation> {
    let mut sets: BTreeMap<(&str, &str), &Op> = BTreeMap::new();
    for op in &history.ops {
        if let OpKind::Set { value, ttl_ms: Some(_) } = &op.kind {
            sets.insert((op.key.as_str(), value.as_str()), op);
        }
    }
    let mut violations = Vec::new();
    for read in history.ops.iter().filter(|op| matches!(op.kind, OpKind::Get)) {
        let Outcome::Ok { value: Some(value), version: read_version } = &read.outcome else {
            continue;
        };
        let Some(set) = sets.get(&(read.key.as_str(), value.as_str())) else { continue };
        // A set may be coordinated again, later, under another version (a forward that
        // timed out): only the acknowledged version's expiry is known.
        let Outcome::Ok { version: Some(acked), .. } = &set.outcome else { continue };
        if read_version.as_ref() != Some(acked) {
            continue;
        }
        let ttl_ns = set.ttl_ms().expect("a TTL set").saturating_mul(1_000_000);
        // The acknowledged version was issued, and its expiry set, before the answer.
        let versioned_by_ns = set.complete_ns.expect("acknowledged sets completed");
        let expired_by_ns = versioned_by_ns.saturating_add(ttl_ns).saturating_add(skew_ns_max);
        if read.invoke_ns > expired_by_ns && violations.len() < 20 {
            violations.push(Violation {
                check: Check::ExpiredRead,
                message: format!(
                    "read of {} returned {value:?} {:.3}s after its TTL ran out",
                    read.key,
                    (read.invoke_ns - versioned_by_ns - ttl_ns) as f64 / 1e9
                ),
                ops: vec![read.to_string(), set.to_string()],
            });
        }
    }
    violations
}

/// Safety inside quiet windows (see `quiet.rs`): a read wholly inside a window that
/// starts after a write to its key completed, at levels whose quorums meet
/// (R + W > N), returns that write's version or a newer one. A read that finds nothing
/// is stale unless a remove of the key was under way. A node losing its memory between
/// the write and the read excuses the read (the write may be lost legitimately).
///
/// Without rebalance (`rebalance` false), a write acknowledged while the ring was
/// changing may stay on nodes that are not its owners once the ring settles: only
/// writes acknowledged inside a quiet window are then promised.
pub(crate) fn stale_reads(
    history: &History,
    replication: usize,
    windows: &QuietWindows,
    rebalance: bool,
) -> Vec<Violation> {
    let meets = |read: Consistency, write: Consistency| {
        read.required(replication) + write.required(replication) > replication
    };
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in history.ops.iter().filter(|op| op.is_write()) {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let mut violations = Vec::new();
    for read in history.ops.iter().filter(|op| matches!(op.kind, OpKind::Get)) {
        let Outcome::Ok { version: read_version, .. } = &read.outcome else { continue };
        let read_end = read.complete_ns.expect("answered reads completed");
        if windows.around(read.invoke_ns, read_end).is_none() {
            continue;
        }
        let writes = by_key.get(read.key.as_str()).map_or(&[][..], Vec::as_slice);
        let newest_completed = writes
            .iter()
            .filter(|write| meets(read.consistency, write.consistency))
            .filter(|write| write.complete_ns.is_some_and(|done| done < read.invoke_ns))
            .filter(|write| {
                rebalance || windows.at(write.complete_ns.expect("completed")).is_some()
            })
            .filter_map(|write| match &write.outcome {
                Outcome::Ok { version: Some(version), .. } => Some((*write, version)),
                _ => None,
            })
            .max_by(|a, b| a.1.cmp(b.1));
        let Some((write, written)) = newest_completed else { continue };
        let memory_lost = history
            .memory_losses
            .iter()
            .any(|loss| loss.at_ns >= write.invoke_ns && loss.at_ns <= read.invoke_ns);
        if memory_lost {
            continue;
        }
        let stale = match (&write.kind, read_version) {
            (_, Some(seen)) => seen < written,
            (OpKind::Set { .. }, None) => !writes.iter().any(|other| {
                // A remove, or a set with a TTL (it may have expired: the write itself
                // included), at any level and with any outcome, excuses a miss if it
                // overlapped or followed the write.
                // A write whose client gave up may take effect later still.
                let in_flight = matches!(other.outcome, Outcome::Unknown | Outcome::Pending);
                let after_write =
                    in_flight || other.complete_ns.is_none_or(|done| done >= write.invoke_ns);
                let may_vanish = matches!(other.kind, OpKind::Remove) || other.ttl_ms().is_some();
                let sent = !matches!(other.outcome, Outcome::NotSent(_));
                may_vanish && sent && after_write && other.invoke_ns <= read_end
            }),
            _ => false,
        };
        if stale {
            let message = format!(
                "read of {} inside a quiet window missed a write completed before it started (@{}:{})",
                read.key, written.counter, written.origin
            );
            violations.push(Violation {
                check: Check::StaleRead,
                message,
                ops: vec![read.to_string(), write.to_string()],
            });
        }
    }
    violations
}

/// Durability, black-box: each probe (a read invoked at or after
/// [`History::probes_from_ns`], at ALL, after the cluster settled) returns the newest
/// acknowledged QUORUM or ALL write of its key, or a newer version. A miss is excused
/// only by a remove, or a set with a TTL, that may be ordered after that write. Unlike
/// [`stale_reads`], a node's lost memory excuses nothing: with one node down at a
/// time, an acknowledged quorum write survives on another owner, and a read at ALL
/// asks every owner.
pub(crate) fn lost_at_end(history: &History) -> Vec<Violation> {
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in history.ops.iter().filter(|op| op.is_write() && !history.is_probe(op)) {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let mut violations = versions_out_of_order(&by_key);
    for probe in history.ops.iter().filter(|op| op.is_read() && history.is_probe(op)) {
        let writes = by_key.get(probe.key.as_str()).map_or(&[][..], Vec::as_slice);
        let Some((write, written)) = newest_acknowledged(writes) else { continue };
        let lost = match (&probe.outcome, &write.kind) {
            (Outcome::Ok { version: Some(seen), .. }, _) => seen < written,
            (Outcome::Ok { version: None, .. }, OpKind::Set { .. }) => {
                !writes.iter().any(|other| may_erase(other, write, written))
            }
            (Outcome::Ok { version: None, .. }, _) => false,
            _ => {
                // No answer says nothing of the data: a failed probe is unavailability.
                violations.push(Violation {
                    check: Check::Unavailable,
                    message: format!("the final read of {} at ALL failed", probe.key),
                    ops: vec![probe.to_string()],
                });
                false
            }
        };
        if lost {
            violations.push(Violation {
                check: Check::LostWrite,
                message: format!(
                    "the final read of {} at ALL missed an acknowledged write (@{}:{})",
                    probe.key, written.counter, written.origin
                ),
                ops: vec![probe.to_string(), write.to_string()],
            });
        }
    }
    violations
}

/// The acknowledged QUORUM or ALL write with the highest version.
fn newest_acknowledged<'a>(writes: &[&'a Op]) -> Option<(&'a Op, &'a Version)> {
    writes
        .iter()
        .filter(|write| write.consistency != Consistency::One)
        .filter_map(|write| match &write.outcome {
            Outcome::Ok { version: Some(version), .. } => Some((*write, version)),
            _ => None,
        })
        .max_by(|a, b| a.1.cmp(b.1))
}

/// Whether `other` (a remove, or a set with a TTL) may have erased the set `write`
/// (acknowledged with version `written`): it was sent, may be ordered after it, and,
/// when acknowledged, carries a newer version.
fn may_erase(other: &Op, write: &Op, written: &Version) -> bool {
    let may_vanish = matches!(other.kind, OpKind::Remove) || other.ttl_ms().is_some();
    let maybe_after = other.complete_ns.is_none_or(|done| done >= write.invoke_ns)
        || matches!(other.outcome, Outcome::Unknown | Outcome::Pending);
    let newer = match &other.outcome {
        Outcome::Ok { version: Some(version), .. } => version > written,
        Outcome::NotSent(_) => false,
        _ => true,
    };
    may_vanish && maybe_after && newer
}

/// Two acknowledged writes of one key, the second invoked after the first completed,
/// must get versions in that order; else the later write loses to the earlier one
/// (last-write-wins by version), and is lost though acknowledged.
fn versions_out_of_order(by_key: &BTreeMap<&str, Vec<&Op>>) -> Vec<Violation> {
    let mut violations = Vec::new();
    for writes in by_key.values() {
        let acked: Vec<(&Op, &Version, u64)> = writes
            .iter()
            .filter_map(|write| match (&write.outcome, write.complete_ns) {
                (Outcome::Ok { version: Some(version), .. }, Some(done)) => {
                    Some((*write, version, done))
                }
                _ => None,
            })
            .collect();
        // The newest version among writes completed before each write's invocation.
        let mut by_completion = acked.clone();
        by_completion.sort_by_key(|(_, _, done)| *done);
        for (write, version, _) in &acked {
            let before = by_completion.iter().take_while(|(_, _, done)| *done < write.invoke_ns);
            let Some((earlier, newest, _)) = before.max_by(|a, b| a.1.cmp(b.1)) else { continue };
            if *version <= *newest && violations.len() < 20 {
                violations.push(Violation {
                    check: Check::LostWrite,
                    message: format!(
                        "a write of {} acknowledged after another completed got an older \
                         version (@{}:{} after @{}:{})",
                        write.key, version.counter, version.origin, newest.counter, newest.origin
                    ),
                    ops: vec![write.to_string(), earlier.to_string()],
                });
            }
        }
    }
    violations
}

/// The checks that read a history alone, for runs whose stores the harness cannot
/// sample at will (a real network): phantom reads, stale reads and unavailability
/// inside `windows`, and [`lost_at_end`] over the probes. `replication` is the
/// cluster's factor.
pub fn history_checks(
    history: &History,
    replication: usize,
    windows: &QuietWindows,
) -> Vec<Violation> {
    let mut violations = phantom_reads(history);
    violations.extend(stale_reads(history, replication, windows, true));
    violations.extend(unavailable(history, windows));
    violations.extend(lost_at_end(history));
    violations
}

/// Progress inside quiet windows: every operation wholly inside a window succeeds, at
/// every level. (Operations that straddle a fault, or run while the cluster settles,
/// may fail or time out.)
pub(crate) fn unavailable(history: &History, windows: &QuietWindows) -> Vec<Violation> {
    let mut violations = Vec::new();
    for op in &history.ops {
        let Some(done_ns) = op.complete_ns else { continue };
        // A listing that some member did not answer is not a success either.
        let succeeded = match &op.outcome {
            Outcome::Ok { .. } => true,
            Outcome::Keys { partial, .. } => partial.is_empty(),
            _ => false,
        };
        if succeeded || windows.around(op.invoke_ns, done_ns).is_none() {
            continue;
        }
        if violations.len() < 20 {
            violations.push(Violation {
                check: Check::Unavailable,
                message: format!("{} failed inside a quiet window", op.key),
                ops: vec![op.to_string()],
            });
        }
    }
    violations
}

/// How a run's operations ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Availability {
    /// Acknowledged.
    pub ok: u64,
    /// Answered with an error.
    pub failed: u64,
    /// No answer in time (or none before the run ended).
    pub unknown: u64,
    /// Probes issued (after the heal; counted in the three above too).
    pub probes: u64,
    /// Probes acknowledged.
    pub probes_ok: u64,
}

impl Availability {
    /// Counts the outcomes of a history.
    pub fn of(history: &History) -> Availability {
        let mut counts = Availability::default();
        for op in &history.ops {
            let ok = matches!(op.outcome, Outcome::Ok { .. } | Outcome::Keys { .. });
            match op.outcome {
                Outcome::Ok { .. } | Outcome::Keys { .. } => counts.ok += 1,
                Outcome::Failed(_) | Outcome::NotSent(_) => counts.failed += 1,
                Outcome::Unknown | Outcome::Pending => counts.unknown += 1,
            }
            if history.is_probe(op) {
                counts.probes += 1;
                counts.probes_ok += u64::from(ok);
            }
        }
        counts
    }

    /// Adds another run's counts.
    pub fn add(&mut self, other: Availability) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.unknown += other.unknown;
        self.probes += other.probes;
        self.probes_ok += other.probes_ok;
    }
}

/// Safety: an acknowledged write at QUORUM or ALL is held (it or a newer version) by
/// at least as many nodes as its level requires when the client gets the
/// acknowledgement, counting every node that crashed while it ran as a holder.
///
/// When tombstones are collected within the run (`tombstones_collected`), a write is
/// not counted if it, or a remove or TTL set of its key invoked before its
/// acknowledgement (which may have superseded it), may have left a tombstone: a node
/// whose clock runs ahead may collect it as soon as it arrives.
pub(crate) fn under_replicated(
    history: &History,
    replication: usize,
    tombstones_collected: bool,
) -> Vec<Violation> {
    // Per key, the earliest invocation of a remove or a TTL set.
    let mut first_vanishing_ns: BTreeMap<&str, u64> = BTreeMap::new();
    for op in
        history.ops.iter().filter(|op| matches!(op.kind, OpKind::Remove) || op.ttl_ms().is_some())
    {
        let first = first_vanishing_ns.entry(op.key.as_str()).or_insert(op.invoke_ns);
        *first = (*first).min(op.invoke_ns);
    }
    let mut violations = Vec::new();
    for op in history.ops.iter().filter(|op| op.is_write() && op.consistency != Consistency::One) {
        let (Outcome::Ok { version: Some(_), .. }, Some(acked_ns)) = (&op.outcome, op.complete_ns)
        else {
            continue;
        };
        // The write itself, or a remove or TTL set that may have superseded it before
        // the acknowledgement, may have left a tombstone that was collected already.
        let superseded_by_vanishing =
            first_vanishing_ns.get(op.key.as_str()).is_some_and(|first| *first <= acked_ns);
        if tombstones_collected && superseded_by_vanishing {
            continue;
        }
        let needed = op.consistency.required(replication);
        // Any node's crash meanwhile counts: the coordinator's view of the owners can
        // differ from the common ring while membership changes, and a node that
        // acknowledged and then crashed held the write when it acknowledged.
        let crashed = history
            .memory_losses
            .iter()
            .filter(|loss| loss.at_ns >= op.invoke_ns && loss.at_ns <= acked_ns)
            .count();
        if op.holders.len() + crashed < needed {
            let holders: Vec<&str> = op.holders.iter().map(NodeId::as_str).collect();
            let message = format!(
                "{} acknowledged at {} but held by {} node(s) ({}) of the {needed} required",
                op.key,
                op.consistency,
                op.holders.len(),
                holders.join(",")
            );
            violations.push(Violation {
                check: Check::UnderReplicated,
                message,
                ops: vec![op.to_string()],
            });
        }
    }
    violations
}

/// The operation and the other writes to its key, for context.
pub(crate) fn related_ops(history: &History, op: &Op) -> Vec<String> {
    let mut ops = vec![op.to_string()];
    let others = history
        .ops
        .iter()
        .filter(|other| other.key == op.key && other.is_write() && other.index != op.index);
    ops.extend(others.rev().take(6).map(|other| other.to_string()));
    ops
}

/// Liveness: the probe phase ends: every probe of the `expected` was sent, and each
/// was answered before the phase's time ran out (the `unavailable` check judges the
/// answers).
pub(crate) fn probes_unfinished(history: &History, expected: usize) -> Vec<Violation> {
    if history.probes_from_ns.is_none() {
        return Vec::new();
    }
    let probes: Vec<&Op> = history.ops.iter().filter(|op| history.is_probe(op)).collect();
    let pending: Vec<&Op> = probes.iter().copied().filter(|op| op.complete_ns.is_none()).collect();
    if probes.len() >= expected && pending.is_empty() {
        return Vec::new();
    }
    let message = format!(
        "the probe phase ran out of time: {} of {expected} probes sent, {} unanswered",
        probes.len(),
        pending.len()
    );
    let ops = pending.iter().take(6).map(ToString::to_string).collect();
    vec![Violation { check: Check::Unavailable, message, ops }]
}

/// Liveness, observed at the wire: inside a quiet window, a QUORUM or ALL read of an
/// item sends a read repair to every owner that answered it with an older version or
/// with nothing, within `bound_ns` of the answer, for reads due before the run ends at
/// `run_end_ns`. (Anti-entropy or a later write may repair the owner as well; the read
/// must still do its part.) A read that a ONE read of the same key through the same
/// node overlaps is not judged: the wire cannot tell their replica reads apart.
pub(crate) fn read_repairs_missing(
    history: &History,
    cluster: &DistCluster,
    windows: &QuietWindows,
    wire: &WireBook,
    (bound_ns, run_end_ns): (u64, u64),
) -> Vec<Violation> {
    let mut violations = Vec::new();
    if !wire.read_repairs_complete() {
        return violations;
    }
    let reads: Vec<&Op> = history.ops.iter().filter(|op| op.is_read()).collect();
    let overlapped_by_one = |op: &Op, done_ns: u64| {
        reads.iter().any(|other| {
            other.consistency == Consistency::One
                && other.key == op.key
                && other.target == op.target
                && other.invoke_ns <= done_ns
                && other.complete_ns.is_none_or(|other_done| other_done >= op.invoke_ns)
        })
    };
    for op in reads.iter().filter(|op| op.consistency != Consistency::One) {
        let (Outcome::Ok { version: Some(version), .. }, Some(done_ns)) =
            (&op.outcome, op.complete_ns)
        else {
            continue;
        };
        let Some(due_ns) = done_ns.checked_add(bound_ns) else { continue };
        if due_ns > run_end_ns || windows.around(op.invoke_ns, due_ns).is_none() {
            continue;
        }
        let Some(coordinator) = cluster.sim_node(&op.target) else { continue };
        if overlapped_by_one(op, done_ns) {
            continue;
        }
        let span = (op.invoke_ns, done_ns);
        for owner in wire.stale_answers(coordinator, &op.key, span, version) {
            if wire.read_repair_sent((coordinator, owner), &op.key, (op.invoke_ns, due_ns)) {
                continue;
            }
            let owner = cluster.ids().into_iter().find(|id| cluster.sim_node(id) == Some(owner));
            let owner = owner.map_or_else(|| "an owner".to_string(), |id| id.to_string());
            let message = format!(
                "{} read {} at {}, {owner} answered without its version, but {} sent it no read repair within {:.1}s",
                op.target,
                op.key,
                op.consistency,
                op.target,
                bound_ns as f64 / 1e9
            );
            let ops = vec![op.to_string()];
            violations.push(Violation { check: Check::ReadRepairMissing, message, ops });
            if violations.len() == READ_REPAIR_VIOLATIONS_MAX {
                return violations;
            }
        }
    }
    violations
}

/// Missing read repairs reported per run at most.
const READ_REPAIR_VIOLATIONS_MAX: usize = 20;

/// A node that joined, when, and the keys live on some node as it joined, with the
/// nodes that held them.
#[derive(Clone, Debug)]
pub(crate) struct Joined {
    pub(crate) node: NodeId,
    pub(crate) at_ns: u64,
    pub(crate) keys_before: BTreeMap<String, Vec<NodeId>>,
}

impl Joined {
    /// The keys some running node holds a live item of now, with those nodes.
    pub(crate) fn live_keys(cluster: &DistCluster) -> BTreeMap<String, Vec<NodeId>> {
        let mut live: BTreeMap<String, Vec<NodeId>> = BTreeMap::new();
        for id in cluster.ids() {
            let Some(node) = cluster.by_id(&id) else { continue };
            for (key, entry) in node.local_entries() {
                if !entry.is_tombstone() {
                    live.entry(key).or_default().push(id.clone());
                }
            }
        }
        live
    }
}

/// Liveness, observed at the wire: rebalance moves every key to its new owners. Each
/// key that was live before a node joined on a node that kept its memory since and
/// lost no hint (rebalance hands an unreachable node its keys as hints), that the
/// joined node owns on `ring` at the end and holds a live item of in `state`, was
/// handed to it after it joined by rebalance (a transfer, or a hint), whatever else
/// (anti-entropy, a later write) brought it too. (A holder's rebalance pass sends every
/// key it holds to each owner new to it, whether or not that owner has it already.)
/// The caller judges only runs where hints run.
pub(crate) fn rebalance_missing(
    joins: &[Joined],
    history: &History,
    (ring, state): (&cache::Ring, &FinalState),
    cluster: &DistCluster,
    wire: &WireBook,
) -> Vec<Violation> {
    let mut violations = Vec::new();
    for joined in joins {
        let Some(to) = cluster.sim_node(&joined.node) else { continue };
        let mut missing = Vec::new();
        for (key, holders) in &joined.keys_before {
            let held = state.held.get(key).and_then(|held| held.get(&joined.node));
            let live = held.is_some_and(|held| held.content != Content::Tombstone);
            // A holder that kept its memory and lost no hint had to hand the key over,
            // by a transfer or by a hint for an unreachable node.
            let kept_all = |node: &NodeId| {
                !history.lost_memory_since(node, joined.at_ns) && !lost_hints(cluster, node)
            };
            let kept = holders.iter().any(kept_all);
            if !live || !kept || !ring.lookup(key).contains(&joined.node) {
                continue;
            }
            match wire.handed_to(to, key, joined.at_ns) {
                None => return violations,
                Some(true) => {}
                Some(false) => missing.push(key.as_str()),
            }
        }
        if !missing.is_empty() {
            let shown: Vec<&str> = missing.iter().take(8).copied().collect();
            let message = format!(
                "{} joined at {:.3}s and owns {} key(s) live before it joined that rebalance never handed to it: {}",
                joined.node,
                joined.at_ns as f64 / 1e9,
                missing.len(),
                shown.join(" ")
            );
            violations.push(Violation { check: Check::RebalanceMissing, message, ops: Vec::new() });
        }
    }
    violations
}

/// Whether `node` is down, or let a hint expire or dropped one for a cap.
fn lost_hints(cluster: &DistCluster, node: &NodeId) -> bool {
    cluster.by_id(node).is_none_or(|node| let_hints_go(&node))
}

/// Whether `node` let a hint expire or dropped one for a cap.
pub(crate) fn let_hints_go(node: &cache::CacheNode) -> bool {
    let m = node.metrics().counters;
    m.hinted_expired + m.hinted_dropped + m.hinted_global_dropped > 0
}

/// Liveness: hint queues drain after the heal. With every node up and reachable for
/// the quiet period, each node has delivered (or let expire) every hint by its end:
/// `hints_left` lists the nodes that still have some queued. (The caller judges only
/// runs whose hint TTL is at most half the quiet period: a hint its node refuses, not
/// owning the key in its view any more, is retried until its TTL, and clients write
/// for the first half.)
pub(crate) fn hints_stuck(
    hints_left: &[(NodeId, usize)],
    quiet: std::time::Duration,
) -> Vec<Violation> {
    hints_left
        .iter()
        .map(|(node, queued)| Violation {
            check: Check::HintsStuck,
            message: format!(
                "{node} still has {queued} hint(s) queued {:.0}s after the heal, with every node up",
                quiet.as_secs_f64()
            ),
            ops: Vec::new(),
        })
        .collect()
}

/// Safety, white-box: every node's hint books balance. Each hint queued was delivered,
/// expired, superseded by a newer one, dropped by the per-node cap, or is still queued;
/// none vanishes silently. And the cache's word is not taken for a delivery: a node
/// counts no more hints delivered than the wire carried successful answers to its
/// hint replays ([`WireBook`]).
pub(crate) fn hint_accounting(cluster: &DistCluster, wire: &WireBook) -> Vec<Violation> {
    let mut violations = Vec::new();
    for id in cluster.ids() {
        let Some(node) = cluster.by_id(&id) else { continue };
        let m = node.metrics().counters;
        let answered = cluster.sim_node(&id).and_then(|sim_node| wire.hints_answered(sim_node));
        if m.hinted_replayed > answered.unwrap_or(0) {
            let message = format!(
                "{id} counts {} hints delivered, but the wire carried a successful answer to {} of its hint replays",
                m.hinted_replayed,
                answered.unwrap_or(0)
            );
            violations.push(Violation { check: Check::HintLost, message, ops: Vec::new() });
        }
        let accounted =
            m.hinted_replayed + m.hinted_expired + m.hinted_dropped + m.hinted_superseded;
        let queued_now = node.hints_queued() as u64;
        if m.hinted_queued != accounted + queued_now {
            let message = format!(
                "{id} queued {} hints but accounts for {}: {} delivered, {} expired, {} dropped, {} superseded, {queued_now} still queued",
                m.hinted_queued,
                accounted + queued_now,
                m.hinted_replayed,
                m.hinted_expired,
                m.hinted_dropped,
                m.hinted_superseded
            );
            violations.push(Violation { check: Check::HintLost, message, ops: Vec::new() });
        }
    }
    violations
}

/// Liveness: after heal and the quiet period, every owner of every key holds the same
/// newest version with the same value. When tombstones are collected within the run
/// (`tombstones_collected`), an owner holding nothing may have collected the newest
/// already if it is a tombstone (or an item whose TTL leaves one): each node collects
/// by its own clock.
pub(crate) fn divergence(
    ring: &cache::Ring,
    state: &FinalState,
    tombstones_collected: bool,
) -> Vec<Violation> {
    let mut violations = Vec::new();
    for (key, held) in &state.held {
        let owners = ring.lookup(key).to_vec();
        let Some(newest) = state.newest(key) else { continue };
        let stale: Vec<String> = owners
            .iter()
            .filter(|owner| match held.get(*owner) {
                Some(held) => !held.agrees(newest),
                // An owner may hold nothing only where the newest is a tombstone, or an
                // item whose expiry leaves one, that it may have collected already.
                None => {
                    let collectable = newest.content == Content::Tombstone || newest.expires;
                    !(tombstones_collected && collectable)
                }
            })
            .map(|owner| match held.get(owner) {
                Some(held) if held.version == newest.version => {
                    format!(
                        "{owner}@{}:{} (another value)",
                        held.version.counter, held.version.origin
                    )
                }
                Some(held) => format!("{owner}@{}:{}", held.version.counter, held.version.origin),
                None => format!("{owner}@none"),
            })
            .collect();
        if !stale.is_empty() {
            let message = format!(
                "{key}: owners {} lag the newest version {}:{}",
                stale.join(" "),
                newest.version.counter,
                newest.version.origin
            );
            violations.push(Violation { check: Check::Divergence, message, ops: Vec::new() });
        }
    }
    violations
}

/// Liveness: after convergence no key has more live copies than the replication
/// factor.
pub(crate) fn extra_copies(cluster: &DistCluster, state: &FinalState) -> Vec<Violation> {
    let replication = cluster.options().replication_factor();
    state
        .copies
        .iter()
        .filter(|(_, copies)| **copies > replication)
        .map(|(key, copies)| Violation {
            check: Check::ExtraCopies,
            message: format!(
                "{key} has {copies} copies, more than the replication factor {replication}"
            ),
            ops: Vec::new(),
        })
        .collect()
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

    fn set(
        history: &mut History,
        key: &str,
        value: &str,
        at: u64,
        outcome: Outcome,
        holders: &[&str],
    ) -> usize {
        let index = history.invoke(
            0,
            id("n1"),
            key.to_string(),
            OpKind::Set { value: value.to_string(), ttl_ms: None },
            Consistency::Quorum,
            at,
        );
        history.complete(index, at + 10, outcome, holders.iter().map(|h| id(h)).collect());
        index
    }

    #[test]
    fn a_read_of_an_unwritten_value_is_a_phantom() {
        let mut history = History::default();
        set(&mut history, "k", "a", 0, Outcome::Unknown, &[]);
        for (value, phantom) in [("a", false), ("b", true)] {
            let index = history.invoke(1, id("n2"), "k".into(), OpKind::Get, Consistency::One, 100);
            let read = Outcome::Ok { version: Some(version(1, "n1")), value: Some(value.into()) };
            history.complete(index, 110, read, Vec::new());
            assert_eq!(phantom_reads(&history).len(), usize::from(phantom), "{value}");
        }
        assert_eq!(phantom_reads(&history)[0].check, Check::PhantomRead);
    }

    #[test]
    fn a_read_with_the_version_of_another_write_is_a_phantom() {
        let mut history = History::default();
        set(
            &mut history,
            "k",
            "a",
            0,
            Outcome::Ok { version: Some(version(1, "n1")), value: None },
            &["n1"],
        );
        set(
            &mut history,
            "k",
            "b",
            20,
            Outcome::Ok { version: Some(version(2, "n1")), value: None },
            &["n1"],
        );
        let index = history.invoke(1, id("n2"), "k".into(), OpKind::Get, Consistency::One, 100);
        let read = Outcome::Ok { version: Some(version(2, "n1")), value: Some("a".into()) };
        history.complete(index, 110, read, Vec::new());
        let phantoms = phantom_reads(&history);
        assert_eq!(phantoms.len(), 1);
        assert!(phantoms[0].message.contains("version of another write"), "{}", phantoms[0]);
    }

    /// The final read at ALL must see the newest acknowledged write: an older version
    /// or nothing is a lost write, a failed read is unavailability; a remove that may
    /// follow excuses nothing found, unless it was acknowledged with an older version.
    #[test]
    fn a_final_read_that_misses_the_newest_acknowledged_write_is_a_lost_write() {
        let ok = |counter| Outcome::Ok { version: Some(version(counter, "n1")), value: None };
        let cases: [(Outcome, Option<Check>); 4] = [
            (Outcome::Ok { version: Some(version(2, "n1")), value: Some("b".into()) }, None),
            (
                Outcome::Ok { version: Some(version(1, "n1")), value: Some("a".into()) },
                Some(Check::LostWrite),
            ),
            (Outcome::Ok { version: None, value: None }, Some(Check::LostWrite)),
            (Outcome::Failed("unreachable".into()), Some(Check::Unavailable)),
        ];
        for (read, expected) in cases {
            let mut history = History::default();
            set(&mut history, "k", "a", 0, ok(1), &["n1"]);
            set(&mut history, "k", "b", 20, ok(2), &["n1"]);
            history.probes_from_ns = Some(100);
            let index = history.invoke(1, id("n2"), "k".into(), OpKind::Get, Consistency::All, 100);
            history.complete(index, 110, read.clone(), Vec::new());
            let found: Vec<Check> = lost_at_end(&history).iter().map(|v| v.check).collect();
            assert_eq!(found, expected.into_iter().collect::<Vec<_>>(), "{read:?}");
            // Before the probe phase, the same read is not a probe.
            history.probes_from_ns = Some(200);
            assert!(lost_at_end(&history).is_empty());
        }
        // A remove in flight may have won; one acknowledged with an older version not.
        for (remove_outcome, excused) in [(Outcome::Unknown, true), (ok(0), false)] {
            let mut history = History::default();
            set(&mut history, "k", "a", 0, ok(1), &["n1"]);
            let remove =
                history.invoke(2, id("n3"), "k".into(), OpKind::Remove, Consistency::Quorum, 5);
            history.complete(remove, 50, remove_outcome.clone(), Vec::new());
            history.probes_from_ns = Some(100);
            let index = history.invoke(1, id("n2"), "k".into(), OpKind::Get, Consistency::All, 100);
            history.complete(index, 110, Outcome::Ok { version: None, value: None }, Vec::new());
            assert_eq!(lost_at_end(&history).is_empty(), excused, "{remove_outcome:?}");
        }
    }

    /// A write acknowledged after another completed, with an older version, loses to
    /// it for ever: a lost write, even if no probe reads the key.
    #[test]
    fn a_later_write_with_an_older_version_is_a_lost_write() {
        let ok = |counter| Outcome::Ok { version: Some(version(counter, "n1")), value: None };
        for (second, lost) in [(3, false), (1, true)] {
            let mut history = History::default();
            set(&mut history, "k", "a", 0, ok(2), &["n1"]);
            set(&mut history, "k", "b", 20, ok(second), &["n1"]);
            let found = lost_at_end(&history);
            assert_eq!(found.len(), usize::from(lost), "{found:?}");
        }
        // Overlapping writes may be ordered either way.
        let mut history = History::default();
        set(&mut history, "k", "a", 0, ok(2), &["n1"]);
        set(&mut history, "k", "b", 5, ok(1), &["n1"]);
        assert!(lost_at_end(&history).is_empty());
    }

    #[test]
    fn operations_inside_a_quiet_window_must_succeed() {
        let mut history = History::default();
        set(&mut history, "k", "a", 1_000, Outcome::Failed("quorum".into()), &[]);
        set(&mut history, "k", "b", 5_000, Outcome::Unknown, &[]);
        let quiet = QuietWindows::new(
            &crate::faults::FaultPlan::default(),
            0,
            10_000,
            10_000,
            std::time::Duration::ZERO,
        );
        assert_eq!(unavailable(&history, &quiet).len(), 2);
        assert_eq!(unavailable(&history, &QuietWindows::none()).len(), 0);
        let counts = Availability::of(&history);
        assert_eq!((counts.ok, counts.failed, counts.unknown), (0, 1, 1));
    }

    #[test]
    fn a_read_after_the_ttl_ran_out_is_an_expired_read() {
        let mut history = History::default();
        let index = history.invoke(
            0,
            id("n1"),
            "k".into(),
            OpKind::Set { value: "a".into(), ttl_ms: Some(1) },
            Consistency::One,
            0,
        );
        history.complete(
            index,
            10,
            Outcome::Ok { version: Some(version(1, "n1")), value: None },
            vec![id("n1")],
        );
        for (at, expired) in [(500_000, false), (2_000_000, true)] {
            let index = history.invoke(1, id("n2"), "k".into(), OpKind::Get, Consistency::One, at);
            let read = Outcome::Ok { version: Some(version(1, "n1")), value: Some("a".into()) };
            history.complete(index, at + 10, read, Vec::new());
            assert_eq!(expired_reads(&history, 0).len(), usize::from(expired), "read at {at}");
        }
        assert!(expired_reads(&history, 10_000_000).is_empty(), "skew excuses it");
    }

    #[test]
    fn owners_that_hold_the_newest_version_with_another_value_diverge() {
        let mut ring = cache::Ring::new(3, 16);
        ring.rebuild(&[id("n1"), id("n2"), id("n3")]);
        let item = |value: &str| Held {
            version: version(7, "n1"),
            content: Content::Value(sim::fingerprint::digest(value.as_bytes())),
            expires: false,
        };
        let state = |n3: &str| {
            let mut held = BTreeMap::new();
            held.insert(id("n1"), item("a"));
            held.insert(id("n2"), item("a"));
            held.insert(id("n3"), item(n3));
            let held = BTreeMap::from([("k".to_string(), held)]);
            FinalState { held, copies: BTreeMap::from([("k".to_string(), 3)]) }
        };
        assert!(divergence(&ring, &state("a"), false).is_empty());
        let diverged = divergence(&ring, &state("b"), false);
        assert_eq!(diverged.len(), 1);
        assert_eq!(diverged[0].check, Check::Divergence);
        assert!(diverged[0].message.contains("another value"), "{}", diverged[0]);
    }
}
