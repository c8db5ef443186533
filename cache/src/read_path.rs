//! The read path: ask the owners, merge their answers by version, repair the stale.
//!
//! At consistency ONE an owner reads its own copy, and any other node asks the owners
//! in ring order until one answers. At QUORUM and ALL the owners are asked together;
//! the answer is the newest of the first `needed` answers, and every owner that
//! answered with an older version (or none) is repaired in the background, unless the
//! `read_repair` option is off.

use std::rc::Rc;

use futures::StreamExt;
use futures::channel::mpsc;

use crate::consistency::Consistency;
use crate::error::Error;
use crate::message::{PeerRequest, PeerResponse, ReplicaCause};
use crate::node::Inner;
use crate::node_id::NodeId;
use crate::store::{Entry, Item, check_key};

type Answer = (NodeId, Option<Entry>);

impl Inner {
    /// A client read, from any node.
    pub(crate) async fn read(
        inner: &Rc<Inner>,
        key: &str,
        consistency: Option<Consistency>,
    ) -> Result<Option<Item>, Error> {
        if let Err(error) = check_key(key) {
            // The canary: a bad key reads as a key with no item.
            return if inner.mutant(crate::Mutant::InvalidKeyReadsNone) {
                Ok(None)
            } else {
                Err(error)
            };
        }
        let owners = inner.state.borrow().ring.lookup(key).to_vec();
        if owners.is_empty() {
            return Err(Error::NoOwners);
        }
        // Against the replication factor, like writes: a shrunken ring lowers no level.
        let level = consistency.unwrap_or_else(|| inner.options.read_consistency());
        let needed = level.required(inner.options.replication_factor());
        if needed == 1 {
            return inner.read_one(key, &owners).await;
        }
        // The canary waits for one answer fewer than the level needs (at least one).
        let needed = needed - usize::from(inner.mutant(crate::Mutant::ReadQuorumShort));
        assert!(needed >= 1);
        Inner::read_quorum(inner, key, owners, needed).await
    }

    async fn read_one(&self, key: &str, owners: &[NodeId]) -> Result<Option<Item>, Error> {
        if owners.contains(&self.id) {
            let entry = self.state.borrow().store.entry(key).cloned();
            return Ok(self.visible(entry));
        }
        for (position, owner) in owners.iter().enumerate() {
            if position + 1 < owners.len() && self.buggify() {
                // Fault point: this owner does not answer; the next one is asked.
                continue;
            }
            self.state.borrow_mut().metrics.forward_get += 1;
            if let Ok(PeerResponse::Entry(entry)) =
                self.call(owner, PeerRequest::Read { key: key.to_string() }).await
            {
                if position > 0 {
                    self.state.borrow_mut().metrics.read_primary_promote += 1;
                    self.reached("a read was answered by an owner after the primary");
                }
                return Ok(self.visible(entry));
            }
        }
        Err(Error::Unreachable { owners_tried: owners.len() })
    }

    async fn read_quorum(
        inner: &Rc<Inner>,
        key: &str,
        owners: Vec<NodeId>,
        needed: usize,
    ) -> Result<Option<Item>, Error> {
        let (answers_tx, mut answers_rx) = mpsc::unbounded::<Answer>();
        for owner in owners {
            if owner == inner.id {
                let entry = inner.state.borrow().store.entry(key).cloned();
                let _ = answers_tx.unbounded_send((owner, entry));
                continue;
            }
            let (node, answers_tx, key) = (Rc::clone(inner), answers_tx.clone(), key.to_string());
            // Fault point: a slow request to this owner, so that another one answers
            // first.
            let delay =
                inner.buggify().then(|| inner.delay_random(inner.options.rpc_timeout_ms() / 2));
            let task = async move {
                if let Some(delay) = delay {
                    node.runtime.sleep(delay).await;
                }
                node.state.borrow_mut().metrics.forward_get += 1;
                if let Ok(PeerResponse::Entry(entry)) =
                    node.call(&owner, PeerRequest::Read { key }).await
                {
                    let _ = answers_tx.unbounded_send((owner, entry));
                }
            };
            inner.runtime.spawn("read", Box::pin(task)).detach();
        }
        drop(answers_tx);
        let mut answers = Vec::with_capacity(needed);
        while answers.len() < needed {
            match answers_rx.next().await {
                Some(answer) => answers.push(answer),
                None => break,
            }
        }
        if answers.len() < needed {
            inner.state.borrow_mut().metrics.read_quorum_failures += 1;
            inner.reached("a read failed its quorum");
            return Err(Error::QuorumFailed { acks: answers.len(), acks_needed: needed });
        }
        let newest = inner.merge(&answers);
        // With read repair off (an option, to test the other repair paths alone) a
        // read never writes.
        if let Some(newest) = newest.clone().filter(|_| inner.options.read_repair()) {
            // Owners still answering are checked too, within the RPC timeout.
            let (node, key) = (Rc::clone(inner), key.to_string());
            let task = async move { node.repair(key, newest, answers, answers_rx).await };
            inner.runtime.spawn("read_repair", Box::pin(task)).detach();
        }
        Ok(inner.visible(newest))
    }

    /// The newest entry among the answers, counting conflicts and tie-breaks.
    fn merge(&self, answers: &[Answer]) -> Option<Entry> {
        let entries = || answers.iter().filter_map(|(_, entry)| entry.as_ref());
        let newest = entries().max_by(|a, b| a.version().cmp(b.version()))?;
        let metrics = &mut self.state.borrow_mut().metrics;
        if answers
            .iter()
            .any(|(_, entry)| entry.as_ref().map(Entry::version) != Some(newest.version()))
        {
            metrics.version_conflicts += 1;
            self.reached("a read met conflicting versions");
        }
        if entries().any(|entry| entry.version().ties_with(newest.version())) {
            metrics.version_tie_breaks += 1;
            self.reached("a read broke a version tie by origin");
        }
        Some(newest.clone())
    }

    /// Brings every owner that answered with an older version, or none, up to `newest`.
    async fn repair(
        &self,
        key: String,
        newest: Entry,
        mut answers: Vec<Answer>,
        mut late: mpsc::UnboundedReceiver<Answer>,
    ) {
        while let Some(answer) = late.next().await {
            answers.push(answer);
        }
        if self.buggify() {
            // Fault point: a late repair; a newer write meanwhile makes it stale, and
            // the receivers' version check refuses it.
            self.runtime.sleep(self.delay_random(self.options.rpc_timeout_ms())).await;
        }
        let older_canary = self.mutant(crate::Mutant::ReadRepairOlder);
        let newest = if older_canary {
            // The canary repairs with the oldest version any owner answered.
            let entries = answers.iter().filter_map(|(_, entry)| entry.clone());
            entries.min_by(|a, b| a.version().cmp(b.version())).unwrap_or(newest)
        } else {
            newest
        };
        let stale = answers.into_iter().filter(|(_, entry)| match entry {
            None => true,
            Some(entry) if older_canary => entry.version() != newest.version(),
            Some(entry) => entry.version() < newest.version(),
        });
        for (owner, _) in stale {
            self.state.borrow_mut().metrics.read_repair += 1;
            self.reached("a read repaired a stale owner");
            if self.mutant(crate::Mutant::ReadRepairNoop) {
                continue; // The canary: counted, never sent.
            }
            if owner == self.id {
                if older_canary {
                    // The canary's repair bypasses the version check, as the
                    // reference's did (§2.8): the older version overwrites the local copy.
                    self.state.borrow_mut().store.drop_local(&key);
                }
                let _ = self.apply_local(&key, newest.clone());
            } else {
                self.replicate(&owner, key.clone(), newest.clone(), ReplicaCause::ReadRepair).await;
            }
        }
    }

    /// What a client sees of an entry: a live item, or nothing.
    pub(crate) fn visible(&self, entry: Option<Entry>) -> Option<Item> {
        let now_ms = self.runtime.wall_clock_ms();
        match entry {
            Some(Entry::Item(item))
                if !item.is_expired(now_ms) || self.mutant(crate::Mutant::TtlNeverExpires) =>
            {
                Some(item)
            }
            _ => None,
        }
    }
}
