//! Gossip of the membership with incarnations (§2.12), and the membership messages.
//!
//! Every `gossip_interval_ms` a node pushes its whole view (members, then removals as
//! dead entries) to one random peer, and the peer answers with its own view: a
//! push-pull exchange, so that a restarted node, which knows only its seed list, learns
//! the cluster from its first answer. Entries merge by higher incarnation
//! ([`Membership::merge`]); a node that hears itself suspected or declared dead refutes
//! with a higher incarnation, and a stale list cannot bring back a removed node, whose
//! removal is remembered with its incarnation.
//!
//! Removed nodes stay gossip targets: when a partition heals, the side that removed the
//! other still reaches it, tells it that it was removed, and it refutes and rejoins.
//!
//! The heartbeat's messages (`Ping`, `PingReq`) live here too, so that all membership
//! traffic is one enum; the failure detector itself is in `detector.rs`.

use std::rc::Rc;
use std::time::Duration;

use crate::detector::SplitMix64;
use crate::membership::{
    ChangeKind, GossipEntry, MEMBER_COUNT_MAX, Membership, MembershipChange, NodeState,
    REMOVAL_COUNT_MAX,
};
use crate::message::{PeerRequest, PeerResponse};
use crate::node::{CacheNode, Inner, State};
use crate::node_id::NodeId;

/// The most entries one gossip message carries: every member and every removal.
pub const GOSSIP_ENTRY_COUNT_MAX: usize = MEMBER_COUNT_MAX + REMOVAL_COUNT_MAX;

/// A membership request: heartbeats, indirect probes and gossip.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MembershipRequest {
    /// A direct probe. The receiver answers with an [`Ack`]; it first merges `from`
    /// (the sender is alive) and `target` (what the sender believes of the receiver,
    /// so that a suspicion is refuted at once).
    Ping {
        /// The sender, as it sees itself.
        from: GossipEntry,
        /// The receiver as the sender sees it (its id, the address used, its state).
        target: GossipEntry,
    },
    /// An indirect probe: ping `target` on the sender's behalf (SWIM's ping-req).
    PingReq {
        /// The sender, as it sees itself.
        from: GossipEntry,
        /// The node to probe, as the sender sees it.
        target: GossipEntry,
    },
    /// A push-pull gossip exchange: merge these entries and answer with yours.
    Gossip {
        /// The sender, as it sees itself.
        from: GossipEntry,
        /// The sender's view: members, then removals as dead entries.
        entries: Vec<GossipEntry>,
    },
}

/// A probed node's answer.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ack {
    /// The probed node, as it sees itself (after refuting any suspicion).
    pub from: GossipEntry,
    /// A random number the probed node drew when it started: a new one means it
    /// restarted and lost its memory.
    pub boot_id: u64,
    /// What the probed node believes of the prober, if it knows it (a removal is a
    /// dead entry), so that the prober can refute in turn.
    pub claim: Option<GossipEntry>,
}

/// The answer to a [`MembershipRequest`].
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MembershipResponse {
    /// Answers a [`MembershipRequest::Ping`].
    Ack(Ack),
    /// Answers a [`MembershipRequest::PingReq`]: the target's ack, or `None` when the
    /// relay could not reach it in time.
    IndirectAck(Option<Ack>),
    /// Answers a [`MembershipRequest::Gossip`] with the receiver's view.
    Gossip {
        /// The receiver's members, then its removals as dead entries.
        entries: Vec<GossipEntry>,
    },
    /// The request carried more entries than [`GOSSIP_ENTRY_COUNT_MAX`]; nothing was
    /// merged.
    TooLarge {
        /// How many entries the request carried.
        entry_count: usize,
        /// The most accepted.
        entry_count_max: usize,
    },
}

/// What a node believes of `id`: its member entry, a dead entry for a removal, or
/// `None` when it has never heard of it.
pub(crate) fn view_of(membership: &Membership, id: &NodeId) -> Option<GossipEntry> {
    if let Some(member) = membership.get(id) {
        return Some(member.to_gossip());
    }
    membership.removal(id).map(|removal| GossipEntry {
        id: id.clone(),
        address: removal.address.clone(),
        state: NodeState::Dead,
        incarnation: removal.incarnation,
    })
}

/// A random gossip target: any member or removed node but the local one (removed nodes
/// are asked too, so that a healed partition learns of itself); `None` when alone.
pub(crate) fn gossip_target_pick(membership: &Membership, random: u64) -> Option<GossipEntry> {
    let local = membership.local_id();
    let candidates: Vec<GossipEntry> =
        membership.gossip_entries().filter(|entry| entry.id != *local).collect();
    assert!(candidates.len() <= GOSSIP_ENTRY_COUNT_MAX);
    if candidates.is_empty() {
        return None;
    }
    let index = SplitMix64::new(random).below(candidates.len());
    let target = candidates.into_iter().nth(index).expect("the index is below the count");
    assert_ne!(target.id, *local);
    Some(target)
}

/// What membership changes did beyond the membership itself.
#[derive(Debug, Default)]
pub(crate) struct ChangeEffects {
    /// Nodes that entered the ring: they may have lost their memory, so the
    /// rebalancer copies to them everything they own.
    pub(crate) entered: Vec<NodeId>,
    /// Nodes newly known alive (joined, or alive at a newer incarnation): proof that
    /// they were alive recently.
    pub(crate) alive: Vec<NodeId>,
}

/// Applies the side effects of `changes`, made on `state.membership`: rebuilds the
/// ring when one moved it, and counts refutations.
pub(crate) fn changes_apply(state: &mut State, changes: &[MembershipChange]) -> ChangeEffects {
    let local = state.membership.local_id().clone();
    let mut effects = ChangeEffects::default();
    let mut ring_changed = false;
    for change in changes {
        ring_changed |= change.ring_changed;
        if change.kind == ChangeKind::Refuted {
            assert_eq!(change.node, local);
            state.metrics.gossip_self_refutes += 1;
            continue;
        }
        assert_ne!(change.node, local, "only a refutation changes the local node");
        if change.ring_changed && change.state.is_on_ring() {
            effects.entered.push(change.node.clone());
        }
        if change.state == NodeState::Alive {
            effects.alive.push(change.node.clone());
        }
    }
    if ring_changed {
        state.ring.rebuild(state.membership.ring_nodes());
        assert!(state.ring.nodes().contains(&local), "the local node is always on its ring");
    }
    effects
}

impl Inner {
    /// Runs `mutate` on the membership, then applies the side effects of the changes it
    /// pushed: the ring, the metrics, the rebalancer's copy targets and the detector's
    /// liveness records. Never awaits; every borrow ends here.
    pub(crate) fn membership_mutate<T>(
        &self,
        mutate: impl FnOnce(&mut Membership, u64, &mut Vec<MembershipChange>) -> T,
    ) -> T {
        let now_ms = self.runtime.wall_clock_ms();
        let mut changes = Vec::new();
        let (result, effects) = {
            let mut state = self.state.borrow_mut();
            let result = mutate(&mut state.membership, now_ms, &mut changes);
            (result, changes_apply(&mut state, &changes))
        };
        if changes.iter().any(|change| change.kind == ChangeKind::Refuted) {
            self.reached("a node refuted a suspicion of itself");
        }
        for change in &changes {
            tracing::debug!(
                node = %self.id, member = %change.node, kind = ?change.kind,
                state = %change.state, incarnation = change.incarnation, "membership change"
            );
        }
        if !effects.entered.is_empty() {
            self.rebalancer.borrow_mut().note_entered(&self.id, effects.entered);
        }
        if changes.iter().any(|change| change.ring_changed) {
            // Replicas diverge when the ring changes: anti-entropy stops backing off.
            self.anti_entropy.borrow_mut().reset_backoff();
        }
        if !effects.alive.is_empty() {
            let heard_ms = self.elapsed_ms();
            let mut detector = self.detector.borrow_mut();
            effects.alive.iter().for_each(|node| detector.note_heard(node, heard_ms));
        }
        result
    }

    /// Merges gossip entries; returns how many were stale (older than what this node
    /// knows). An entry that would overflow the membership is dropped.
    pub(crate) fn gossip_merge(&self, entries: &[GossipEntry]) -> u64 {
        assert!(entries.len() <= GOSSIP_ENTRY_COUNT_MAX);
        let stale_count = self.membership_mutate(|membership, now_ms, changes| {
            let mut stale_count = 0;
            for entry in entries {
                let before = view_of(membership, &entry.id);
                match membership.merge(entry, now_ms) {
                    Ok(Some(change)) => changes.push(change),
                    Ok(None) => stale_count += u64::from(before.as_ref() != Some(entry)),
                    Err(error) => {
                        tracing::warn!(member = %entry.id, %error, "gossip entry dropped");
                    }
                }
            }
            stale_count
        });
        self.state.borrow_mut().metrics.gossip_entries_stale += stale_count;
        stale_count
    }

    /// A message came from `from`: merge what it says of itself, and note that it is
    /// alive.
    pub(crate) fn heard_from(&self, from: &GossipEntry) {
        assert_ne!(from.id, self.id, "a node does not message itself");
        self.gossip_merge(std::slice::from_ref(from));
        self.detector.borrow_mut().note_heard(&from.id, self.elapsed_ms());
    }

    /// This node as it sees itself.
    pub(crate) fn self_entry(&self) -> GossipEntry {
        let entry = self.state.borrow().membership.local().to_gossip();
        assert_eq!(entry.state, NodeState::Alive);
        entry
    }

    /// Answers a membership request.
    pub(crate) async fn handle_membership(
        inner: &Rc<Inner>,
        request: MembershipRequest,
    ) -> MembershipResponse {
        match request {
            MembershipRequest::Ping { from, target } => {
                MembershipResponse::Ack(inner.ping_answer(&from, &target))
            }
            MembershipRequest::PingReq { from, target } => {
                if from.id == inner.id || target.id == inner.id {
                    return MembershipResponse::IndirectAck(None);
                }
                inner.heard_from(&from);
                MembershipResponse::IndirectAck(Inner::probe_relay(inner, target).await)
            }
            MembershipRequest::Gossip { from, entries } => inner.gossip_answer(&from, &entries),
        }
    }

    /// Answers a ping: merge the sender and its claim about this node, then ack with
    /// this node's (possibly refuted) entry and its view of the sender.
    fn ping_answer(&self, from: &GossipEntry, target: &GossipEntry) -> Ack {
        if from.id != self.id {
            self.heard_from(from);
        }
        if target.id == self.id {
            self.gossip_merge(std::slice::from_ref(target));
        }
        let state = self.state.borrow();
        let ack = Ack {
            from: state.membership.local().to_gossip(),
            boot_id: self.detector.borrow().boot_id(),
            claim: view_of(&state.membership, &from.id),
        };
        if target.id == self.id && target.state != NodeState::Alive {
            assert!(ack.from.incarnation > target.incarnation, "a claim is refuted or stale");
        }
        ack
    }

    /// Answers a gossip push with this node's view, after merging the sender's.
    fn gossip_answer(&self, from: &GossipEntry, entries: &[GossipEntry]) -> MembershipResponse {
        if entries.len() > GOSSIP_ENTRY_COUNT_MAX {
            return MembershipResponse::TooLarge {
                entry_count: entries.len(),
                entry_count_max: GOSSIP_ENTRY_COUNT_MAX,
            };
        }
        self.state.borrow_mut().metrics.gossip_received += 1;
        if from.id != self.id {
            self.heard_from(from);
        }
        self.gossip_merge(entries);
        let entries: Vec<GossipEntry> = self.state.borrow().membership.gossip_entries().collect();
        assert!(entries.len() <= GOSSIP_ENTRY_COUNT_MAX);
        MembershipResponse::Gossip { entries }
    }

    /// Starts the gossip loop.
    pub(crate) fn start_gossip(inner: &Rc<Inner>) {
        let interval_ms = inner.options.gossip_interval_ms();
        Inner::spawn_periodic(inner, "gossip", interval_ms, |inner| {
            Box::pin(async move { Inner::gossip_round(&inner).await })
        });
    }

    /// One push-pull exchange with a random peer. The call ends before the next round
    /// is due, so that a dead target costs one round, not a pile of them.
    async fn gossip_round(inner: &Rc<Inner>) {
        if inner.buggify() {
            return; // Fault point: a skipped round; the next one pushes the news.
        }
        let random = inner.runtime.random_u64();
        let (target, request) = {
            let state = inner.state.borrow();
            let Some(target) = gossip_target_pick(&state.membership, random) else { return };
            let from = state.membership.local().to_gossip();
            let entries: Vec<GossipEntry> = state.membership.gossip_entries().collect();
            (target, MembershipRequest::Gossip { from, entries })
        };
        inner.state.borrow_mut().metrics.gossip_sent += 1;
        let timeout_ms = inner.options.rpc_timeout_ms().min(inner.options.gossip_interval_ms());
        let timeout = Duration::from_millis(timeout_ms);
        let request = PeerRequest::Membership(request);
        match inner.transport.call(&target.address, request, timeout).await {
            Ok(PeerResponse::Membership(MembershipResponse::Gossip { entries }))
                if entries.len() <= GOSSIP_ENTRY_COUNT_MAX =>
            {
                inner.state.borrow_mut().metrics.gossip_received += 1;
                inner.gossip_merge(&entries);
            }
            Ok(response) => {
                tracing::debug!(node = %inner.id, peer = %target.id, ?response, "bad gossip answer");
            }
            Err(error) => {
                tracing::debug!(node = %inner.id, peer = %target.id, %error, "gossip failed");
            }
        }
    }
}

impl CacheNode {
    /// A copy of this node's view of the cluster: its members with their states and
    /// incarnations, and the removals it remembers.
    pub fn membership(&self) -> Membership {
        self.inner.state.borrow().membership.clone()
    }

    /// Merges gossip entries as if a peer had pushed them (a debug hook for tests that
    /// replay a stale member list); returns how many were stale.
    ///
    /// # Panics
    ///
    /// When `entries` holds more than [`GOSSIP_ENTRY_COUNT_MAX`] entries.
    pub fn debug_gossip(&self, entries: &[GossipEntry]) -> u64 {
        assert!(entries.len() <= GOSSIP_ENTRY_COUNT_MAX);
        self.inner.gossip_merge(entries)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::membership::Member;

    fn id(name: &str) -> NodeId {
        NodeId::new(name).unwrap()
    }

    fn view(local: &str, peers: &[&str]) -> Membership {
        let mut membership = Membership::new(Member::new(id(local), format!("{local}:1")), 0);
        for peer in peers {
            membership.upsert(Member::new(id(peer), format!("{peer}:1")), 0).unwrap();
        }
        membership
    }

    #[test]
    fn view_of_knows_members_and_removals() {
        let mut membership = view("a", &["b", "c"]);
        membership.mark(&id("c"), NodeState::Suspect, 1).unwrap();
        membership.remove(&id("c"), 2).unwrap();
        assert_eq!(view_of(&membership, &id("b")).unwrap().state, NodeState::Alive);
        let removed = view_of(&membership, &id("c")).unwrap();
        assert_eq!((removed.state, removed.incarnation), (NodeState::Dead, 2));
        assert_eq!(view_of(&membership, &id("zz")), None);
    }

    #[test]
    fn gossip_target_is_never_local_and_covers_removals() {
        let mut membership = view("a", &["b", "c"]);
        membership.remove(&id("c"), 1).unwrap();
        assert_eq!(gossip_target_pick(&view("a", &[]), 7), None);
        let mut picked: BTreeMap<String, u32> = BTreeMap::new();
        for random in 0..200 {
            let target = gossip_target_pick(&membership, random).unwrap();
            *picked.entry(target.id.to_string()).or_default() += 1;
        }
        assert_eq!(picked.keys().collect::<Vec<_>>(), ["b", "c"]);
        assert!(picked.values().all(|&count| count > 50), "{picked:?}");
    }

    #[test]
    fn changes_rebuild_the_ring_and_report_entries() {
        let mut membership = view("a", &[]);
        let mut changes = Vec::new();
        let entry = GossipEntry {
            id: id("b"),
            address: "b:1".into(),
            state: NodeState::Alive,
            incarnation: 3,
        };
        changes.push(membership.merge(&entry, 1).unwrap().unwrap());
        let suspicion = GossipEntry {
            id: id("a"),
            address: "a:1".into(),
            state: NodeState::Suspect,
            incarnation: 1,
        };
        changes.push(membership.merge(&suspicion, 1).unwrap().unwrap());
        let mut state = State {
            store: crate::store::Store::new(16),
            clock: crate::version::LamportClock::new(id("a")),
            ring: crate::ring::Ring::new(3, 8),
            membership,
            metrics: crate::metrics::Metrics::default(),
        };
        let effects = changes_apply(&mut state, &changes);
        assert_eq!(effects.entered, [id("b")]);
        assert_eq!(effects.alive, [id("b")]);
        assert_eq!(state.ring.nodes(), [id("a"), id("b")].as_slice());
        assert_eq!(state.metrics.gossip_self_refutes, 1);
    }
}
