//! Heartbeat failure detection with indirect probes (§2.11).
//!
//! Every `heartbeat_interval_ms` a node runs one round. The plain [`Detector`] plans
//! it from the time and one random number: which peers have been silent too long
//! (suspect after `suspect_after_ms`, dead after `dead_after_ms`, both counted from the
//! last time this node heard from them, on its monotonic clock), which dead members to
//! prune, and which peers to probe, with the relays for each. The async shell in
//! [`Inner`] then applies the verdicts and probes the peers concurrently:
//!
//! 1. a direct `Ping` with `probe_timeout_ms`; an ack proves the peer alive;
//! 2. when it fails, a `PingReq` through up to `indirect_probe_count` alive relays at
//!    once; one ack through any relay proves the peer alive (`indirect_probe_refuted`);
//! 3. when every probe fails, an alive peer is suspected at once, as in SWIM and the
//!    reference (`suspect_after_ms` matters for peers not probed).
//!
//! A suspect stays on the ring. A peer silent for more than `dead_after_ms` is declared
//! dead (its incarnation bumped, so that the news beats the suspicion others hold) and
//! removed; the removal is gossiped as a dead entry and remembered, so that stale news
//! cannot bring it back. A member that gossip reports dead is pruned the same way.
//!
//! Unlike the reference, the local node is never probed, the sample is a round-robin
//! over a shuffled order (every peer is probed within `ceil(n / 16)` rounds), and an
//! ack carries the peer's boot id: a new boot id means the peer restarted with an
//! empty memory, and the rebalancer copies back what it owns.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use crate::gossip::{Ack, MembershipRequest, MembershipResponse};
use crate::membership::{GossipEntry, MEMBER_COUNT_MAX, Membership, NodeState};
use crate::message::{PeerRequest, PeerResponse};
use crate::node::{CacheNode, Inner};
use crate::node_id::NodeId;
use crate::options::{INDIRECT_PROBE_COUNT_MAX, Options};

/// The most peers probed in one round; a larger cluster is probed round-robin.
pub(crate) const PROBE_COUNT_PER_ROUND_MAX: usize = 16;

/// A small, fixed pseudo-random generator (SplitMix64), seeded from one draw of the
/// runtime's stream, so that plans take a single random value and stay pure.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut mixed = self.state;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        mixed ^ (mixed >> 31)
    }

    /// A number in `0..bound` (multiply-shift: the bias is below 2^-50 for the bounds
    /// used here).
    ///
    /// # Panics
    ///
    /// When `bound` is 0.
    pub(crate) fn below(&mut self, bound: usize) -> usize {
        assert!(bound > 0, "no number is below 0");
        let bound_u64 = u64::try_from(bound).expect("usize fits in u64");
        let wide = u128::from(self.next_u64()) * u128::from(bound_u64);
        let index = usize::try_from(wide >> 64).expect("the result is below a usize bound");
        assert!(index < bound);
        index
    }

    /// Shuffles `items` (Fisher-Yates).
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for index in (1..items.len()).rev() {
            let other = self.below(index + 1);
            items.swap(index, other);
        }
    }
}

/// What this node knows of one peer's liveness, on its own monotonic clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PeerRecord {
    /// The last time this node heard from the peer (an ack, a message, or news of a
    /// newer alive incarnation).
    heard_ms: u64,
    /// The peer's boot id at its last ack.
    boot_id: Option<u64>,
}

/// A round this many heartbeat intervals late means this node was paused.
const OWN_PAUSE_INTERVALS_MIN: u64 = 3;

/// The failure detector's state: plain data, planned by [`Detector::plan_round`].
#[derive(Debug)]
pub(crate) struct Detector {
    suspect_after_ms: u64,
    dead_after_ms: u64,
    indirect_probe_count: usize,
    /// This node's boot id, drawn when it starts.
    boot_id: u64,
    peers: BTreeMap<NodeId, PeerRecord>,
    /// The round-robin order of probes, reshuffled when exhausted.
    probe_order: Vec<NodeId>,
    probe_position: usize,
    heartbeat_interval_ms: u64,
    /// When the last round was planned, to notice this node's own pauses.
    round_last_ms: Option<u64>,
}

/// One heartbeat round's plan.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct RoundPlan {
    /// Alive peers silent for more than `suspect_after_ms`.
    pub(crate) suspect: Vec<NodeId>,
    /// Peers silent for more than `dead_after_ms`: declare dead and remove.
    pub(crate) dead: Vec<NodeId>,
    /// Members already dead in this view (news from gossip): remove.
    pub(crate) prune: Vec<NodeId>,
    /// Peers to probe this round.
    pub(crate) probes: Vec<ProbePlan>,
}

/// One probe: the target, and the relays to ask if the direct probe fails.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ProbePlan {
    pub(crate) target: GossipEntry,
    pub(crate) relays: Vec<GossipEntry>,
}

impl Detector {
    pub(crate) fn new(options: &Options) -> Detector {
        assert!(options.indirect_probe_count() <= INDIRECT_PROBE_COUNT_MAX);
        Detector {
            suspect_after_ms: options.suspect_after_ms(),
            dead_after_ms: options.dead_after_ms(),
            indirect_probe_count: options.indirect_probe_count(),
            boot_id: 0,
            peers: BTreeMap::new(),
            probe_order: Vec::new(),
            probe_position: 0,
            heartbeat_interval_ms: options.heartbeat_interval_ms(),
            round_last_ms: None,
        }
    }

    /// A round far later than its interval means that this node itself was frozen (a
    /// stop-the-world pause, a stalled process): its peers' silence over the gap is its
    /// own, so the gap is forgiven rather than read as every peer dying at once.
    fn forgive_own_pause(&mut self, now_ms: u64) {
        let last_ms = self.round_last_ms.replace(now_ms);
        let Some(last_ms) = last_ms else { return };
        let gap_ms = now_ms.saturating_sub(last_ms);
        let expected_ms = self.heartbeat_interval_ms.saturating_mul(OWN_PAUSE_INTERVALS_MIN);
        if gap_ms <= expected_ms.max(1) {
            return;
        }
        for record in self.peers.values_mut() {
            record.heard_ms = record.heard_ms.saturating_add(gap_ms).min(now_ms);
        }
        tracing::info!(target: "cache::detector", gap_ms, "own pause noticed: peers' silence forgiven");
    }

    /// This node's boot id.
    pub(crate) fn boot_id(&self) -> u64 {
        self.boot_id
    }

    /// Sets this node's boot id, once, when it starts.
    pub(crate) fn boot_id_set(&mut self, boot_id: u64) {
        assert_eq!(self.boot_id, 0, "the boot id is drawn once");
        self.boot_id = boot_id;
    }

    /// Notes that `node` was heard from at `now_ms`.
    pub(crate) fn note_heard(&mut self, node: &NodeId, now_ms: u64) {
        if let Some(record) = self.peers.get_mut(node) {
            record.heard_ms = record.heard_ms.max(now_ms);
        } else if self.peers.len() < MEMBER_COUNT_MAX {
            self.peers.insert(node.clone(), PeerRecord { heard_ms: now_ms, boot_id: None });
        }
    }

    /// Notes an ack from `node` with its boot id; true when the boot id changed since
    /// the last ack, that is, when the peer restarted meanwhile.
    pub(crate) fn note_ack(&mut self, node: &NodeId, boot_id: u64, now_ms: u64) -> bool {
        self.note_heard(node, now_ms);
        let Some(record) = self.peers.get_mut(node) else { return false };
        let previous = record.boot_id.replace(boot_id);
        previous.is_some_and(|previous| previous != boot_id)
    }

    /// Plans one round at `now_ms` (monotonic) from `membership`, drawing from
    /// `random`.
    pub(crate) fn plan_round(
        &mut self,
        now_ms: u64,
        membership: &Membership,
        random: u64,
    ) -> RoundPlan {
        let local = membership.local_id();
        self.peers_sync(membership, now_ms);
        self.forgive_own_pause(now_ms);
        let mut plan = RoundPlan::default();
        let mut candidates = Vec::new();
        for member in membership.members().filter(|member| member.id != *local) {
            let silent_ms = now_ms.saturating_sub(self.peers[&member.id].heard_ms);
            if member.state == NodeState::Dead {
                plan.prune.push(member.id.clone());
            } else if self.dead_after_ms > 0 && silent_ms > self.dead_after_ms {
                plan.dead.push(member.id.clone());
            } else {
                let too_quiet = self.suspect_after_ms > 0 && silent_ms > self.suspect_after_ms;
                if member.state == NodeState::Alive && too_quiet {
                    plan.suspect.push(member.id.clone());
                }
                candidates.push(member.to_gossip());
            }
        }
        let mut rng = SplitMix64::new(random);
        for target in self.probe_targets_pick(&candidates, &mut rng) {
            let relays = relays_pick(membership, &target.id, self.indirect_probe_count, &mut rng);
            plan.probes.push(ProbePlan { target, relays });
        }
        assert!(plan.probes.len() <= PROBE_COUNT_PER_ROUND_MAX);
        assert!(plan.probes.iter().all(|probe| probe.target.id != *local));
        plan
    }

    /// Keeps one record per peer: new members start as heard now, records of nodes
    /// that left the view are dropped.
    fn peers_sync(&mut self, membership: &Membership, now_ms: u64) {
        let local = membership.local_id();
        self.peers.retain(|id, _| id != local && membership.get(id).is_some());
        for member in membership.members().filter(|member| member.id != *local) {
            self.peers
                .entry(member.id.clone())
                .or_insert(PeerRecord { heard_ms: now_ms, boot_id: None });
        }
        assert_eq!(self.peers.len() + 1, membership.len());
    }

    /// The next peers of the round-robin order that are still candidates: all of them
    /// when they are at most [`PROBE_COUNT_PER_ROUND_MAX`].
    fn probe_targets_pick(
        &mut self,
        candidates: &[GossipEntry],
        rng: &mut SplitMix64,
    ) -> Vec<GossipEntry> {
        let count = candidates.len().min(PROBE_COUNT_PER_ROUND_MAX);
        let mut targets: Vec<GossipEntry> = Vec::with_capacity(count);
        // At most two sweeps: the rest of the current order, then a fresh shuffle of
        // every candidate, which always fills the round.
        for _ in 0..2 {
            while targets.len() < count && self.probe_position < self.probe_order.len() {
                let id = &self.probe_order[self.probe_position];
                self.probe_position += 1;
                let Some(candidate) = candidates.iter().find(|c| c.id == *id) else { continue };
                if !targets.iter().any(|target| target.id == *id) {
                    targets.push(candidate.clone());
                }
            }
            if targets.len() == count {
                break;
            }
            self.probe_order = candidates.iter().map(|candidate| candidate.id.clone()).collect();
            rng.shuffle(&mut self.probe_order);
            self.probe_position = 0;
        }
        assert_eq!(targets.len(), count);
        targets
    }
}

/// Up to `count` random alive members, neither the local node nor `target`.
fn relays_pick(
    membership: &Membership,
    target: &NodeId,
    count: usize,
    rng: &mut SplitMix64,
) -> Vec<GossipEntry> {
    assert!(count <= INDIRECT_PROBE_COUNT_MAX);
    let local = membership.local_id();
    let mut relays: Vec<GossipEntry> = membership
        .members()
        .filter(|member| member.id != *local && member.id != *target)
        .filter(|member| member.state == NodeState::Alive)
        .map(|member| member.to_gossip())
        .collect();
    rng.shuffle(&mut relays);
    relays.truncate(count);
    relays
}

impl Inner {
    /// Monotonic milliseconds since the runtime started: the detector's clock, which a
    /// skewed wall clock cannot move.
    pub(crate) fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.runtime.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Draws the boot id and starts the heartbeat loop.
    pub(crate) fn start_detector(inner: &Rc<Inner>) {
        // Drawn even with the loop off: peers still read it in acks.
        let boot_id = inner.runtime.random_u64();
        inner.detector.borrow_mut().boot_id_set(boot_id);
        inner.state.borrow_mut().clock.set_boot(boot_id);
        let interval_ms = inner.options.heartbeat_interval_ms();
        Inner::spawn_periodic(inner, "heartbeat", interval_ms, |inner| {
            Box::pin(async move { Inner::heartbeat_round(&inner).await })
        });
    }

    /// One round: apply the plan's verdicts, then probe its targets concurrently. It
    /// ends within two probe timeouts.
    async fn heartbeat_round(inner: &Rc<Inner>) {
        if inner.buggify() {
            return; // Fault point: a skipped round (a stalled node).
        }
        let random = inner.runtime.random_u64();
        let now_ms = inner.elapsed_ms();
        let plan = {
            let state = inner.state.borrow();
            inner.detector.borrow_mut().plan_round(now_ms, &state.membership, random)
        };
        inner.verdicts_apply(&plan);
        let probes = plan.probes.into_iter().map(|probe| Inner::probe(inner, probe));
        futures::future::join_all(probes).await;
    }

    /// Suspects the silent, declares dead and removes the long silent, and prunes
    /// the members gossip reported dead.
    fn verdicts_apply(&self, plan: &RoundPlan) {
        let never_dead = self.mutant(crate::Mutant::DetectorNeverDead);
        let (suspected, declared, pruned) =
            self.membership_mutate(|membership, now_ms, changes| {
                let is = |membership: &Membership, id: &NodeId, state: NodeState| {
                    membership.get(id).is_some_and(|member| member.state == state)
                };
                // The never-dead canary suspects the long silent instead.
                let dead_too = plan.dead.iter().filter(|_| never_dead);
                let suspected: Vec<&NodeId> = plan
                    .suspect
                    .iter()
                    .chain(dead_too)
                    .filter(|id| is(membership, id, NodeState::Alive))
                    .collect();
                for id in &suspected {
                    changes.extend(membership.mark(id, NodeState::Suspect, now_ms).expect("held"));
                }
                let declared: Vec<&NodeId> = plan
                    .dead
                    .iter()
                    .filter(|id| !never_dead && membership.get(id).is_some())
                    .collect();
                for id in &declared {
                    // Bump the incarnation first, so that the removal's dead entry beats the
                    // suspicion other nodes hold.
                    changes.extend(membership.mark(id, NodeState::Dead, now_ms).expect("held"));
                    changes.push(membership.remove(id, now_ms).expect("held"));
                }
                let pruned: Vec<&NodeId> =
                    plan.prune.iter().filter(|id| is(membership, id, NodeState::Dead)).collect();
                for id in &pruned {
                    changes.push(membership.remove(id, now_ms).expect("held"));
                }
                (suspected, declared, pruned)
            });
        if !declared.is_empty() {
            self.reached("a peer was declared dead");
        }
        let metrics = &mut self.state.borrow_mut().metrics;
        metrics.nodes_suspect += suspected.len() as u64;
        metrics.nodes_dead += declared.len() as u64;
        metrics.nodes_removed += (declared.len() + pruned.len()) as u64;
        for member in suspected {
            tracing::info!(node = %self.id, %member, "peer silent: suspected");
        }
        for member in declared {
            tracing::info!(node = %self.id, %member, "peer silent: declared dead and removed");
        }
        for member in pruned {
            tracing::info!(node = %self.id, %member, "dead peer removed");
        }
    }

    /// Probes one peer: directly, then through relays; suspects it when both fail.
    async fn probe(inner: &Rc<Inner>, plan: ProbePlan) {
        let (target, mut relays) = (plan.target, plan.relays);
        assert_ne!(target.id, inner.id, "the local node is never probed");
        if inner.buggify() {
            // Fault point: no indirect probes this time (no relay at hand): a failed
            // direct probe makes the peer suspect, never dead.
            relays.clear();
        }
        if inner.buggify() {
            // Fault point: a late probe, as from a slow node.
            inner.runtime.sleep(inner.delay_random(inner.options.probe_timeout_ms() / 2)).await;
        }
        let timeout = Duration::from_millis(inner.options.probe_timeout_ms());
        let ping = MembershipRequest::Ping { from: inner.self_entry(), target: target.clone() };
        let sent_ms = inner.elapsed_ms();
        let response =
            inner.transport.call(&target.address, PeerRequest::Membership(ping), timeout).await;
        if let Ok(PeerResponse::Membership(MembershipResponse::Ack(ack))) = response
            && ack.from.id == target.id
            && inner.answered_in_time(sent_ms, timeout)
        {
            inner.state.borrow_mut().metrics.heartbeat_success += 1;
            inner.ack_apply(&ack, true);
            return;
        }
        inner.state.borrow_mut().metrics.heartbeat_failure += 1;
        if inner.mutant(crate::Mutant::DetectorDeadOnFirstMiss) {
            // The canary: one missed probe is death, with no indirect probes.
            let plan = RoundPlan { dead: vec![target.id.clone()], ..RoundPlan::default() };
            inner.verdicts_apply(&plan);
            return;
        }
        if Inner::probe_indirect(inner, &target, relays).await {
            inner.state.borrow_mut().metrics.indirect_probe_refuted += 1;
            inner.reached("an indirect probe refuted a failed heartbeat");
            return;
        }
        inner.suspect_if_alive(&target.id);
    }

    /// Asks every relay at once to probe `target`; true when one reached it.
    async fn probe_indirect(
        inner: &Rc<Inner>,
        target: &GossipEntry,
        relays: Vec<GossipEntry>,
    ) -> bool {
        assert!(relays.len() <= INDIRECT_PROBE_COUNT_MAX);
        assert!(relays.iter().all(|relay| relay.id != target.id && relay.id != inner.id));
        let timeout = Duration::from_millis(inner.options.probe_timeout_ms());
        let from = inner.self_entry();
        let calls = relays.iter().map(|relay| {
            let request = MembershipRequest::PingReq { from: from.clone(), target: target.clone() };
            inner.transport.call(&relay.address, PeerRequest::Membership(request), timeout)
        });
        let sent_ms = inner.elapsed_ms();
        let responses = futures::future::join_all(calls).await;
        let in_time = inner.answered_in_time(sent_ms, timeout);
        let mut reached = false;
        for response in responses {
            match response {
                Ok(PeerResponse::Membership(MembershipResponse::IndirectAck(Some(ack))))
                    if ack.from.id == target.id && in_time =>
                {
                    inner.state.borrow_mut().metrics.indirect_probe_success += 1;
                    inner.ack_apply(&ack, false);
                    reached = true;
                }
                _ => inner.state.borrow_mut().metrics.indirect_probe_failure += 1,
            }
        }
        reached
    }

    /// A relay's side of an indirect probe: ping `target` with half the probe timeout,
    /// so that the answer reaches the asker before its own timeout.
    pub(crate) async fn probe_relay(inner: &Rc<Inner>, target: GossipEntry) -> Option<Ack> {
        assert_ne!(target.id, inner.id);
        let timeout_ms = (inner.options.probe_timeout_ms() / 2).max(1);
        let ping = MembershipRequest::Ping { from: inner.self_entry(), target: target.clone() };
        let request = PeerRequest::Membership(ping);
        let timeout = Duration::from_millis(timeout_ms);
        let sent_ms = inner.elapsed_ms();
        let response = inner.transport.call(&target.address, request, timeout).await;
        let in_time = inner.answered_in_time(sent_ms, timeout);
        match response {
            Ok(PeerResponse::Membership(MembershipResponse::Ack(ack)))
                if ack.from.id == target.id && in_time =>
            {
                inner.ack_apply(&ack, true);
                Some(ack)
            }
            _ => None,
        }
    }

    /// Whether an answer to a call sent at `sent_ms` (monotonic) came within `timeout`.
    /// A later one is stale: a node frozen meanwhile reads its queued answers on resume,
    /// before its timers fire, and an ack sent before the peer crashed would otherwise
    /// clear a suspicion raised since, on the peer's behalf (swarm 3839 found a crashed
    /// node brought back to every ring that way).
    fn answered_in_time(&self, sent_ms: u64, timeout: Duration) -> bool {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.elapsed_ms().saturating_sub(sent_ms) <= timeout_ms
    }

    /// Takes in an ack: the peer's own entry (and, for a direct ack, its claim about
    /// this node), its liveness and its boot id. A suspect that the merge did not clear
    /// is marked alive; a peer that restarted gets back what it owns.
    fn ack_apply(&self, ack: &Ack, direct: bool) {
        let node = &ack.from.id;
        assert_ne!(*node, self.id, "a node does not ack itself");
        let mut entries = vec![ack.from.clone()];
        if direct && let Some(claim) = ack.claim.as_ref().filter(|claim| claim.id == self.id) {
            entries.push(claim.clone());
        }
        self.gossip_merge(&entries);
        let restarted = self.detector.borrow_mut().note_ack(node, ack.boot_id, self.elapsed_ms());
        if restarted {
            tracing::info!(node = %self.id, peer = %node, "peer restarted");
            self.rebalancer.borrow_mut().note_entered(&self.id, vec![node.clone()]);
        }
        self.membership_mutate(|membership, now_ms, changes| {
            if membership.get(node).is_some_and(|member| member.state == NodeState::Suspect) {
                changes.extend(membership.mark(node, NodeState::Alive, now_ms).expect("held"));
            }
        });
    }

    /// Suspects `node` if it is alive in this view.
    fn suspect_if_alive(&self, node: &NodeId) {
        let suspected = self.membership_mutate(|membership, now_ms, changes| {
            if membership.get(node).is_none_or(|member| member.state != NodeState::Alive) {
                return false;
            }
            changes.extend(membership.mark(node, NodeState::Suspect, now_ms).expect("held"));
            true
        });
        if suspected {
            self.state.borrow_mut().metrics.nodes_suspect += 1;
            self.reached("a peer was suspected");
            tracing::info!(node = %self.id, member = %node, "peer suspected");
        }
    }
}

impl CacheNode {
    /// The random number this node drew when it started; peers compare it across acks
    /// to notice a restart.
    pub fn boot_id(&self) -> u64 {
        self.inner.detector.borrow().boot_id()
    }
}

#[cfg(test)]
mod tests {
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

    fn detector(suspect_after_ms: u64, dead_after_ms: u64, indirect: usize) -> Detector {
        let options = Options::builder()
            .suspect_after_ms(suspect_after_ms)
            .dead_after_ms(dead_after_ms)
            .indirect_probe_count(indirect)
            .build()
            .unwrap();
        Detector::new(&options)
    }

    fn targets(plan: &RoundPlan) -> Vec<String> {
        plan.probes.iter().map(|probe| probe.target.id.to_string()).collect()
    }

    #[test]
    fn split_mix_is_fixed_and_in_bounds() {
        let mut rng = SplitMix64::new(0);
        // The first outputs of SplitMix64 seeded with 0, as published.
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        let mut counts = [0_u32; 3];
        for _ in 0..3_000 {
            counts[rng.below(3)] += 1;
        }
        assert!(counts.iter().all(|&count| count > 900), "{counts:?}");
        let mut items: Vec<u32> = (0..10).collect();
        rng.shuffle(&mut items);
        items.sort_unstable();
        assert_eq!(items, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn silent_peers_are_suspected_then_declared_dead() {
        let membership = view("a", &["b", "c"]);
        let mut detector = detector(3_000, 6_000, 2);
        let plan = detector.plan_round(1_000, &membership, 1);
        assert_eq!((plan.suspect.len(), plan.dead.len()), (0, 0), "first sight counts as heard");
        assert_eq!(targets(&plan).len(), 2);
        // Rounds come every heartbeat interval (1 s); a longer gap would be this
        // node's own pause (see `own_pause_is_forgiven`).
        detector.plan_round(2_000, &membership, 2);
        detector.plan_round(3_000, &membership, 2);
        detector.note_heard(&id("b"), 3_500);
        let plan = detector.plan_round(4_001, &membership, 2);
        assert_eq!(plan.suspect, [id("c")]);
        assert!(plan.dead.is_empty());
        detector.plan_round(5_000, &membership, 3);
        detector.plan_round(6_000, &membership, 3);
        let plan = detector.plan_round(7_001, &membership, 3);
        assert_eq!(plan.dead, [id("c")]);
        assert_eq!(plan.suspect, [id("b")]);
        assert_eq!(targets(&plan), ["b"], "a peer declared dead is not probed");
    }

    #[test]
    fn own_pause_is_forgiven() {
        let membership = view("a", &["b", "c"]);
        let mut detector = detector(3_000, 6_000, 2);
        detector.plan_round(1_000, &membership, 1);
        detector.note_heard(&id("b"), 1_500);
        // Frozen for 10 s: everyone is silent because this node was, so nobody is
        // declared dead on waking up; silence after the pause still counts.
        let plan = detector.plan_round(11_000, &membership, 2);
        assert!(plan.dead.is_empty() && plan.suspect.is_empty(), "{plan:?}");
        detector.plan_round(12_000, &membership, 3);
        detector.plan_round(13_000, &membership, 3);
        let plan = detector.plan_round(14_100, &membership, 3);
        assert_eq!(plan.suspect.len(), 2, "silent for 3 s after the pause: {plan:?}");
    }

    #[test]
    fn zero_timeouts_never_suspect() {
        let membership = view("a", &["b"]);
        let mut detector = detector(0, 0, 0);
        detector.plan_round(0, &membership, 0);
        let plan = detector.plan_round(u64::MAX / 2, &membership, 0);
        assert!(plan.suspect.is_empty() && plan.dead.is_empty());
        assert!(plan.probes[0].relays.is_empty(), "indirect probes are off");
    }

    #[test]
    fn dead_members_are_pruned_not_probed() {
        let mut membership = view("a", &["b", "c"]);
        membership.mark(&id("c"), NodeState::Dead, 0).unwrap();
        let mut detector = detector(3_000, 6_000, 2);
        let plan = detector.plan_round(10, &membership, 0);
        assert_eq!(plan.prune, [id("c")]);
        assert_eq!(targets(&plan), ["b"]);
        assert!(plan.probes[0].relays.is_empty(), "a dead member is no relay");
    }

    #[test]
    fn relays_are_alive_and_neither_local_nor_target() {
        let mut membership = view("a", &["b", "c", "d", "e"]);
        membership.mark(&id("e"), NodeState::Suspect, 0).unwrap();
        let mut detector = detector(3_000, 6_000, 8);
        for random in 0..20 {
            let plan = detector.plan_round(10, &membership, random);
            for probe in &plan.probes {
                let relays: Vec<&str> = probe.relays.iter().map(|r| r.id.as_str()).collect();
                assert!(!relays.contains(&"a") && !relays.contains(&"e"), "{relays:?}");
                assert!(!relays.contains(&probe.target.id.as_str()));
                assert_eq!(relays.len(), if probe.target.id == id("e") { 3 } else { 2 });
            }
        }
    }

    #[test]
    fn large_views_are_probed_round_robin() {
        let names: Vec<String> = (0..40).map(|index| format!("n{index:02}")).collect();
        let peers: Vec<&str> = names.iter().map(String::as_str).collect();
        let membership = view("local", &peers);
        let mut detector = detector(0, 0, 2);
        let mut seen = std::collections::BTreeSet::new();
        for round in 0..3 {
            let plan = detector.plan_round(round, &membership, round);
            assert_eq!(plan.probes.len(), PROBE_COUNT_PER_ROUND_MAX);
            seen.extend(targets(&plan));
        }
        assert_eq!(seen.len(), 40, "three rounds of 16 cover 40 peers");
    }

    #[test]
    fn a_new_boot_id_is_a_restart() {
        let mut detector = detector(3_000, 6_000, 2);
        assert!(!detector.note_ack(&id("b"), 7, 1), "the first boot id seen is no restart");
        assert!(!detector.note_ack(&id("b"), 7, 2));
        assert!(detector.note_ack(&id("b"), 8, 3));
        assert_eq!(detector.peers[&id("b")].heard_ms, 3);
        detector.note_heard(&id("b"), 1);
        assert_eq!(detector.peers[&id("b")].heard_ms, 3, "heard never goes back");
    }
}
