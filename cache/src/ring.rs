//! [`Ring`]: the consistent-hash ring that maps a key to its owners.
//!
//! Each node gets `vnode_count_per_node` points on a 64-bit circle, at
//! `xxh64(node id ++ vnode index as u32 little-endian)`. A key hashes to
//! `xxh64(key)`; its owners are the first distinct nodes met walking clockwise from
//! there, primary first, up to the replication factor.
//!
//! The reference encodes the vnode index in one byte, so vnode 256 lands on vnode 0
//! (§2.22 item 10); the four-byte index here has no wrap-around up to
//! [`VNODE_COUNT_PER_NODE_MAX`].

use std::fmt;

use xxhash_rust::xxh64::{Xxh64, xxh64};

use crate::node_id::NodeId;

/// The largest replication factor: the capacity of [`Owners`].
pub const REPLICATION_FACTOR_MAX: usize = 7;
/// The most vnodes one node may have.
pub const VNODE_COUNT_PER_NODE_MAX: usize = 1024;
/// The most nodes a ring may hold.
pub const RING_NODE_COUNT_MAX: usize = 1024;

/// The seed of every hash on the ring. Placement must agree across nodes and builds,
/// so it is a constant, never random.
const HASH_SEED: u64 = 0;

// Owners keep ring node indices as u16 and their count as u8.
const _: () = assert!(RING_NODE_COUNT_MAX <= u16::MAX as usize + 1);
const _: () = assert!(REPLICATION_FACTOR_MAX <= u8::MAX as usize);
// The vnode index is hashed as a u32.
const _: () = assert!(VNODE_COUNT_PER_NODE_MAX <= u32::MAX as usize);

/// The consistent-hash ring of one node's view of the cluster.
///
/// The ring only holds the nodes it was last [rebuilt](Ring::rebuild) from; the caller
/// rebuilds it from the live (not dead) members whenever membership reports a change
/// that affects the ring.
#[derive(Clone)]
pub struct Ring {
    replication_factor: usize,
    vnode_count_per_node: usize,
    /// Sorted and distinct; vnodes refer to nodes by index in this list.
    nodes: Vec<NodeId>,
    /// Sorted ascending; parallel to `vnode_nodes`. Kept apart so that the binary
    /// search touches only hashes.
    vnode_hashes: Vec<u64>,
    vnode_nodes: Vec<u16>,
}

impl Ring {
    /// An empty ring.
    ///
    /// # Panics
    ///
    /// When `replication_factor` is not in `1..=REPLICATION_FACTOR_MAX` or
    /// `vnode_count_per_node` not in `1..=VNODE_COUNT_PER_NODE_MAX`; [`crate::Options`]
    /// validates both.
    pub fn new(replication_factor: usize, vnode_count_per_node: usize) -> Ring {
        assert!(replication_factor >= 1);
        assert!(replication_factor <= REPLICATION_FACTOR_MAX);
        assert!(vnode_count_per_node >= 1);
        assert!(vnode_count_per_node <= VNODE_COUNT_PER_NODE_MAX);
        Ring {
            replication_factor,
            vnode_count_per_node,
            nodes: Vec::new(),
            vnode_hashes: Vec::new(),
            vnode_nodes: Vec::new(),
        }
    }

    /// Replaces the ring's nodes with `nodes` (in any order).
    ///
    /// # Panics
    ///
    /// When `nodes` holds an id twice or more than [`RING_NODE_COUNT_MAX`] ids.
    pub fn rebuild<'a>(&mut self, nodes: impl IntoIterator<Item = &'a NodeId>) {
        self.nodes.clear();
        self.nodes.extend(nodes.into_iter().cloned());
        self.nodes.sort_unstable();
        assert!(self.nodes.len() <= RING_NODE_COUNT_MAX, "ring holds too many nodes");
        assert!(self.nodes.windows(2).all(|pair| pair[0] < pair[1]), "ring node given twice");

        let vnode_count = self.nodes.len() * self.vnode_count_per_node;
        let mut vnodes: Vec<(u64, u16)> = Vec::with_capacity(vnode_count);
        for (node_index, node) in self.nodes.iter().enumerate() {
            let node_index = u16::try_from(node_index).expect("checked against the node limit");
            for vnode_index in 0..self.vnode_count_per_node {
                vnodes.push((vnode_hash(node, vnode_index), node_index));
            }
        }
        // Ties between equal hashes go to the smaller node id, so every node that
        // holds the same members builds the same ring.
        vnodes.sort_unstable();
        self.vnode_hashes.clear();
        self.vnode_nodes.clear();
        self.vnode_hashes.extend(vnodes.iter().map(|&(hash, _)| hash));
        self.vnode_nodes.extend(vnodes.iter().map(|&(_, node)| node));
        assert_eq!(self.vnode_hashes.len(), vnode_count);
        assert!(self.vnode_hashes.is_sorted());
    }

    /// The owners of `key`: distinct nodes, primary first, as many as the replication
    /// factor (fewer when the ring has fewer nodes, none when it is empty).
    ///
    /// Does not allocate.
    pub fn lookup(&self, key: &str) -> Owners<'_> {
        self.lookup_hash(key_hash(key))
    }

    /// The owners of the key whose hash is `hash` (see [`key_hash`]).
    pub fn lookup_hash(&self, hash: u64) -> Owners<'_> {
        if self.vnode_hashes.is_empty() {
            assert!(self.nodes.is_empty());
            return Owners::empty(&self.nodes);
        }
        self.lookup_from(self.vnode_at_or_after(hash))
    }

    /// Whether `node` owns `key` (as primary or replica).
    pub fn is_owner(&self, key: &str, node: &NodeId) -> bool {
        self.lookup(key).contains(node)
    }

    /// The first key of the form `{prefix}{i}`, for `i` in `0..candidate_count_max`,
    /// whose owners are exactly `desired`, in order; `None` if there is none.
    ///
    /// `desired` must name as many nodes as a lookup returns (the replication factor,
    /// or the node count when smaller) for any key to match, and some ordered lists
    /// cannot match on a given ring (no arc of the ring has those owners in that
    /// order): both return `None` at once, whatever `candidate_count_max`. Tests use
    /// this to place a key on chosen nodes; it allocates once per call, never per
    /// candidate.
    pub fn find_key_with_owners(
        &self,
        prefix: &str,
        desired: &[NodeId],
        candidate_count_max: u64,
    ) -> Option<String> {
        let wanted = self.desired_indices(desired)?;
        let owner_count = desired.len();
        // A key's owners are decided by the vnode its hash lands on: mark the vnodes
        // whose walk gives `desired`, then each candidate costs a hash and a search.
        let matches: Vec<bool> = (0..self.vnode_hashes.len())
            .map(|start| {
                self.vnode_nodes[start] == wanted[0]
                    && self.lookup_from(start).indices[..owner_count] == wanted[..owner_count]
            })
            .collect();
        if !matches.contains(&true) {
            return None;
        }
        let mut key = String::with_capacity(prefix.len() + DECIMAL_DIGITS_MAX);
        key.push_str(prefix);
        for candidate in 0..candidate_count_max {
            key.truncate(prefix.len());
            push_decimal(&mut key, candidate);
            if matches[self.vnode_at_or_after(key_hash(&key))] {
                assert!(self.lookup(&key) == *desired);
                return Some(key);
            }
        }
        None
    }

    /// The ring's nodes, sorted by id.
    pub fn nodes(&self) -> &[NodeId] {
        &self.nodes
    }

    /// Whether the ring has no node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The replication factor: how many owners a lookup returns at most.
    pub fn replication_factor(&self) -> usize {
        self.replication_factor
    }

    /// The number of vnodes each node gets.
    pub fn vnode_count_per_node(&self) -> usize {
        self.vnode_count_per_node
    }

    /// Every vnode as `(hash, node)`, in hash order: for debugging and ring dumps.
    pub fn vnodes(&self) -> impl ExactSizeIterator<Item = (u64, &NodeId)> + '_ {
        let nodes = &self.nodes;
        self.vnode_hashes
            .iter()
            .zip(&self.vnode_nodes)
            .map(move |(&hash, &node)| (hash, &nodes[usize::from(node)]))
    }

    /// The index of the first vnode whose hash is at least `hash`, wrapping to 0.
    fn vnode_at_or_after(&self, hash: u64) -> usize {
        assert!(!self.vnode_hashes.is_empty());
        let index = self.vnode_hashes.partition_point(|&vnode| vnode < hash);
        if index == self.vnode_hashes.len() { 0 } else { index }
    }

    /// Walks clockwise from vnode `start` collecting distinct nodes.
    fn lookup_from(&self, start: usize) -> Owners<'_> {
        let vnode_count = self.vnode_hashes.len();
        assert!(start < vnode_count);
        let owner_count = self.replication_factor.min(self.nodes.len());
        let mut owners = Owners::empty(&self.nodes);
        let mut index = start;
        // Every node has a vnode, so one lap always finds `owner_count` nodes.
        for _step in 0..vnode_count {
            let node = self.vnode_nodes[index];
            if !owners.indices[..owners.len()].contains(&node) {
                owners.push(node);
                if owners.len() == owner_count {
                    break;
                }
            }
            index += 1;
            if index == vnode_count {
                index = 0;
            }
        }
        assert_eq!(owners.len(), owner_count);
        owners
    }

    /// `desired` as ring node indices, or `None` when no lookup can return it.
    fn desired_indices(&self, desired: &[NodeId]) -> Option<[u16; REPLICATION_FACTOR_MAX]> {
        let owner_count = self.replication_factor.min(self.nodes.len());
        if desired.is_empty() || desired.len() != owner_count {
            return None;
        }
        let mut wanted = [0_u16; REPLICATION_FACTOR_MAX];
        for (slot, node) in desired.iter().enumerate() {
            let index = self.nodes.binary_search(node).ok()?;
            let index = u16::try_from(index).expect("checked against the node limit");
            if wanted[..slot].contains(&index) {
                return None; // Owners are distinct, so a repeated id never matches.
            }
            wanted[slot] = index;
        }
        Some(wanted)
    }
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("replication_factor", &self.replication_factor)
            .field("vnode_count_per_node", &self.vnode_count_per_node)
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

/// The position of `key` on the ring.
pub fn key_hash(key: &str) -> u64 {
    xxh64(key.as_bytes(), HASH_SEED)
}

/// The position of vnode `vnode_index` of `node`: the hash of the id's bytes followed
/// by the index as four little-endian bytes.
fn vnode_hash(node: &NodeId, vnode_index: usize) -> u64 {
    let vnode_index = u32::try_from(vnode_index).expect("checked against the vnode limit");
    let mut hasher = Xxh64::new(HASH_SEED);
    hasher.update(node.as_bytes());
    hasher.update(&vnode_index.to_le_bytes());
    hasher.digest()
}

/// The digits of `u64::MAX`.
const DECIMAL_DIGITS_MAX: usize = 20;

/// Appends `value` in decimal without going through `fmt` (this is the inner loop of
/// [`Ring::find_key_with_owners`]).
fn push_decimal(buffer: &mut String, mut value: u64) {
    let mut digits = [0_u8; DECIMAL_DIGITS_MAX];
    let mut start = DECIMAL_DIGITS_MAX;
    loop {
        start -= 1;
        digits[start] = b'0' + u8::try_from(value % 10).expect("a digit");
        value /= 10;
        if value == 0 {
            break;
        }
    }
    for &digit in &digits[start..] {
        buffer.push(char::from(digit));
    }
}

/// The owners of one key, primary first: a fixed-capacity list that borrows the ring's
/// node ids, so a lookup does not allocate. Use [`Owners::to_vec`] to keep it across a
/// ring rebuild.
#[derive(Clone, Copy)]
pub struct Owners<'ring> {
    nodes: &'ring [NodeId],
    indices: [u16; REPLICATION_FACTOR_MAX],
    count: u8,
}

impl<'ring> Owners<'ring> {
    fn empty(nodes: &'ring [NodeId]) -> Owners<'ring> {
        Owners { nodes, indices: [0; REPLICATION_FACTOR_MAX], count: 0 }
    }

    fn push(&mut self, node: u16) {
        assert!(self.len() < REPLICATION_FACTOR_MAX);
        assert!(usize::from(node) < self.nodes.len());
        self.indices[self.len()] = node;
        self.count += 1;
    }

    /// How many owners.
    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    /// Whether there is no owner (the ring is empty).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The primary: the first owner.
    pub fn primary(&self) -> Option<&'ring NodeId> {
        self.get(0)
    }

    /// The owner at `position` (0 is the primary).
    pub fn get(&self, position: usize) -> Option<&'ring NodeId> {
        let nodes = self.nodes;
        self.indices[..self.len()].get(position).map(|&index| &nodes[usize::from(index)])
    }

    /// The owners, primary first.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &'ring NodeId> + Clone + use<'ring> {
        let nodes = self.nodes;
        let indices = self.indices;
        (0..self.len()).map(move |position| &nodes[usize::from(indices[position])])
    }

    /// The owners after the primary.
    pub fn replicas(&self) -> impl Iterator<Item = &'ring NodeId> + Clone + use<'ring> {
        self.iter().skip(1)
    }

    /// Where `node` is among the owners (0 is the primary).
    pub fn position(&self, node: &NodeId) -> Option<usize> {
        self.iter().position(|owner| owner == node)
    }

    /// Whether `node` is an owner.
    pub fn contains(&self, node: &NodeId) -> bool {
        self.position(node).is_some()
    }

    /// The owners as owned ids.
    pub fn to_vec(&self) -> Vec<NodeId> {
        self.iter().cloned().collect()
    }
}

impl PartialEq<[NodeId]> for Owners<'_> {
    fn eq(&self, other: &[NodeId]) -> bool {
        self.iter().eq(other.iter())
    }
}

impl fmt::Debug for Owners<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn ids(names: &[&str]) -> Vec<NodeId> {
        names.iter().map(|name| NodeId::new(name).unwrap()).collect()
    }

    fn ring(replication_factor: usize, names: &[&str]) -> Ring {
        let mut ring = Ring::new(replication_factor, 64);
        ring.rebuild(&ids(names));
        ring
    }

    /// The ring's definition written the slow way: every vnode in a list, sorted,
    /// walked with allocation. The real lookup must agree with it.
    fn model_lookup(nodes: &[NodeId], vnodes: usize, rf: usize, key: &str) -> Vec<NodeId> {
        let mut points: Vec<(u64, NodeId)> = Vec::new();
        for node in nodes {
            for index in 0..vnodes {
                let mut bytes = node.as_bytes().to_vec();
                bytes.extend_from_slice(&u32::try_from(index).unwrap().to_le_bytes());
                points.push((xxh64(&bytes, 0), node.clone()));
            }
        }
        points.sort();
        let hash = xxh64(key.as_bytes(), 0);
        let start = points.iter().position(|(point, _)| *point >= hash).unwrap_or(0);
        let mut owners: Vec<NodeId> = Vec::new();
        for step in 0..points.len() {
            let node = &points[(start + step) % points.len()].1;
            if owners.len() < rf && !owners.contains(node) {
                owners.push(node.clone());
            }
        }
        owners
    }

    #[test]
    fn empty_ring_has_no_owners() {
        let ring = Ring::new(3, 64);
        assert!(ring.lookup("k").is_empty());
        assert_eq!(ring.lookup("k").primary(), None);
        assert_eq!(ring.find_key_with_owners("k", &ids(&["a"]), 100), None);
    }

    #[test]
    fn lookup_matches_the_model() {
        let nodes = ids(&["n1", "n2", "n3", "n4", "n5"]);
        for (rf, vnodes) in [(1, 1), (3, 64), (3, 300), (5, 8), (7, 16)] {
            let mut ring = Ring::new(rf, vnodes);
            ring.rebuild(&nodes);
            for i in 0..200 {
                let key = format!("key-{i}");
                let expected = model_lookup(&nodes, vnodes, rf, &key);
                assert_eq!(ring.lookup(&key).to_vec(), expected, "{key} rf {rf} vn {vnodes}");
            }
        }
    }

    #[test]
    fn owners_are_distinct_primary_first_and_capped() {
        let ring = ring(3, &["n1", "n2", "n3", "n4", "n5"]);
        for i in 0..1_000 {
            let owners = ring.lookup(&format!("key-{i}"));
            assert_eq!(owners.len(), 3);
            let mut sorted = owners.to_vec();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), 3);
            assert_eq!(owners.primary(), owners.get(0));
            assert_eq!(owners.replicas().count(), 2);
            assert_eq!(owners.position(owners.get(2).unwrap()), Some(2));
        }
    }

    #[test]
    fn fewer_nodes_than_the_replication_factor() {
        let ring = ring(3, &["solo", "duo"]);
        let owners = ring.lookup("k");
        assert_eq!(owners.len(), 2);
        assert!(owners.contains(&NodeId::new("solo").unwrap()));
        assert!(owners.contains(&NodeId::new("duo").unwrap()));
    }

    #[test]
    fn placement_does_not_depend_on_member_order() {
        let forward = ring(3, &["a", "b", "c", "d"]);
        let backward = ring(3, &["d", "c", "b", "a"]);
        for i in 0..500 {
            let key = format!("k{i}");
            assert_eq!(forward.lookup(&key).to_vec(), backward.lookup(&key).to_vec());
        }
    }

    #[test]
    fn placement_is_pinned() {
        // A snapshot: if this changes, keys move between nodes and between builds.
        let ring = ring(3, &["n1", "n2", "n3", "n4", "n5"]);
        let placed: Vec<Vec<NodeId>> =
            ["alpha", "beta", "gamma"].iter().map(|key| ring.lookup(key).to_vec()).collect();
        assert_eq!(vnode_hash(&NodeId::new("n1").unwrap(), 0), PINNED_VNODE_HASH);
        assert_eq!(placed, PINNED_PLACEMENT.map(|names| ids(&names)));
    }

    /// xxh64(b"n1\0\0\0\0"), checked against an independent implementation of XXH64.
    const PINNED_VNODE_HASH: u64 = 9_068_943_168_074_715_508;
    const PINNED_PLACEMENT: [[&str; 3]; 3] =
        [["n3", "n5", "n2"], ["n4", "n5", "n3"], ["n5", "n1", "n4"]];

    #[test]
    fn key_hash_is_xxh64_with_seed_0() {
        // The XXH64 reference vectors.
        assert_eq!(key_hash(""), 0xEF46_DB37_51D8_E999);
        assert_eq!(key_hash("abc"), 0x44BC_2CF5_AD77_0999);
    }

    #[test]
    fn vnode_index_does_not_wrap_at_256() {
        // The reference hashes `byte(i)`, so vnode 256 sat on vnode 0 (§2.22 item 10).
        let node = NodeId::new("n1").unwrap();
        assert_ne!(vnode_hash(&node, 0), vnode_hash(&node, 256));
        let mut ring = Ring::new(1, VNODE_COUNT_PER_NODE_MAX);
        ring.rebuild(&[node]);
        let mut hashes: Vec<u64> = ring.vnodes().map(|(hash, _)| hash).collect();
        hashes.dedup();
        assert_eq!(hashes.len(), VNODE_COUNT_PER_NODE_MAX);
    }

    #[test]
    fn load_is_spread_and_a_join_moves_few_keys() {
        let before = ring(1, &["n1", "n2", "n3", "n4", "n5"]);
        let after = ring(1, &["n1", "n2", "n3", "n4", "n5", "n6"]);
        let key_count = 10_000;
        let mut primaries: BTreeMap<NodeId, usize> = BTreeMap::new();
        let mut moved = 0;
        for i in 0..key_count {
            let key = format!("key-{i}");
            let old = before.lookup(&key).primary().unwrap();
            let new = after.lookup(&key).primary().unwrap();
            *primaries.entry(old.clone()).or_default() += 1;
            if old != new {
                // Consistent hashing: a key only ever moves to the new node.
                assert_eq!(new.as_str(), "n6");
                moved += 1;
            }
        }
        for (node, count) in &primaries {
            // Ideal 20%; 64 vnodes keep every node within 10%..30%.
            assert!(*count > key_count / 10 && *count < key_count * 3 / 10, "{node}: {count}");
        }
        // Ideal 1/6 ≈ 16.7%.
        assert!(moved > key_count / 12 && moved < key_count / 4, "moved {moved}");
    }

    #[test]
    fn rebuild_replaces_the_nodes() {
        let mut ring = ring(3, &["n1", "n2", "n3"]);
        ring.rebuild(&ids(&["n2"]));
        assert_eq!(ring.nodes(), ids(&["n2"]).as_slice());
        assert_eq!(ring.vnodes().len(), 64);
        assert_eq!(ring.lookup("k").to_vec(), ids(&["n2"]));
        ring.rebuild(&[]);
        assert!(ring.is_empty());
        assert!(ring.lookup("k").is_empty());
    }

    #[test]
    #[should_panic(expected = "ring node given twice")]
    fn rebuild_rejects_duplicates() {
        let mut ring = Ring::new(3, 8);
        ring.rebuild(&ids(&["a", "b", "a"]));
    }

    #[test]
    fn find_key_with_owners_finds_an_exact_ordered_match() {
        let ring = ring(3, &["n1", "n2", "n3", "n4", "n5"]);
        let desired = ids(&["n4", "n1", "n3"]);
        let key = ring.find_key_with_owners("key-", &desired, 10_000).unwrap();
        assert!(key.starts_with("key-"));
        assert_eq!(ring.lookup(&key).to_vec(), desired);
        // It is the first such key.
        let index: u64 = key["key-".len()..].parse().unwrap();
        for earlier in 0..index {
            assert!(ring.lookup(&format!("key-{earlier}")) != *desired.as_slice());
        }
    }

    #[test]
    fn find_key_with_owners_rejects_impossible_requests() {
        let ring = ring(3, &["n1", "n2", "n3", "n4", "n5"]);
        let impossible = [
            ids(&["n1", "n2"]),             // too short for rf 3
            ids(&["n1", "n2", "n3", "n4"]), // too long
            ids(&["n1", "n2", "n9"]),       // not on the ring
            ids(&["n1", "n2", "n1"]),       // repeated
            Vec::new(),
        ];
        for desired in &impossible {
            assert_eq!(ring.find_key_with_owners("k", desired, 100_000), None, "{desired:?}");
        }
        assert_eq!(ring.find_key_with_owners("k", &ids(&["n1", "n2", "n3"]), 0), None);
    }

    #[test]
    fn find_key_with_owners_gives_up_at_once_on_an_order_no_arc_has() {
        let ring = ring(3, &["node-1", "node-2", "node-3", "node-4", "node-5"]);
        // Every owner list the ring can return: one per vnode arc.
        let possible: Vec<Vec<NodeId>> =
            ring.vnodes().map(|(hash, _)| ring.lookup_hash(hash).to_vec()).collect();
        let nodes = ring.nodes();
        let mut impossible_count = 0;
        for a in nodes {
            for b in nodes.iter().filter(|b| *b != a) {
                for c in nodes.iter().filter(|c| *c != a && *c != b) {
                    let desired = vec![a.clone(), b.clone(), c.clone()];
                    let found = ring.find_key_with_owners("key-", &desired, u64::MAX);
                    // u64::MAX candidates would never finish: this ends only because a
                    // possible list is found quickly and an impossible one at once.
                    assert_eq!(found.is_some(), possible.contains(&desired), "{desired:?}");
                    impossible_count += usize::from(found.is_none());
                }
            }
        }
        assert!(impossible_count > 0, "this ring has ordered triples no arc gives");
    }

    #[test]
    fn push_decimal_matches_format() {
        for value in [0, 7, 10, 99, 100, 12_345, u64::MAX] {
            let mut buffer = String::from("p");
            push_decimal(&mut buffer, value);
            assert_eq!(buffer, format!("p{value}"));
        }
    }
}
