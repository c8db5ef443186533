//! Hinted handoff (§2.9): a replica write that its replica did not acknowledge is
//! queued as a hint for that replica and replayed on an interval.
//!
//! The queue itself is [`HintQueue`] (`hint_queue.rs`), plain and I/O-free; this file
//! is its shell: it queues hints for the write path, runs the replay loop, and keeps
//! the metrics.
//!
//! A replay goes through the receiver's version check like every other write, so a late
//! replay never overwrites a newer value: the replica answers that it holds newer, and
//! the hint is done. A replay that fails for ANY reason (timeout, unreachable, refused
//! because the receiver does not own the key in its view) keeps its hint, which is
//! retried on the next round until it is delivered or its TTL runs out; the reference
//! dropped hints on some errors before #132.
//!
//! Hints live in memory only: a coordinator that restarts loses them, and anti-entropy
//! or read repair must bring its replicas up to date instead.

use std::rc::Rc;

use futures::future::join_all;

use crate::hint_queue::{HintLimits, HintQueue, Push};
use crate::message::ReplicaCause;
use crate::node::{CacheNode, Inner};
use crate::node_id::NodeId;
use crate::options::Options;
use crate::runtime::Runtime;
use crate::store::Entry;

/// Hints replayed to one node per round, at most: they are sent together, so this also
/// bounds the requests one round has in flight to one node.
pub const HINT_REPLAY_BATCH_MAX: usize = 64;

/// The hint queues of one node.
#[derive(Debug)]
pub(crate) struct Handoff {
    queue: HintQueue,
}

impl Handoff {
    pub(crate) fn new(options: &Options) -> Handoff {
        Handoff { queue: HintQueue::new(HintLimits::from_options(options)) }
    }
}

/// The node's monotonic time in milliseconds: hints age by it, not by the wall clock.
fn hint_now_ms(runtime: &dyn Runtime) -> u64 {
    u64::try_from(runtime.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Inner {
    /// Queues a replica write that `replica` did not acknowledge; true when a hint now
    /// covers it (queued, or a hint at least as new was queued already), false when
    /// none does (hints off, or the total limits refused it).
    pub(crate) fn queue_hint(&self, replica: &NodeId, key: &str, entry: &Entry) -> bool {
        assert_ne!(*replica, self.id, "a node never owes itself a replica write");
        let now_ms = hint_now_ms(&*self.runtime);
        let (expired, outcome, bytes) = {
            let mut handoff = self.handoff.borrow_mut();
            let expired = handoff.queue.expire(now_ms);
            let outcome = handoff.queue.push(replica, key, entry, now_ms);
            (expired, outcome, handoff.queue.bytes())
        };
        let mut state = self.state.borrow_mut();
        let metrics = &mut state.metrics;
        metrics.hinted_expired += expired as u64;
        match outcome {
            Push::Queued { dropped_oldest, superseded } => {
                metrics.hinted_queued += 1;
                metrics.hinted_dropped += u64::from(dropped_oldest);
                self.reached("a hint was queued");
                if dropped_oldest {
                    self.reached("a full hint queue dropped its oldest hint");
                }
                metrics.hinted_superseded += u64::from(superseded);
            }
            Push::Rejected => metrics.hinted_global_dropped += 1,
            Push::Stale | Push::Disabled => {}
        }
        metrics.hinted_bytes = bytes;
        drop(state);
        tracing::debug!(target: "cache::handoff", node = %self.id, %replica, key, ?outcome, "hint");
        matches!(outcome, Push::Queued { .. } | Push::Stale)
    }

    /// Starts the hint replay loop, unless hints or replays are off.
    pub(crate) fn start_handoff(inner: &Rc<Inner>) {
        if inner.options.hint_ttl_ms() == 0 {
            return;
        }
        if inner.mutant(crate::Mutant::HintReplayNeverStarts) {
            return; // The canary: hints are queued, counted, and never replayed.
        }
        let interval_ms = inner.options.hint_replay_interval_ms();
        Inner::spawn_periodic(inner, "hint replay", interval_ms, |inner| {
            Box::pin(async move {
                let _delivered = Inner::replay_hint_round(&inner).await;
            })
        });
    }

    /// One replay round: drops the expired hints, then sends every target node up to
    /// [`HINT_REPLAY_BATCH_MAX`] of its oldest hints, all nodes at once. Returns how many
    /// hints were delivered.
    pub(crate) async fn replay_hint_round(inner: &Rc<Inner>) -> usize {
        if inner.buggify() {
            return 0; // Fault point: a skipped round; the hints wait for the next.
        }
        // Fault point: a round of one hint per node, as under back-pressure.
        let batch_max = if inner.buggify() { 1 } else { HINT_REPLAY_BATCH_MAX };
        let now_ms = hint_now_ms(&*inner.runtime);
        let (expired, targets) = {
            let mut handoff = inner.handoff.borrow_mut();
            (handoff.queue.expire(now_ms), handoff.queue.targets())
        };
        inner.update_hint_metrics(expired, 0);
        let rounds = targets.into_iter().map(|target| inner.replay_hints_to(target, batch_max));
        let delivered = join_all(rounds).await.into_iter().sum();
        inner.update_hint_metrics(0, delivered);
        delivered
    }

    /// Sends `target` a batch of its oldest hints together; each one delivered leaves
    /// the queue, each one that failed stays.
    async fn replay_hints_to(&self, target: NodeId, batch_max: usize) -> usize {
        assert!((1..=HINT_REPLAY_BATCH_MAX).contains(&batch_max));
        let batch = self.handoff.borrow().queue.oldest(&target, batch_max);
        assert!(batch.len() <= batch_max);
        let sends = batch.into_iter().map(|(key, entry)| {
            let target = &target;
            async move {
                let version = entry.version().clone();
                let delivered =
                    self.send_replica_write(target, key.clone(), entry, ReplicaCause::Hint).await;
                // Acknowledged only if still the queued version: a newer hint queued
                // meanwhile must still be sent.
                if !delivered && self.mutant(crate::Mutant::HintReplayCountsFailure) {
                    // The canary: the failed hint leaves the queue as if delivered.
                    return self.handoff.borrow_mut().queue.acknowledge(target, &key, &version);
                }
                if !delivered && self.mutant(crate::Mutant::HintDropOnError) {
                    // The canary: the failed hint is dropped, silently.
                    self.handoff.borrow_mut().queue.acknowledge(target, &key, &version);
                    return false;
                }
                delivered && self.handoff.borrow_mut().queue.acknowledge(target, &key, &version)
            }
        });
        let outcomes = join_all(sends).await;
        let delivered = outcomes.iter().filter(|&&delivered| delivered).count();
        if delivered < outcomes.len() {
            let kept = outcomes.len() - delivered;
            tracing::debug!(target: "cache::handoff", node = %self.id, %target, kept, "hints kept");
        }
        delivered
    }

    fn update_hint_metrics(&self, expired: usize, replayed: usize) {
        let bytes = self.handoff.borrow().queue.bytes();
        let metrics = &mut self.state.borrow_mut().metrics;
        metrics.hinted_expired += expired as u64;
        metrics.hinted_replayed += replayed as u64;
        if expired > 0 {
            self.reached("a hint expired");
        }
        if replayed > 0 {
            self.reached("a hint was replayed");
        }
        metrics.hinted_bytes = bytes;
    }
}

impl CacheNode {
    /// Runs one hint replay round now (the replay loop runs them every
    /// `hint_replay_interval_ms`); returns how many hints were delivered.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Stopped`] when the node is stopped.
    pub async fn replay_hints(&self) -> Result<usize, crate::Error> {
        self.inner.check_running()?;
        Ok(Inner::replay_hint_round(&self.inner).await)
    }

    /// Hints queued for `node`.
    pub fn hints_queued_for(&self, node: &NodeId) -> usize {
        self.inner.handoff.borrow().queue.len_for(node)
    }

    /// Hints queued for all nodes.
    pub fn hints_queued(&self) -> usize {
        self.inner.handoff.borrow().queue.len()
    }
}
