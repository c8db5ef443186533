//! Rebalance on join and leave (§2.13): migrate to new owners, copy to new replicas,
//! release what is no longer owned.
//!
//! The plain [`Rebalancer`] plans; the async shell sends and reports back. A node scans
//! its store in key order, a bounded number of keys per tick, in *passes*. A pass
//! compares each key's owners on the ring it targets (this node's ring when the pass
//! started) with its owners on the *baseline*, the ring of the last completed pass:
//!
//! - a key this node does not own (it lost ownership, or never had it) goes to every
//!   owner, and is released once each of them holds it (a hint queued for an
//!   unreachable owner is not enough: it expires, and the stray may be the last copy;
//!   the owner is retried);
//! - a key this node owns goes to each owner that is new to it (not an owner on the
//!   baseline, or a node that entered the ring or restarted since, whose memory may be
//!   empty), from every owner that is not new itself, so that one sender crashing
//!   mid-pass cannot strand the key (a new owner sends only when no old one is left).
//!
//! A ring that changes mid-pass restarts the pass (a key planned twice is refused by
//! the version check). A completed pass makes its ring the baseline. With no change
//! pending, a pass sends nothing but strays: an idle, converged cluster is silent.
//!
//! Limits: [`SCAN_KEY_COUNT_PER_TICK_MAX`] keys scanned and `rebalance_batch_size` ×
//! [`BATCH_COUNT_PER_TICK_MAX`] keys sent per tick, in batches of at most
//! `rebalance_batch_size`, at most [`REBALANCE_CONCURRENCY_MAX`] batches in flight. A
//! target that cannot be reached gets a hint per key; one that refuses (its view of the
//! ring differs) is retried after [`RETRY_DELAY_MS`], at most
//! [`RETRY_ATTEMPT_COUNT_MAX`] times until the ring changes again; a pass after a ring
//! change plans the key for the new ring instead, superseding its retry. Receivers
//! apply a transfer only for keys they own in their own view (the ownership guard),
//! through the version check.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use futures::StreamExt;

use crate::error::Error;
use crate::membership::MEMBER_COUNT_MAX;
use crate::message::{PeerRequest, PeerResponse};
use crate::node::Inner;
use crate::node_id::NodeId;
use crate::options::{Options, REBALANCE_BATCH_SIZE_MAX};
use crate::ring::Ring;
use crate::store::{Entry, Store};
use crate::version::Version;

/// The most transfer batches in flight at once.
pub(crate) const REBALANCE_CONCURRENCY_MAX: usize = 4;
/// The most keys one tick scans.
pub(crate) const SCAN_KEY_COUNT_PER_TICK_MAX: usize = 1024;
/// The most batches' worth of keys one tick sends.
pub(crate) const BATCH_COUNT_PER_TICK_MAX: usize = 8;
/// How long a refused transfer waits before it is retried.
pub(crate) const RETRY_DELAY_MS: u64 = 1_000;
/// How many times a refused transfer is retried before it waits for a ring change.
pub(crate) const RETRY_ATTEMPT_COUNT_MAX: u32 = 8;
/// The most keys waiting for a retry; past it, a refused transfer is dropped (a stray
/// is planned again by a later pass, a copy is left to anti-entropy).
pub(crate) const RETRY_KEY_COUNT_MAX: usize = 4_096;
/// How long a handed-off key is kept before it is released (0: at once, as in the
/// reference's default).
pub(crate) const RELEASE_GRACE_MS: u64 = 0;
/// The most keys waiting for release; past it, a key is kept and planned again later.
pub(crate) const RELEASE_KEY_COUNT_MAX: usize = 4_096;

/// A rebalance request.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RebalanceRequest {
    /// Entries the sender believes the receiver owns: apply each one the receiver owns
    /// in its own view, if newer than what it holds.
    Transfer {
        /// Keys with their entries (items or tombstones), at most
        /// [`REBALANCE_BATCH_SIZE_MAX`].
        entries: Vec<(String, Entry)>,
    },
}

/// What a receiver did with one transferred entry.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TransferOutcome {
    /// The entry was newer and is now held.
    Applied,
    /// The receiver already held this version or a newer one.
    Stale,
    /// The receiver does not own the key in its view (the ownership guard).
    NotOwner,
    /// The receiver could not store it.
    Failed(Error),
}

/// The answer to a [`RebalanceRequest`].
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RebalanceResponse {
    /// One outcome per transferred entry, in order.
    Transferred {
        /// The outcomes.
        outcomes: Vec<TransferOutcome>,
    },
    /// The request carried more than [`REBALANCE_BATCH_SIZE_MAX`] entries; none was
    /// applied.
    TooLarge {
        /// How many entries it carried.
        entry_count: usize,
        /// The most accepted.
        entry_count_max: usize,
    },
}

/// Whether a transfer goes to the key's primary or to another owner (for metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TransferKind {
    Primary,
    Replica,
}

/// One key to send to one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Transfer {
    pub(crate) target: NodeId,
    pub(crate) key: String,
    pub(crate) entry: Entry,
    pub(crate) kind: TransferKind,
    /// This node does not own the key: release it once every owner has it.
    pub(crate) release: bool,
}

/// Transfers to one node, sent as one request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Batch {
    pub(crate) target: NodeId,
    pub(crate) transfers: Vec<Transfer>,
}

/// What one tick sends.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct TickPlan {
    pub(crate) batches: Vec<Batch>,
    /// The tick hit its send limit; the rest waits for the next tick.
    pub(crate) throttled: bool,
}

impl TickPlan {
    pub(crate) fn transfers(&self) -> impl Iterator<Item = &Transfer> + '_ {
        self.batches.iter().flat_map(|batch| &batch.transfers)
    }
}

/// How one transfer ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TransferResult {
    /// The target holds this version or a newer one.
    Acked,
    /// The target was unreachable; a hint was queued for it (a stray is retried,
    /// not released, on it).
    Hinted,
    /// The target refused (not an owner in its view, or a failure): retry later.
    Refused,
}

#[derive(Debug)]
struct Pass {
    /// The ring this pass moves keys to.
    target: Ring,
    /// Nodes that get every key they own, whatever the baseline says.
    copy_to: BTreeSet<NodeId>,
    /// The last key planned; the pass resumes after it.
    cursor: Option<String>,
    /// Nothing changed since the baseline: only strays move.
    quiet: bool,
    /// The join-no-handoff canary: nodes not on the baseline ring get nothing.
    join_no_handoff: bool,
    /// Keys the scan passed over because a retry holds them.
    skipped_count: usize,
    /// Transfers the scan planned.
    planned_count: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Retry {
    targets: BTreeSet<NodeId>,
    /// `u64::MAX` once the attempts are spent: parked until the ring changes.
    due_ms: u64,
    attempt_count: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Release {
    version: Version,
    due_ms: u64,
}

/// The rebalancer's state: plain data, planned by [`Rebalancer::plan_tick`].
#[derive(Debug)]
pub(crate) struct Rebalancer {
    batch_size: usize,
    release_grace_ms: u64,
    /// The ring of the last completed pass; `None` until the first tick.
    baseline: Option<Ring>,
    pass: Option<Pass>,
    /// Nodes that entered the ring or restarted since the current pass started.
    copy_pending: BTreeSet<NodeId>,
    retries: BTreeMap<String, Retry>,
    releases: BTreeMap<String, Release>,
    /// The store's key-set generation when a quiet pass last scanned every key in one
    /// tick, skipped none and found no stray. A quiet pass's scan plans strays only,
    /// and whether a key is a stray depends on the key and the ring alone: while the
    /// key set and the ring stay the same, the next quiet scan would find nothing, so
    /// it is not run (the rebalancer's stray scan was 60 % of the cluster bench).
    quiet_clean_generation: Option<u64>,
    /// The join-no-handoff canary is on (always false without the `mutants` feature).
    pub(crate) join_no_handoff: bool,
}

impl Rebalancer {
    pub(crate) fn new(options: &Options) -> Rebalancer {
        Rebalancer::with_release_grace(options, RELEASE_GRACE_MS)
    }

    pub(crate) fn with_release_grace(options: &Options, release_grace_ms: u64) -> Rebalancer {
        let batch_size = options.rebalance_batch_size();
        assert!(batch_size >= 1);
        assert!(batch_size <= REBALANCE_BATCH_SIZE_MAX);
        Rebalancer {
            batch_size,
            release_grace_ms,
            baseline: None,
            pass: None,
            copy_pending: BTreeSet::new(),
            retries: BTreeMap::new(),
            releases: BTreeMap::new(),
            quiet_clean_generation: None,
            join_no_handoff: false,
        }
    }

    fn transfer_count_per_tick_max(&self) -> usize {
        self.batch_size * BATCH_COUNT_PER_TICK_MAX
    }

    /// Notes nodes that entered the ring or restarted: the next pass copies to each
    /// everything it owns.
    pub(crate) fn note_entered(&mut self, local: &NodeId, nodes: Vec<NodeId>) {
        for node in nodes {
            if node != *local && self.copy_pending.len() < MEMBER_COUNT_MAX {
                self.copy_pending.insert(node);
            }
        }
        assert!(!self.copy_pending.contains(local));
    }

    /// Plans one tick at `now_ms` (monotonic) for `local`, whose ring and store these
    /// are.
    pub(crate) fn plan_tick(
        &mut self,
        now_ms: u64,
        local: &NodeId,
        ring: &Ring,
        store: &Store,
    ) -> TickPlan {
        assert!(ring.nodes().contains(local), "the local node is on its own ring");
        self.pass_prepare(now_ms, ring);
        let limit = self.transfer_count_per_tick_max();
        let mut transfers = Vec::new();
        // A pass after a change plans every key afresh, superseding its retry.
        let quiet = self.pass.as_ref().is_some_and(|pass| pass.quiet);
        let retries_throttled =
            quiet && self.retries_plan(now_ms, local, ring, store, &mut transfers);
        let scan_throttled = if self.quiet_scan_is_idle(store) {
            let done = self.pass.take().expect("prepared");
            self.baseline = Some(done.target);
            false
        } else {
            self.scan(local, store, &mut transfers)
        };
        assert!(transfers.len() <= limit);
        assert!(transfers.iter().all(|transfer| transfer.target != *local));
        TickPlan {
            batches: batches_group(transfers, self.batch_size),
            throttled: retries_throttled || scan_throttled,
        }
    }

    /// Starts a pass when none runs or the ring moved since this one started.
    fn pass_prepare(&mut self, now_ms: u64, ring: &Ring) {
        let baseline = self.baseline.get_or_insert_with(|| ring.clone());
        let previous_nodes = self.pass.as_ref().map_or(baseline.nodes(), |p| p.target.nodes());
        let ring_moved = previous_nodes != ring.nodes();
        if self.pass.is_some() && !ring_moved {
            return;
        }
        if ring_moved {
            // Parked retries may succeed in the new view.
            for retry in self.retries.values_mut().filter(|retry| retry.due_ms == u64::MAX) {
                retry.due_ms = now_ms;
                retry.attempt_count = 0;
            }
        }
        let mut copy_to = self.pass.take().map(|pass| pass.copy_to).unwrap_or_default();
        copy_to.append(&mut self.copy_pending);
        let quiet = copy_to.is_empty() && baseline.nodes() == ring.nodes();
        let join_no_handoff = self.join_no_handoff;
        if !quiet {
            self.quiet_clean_generation = None;
        }
        self.pass = Some(Pass {
            target: ring.clone(),
            copy_to,
            cursor: None,
            quiet,
            join_no_handoff,
            skipped_count: 0,
            planned_count: 0,
        });
    }

    /// True when this tick's scan would plan nothing: a fresh quiet pass, over the
    /// ring of the last clean one, a key set unchanged since, and few enough keys that
    /// the scan would finish in this tick (so skipping it changes no later tick).
    fn quiet_scan_is_idle(&self, store: &Store) -> bool {
        let pass = self.pass.as_ref().expect("prepared");
        pass.quiet
            && pass.cursor.is_none()
            && store.len() <= SCAN_KEY_COUNT_PER_TICK_MAX
            && self.quiet_clean_generation == Some(store.key_set_generation())
    }

    /// Plans the due retries; true when the send limit stopped it.
    fn retries_plan(
        &mut self,
        now_ms: u64,
        local: &NodeId,
        ring: &Ring,
        store: &Store,
        transfers: &mut Vec<Transfer>,
    ) -> bool {
        let limit = self.transfer_count_per_tick_max();
        let due: Vec<String> = self
            .retries
            .iter()
            .filter(|(_, retry)| retry.due_ms <= now_ms)
            .map(|(key, _)| key.clone())
            .collect();
        for key in due {
            let retry = &self.retries[&key];
            let owners = ring.lookup(&key);
            let targets: Vec<&NodeId> =
                owners.iter().filter(|owner| retry.targets.contains(*owner)).collect();
            let Some(entry) = store.entry(&key).filter(|_| !targets.is_empty()) else {
                // Gone, or its targets are no longer owners: a pass plans it afresh.
                self.retries.remove(&key);
                continue;
            };
            if transfers.len() + targets.len() > limit {
                return true;
            }
            let primary = owners.primary().expect("the ring is not empty");
            let release = !owners.contains(local);
            for target in targets.into_iter().filter(|target| *target != local) {
                transfers.push(transfer(target, primary, &key, entry, release));
            }
        }
        false
    }

    /// Plans the pass's next keys; true when the send limit stopped it. Completes the
    /// pass at the end of the store.
    fn scan(&mut self, local: &NodeId, store: &Store, transfers: &mut Vec<Transfer>) -> bool {
        let limit = self.transfer_count_per_tick_max();
        let Rebalancer { baseline, pass, retries, .. } = self;
        let baseline_ring = baseline.as_ref().expect("prepared");
        let current = pass.as_ref().expect("prepared");
        let fresh = current.cursor.is_none();
        let mut last_key: Option<&str> = None;
        let (mut scanned_count, mut finished, mut throttled) = (0, true, false);
        let (mut skipped_count, mut planned_count) = (0, 0);
        for (key, entry) in store.iter_after(current.cursor.as_deref()) {
            if scanned_count == SCAN_KEY_COUNT_PER_TICK_MAX {
                finished = false;
                break;
            }
            // A quiet pass leaves a key with a retry to it; a pass after a change plans
            // it for the new ring instead.
            if current.quiet && retries.contains_key(key) {
                skipped_count += 1;
            } else {
                let planned = key_plan(local, key, entry, baseline_ring, current);
                if transfers.len() + planned.len() > limit {
                    (finished, throttled) = (false, true);
                    break;
                }
                planned_count += planned.len();
                transfers.extend(planned);
                retries.remove(key);
            }
            scanned_count += 1;
            last_key = Some(key);
        }
        assert!(scanned_count <= SCAN_KEY_COUNT_PER_TICK_MAX);
        let last_key = last_key.map(str::to_owned);
        let current = pass.as_mut().expect("prepared");
        current.skipped_count += skipped_count;
        current.planned_count += planned_count;
        if finished {
            let done = pass.take().expect("prepared");
            let clean = done.quiet && fresh && done.skipped_count == 0 && done.planned_count == 0;
            self.quiet_clean_generation = clean.then(|| store.key_set_generation());
            *baseline = Some(done.target);
        } else if last_key.is_some() {
            current.cursor = last_key;
        }
        throttled
    }

    /// Takes in the results of a tick's transfers at `now_ms`: schedules releases and
    /// retries.
    pub(crate) fn on_results(&mut self, now_ms: u64, results: &[(Transfer, TransferResult)]) {
        let mut by_key: BTreeMap<&str, (bool, &Version, BTreeSet<NodeId>)> = BTreeMap::new();
        for (transfer, result) in results {
            let slot = by_key
                .entry(&transfer.key)
                .or_insert_with(|| (transfer.release, transfer.entry.version(), BTreeSet::new()));
            assert_eq!(slot.0, transfer.release, "one key, one plan");
            // A stray is released only once every owner holds it: a hint is not
            // enough, since it expires (and dies with this node), and the stray may be
            // the last copy. It is retried instead, like a refusal.
            let hinted_stray = transfer.release && *result == TransferResult::Hinted;
            if *result == TransferResult::Refused || hinted_stray {
                slot.2.insert(transfer.target.clone());
            }
        }
        for (key, (release, version, refused)) in by_key {
            let attempt_count = self.retries.remove(key).map_or(0, |retry| retry.attempt_count);
            if refused.is_empty() {
                if release {
                    self.release_schedule(key, version, now_ms);
                }
                continue;
            }
            if self.retries.len() >= RETRY_KEY_COUNT_MAX {
                tracing::warn!(key, "rebalance retry dropped: too many retries pending");
                continue;
            }
            let attempt_count = attempt_count + 1;
            let due_ms = if attempt_count > RETRY_ATTEMPT_COUNT_MAX {
                u64::MAX
            } else {
                now_ms.saturating_add(RETRY_DELAY_MS)
            };
            self.retries.insert(key.to_owned(), Retry { targets: refused, due_ms, attempt_count });
        }
        assert!(self.retries.len() <= RETRY_KEY_COUNT_MAX);
    }

    fn release_schedule(&mut self, key: &str, version: &Version, now_ms: u64) {
        if self.releases.len() >= RELEASE_KEY_COUNT_MAX && !self.releases.contains_key(key) {
            return; // Kept: a later pass hands it off again.
        }
        let due_ms = now_ms.saturating_add(self.release_grace_ms);
        self.releases.insert(key.to_owned(), Release { version: version.clone(), due_ms });
        assert!(self.releases.len() <= RELEASE_KEY_COUNT_MAX);
    }

    /// The keys due for release at `now_ms`, with the version handed off; the caller
    /// drops each only if it still holds that version and still does not own it.
    pub(crate) fn releases_take(&mut self, now_ms: u64) -> Vec<(String, Version)> {
        let due: Vec<String> = self
            .releases
            .iter()
            .filter(|(_, release)| release.due_ms <= now_ms)
            .map(|(key, _)| key.clone())
            .collect();
        let taken: Vec<(String, Version)> = due
            .into_iter()
            .map(|key| {
                let release = self.releases.remove(&key).expect("listed above");
                (key, release.version)
            })
            .collect();
        assert!(self.releases.values().all(|release| release.due_ms > now_ms));
        taken
    }
}

fn transfer(
    target: &NodeId,
    primary: &NodeId,
    key: &str,
    entry: &Entry,
    release: bool,
) -> Transfer {
    let kind = if target == primary { TransferKind::Primary } else { TransferKind::Replica };
    Transfer { target: target.clone(), key: key.to_owned(), entry: entry.clone(), kind, release }
}

/// What to send for one key held by `local` (see the module's documentation).
fn key_plan(
    local: &NodeId,
    key: &str,
    entry: &Entry,
    baseline: &Ring,
    pass: &Pass,
) -> Vec<Transfer> {
    let owners = pass.target.lookup(key);
    let primary = owners.primary().expect("the local node is on the ring");
    // The canary: a node that joined since the baseline gets nothing.
    let joined = |node: &NodeId| pass.join_no_handoff && !baseline.nodes().contains(node);
    if !owners.contains(local) {
        let targets = owners.iter().filter(|owner| !joined(owner));
        return targets.map(|owner| transfer(owner, primary, key, entry, true)).collect();
    }
    if pass.quiet {
        return Vec::new();
    }
    let previous = baseline.lookup(key);
    let is_new = |node: &NodeId| !previous.contains(node) || pass.copy_to.contains(node);
    // Every owner that held the key before the change sends it, not just one: a sender
    // that crashes mid-pass must not strand a key (the receivers' version check makes
    // the duplicates harmless). A node new to the key sends only if no old owner is
    // left to do it.
    let old_owner_left = owners.iter().any(|owner| !is_new(owner));
    if is_new(local) && old_owner_left {
        return Vec::new();
    }
    owners
        .iter()
        .filter(|owner| *owner != local && is_new(owner) && !joined(owner))
        .map(|owner| transfer(owner, primary, key, entry, false))
        .collect()
}

/// Groups transfers by target, in batches of at most `batch_size`.
fn batches_group(transfers: Vec<Transfer>, batch_size: usize) -> Vec<Batch> {
    assert!(batch_size >= 1);
    let transfer_count = transfers.len();
    let mut by_target: BTreeMap<NodeId, Vec<Transfer>> = BTreeMap::new();
    for transfer in transfers {
        by_target.entry(transfer.target.clone()).or_default().push(transfer);
    }
    let mut batches = Vec::new();
    for (target, transfers) in by_target {
        for chunk in transfers.chunks(batch_size) {
            batches.push(Batch { target: target.clone(), transfers: chunk.to_vec() });
        }
    }
    assert_eq!(batches.iter().map(|batch| batch.transfers.len()).sum::<usize>(), transfer_count);
    batches
}

/// The same transfers, one per batch.
fn batches_split(batches: Vec<Batch>) -> Vec<Batch> {
    let transfer_count: usize = batches.iter().map(|batch| batch.transfers.len()).sum();
    let split: Vec<Batch> = batches
        .into_iter()
        .flat_map(|batch| batch.transfers)
        .map(|transfer| Batch { target: transfer.target.clone(), transfers: vec![transfer] })
        .collect();
    assert_eq!(split.len(), transfer_count);
    split
}

impl Inner {
    /// Answers a rebalance request.
    pub(crate) async fn handle_rebalance(
        inner: &Rc<Inner>,
        request: RebalanceRequest,
    ) -> RebalanceResponse {
        match request {
            RebalanceRequest::Transfer { entries } => inner.transfer_accept(entries),
        }
    }

    /// Applies each transferred entry whose key this node owns in its own view.
    fn transfer_accept(&self, entries: Vec<(String, Entry)>) -> RebalanceResponse {
        if entries.len() > REBALANCE_BATCH_SIZE_MAX {
            return RebalanceResponse::TooLarge {
                entry_count: entries.len(),
                entry_count_max: REBALANCE_BATCH_SIZE_MAX,
            };
        }
        let entry_count = entries.len();
        let outcomes: Vec<TransferOutcome> = entries
            .into_iter()
            .map(|(key, entry)| {
                if !self.state.borrow().ring.is_owner(&key, &self.id) {
                    self.state.borrow_mut().metrics.write_apply_refused += 1;
                    return TransferOutcome::NotOwner;
                }
                match self.apply_local(&key, entry) {
                    Ok(outcome) if outcome.is_applied() => TransferOutcome::Applied,
                    Ok(_) => TransferOutcome::Stale,
                    Err(error) => TransferOutcome::Failed(error),
                }
            })
            .collect();
        assert_eq!(outcomes.len(), entry_count);
        RebalanceResponse::Transferred { outcomes }
    }

    /// Starts the rebalance loop.
    pub(crate) fn start_rebalance(inner: &Rc<Inner>) {
        let interval_ms = inner.options.rebalance_interval_ms();
        Inner::spawn_periodic(inner, "rebalance", interval_ms, |inner| {
            Box::pin(async move { Inner::rebalance_tick(&inner).await })
        });
    }

    /// One tick: plan, send, take in the results, release what is due.
    async fn rebalance_tick(inner: &Rc<Inner>) {
        if inner.buggify() {
            return; // Fault point: a skipped tick; the pass resumes at the next one.
        }
        let one_key_batches = inner.buggify();
        let mut plan = {
            let state = inner.state.borrow();
            let now_ms = inner.elapsed_ms();
            inner.rebalancer.borrow_mut().plan_tick(now_ms, &inner.id, &state.ring, &state.store)
        };
        if one_key_batches {
            // Fault point: every key in a batch of its own, as under a small request
            // limit: more requests, the same transfers.
            plan.batches = batches_split(std::mem::take(&mut plan.batches));
        }
        if !plan.batches.is_empty() {
            let results = Inner::rebalance_send(inner, plan).await;
            inner.rebalancer.borrow_mut().on_results(inner.elapsed_ms(), &results);
        }
        inner.releases_apply();
    }

    /// Sends a tick's batches, at most [`REBALANCE_CONCURRENCY_MAX`] at once.
    async fn rebalance_send(inner: &Rc<Inner>, plan: TickPlan) -> Vec<(Transfer, TransferResult)> {
        let started = inner.runtime.elapsed();
        {
            let metrics = &mut inner.state.borrow_mut().metrics;
            let batch_count = plan.batches.len() as u64;
            metrics.rebalance_batches += batch_count;
            metrics.rebalance_throttle +=
                plan.batches.len().saturating_sub(REBALANCE_CONCURRENCY_MAX) as u64;
            metrics.rebalance_replica_diff_throttle += u64::from(plan.throttled);
            for transfer in plan.transfers() {
                metrics.rebalanced_keys += 1;
                inner.reached("rebalance transferred a key");
                match transfer.kind {
                    TransferKind::Primary => metrics.rebalanced_primary += 1,
                    TransferKind::Replica => metrics.rebalanced_replica_diff += 1,
                }
            }
        }
        if inner.mutant(crate::Mutant::RebalanceNoop) {
            return Vec::new(); // The canary: counted, never sent, so nothing released.
        }
        let sends = plan.batches.into_iter().map(|batch| Inner::batch_send(inner, batch));
        let results: Vec<Vec<(Transfer, TransferResult)>> = futures::stream::iter(sends)
            .buffer_unordered(REBALANCE_CONCURRENCY_MAX)
            .collect()
            .await;
        let took = inner.runtime.elapsed().saturating_sub(started);
        inner.state.borrow_mut().metrics.rebalance_last_ns =
            u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        results.into_iter().flatten().collect()
    }

    /// Sends one batch; an unreachable target gets a hint per key.
    async fn batch_send(inner: &Rc<Inner>, batch: Batch) -> Vec<(Transfer, TransferResult)> {
        let transfer_count = batch.transfers.len();
        assert!(transfer_count >= 1);
        assert!(transfer_count <= REBALANCE_BATCH_SIZE_MAX);
        let entries = batch.transfers.iter().map(|t| (t.key.clone(), t.entry.clone())).collect();
        let request = PeerRequest::Rebalance(RebalanceRequest::Transfer { entries });
        let results: Vec<TransferResult> = match inner.call(&batch.target, request).await {
            Ok(PeerResponse::Rebalance(RebalanceResponse::Transferred { outcomes }))
                if outcomes.len() == transfer_count =>
            {
                outcomes.iter().map(transfer_result).collect()
            }
            // A transfer to an owner counts as handed off if a hint covers it; with
            // hints off (`hint_ttl_ms` 0) or over their limits it is retried instead. A
            // stray is retried either way (see `on_results`): no copy is released that
            // its owners do not hold.
            Ok(PeerResponse::Failed(_)) | Err(_) => batch
                .transfers
                .iter()
                .map(|transfer| {
                    if inner.queue_hint(&transfer.target, &transfer.key, &transfer.entry) {
                        TransferResult::Hinted
                    } else {
                        TransferResult::Refused
                    }
                })
                .collect(),
            Ok(_) => vec![TransferResult::Refused; transfer_count],
        };
        for (transfer, result) in batch.transfers.iter().zip(&results) {
            tracing::debug!(
                node = %inner.id, target = %batch.target, key = %transfer.key,
                release = transfer.release, ?result, "rebalance transfer"
            );
        }
        batch.transfers.into_iter().zip(results).collect()
    }

    /// Drops the released keys that still hold the version handed off and that this
    /// node still does not own. No tombstone: the owners hold the key.
    fn releases_apply(&self) {
        let due = self.rebalancer.borrow_mut().releases_take(self.elapsed_ms());
        let mut state = self.state.borrow_mut();
        for (key, version) in due {
            if state.ring.is_owner(&key, &self.id) || state.store.version(&key) != Some(&version) {
                continue; // Owned again, or written since: keep it.
            }
            let dropped = state.store.drop_local(&key);
            assert!(dropped.is_some_and(|entry| *entry.version() == version));
        }
    }
}

fn transfer_result(outcome: &TransferOutcome) -> TransferResult {
    match outcome {
        TransferOutcome::Applied | TransferOutcome::Stale => TransferResult::Acked,
        TransferOutcome::NotOwner | TransferOutcome::Failed(_) => TransferResult::Refused,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::store::Item;

    const RF: usize = 2;

    fn id(name: &str) -> NodeId {
        NodeId::new(name).unwrap()
    }

    fn ring(names: &[&str]) -> Ring {
        let mut ring = Ring::new(RF, 16);
        let ids: Vec<NodeId> = names.iter().map(|name| id(name)).collect();
        ring.rebuild(&ids);
        ring
    }

    fn store(keys: impl IntoIterator<Item = String>) -> Store {
        let mut store = Store::new(10_000);
        for (counter, key) in (1..).zip(keys) {
            let item = Item::new(Bytes::from_static(b"v"), Version::new(counter, id("a")));
            assert!(store.apply(&key, Entry::Item(item)).unwrap().is_applied());
        }
        store
    }

    fn keys(count: usize) -> Vec<String> {
        (0..count).map(|index| format!("key{index}")).collect()
    }

    fn rebalancer(batch_size: usize) -> Rebalancer {
        let options = Options::builder().rebalance_batch_size(batch_size).build().unwrap();
        Rebalancer::new(&options)
    }

    /// Every transfer of one whole pass, started by the next tick, at time 0.
    fn drain(
        rebalancer: &mut Rebalancer,
        local: &str,
        ring: &Ring,
        store: &Store,
    ) -> Vec<Transfer> {
        let mut all = Vec::new();
        for _ in 0..100 {
            let plan = rebalancer.plan_tick(0, &id(local), ring, store);
            all.extend(plan.transfers().cloned());
            if rebalancer.pass.is_none() {
                return all;
            }
        }
        panic!("the pass never completed");
    }

    /// A clean quiet scan is not run again while the key set stays the same; a key
    /// that enters the store (here a stray) makes the next one run and find it.
    #[test]
    fn an_idle_quiet_scan_is_skipped_until_a_key_arrives() {
        let ring = ring(&["a", "b", "c"]);
        let (owned, strays): (Vec<String>, Vec<String>) =
            keys(300).into_iter().partition(|k| ring.is_owner(k, &id("a")));
        let mut store = store(owned);
        let mut rebalancer = rebalancer(16);
        assert_eq!(drain(&mut rebalancer, "a", &ring, &store), []);
        assert_eq!(rebalancer.quiet_clean_generation, Some(store.key_set_generation()));
        assert!(rebalancer.pass.is_none());
        rebalancer.pass_prepare(0, &ring);
        assert!(rebalancer.quiet_scan_is_idle(&store));
        rebalancer.pass = None;
        // An overwrite leaves the key set alone; a new key does not.
        let (key, _) = store.iter().next().map(|(k, e)| (k.to_owned(), e.clone())).unwrap();
        let newer = Item::new(Bytes::from_static(b"w"), Version::new(1_000, id("a")));
        assert!(store.apply(&key, Entry::Item(newer)).unwrap().is_applied());
        assert_eq!(drain(&mut rebalancer, "a", &ring, &store), []);
        let stray = Item::new(Bytes::from_static(b"s"), Version::new(1_001, id("a")));
        assert!(store.apply(&strays[0], Entry::Item(stray)).unwrap().is_applied());
        let planned = drain(&mut rebalancer, "a", &ring, &store);
        assert_eq!(planned.len(), RF, "the stray goes to each of its owners");
        assert!(planned.iter().all(|transfer| transfer.key == strays[0] && transfer.release));
        // A scan that planned something leaves no clean mark behind.
        assert_eq!(rebalancer.quiet_clean_generation, None);
    }

    #[test]
    fn a_converged_node_plans_nothing() {
        let ring = ring(&["a", "b", "c"]);
        let owned: Vec<String> =
            keys(300).into_iter().filter(|k| ring.is_owner(k, &id("a"))).collect();
        let store = store(owned);
        let mut rebalancer = rebalancer(16);
        for _ in 0..5 {
            assert_eq!(rebalancer.plan_tick(0, &id("a"), &ring, &store), TickPlan::default());
        }
    }

    #[test]
    fn a_stray_goes_to_every_owner_then_is_released() {
        let ring = ring(&["a", "b", "c"]);
        let stray = keys(100).into_iter().find(|k| !ring.is_owner(k, &id("a"))).unwrap();
        let store = store([stray.clone()]);
        let mut rebalancer = rebalancer(16);
        let plan = rebalancer.plan_tick(0, &id("a"), &ring, &store);
        let transfers: Vec<Transfer> = plan.transfers().cloned().collect();
        let targets: Vec<NodeId> = transfers.iter().map(|t| t.target.clone()).collect();
        assert_eq!(targets, ring.lookup(&stray).to_vec());
        assert!(transfers.iter().all(|t| t.release));
        assert_eq!(transfers[0].kind, TransferKind::Primary);
        let results: Vec<_> = transfers.into_iter().map(|t| (t, TransferResult::Acked)).collect();
        rebalancer.on_results(5, &results);
        let released = rebalancer.releases_take(5);
        assert_eq!(released, [(stray, Version::new(1, id("a")))]);
    }

    #[test]
    fn a_release_waits_for_every_owner_and_its_grace() {
        let ring = ring(&["a", "b", "c"]);
        let stray = keys(100).into_iter().find(|k| !ring.is_owner(k, &id("a"))).unwrap();
        let store = store([stray.clone()]);
        let options = Options::default();
        let mut rebalancer = Rebalancer::with_release_grace(&options, 1_000);
        let plan = rebalancer.plan_tick(0, &id("a"), &ring, &store);
        let mut results: Vec<_> =
            plan.transfers().cloned().map(|t| (t, TransferResult::Acked)).collect();
        results[1].1 = TransferResult::Refused;
        rebalancer.on_results(0, &results);
        assert!(rebalancer.releases_take(u64::MAX).is_empty(), "one owner refused");
        // Retried only after the delay, and only to the owner that refused.
        assert!(
            rebalancer.plan_tick(RETRY_DELAY_MS - 1, &id("a"), &ring, &store).batches.is_empty()
        );
        let retry = rebalancer.plan_tick(RETRY_DELAY_MS, &id("a"), &ring, &store);
        let retried: Vec<Transfer> = retry.transfers().cloned().collect();
        assert_eq!(retried.len(), 1);
        assert_eq!(retried[0].target, results[1].0.target);
        rebalancer.on_results(2_000, &[(retried[0].clone(), TransferResult::Acked)]);
        assert!(rebalancer.releases_take(2_999).is_empty(), "the grace runs");
        assert_eq!(rebalancer.releases_take(3_000).len(), 1);
    }

    #[test]
    fn a_stray_hinted_to_an_owner_is_retried_not_released() {
        // Seed 544 of the keys profile: a stray released on a hint lived only in the
        // hint queue (it would die with the hint's TTL, or with this node).
        let ring = ring(&["a", "b", "c"]);
        let stray = keys(100).into_iter().find(|k| !ring.is_owner(k, &id("a"))).unwrap();
        let store = store([stray.clone()]);
        let mut rebalancer = rebalancer(16);
        let plan = rebalancer.plan_tick(0, &id("a"), &ring, &store);
        let mut results: Vec<_> =
            plan.transfers().cloned().map(|t| (t, TransferResult::Acked)).collect();
        results[0].1 = TransferResult::Hinted;
        rebalancer.on_results(0, &results);
        assert!(rebalancer.releases_take(u64::MAX).is_empty(), "one owner has only a hint");
        let retry = rebalancer.plan_tick(RETRY_DELAY_MS, &id("a"), &ring, &store);
        let retried: Vec<Transfer> = retry.transfers().cloned().collect();
        assert_eq!(retried.len(), 1);
        assert_eq!(retried[0].target, results[0].0.target);
        rebalancer.on_results(RETRY_DELAY_MS, &[(retried[0].clone(), TransferResult::Acked)]);
        assert_eq!(rebalancer.releases_take(u64::MAX).len(), 1);
    }

    #[test]
    fn refusals_park_after_the_attempts_until_the_ring_moves() {
        let three = ring(&["a", "b", "c"]);
        let four = ring(&["a", "b", "c", "d"]);
        let stray = keys(100)
            .into_iter()
            .find(|k| !three.is_owner(k, &id("a")) && !four.is_owner(k, &id("a")))
            .unwrap();
        let store = store([stray]);
        let mut rebalancer = rebalancer(16);
        let mut now_ms = 0;
        let mut attempt_count = 0;
        loop {
            let plan = rebalancer.plan_tick(now_ms, &id("a"), &three, &store);
            let refused: Vec<_> =
                plan.transfers().cloned().map(|t| (t, TransferResult::Refused)).collect();
            if refused.is_empty() {
                break;
            }
            attempt_count += 1;
            rebalancer.on_results(now_ms, &refused);
            now_ms += RETRY_DELAY_MS;
            assert!(attempt_count <= 20);
        }
        assert_eq!(attempt_count, RETRY_ATTEMPT_COUNT_MAX + 1, "the first send, then retries");
        let plan = rebalancer.plan_tick(now_ms + 60_000, &id("a"), &three, &store);
        assert!(plan.batches.is_empty(), "parked");
        let plan = rebalancer.plan_tick(now_ms, &id("a"), &four, &store);
        assert!(!plan.batches.is_empty(), "a new ring unparks it");
    }

    /// The expected transfers of `local` after the ring moves from `old` to `new`,
    /// with `copy_to` restarted: each key of `local`'s store as the module describes.
    fn expected(
        local: &str,
        old: &Ring,
        new: &Ring,
        copy_to: &[&str],
        store: &Store,
    ) -> Vec<(String, NodeId)> {
        let local = id(local);
        let is_new = |key: &str, node: &NodeId| {
            !old.is_owner(key, node) || copy_to.iter().any(|name| id(name) == *node)
        };
        let mut expected = Vec::new();
        for (key, _) in store.iter() {
            let owners = new.lookup(key).to_vec();
            if !owners.contains(&local) {
                expected.extend(owners.into_iter().map(|owner| (key.to_owned(), owner)));
                continue;
            }
            let responsible = owners.iter().find(|owner| !is_new(key, owner)).unwrap_or(&local);
            if *responsible == local {
                let gained = owners.iter().filter(|o| **o != local && is_new(key, o));
                expected.extend(gained.map(|owner| (key.to_owned(), owner.clone())));
            }
        }
        expected.sort();
        expected
    }

    fn sorted(transfers: &[Transfer]) -> Vec<(String, NodeId)> {
        let mut pairs: Vec<_> =
            transfers.iter().map(|t| (t.key.clone(), t.target.clone())).collect();
        pairs.sort();
        pairs
    }

    #[test]
    fn a_join_moves_keys_to_the_new_node_once() {
        let old = ring(&["a", "b", "c"]);
        let new = ring(&["a", "b", "c", "d"]);
        let held: Vec<String> =
            keys(400).into_iter().filter(|k| old.is_owner(k, &id("a"))).collect();
        let store = store(held);
        let mut rebalancer = rebalancer(8);
        assert!(drain(&mut rebalancer, "a", &old, &store).is_empty());
        let transfers = drain(&mut rebalancer, "a", &new, &store);
        assert!(!transfers.is_empty());
        assert_eq!(sorted(&transfers), expected("a", &old, &new, &[], &store));
        assert!(transfers.iter().all(|t| t.target == id("d") || t.release), "only d is new");
        // Once the handed-off keys are released, the node is quiet again.
        let kept =
            store.iter().map(|(key, _)| key.to_owned()).filter(|k| new.is_owner(k, &id("a")));
        assert!(drain(&mut rebalancer, "a", &new, &self::store(kept)).is_empty());
    }

    #[test]
    fn a_leave_copies_to_the_new_owners() {
        let old = ring(&["a", "b", "c", "d"]);
        let new = ring(&["a", "b", "c"]);
        let held: Vec<String> =
            keys(400).into_iter().filter(|k| old.is_owner(k, &id("a"))).collect();
        let store = store(held);
        let mut rebalancer = rebalancer(8);
        drain(&mut rebalancer, "a", &old, &store);
        let transfers = drain(&mut rebalancer, "a", &new, &store);
        assert!(!transfers.is_empty());
        assert_eq!(sorted(&transfers), expected("a", &old, &new, &[], &store));
        assert!(transfers.iter().all(|t| !t.release), "a owns more after a leave, never less");
    }

    #[test]
    fn a_restarted_node_gets_what_it_owns() {
        let ring = ring(&["a", "b", "c"]);
        let held: Vec<String> =
            keys(300).into_iter().filter(|k| ring.is_owner(k, &id("a"))).collect();
        let store = store(held);
        let mut rebalancer = rebalancer(8);
        drain(&mut rebalancer, "a", &ring, &store);
        rebalancer.note_entered(&id("a"), vec![id("b"), id("a")]);
        let transfers = drain(&mut rebalancer, "a", &ring, &store);
        assert!(!transfers.is_empty());
        assert_eq!(sorted(&transfers), expected("a", &ring, &ring, &["b"], &store));
        assert!(transfers.iter().all(|t| t.target == id("b") && !t.release));
    }

    #[test]
    fn ticks_respect_the_batch_and_send_limits() {
        let ring = ring(&["a", "b", "c"]);
        let strays: Vec<String> =
            keys(600).into_iter().filter(|k| !ring.is_owner(k, &id("a"))).collect();
        let stray_count = strays.len();
        let store = store(strays);
        let mut rebalancer = rebalancer(3);
        let mut planned = Vec::new();
        let mut throttled_count = 0;
        for _ in 0..100 {
            let plan = rebalancer.plan_tick(0, &id("a"), &ring, &store);
            assert!(plan.batches.iter().all(|batch| batch.transfers.len() <= 3));
            assert!(plan.transfers().count() <= 3 * BATCH_COUNT_PER_TICK_MAX);
            throttled_count += usize::from(plan.throttled);
            planned.extend(plan.transfers().map(|t| (t.key.clone(), t.target.clone())));
            if rebalancer.pass.is_none() {
                break;
            }
        }
        assert!(throttled_count > 0);
        planned.sort();
        planned.dedup();
        assert_eq!(planned.len(), stray_count * RF, "every stray to both owners, once each");
    }

    #[test]
    fn batches_group_by_target() {
        let ring = ring(&["a", "b", "c"]);
        let entry = Entry::Item(Item::new(Bytes::from_static(b"v"), Version::new(1, id("a"))));
        let transfers: Vec<Transfer> = (0..7)
            .map(|index| {
                let target = if index % 2 == 0 { id("b") } else { id("c") };
                transfer(&target, &ring.nodes()[0], &format!("k{index}"), &entry, false)
            })
            .collect();
        let batches = batches_group(transfers, 2);
        let shape: Vec<(String, usize)> =
            batches.iter().map(|b| (b.target.to_string(), b.transfers.len())).collect();
        assert_eq!(shape, [("b".into(), 2), ("b".into(), 2), ("c".into(), 2), ("c".into(), 1)]);
    }
}
