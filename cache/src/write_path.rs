//! The write path: route a client write to its coordinator, version it there, apply
//! it, replicate it, and count acknowledgements.
//!
//! The primary (the first owner on the ring) coordinates. A node that is not the
//! primary forwards the write; when the primary cannot be reached, the next owner is
//! asked, and an owner that coordinates in the primary's place promotes itself.

use std::borrow::Cow;
use std::rc::Rc;

use futures::StreamExt;
use futures::channel::mpsc;

use crate::consistency::Consistency;
use crate::error::Error;
use crate::message::{PeerRequest, PeerResponse, ReplicaCause, WriteOp};
use crate::node::Inner;
use crate::node_id::NodeId;
use crate::store::{Entry, Item, Tombstone, check_key};
use crate::version::Version;

impl Inner {
    /// A client write, from any node.
    pub(crate) async fn write(
        inner: &Rc<Inner>,
        key: &str,
        op: WriteOp,
        consistency: Option<Consistency>,
    ) -> Result<Version, Error> {
        check_key(key)?;
        if inner.draining.get() {
            return Err(Error::Draining);
        }
        let owners = {
            let mut state = inner.state.borrow_mut();
            state.metrics.write_attempts += 1;
            state.ring.lookup(key).to_vec()
        };
        if owners.is_empty() {
            return Err(Error::NoOwners);
        }
        for (position, owner) in owners.iter().enumerate() {
            if *owner == inner.id {
                if position > 0 {
                    inner.state.borrow_mut().metrics.write_forward_promotion += 1;
                    inner.reached("a write was coordinated by an owner after the primary");
                }
                return Inner::coordinate(inner, key, op, &owners, consistency).await;
            }
            if position + 1 < owners.len() && inner.buggify() {
                // Fault point: the forward fails as if this owner were unreachable; the
                // next owner coordinates instead, as after a real failure.
                continue;
            }
            inner.count_forward(&op);
            inner.reached("a write was forwarded to its coordinator");
            let request =
                PeerRequest::Forward { key: key.to_string(), op: op.clone(), consistency };
            match inner.call(owner, request).await {
                // The owner does not coordinate (another view of the ring, or stopped):
                // ask the next one, as for an unreachable owner.
                Ok(PeerResponse::Written(Err(
                    Error::NotOwner | Error::Stopped | Error::Draining,
                )))
                | Err(_) => {}
                Ok(PeerResponse::Written(result)) => return result,
                Ok(_) => {
                    return Err(Error::Protocol { expected: Cow::Borrowed("a write outcome") });
                }
            }
        }
        Err(Error::Unreachable { owners_tried: owners.len() })
    }

    fn count_forward(&self, op: &WriteOp) {
        let metrics = &mut self.state.borrow_mut().metrics;
        match op {
            WriteOp::Set { .. } => metrics.forward_set += 1,
            WriteOp::Remove => metrics.forward_remove += 1,
        }
    }

    /// A write forwarded by a peer: coordinate it if this node owns the key.
    pub(crate) async fn coordinate_forwarded(
        inner: &Rc<Inner>,
        key: &str,
        op: WriteOp,
        consistency: Option<Consistency>,
    ) -> Result<Version, Error> {
        let owners = inner.state.borrow().ring.lookup(key).to_vec();
        match owners.iter().position(|owner| *owner == inner.id) {
            None => Err(Error::NotOwner),
            Some(position) => {
                if position > 0 {
                    inner.state.borrow_mut().metrics.write_forward_promotion += 1;
                }
                Inner::coordinate(inner, key, op, &owners, consistency).await
            }
        }
    }

    /// Versions the write, applies it locally, replicates it to the other owners and
    /// waits for as many acknowledgements as the write consistency requires. On a
    /// quorum failure the write is not rolled back: the owners that have it keep it.
    async fn coordinate(
        inner: &Rc<Inner>,
        key: &str,
        op: WriteOp,
        owners: &[NodeId],
        consistency: Option<Consistency>,
    ) -> Result<Version, Error> {
        assert!(owners.contains(&inner.id), "only an owner coordinates");
        check_key(key)?;
        let (version, entry) = inner.version_write(key, &op)?;
        // Counted against the replication factor, not the owners this node sees: a node
        // whose ring has shrunk (it believes its peers dead) must not acknowledge a
        // QUORUM or ALL write with fewer copies than the level promises.
        let level = consistency.unwrap_or_else(|| inner.options.write_consistency());
        let needed = level.required(inner.options.replication_factor());
        let mut replicas: Vec<NodeId> =
            owners.iter().filter(|owner| **owner != inner.id).cloned().collect();
        // The canary skips the last replica, with no hint, and counts it as acked.
        let skipped = inner.mutant(crate::Mutant::ReplicateToFewer) && replicas.pop().is_some();
        inner.count_fanout(&op, replicas.len());
        let (acks_tx, mut acks_rx) = mpsc::unbounded::<bool>();
        for replica in replicas {
            let (node, acks_tx) = (Rc::clone(inner), acks_tx.clone());
            let (key, entry) = (key.to_string(), entry.clone());
            // Fault point: a slow replica write (a congested link): up to half the RPC
            // timeout before it leaves.
            let delay =
                inner.buggify().then(|| inner.delay_random(inner.options.rpc_timeout_ms() / 2));
            let task = async move {
                if let Some(delay) = delay {
                    node.runtime.sleep(delay).await;
                }
                let acked = node.replicate(&replica, key, entry, ReplicaCause::Write).await;
                let _ = acks_tx.unbounded_send(acked);
            };
            // A replica write outlives the client's answer (it ends within the RPC
            // timeout), so that every owner gets the write, not just a quorum.
            inner.runtime.spawn("replicate", Box::pin(task)).detach();
        }
        drop(acks_tx);
        // The local apply (the canary counts one acknowledgement too many).
        let mut acks = if inner.mutant(crate::Mutant::QuorumOffByOne) { 2 } else { 1 };
        acks += usize::from(skipped);
        while acks < needed {
            match acks_rx.next().await {
                Some(true) => acks += 1,
                Some(false) => {}
                None => break,
            }
        }
        let mut state = inner.state.borrow_mut();
        state.metrics.write_acks += acks as u64;
        if acks < needed {
            state.metrics.write_quorum_failures += 1;
            drop(state);
            inner.reached("a write failed its quorum");
            if inner.mutant(crate::Mutant::QuorumFailureRollsBack) {
                Inner::roll_back_later(inner, key, version);
            }
            return Err(Error::QuorumFailed { acks, acks_needed: needed });
        }
        let levelled = inner.options.write_consistency() != Consistency::One;
        if levelled && inner.mutant(crate::Mutant::WritesReportFailure) {
            // The canary: replicated as required, yet reported as failed.
            state.metrics.write_quorum_failures += 1;
            return Err(Error::QuorumFailed { acks, acks_needed: needed });
        }
        Ok(version)
    }

    /// The canary of [`crate::Mutant::QuorumFailureRollsBack`]: a second after the
    /// quorum failure is answered, the coordinator drops its copy of the write, if it
    /// still holds that version.
    fn roll_back_later(inner: &Rc<Inner>, key: &str, version: Version) {
        let (node, key) = (Rc::clone(inner), key.to_string());
        let task = async move {
            node.runtime.sleep(std::time::Duration::from_secs(1)).await;
            let mut state = node.state.borrow_mut();
            if state.store.version(&key) == Some(&version) {
                let _ = state.store.drop_local(&key);
            }
        };
        inner.runtime.spawn("roll_back", Box::pin(task)).detach();
    }

    fn count_fanout(&self, op: &WriteOp, replica_count: usize) {
        // The canary counts a remove's replica writes as a set's.
        let slip = self.mutant(crate::Mutant::FanoutRemovesCountedAsSets);
        let metrics = &mut self.state.borrow_mut().metrics;
        match op {
            WriteOp::Remove if slip => metrics.replica_fanout_set += replica_count as u64,
            WriteOp::Set { .. } => metrics.replica_fanout_set += replica_count as u64,
            WriteOp::Remove => metrics.replica_fanout_remove += replica_count as u64,
        }
    }

    /// Issues the write's version and applies it locally.
    fn version_write(&self, key: &str, op: &WriteOp) -> Result<(Version, Entry), Error> {
        let now_ms = self.runtime.wall_clock_ms();
        let mut state = self.state.borrow_mut();
        // A hybrid logical clock: the counter never falls behind this node's wall clock
        // in microseconds. A restarted node has lost its counter with its memory; this
        // keeps its new writes newer than the ones it made before the crash, unless
        // its clock went back.
        state.clock.observe(&Version::new(now_ms.saturating_mul(1_000), self.id.clone()));
        let version = state.clock.tick();
        let entry = match op {
            WriteOp::Set { value, ttl: Some(ttl) } => {
                let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
                Entry::Item(Item::with_ttl(value.clone(), version.clone(), now_ms, ttl_ms))
            }
            WriteOp::Set { value, ttl: None } => {
                Entry::Item(Item::new(value.clone(), version.clone()))
            }
            WriteOp::Remove => Entry::Tombstone(Tombstone {
                version: version.clone(),
                deleted_at_ms: self.elapsed_ms(),
            }),
        };
        let outcome = state.store.apply(key, entry.clone())?;
        assert!(outcome.is_applied(), "a fresh version is newer than anything held");
        Ok((version, entry))
    }

    /// Sends one replica write; true when the replica acknowledged it. A write the
    /// replica did not acknowledge is queued as a hint for later replay.
    pub(crate) async fn replicate(
        &self,
        replica: &NodeId,
        key: String,
        entry: Entry,
        cause: ReplicaCause,
    ) -> bool {
        let acked = self.send_replica_write(replica, key.clone(), entry.clone(), cause).await;
        if !acked {
            let _hinted = self.queue_hint(replica, &key, &entry);
        }
        acked
    }

    /// Sends one replica write without queueing a hint on failure (hint replays use
    /// this: a failed replay keeps its hint).
    pub(crate) async fn send_replica_write(
        &self,
        replica: &NodeId,
        key: String,
        entry: Entry,
        cause: ReplicaCause,
    ) -> bool {
        let version = entry.version().clone();
        let mut entry = entry;
        if let Entry::Item(item) = &mut entry
            && cause == ReplicaCause::Write
            && item.value.len() > 1_024
            && self.mutant(crate::Mutant::ReplicaValueTruncated)
        {
            item.value = item.value.slice(..1_024); // The canary: a truncated frame.
        }
        match self.call(replica, PeerRequest::Replicate { key, entry, cause }).await {
            Ok(PeerResponse::Replicated { applied, held }) => {
                if let Some(held) = held {
                    let mut state = self.state.borrow_mut();
                    if !applied && held > version {
                        state.metrics.version_conflicts += 1;
                    }
                    if !self.mutant(crate::Mutant::NoLamportReceive) {
                        state.clock.observe(&held);
                    }
                }
                true
            }
            Ok(_) | Err(_) => false,
        }
    }
}
