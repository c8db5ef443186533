//! [`Membership`]: one node's view of the cluster's members.
//!
//! Every node owns its own view; views meet through gossip ([`Membership::merge`]),
//! never through shared state (the reference's test harness shares one membership
//! between all nodes, which hides every divergence).
//!
//! Mutations return a [`MembershipChange`] when something really changed, instead of
//! calling observers: the caller rebuilds the ring when
//! [`MembershipChange::ring_changed`] says so, counts metrics and publishes events.
//!
//! Merging follows the reference's gossip (§2.12): an entry replaces what a node knows
//! only with a higher incarnation, and a node that hears itself suspected or dead
//! refutes with a higher incarnation. Unlike the reference, a removed node leaves a
//! [`Removal`] with its incarnation, so a stale member list cannot bring it back; only
//! a newer incarnation (the node itself refuting or restarting) can.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::Error;
use crate::node_id::NodeId;
use crate::ring::RING_NODE_COUNT_MAX;

/// The most members one view holds: every member may be on the ring.
pub const MEMBER_COUNT_MAX: usize = RING_NODE_COUNT_MAX;
/// The most removals one view remembers; past it, the oldest is forgotten.
pub const REMOVAL_COUNT_MAX: usize = MEMBER_COUNT_MAX;

/// A member's liveness as this node sees it.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeState {
    /// Answering.
    Alive,
    /// Missed a heartbeat; still on the ring.
    Suspect,
    /// Declared dead; off the ring.
    Dead,
}

impl NodeState {
    /// The wire name: `"alive"`, `"suspect"` or `"dead"`.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Alive => "alive",
            NodeState::Suspect => "suspect",
            NodeState::Dead => "dead",
        }
    }

    /// Whether a member in this state owns keys: dead members are off the ring,
    /// suspect ones keep their keys (as in the reference).
    pub fn is_on_ring(self) -> bool {
        self != NodeState::Dead
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One member of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The node's id.
    pub id: NodeId,
    /// Where to reach it; opaque to the cache.
    pub address: String,
    /// Its liveness.
    pub state: NodeState,
    /// Its incarnation: a newer incarnation's news replaces an older one's.
    pub incarnation: u64,
    /// When this node last heard from or about it, in the caller's clock.
    pub last_seen_ms: u64,
}

impl Member {
    /// A new alive member at incarnation 1, as the reference's `NewNode`.
    pub fn new(id: NodeId, address: impl Into<String>) -> Member {
        Member {
            id,
            address: address.into(),
            state: NodeState::Alive,
            incarnation: 1,
            last_seen_ms: 0,
        }
    }

    /// The member as a gossip entry.
    pub fn to_gossip(&self) -> GossipEntry {
        GossipEntry {
            id: self.id.clone(),
            address: self.address.clone(),
            state: self.state,
            incarnation: self.incarnation,
        }
    }
}

/// What a node gossips about one member.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GossipEntry {
    /// The member's id.
    pub id: NodeId,
    /// Its address.
    pub address: String,
    /// Its state as the sender sees it.
    pub state: NodeState,
    /// Its incarnation as the sender knows it.
    pub incarnation: u64,
}

/// A member this node removed: remembered so that stale news cannot re-add it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removal {
    /// The member's address when removed.
    pub address: String,
    /// Its incarnation when removed; only news with a higher one re-adds it.
    pub incarnation: u64,
    /// When it was removed, in the caller's clock.
    pub removed_at_ms: u64,
}

/// What kind of change happened to a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// It was added.
    Joined,
    /// Its state changed.
    StateChanged {
        /// The state before.
        from: NodeState,
    },
    /// Its address or incarnation changed, not its state.
    Updated,
    /// The local node refuted a suspicion of itself.
    Refuted,
    /// It was removed.
    Removed,
}

/// A change to a member, returned by the mutation that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembershipChange {
    /// The member.
    pub node: NodeId,
    /// What happened.
    pub kind: ChangeKind,
    /// Its state after the change ([`NodeState::Dead`] when removed).
    pub state: NodeState,
    /// Its incarnation after the change.
    pub incarnation: u64,
    /// The membership version after the change.
    pub version: u64,
    /// Whether the set of ring nodes changed: the caller must rebuild its ring.
    pub ring_changed: bool,
}

/// How many members are in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemberCounts {
    /// Alive members, the local node included.
    pub alive: usize,
    /// Suspect members.
    pub suspect: usize,
    /// Dead members not yet removed.
    pub dead: usize,
}

/// One node's view of the cluster: its members, its removals and a version that
/// counts real changes.
#[derive(Clone, Debug)]
pub struct Membership {
    local: NodeId,
    members: BTreeMap<NodeId, Member>,
    removals: BTreeMap<NodeId, Removal>,
    version: u64,
}

impl Membership {
    /// A view that holds only the local node, alive.
    ///
    /// # Panics
    ///
    /// When `local` is not alive.
    pub fn new(mut local: Member, now_ms: u64) -> Membership {
        assert_eq!(local.state, NodeState::Alive, "the local node starts alive");
        local.last_seen_ms = now_ms;
        let id = local.id.clone();
        let members = BTreeMap::from([(id.clone(), local)]);
        Membership { local: id, members, removals: BTreeMap::new(), version: 1 }
    }

    /// The local node's id.
    pub fn local_id(&self) -> &NodeId {
        &self.local
    }

    /// The local node.
    pub fn local(&self) -> &Member {
        self.members.get(&self.local).expect("the local node is never removed")
    }

    /// The version: bumped by every real change, never by a no-op.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The member with this id.
    pub fn get(&self, id: &NodeId) -> Option<&Member> {
        self.members.get(id)
    }

    /// Every member, in id order.
    pub fn members(&self) -> impl ExactSizeIterator<Item = &Member> + '_ {
        self.members.values()
    }

    /// How many members, the local node included.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always false: the local node is a member.
    pub fn is_empty(&self) -> bool {
        assert!(!self.members.is_empty());
        false
    }

    /// The ids the ring is built from: every member that is not dead, in id order.
    pub fn ring_nodes(&self) -> impl Iterator<Item = &NodeId> + '_ {
        self.members.values().filter(|member| member.state.is_on_ring()).map(|member| &member.id)
    }

    /// How many members are in each state.
    pub fn counts(&self) -> MemberCounts {
        let mut counts = MemberCounts::default();
        for member in self.members.values() {
            match member.state {
                NodeState::Alive => counts.alive += 1,
                NodeState::Suspect => counts.suspect += 1,
                NodeState::Dead => counts.dead += 1,
            }
        }
        assert_eq!(counts.alive + counts.suspect + counts.dead, self.members.len());
        counts
    }

    /// The removal recorded for `id`, if any.
    pub fn removal(&self, id: &NodeId) -> Option<&Removal> {
        self.removals.get(id)
    }

    /// What to gossip: every member, then every removal as a dead entry (so that a
    /// restarted node learns that it was removed and can refute past it).
    pub fn gossip_entries(&self) -> impl Iterator<Item = GossipEntry> + '_ {
        let members = self.members.values().map(Member::to_gossip);
        let removals = self.removals.iter().map(|(id, removal)| GossipEntry {
            id: id.clone(),
            address: removal.address.clone(),
            state: NodeState::Dead,
            incarnation: removal.incarnation,
        });
        members.chain(removals)
    }

    /// Adds `member` or replaces what is known of it, as an operator or a seed list
    /// would: this forgets a removal of it, whatever the incarnation. A member equal to
    /// the one held (address, state and incarnation) only refreshes `last_seen_ms`.
    ///
    /// # Errors
    ///
    /// [`Error::MembershipFull`] when the member is new and the view holds
    /// [`MEMBER_COUNT_MAX`] members.
    ///
    /// # Panics
    ///
    /// When `member` is the local node and not alive.
    pub fn upsert(
        &mut self,
        mut member: Member,
        now_ms: u64,
    ) -> Result<Option<MembershipChange>, Error> {
        if member.id == self.local {
            assert_eq!(member.state, NodeState::Alive, "the local node cannot be marked down");
        }
        member.last_seen_ms = now_ms;
        let Some(held) = self.members.get_mut(&member.id) else {
            self.removals.remove(&member.id);
            return self.insert(member).map(Some);
        };
        let before = held.clone();
        *held = member;
        if before.address == held.address
            && before.state == held.state
            && before.incarnation == held.incarnation
        {
            return Ok(None);
        }
        Ok(Some(self.changed(&before)))
    }

    /// Sets a member's state. The same state only refreshes `last_seen_ms`; a new state
    /// also bumps its incarnation (as the reference does, so that the news wins over
    /// older gossip) and the version.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownNode`] when no member has this id.
    ///
    /// # Panics
    ///
    /// When `id` is the local node and `state` is not alive.
    pub fn mark(
        &mut self,
        id: &NodeId,
        state: NodeState,
        now_ms: u64,
    ) -> Result<Option<MembershipChange>, Error> {
        if *id == self.local {
            assert_eq!(state, NodeState::Alive, "the local node cannot be marked down");
        }
        let held =
            self.members.get_mut(id).ok_or_else(|| Error::UnknownNode { node: id.clone() })?;
        held.last_seen_ms = now_ms;
        if held.state == state {
            return Ok(None);
        }
        let before = held.clone();
        held.state = state;
        held.incarnation = incarnation_next(held.incarnation);
        Ok(Some(self.changed(&before)))
    }

    /// Declares the local node alive with a new incarnation, so that the news beats any
    /// suspicion of it. Always a change.
    pub fn refute(&mut self, now_ms: u64) -> MembershipChange {
        let local = self.members.get_mut(&self.local).expect("the local node is never removed");
        local.incarnation = incarnation_next(local.incarnation);
        local.state = NodeState::Alive;
        local.last_seen_ms = now_ms;
        let incarnation = local.incarnation;
        self.version += 1;
        let change = MembershipChange {
            node: self.local.clone(),
            kind: ChangeKind::Refuted,
            state: NodeState::Alive,
            incarnation,
            version: self.version,
            ring_changed: false,
        };
        assert_eq!(self.local().incarnation, incarnation);
        change
    }

    /// Removes a member and remembers the removal with its incarnation.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownNode`] when no member has this id.
    ///
    /// # Panics
    ///
    /// When `id` is the local node.
    pub fn remove(&mut self, id: &NodeId, now_ms: u64) -> Result<MembershipChange, Error> {
        assert_ne!(*id, self.local, "the local node cannot be removed");
        let member =
            self.members.remove(id).ok_or_else(|| Error::UnknownNode { node: id.clone() })?;
        let removal = Removal {
            address: member.address,
            incarnation: member.incarnation,
            removed_at_ms: now_ms,
        };
        self.remember_removal(id, removal);
        self.version += 1;
        Ok(MembershipChange {
            node: id.clone(),
            kind: ChangeKind::Removed,
            state: NodeState::Dead,
            incarnation: member.incarnation,
            version: self.version,
            ring_changed: member.state.is_on_ring(),
        })
    }

    /// Merges one gossip entry (§2.12):
    ///
    /// - about the local node: a suspect or dead claim at an incarnation at least ours
    ///   is refuted with a higher incarnation; anything else is ignored;
    /// - about a member: taken only with a higher incarnation;
    /// - about a removed node: ignored unless its incarnation is higher than at removal;
    /// - about an unknown node: added, or remembered as a removal when it is dead.
    ///
    /// # Errors
    ///
    /// [`Error::MembershipFull`] when the entry would add a member to a full view.
    pub fn merge(
        &mut self,
        entry: &GossipEntry,
        now_ms: u64,
    ) -> Result<Option<MembershipChange>, Error> {
        if entry.id == self.local {
            return Ok(self.merge_local(entry, now_ms));
        }
        if let Some(held) = self.members.get_mut(&entry.id) {
            if entry.incarnation <= held.incarnation {
                return Ok(None);
            }
            let before = held.clone();
            held.address.clone_from(&entry.address);
            held.state = entry.state;
            held.incarnation = entry.incarnation;
            held.last_seen_ms = now_ms;
            return Ok(Some(self.changed(&before)));
        }
        if let Some(removal) = self.removals.get(&entry.id)
            && (entry.incarnation <= removal.incarnation || entry.state != NodeState::Alive)
        {
            // Stale news of a removed node: no resurrection. Only word that it is alive
            // brings it back (its own refutation, or a fresh ack relayed); a suspicion
            // raised elsewhere, however late and whatever its incarnation, is older
            // news than the removal (swarm 6192 found a crashed node put back on a ring
            // by a late suspicion).
            return Ok(None);
        }
        if entry.state == NodeState::Dead {
            let removal = Removal {
                address: entry.address.clone(),
                incarnation: entry.incarnation,
                removed_at_ms: now_ms,
            };
            self.remember_removal(&entry.id, removal);
            return Ok(None);
        }
        self.removals.remove(&entry.id);
        let member = Member {
            id: entry.id.clone(),
            address: entry.address.clone(),
            state: entry.state,
            incarnation: entry.incarnation,
            last_seen_ms: now_ms,
        };
        self.insert(member).map(Some)
    }

    /// Forgets removals older than `ttl_ms`; returns how many. After this, stale news
    /// of those nodes can re-add them.
    ///
    /// # Panics
    ///
    /// When `ttl_ms` is 0 (that would forget every removal at once).
    pub fn sweep_removals(&mut self, now_ms: u64, ttl_ms: u64) -> usize {
        assert!(ttl_ms > 0);
        let count_before = self.removals.len();
        self.removals.retain(|_, removal| now_ms.saturating_sub(removal.removed_at_ms) < ttl_ms);
        count_before - self.removals.len()
    }

    fn merge_local(&mut self, entry: &GossipEntry, now_ms: u64) -> Option<MembershipChange> {
        let local = self.members.get_mut(&self.local).expect("the local node is never removed");
        if entry.state == NodeState::Alive || entry.incarnation < local.incarnation {
            return None;
        }
        // Refute above the claim, not just above our own incarnation: the claim may
        // carry an incarnation that another node bumped when it marked us.
        local.incarnation = entry.incarnation;
        let change = self.refute(now_ms);
        assert!(change.incarnation > entry.incarnation);
        Some(change)
    }

    fn insert(&mut self, member: Member) -> Result<MembershipChange, Error> {
        assert!(!self.members.contains_key(&member.id));
        if self.members.len() >= MEMBER_COUNT_MAX {
            return Err(Error::MembershipFull { member_count_max: MEMBER_COUNT_MAX });
        }
        self.version += 1;
        let change = MembershipChange {
            node: member.id.clone(),
            kind: ChangeKind::Joined,
            state: member.state,
            incarnation: member.incarnation,
            version: self.version,
            ring_changed: member.state.is_on_ring(),
        };
        self.members.insert(member.id.clone(), member);
        Ok(change)
    }

    /// Bumps the version for a member that changed from `before`.
    fn changed(&mut self, before: &Member) -> MembershipChange {
        let after = self.members.get(&before.id).expect("a changed member is held");
        assert!(after != before || after.last_seen_ms != before.last_seen_ms);
        let kind = if after.state == before.state {
            ChangeKind::Updated
        } else {
            ChangeKind::StateChanged { from: before.state }
        };
        let change = MembershipChange {
            node: after.id.clone(),
            kind,
            state: after.state,
            incarnation: after.incarnation,
            version: self.version + 1,
            ring_changed: after.state.is_on_ring() != before.state.is_on_ring(),
        };
        self.version += 1;
        change
    }

    fn remember_removal(&mut self, id: &NodeId, removal: Removal) {
        if let Some(held) = self.removals.get_mut(id) {
            if removal.incarnation > held.incarnation {
                *held = removal;
            }
            return;
        }
        if self.removals.len() >= REMOVAL_COUNT_MAX {
            // Forget the oldest removal (ties by id, so every run forgets the same one).
            let oldest = self
                .removals
                .iter()
                .min_by_key(|(id, removal)| (removal.removed_at_ms, (*id).clone()))
                .map(|(id, _)| id.clone())
                .expect("the removals are full, so not empty");
            self.removals.remove(&oldest);
        }
        self.removals.insert(id.clone(), removal);
        assert!(self.removals.len() <= REMOVAL_COUNT_MAX);
    }
}

/// The next incarnation.
///
/// # Panics
///
/// On overflow, which only a corrupt peer could cause.
fn incarnation_next(incarnation: u64) -> u64 {
    incarnation.checked_add(1).expect("incarnation overflowed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::Ring;

    fn id(name: &str) -> NodeId {
        NodeId::new(name).unwrap()
    }

    fn view(local: &str) -> Membership {
        Membership::new(Member::new(id(local), format!("{local}:7946")), 0)
    }

    fn entry(name: &str, state: NodeState, incarnation: u64) -> GossipEntry {
        GossipEntry { id: id(name), address: format!("{name}:7946"), state, incarnation }
    }

    fn names(ids: impl Iterator<Item = NodeId>) -> Vec<String> {
        ids.map(|id| id.to_string()).collect()
    }

    #[test]
    fn new_view_holds_the_local_node() {
        let view = view("a");
        assert_eq!(view.version(), 1);
        assert_eq!(view.local().state, NodeState::Alive);
        assert_eq!(view.local().incarnation, 1);
        assert_eq!(names(view.ring_nodes().cloned()), ["a"]);
        assert_eq!(view.counts(), MemberCounts { alive: 1, suspect: 0, dead: 0 });
    }

    #[test]
    fn upsert_adds_then_ignores_an_identical_member() {
        let mut view = view("a");
        let change = view.upsert(Member::new(id("b"), "b:1"), 10).unwrap().unwrap();
        assert_eq!(change.kind, ChangeKind::Joined);
        assert!(change.ring_changed);
        assert_eq!(change.version, 2);
        assert_eq!(view.version(), 2);
        // The same member again: only last_seen moves.
        assert_eq!(view.upsert(Member::new(id("b"), "b:1"), 20).unwrap(), None);
        assert_eq!(view.version(), 2);
        assert_eq!(view.get(&id("b")).unwrap().last_seen_ms, 20);
        // A new address is a real change, but not of the ring.
        let change = view.upsert(Member::new(id("b"), "b:2"), 30).unwrap().unwrap();
        assert_eq!(change.kind, ChangeKind::Updated);
        assert!(!change.ring_changed);
        assert_eq!(view.version(), 3);
    }

    #[test]
    fn mark_same_state_is_a_no_op_except_last_seen() {
        let mut view = view("a");
        view.upsert(Member::new(id("b"), "b:1"), 0).unwrap();
        let version = view.version();
        assert_eq!(view.mark(&id("b"), NodeState::Alive, 50).unwrap(), None);
        let b = view.get(&id("b")).unwrap();
        assert_eq!((b.incarnation, b.last_seen_ms, view.version()), (1, 50, version));
    }

    #[test]
    fn mark_transition_bumps_incarnation_and_version() {
        let mut view = view("a");
        view.upsert(Member::new(id("b"), "b:1"), 0).unwrap();
        let change = view.mark(&id("b"), NodeState::Suspect, 5).unwrap().unwrap();
        assert_eq!(change.kind, ChangeKind::StateChanged { from: NodeState::Alive });
        assert_eq!(change.incarnation, 2);
        assert!(!change.ring_changed, "suspect nodes keep their keys");
        let change = view.mark(&id("b"), NodeState::Dead, 6).unwrap().unwrap();
        assert!(change.ring_changed);
        assert_eq!(names(view.ring_nodes().cloned()), ["a"]);
        let change = view.mark(&id("b"), NodeState::Alive, 7).unwrap().unwrap();
        assert!(change.ring_changed);
        assert_eq!(change.incarnation, 4);
        assert_eq!(view.version(), 5);
    }

    #[test]
    fn mark_and_remove_unknown_nodes_fail() {
        let mut view = view("a");
        let unknown = Error::UnknownNode { node: id("zz") };
        assert_eq!(view.mark(&id("zz"), NodeState::Dead, 0), Err(unknown.clone()));
        assert_eq!(view.remove(&id("zz"), 0), Err(unknown));
        assert_eq!(view.version(), 1);
    }

    #[test]
    fn refute_always_bumps() {
        let mut view = view("a");
        let first = view.refute(1);
        let second = view.refute(2);
        assert_eq!((first.incarnation, second.incarnation), (2, 3));
        assert_eq!((first.version, second.version), (2, 3));
        assert_eq!(second.kind, ChangeKind::Refuted);
    }

    #[test]
    fn only_word_that_it_is_alive_brings_a_removed_node_back() {
        let mut view = view("a");
        view.upsert(Member::new(id("b"), "b:1"), 0).unwrap();
        let _ = view.remove(&id("b"), 9).unwrap();
        // A late suspicion from elsewhere, with a higher incarnation: still old news.
        assert_eq!(view.merge(&entry("b", NodeState::Suspect, 7), 10).unwrap(), None);
        assert_eq!(view.get(&id("b")), None);
        assert_eq!(view.merge(&entry("b", NodeState::Alive, 1), 11).unwrap(), None);
        let back = view.merge(&entry("b", NodeState::Alive, 8), 12).unwrap().unwrap();
        assert_eq!((back.node.clone(), back.state), (id("b"), NodeState::Alive));
    }

    #[test]
    fn remove_leaves_a_removal() {
        let mut view = view("a");
        view.upsert(Member::new(id("b"), "b:1"), 0).unwrap();
        view.mark(&id("b"), NodeState::Suspect, 1).unwrap();
        let change = view.remove(&id("b"), 9).unwrap();
        assert_eq!(change.kind, ChangeKind::Removed);
        assert!(change.ring_changed);
        assert_eq!(view.get(&id("b")), None);
        let removal = view.removal(&id("b")).unwrap();
        assert_eq!((removal.incarnation, removal.removed_at_ms), (2, 9));
    }

    #[test]
    fn merge_takes_only_higher_incarnations() {
        let mut view = view("a");
        view.merge(&entry("b", NodeState::Alive, 3), 0).unwrap().unwrap();
        assert_eq!(view.merge(&entry("b", NodeState::Suspect, 3), 1).unwrap(), None);
        assert_eq!(view.merge(&entry("b", NodeState::Dead, 2), 1).unwrap(), None);
        let change = view.merge(&entry("b", NodeState::Suspect, 4), 2).unwrap().unwrap();
        assert_eq!(change.kind, ChangeKind::StateChanged { from: NodeState::Alive });
        assert_eq!(view.get(&id("b")).unwrap().incarnation, 4);
    }

    #[test]
    fn merge_refutes_a_suspicion_of_the_local_node() {
        let mut view = view("a");
        // Another node marked us suspect and bumped our incarnation to 5.
        let change = view.merge(&entry("a", NodeState::Suspect, 5), 1).unwrap().unwrap();
        assert_eq!(change.kind, ChangeKind::Refuted);
        assert_eq!(change.incarnation, 6);
        assert_eq!(view.local().state, NodeState::Alive);
        // An older claim, or an alive one, changes nothing.
        assert_eq!(view.merge(&entry("a", NodeState::Dead, 5), 2).unwrap(), None);
        assert_eq!(view.merge(&entry("a", NodeState::Alive, 9), 2).unwrap(), None);
        assert_eq!(view.local().incarnation, 6);
    }

    #[test]
    fn stale_list_does_not_resurrect_a_removed_node() {
        let mut view = view("a");
        view.merge(&entry("b", NodeState::Alive, 1), 0).unwrap();
        view.remove(&id("b"), 10).unwrap();
        let version = view.version();
        // The reference re-adds b here (§2.12); the removal's incarnation stops it.
        assert_eq!(view.merge(&entry("b", NodeState::Alive, 1), 11).unwrap(), None);
        assert_eq!(view.get(&id("b")), None);
        assert_eq!(view.version(), version);
        // b itself refutes past its removal: it rejoins.
        let change = view.merge(&entry("b", NodeState::Alive, 2), 12).unwrap().unwrap();
        assert_eq!(change.kind, ChangeKind::Joined);
        assert_eq!(view.removal(&id("b")), None);
    }

    #[test]
    fn unknown_dead_entry_is_remembered_not_added() {
        let mut view = view("a");
        assert_eq!(view.merge(&entry("ghost", NodeState::Dead, 4), 3).unwrap(), None);
        assert_eq!(view.get(&id("ghost")), None);
        assert_eq!(view.removal(&id("ghost")).unwrap().incarnation, 4);
        assert_eq!(view.merge(&entry("ghost", NodeState::Alive, 4), 4).unwrap(), None);
    }

    #[test]
    fn restarted_node_learns_of_its_removal_and_rejoins() {
        let mut a = view("a");
        a.merge(&entry("b", NodeState::Alive, 1), 0).unwrap();
        a.mark(&id("b"), NodeState::Suspect, 1).unwrap();
        a.remove(&id("b"), 2).unwrap();
        // b restarts at incarnation 1; a ignores it until b refutes past the removal.
        let mut b = view("b");
        assert_eq!(a.merge(&b.local().to_gossip(), 3).unwrap(), None);
        for gossip in a.gossip_entries().collect::<Vec<_>>() {
            b.merge(&gossip, 3).unwrap();
        }
        assert_eq!(b.local().incarnation, 3);
        let change = a.merge(&b.local().to_gossip(), 4).unwrap().unwrap();
        assert_eq!(change.kind, ChangeKind::Joined);
        assert_eq!(names(a.ring_nodes().cloned()), ["a", "b"]);
    }

    #[test]
    fn gossip_spreads_a_suspicion_and_its_refutation() {
        let mut views = [view("a"), view("b"), view("c")];
        for from in 0..3 {
            for to in 0..3 {
                let entries: Vec<_> = views[from].gossip_entries().collect();
                entries.iter().for_each(|e| drop(views[to].merge(e, 0).unwrap()));
            }
        }
        views[0].mark(&id("c"), NodeState::Suspect, 1).unwrap();
        // a → b → c → {a, b}: everyone ends with c alive at a higher incarnation.
        for (from, to) in [(0, 1), (1, 2), (2, 0), (2, 1)] {
            let entries: Vec<_> = views[from].gossip_entries().collect();
            entries.iter().for_each(|e| drop(views[to].merge(e, 2).unwrap()));
        }
        for view in &views {
            let c = view.get(&id("c")).unwrap();
            assert_eq!((c.state, c.incarnation), (NodeState::Alive, 3), "{}", view.local_id());
        }
    }

    #[test]
    fn ring_is_rebuilt_from_live_members() {
        let mut view = view("a");
        for name in ["b", "c"] {
            view.upsert(Member::new(id(name), name), 0).unwrap();
        }
        let change = view.mark(&id("c"), NodeState::Dead, 1).unwrap().unwrap();
        assert!(change.ring_changed);
        let mut ring = Ring::new(3, 8);
        ring.rebuild(view.ring_nodes());
        assert_eq!(ring.nodes(), [id("a"), id("b")].as_slice());
        assert_eq!(view.counts(), MemberCounts { alive: 2, suspect: 0, dead: 1 });
    }

    #[test]
    fn membership_is_bounded() {
        let mut view = view("a");
        for index in 1..MEMBER_COUNT_MAX {
            view.upsert(Member::new(id(&format!("n{index}")), ""), 0).unwrap();
        }
        assert_eq!(view.len(), MEMBER_COUNT_MAX);
        let full = Error::MembershipFull { member_count_max: MEMBER_COUNT_MAX };
        assert_eq!(view.upsert(Member::new(id("one-more"), ""), 0), Err(full.clone()));
        assert_eq!(view.merge(&entry("one-more", NodeState::Alive, 1), 0), Err(full));
    }

    #[test]
    fn removals_are_bounded_and_swept() {
        let mut view = view("a");
        for index in 0..=REMOVAL_COUNT_MAX {
            let name = format!("gone{index:04}");
            view.merge(&entry(&name, NodeState::Dead, 1), u64::try_from(index).unwrap()).unwrap();
        }
        assert_eq!(view.removals.len(), REMOVAL_COUNT_MAX);
        assert_eq!(view.removal(&id("gone0000")), None, "the oldest is forgotten");
        // Removed at 1..=500 are at least 500 ms old at 1000 (0 was already forgotten).
        assert_eq!(view.sweep_removals(1_000, 500), 500);
        assert_eq!(view.removals.len(), REMOVAL_COUNT_MAX - 500);
    }

    #[test]
    #[should_panic(expected = "the local node cannot be removed")]
    fn removing_the_local_node_panics() {
        let mut view = view("a");
        let _ = view.remove(&id("a"), 0);
    }
}
