//! [`MerkleTree`]: a SHA-256 hash tree over `(key, version)` entries, the summary two
//! replicas compare in anti-entropy (§2.10). Plain data and pure functions: no clock,
//! no network, no node; `anti_entropy.rs` is the thin async shell around it.
//!
//! # Why key-hash buckets, not chunks of consecutive keys
//!
//! The reference cuts the key-sorted entries into chunks of `chunk_size` consecutive
//! keys. A chunk is then positional: one key missing on one side shifts every later
//! chunk, so a replica that lacks a single early key differs in almost every leaf and
//! lists almost everything again. Here a key's leaf is a hash of the key alone
//! ([`leaf_index`]), whatever else either side holds: a missing or stale key changes
//! exactly its own leaf, the two sides' leaves always line up, and a sync costs what
//! differs rather than what follows. The bucket hash has its own seed, unrelated to the
//! ring's, so the keys that two nodes share (a few arcs of the ring) still spread over
//! every leaf.
//!
//! The leaf count is a power of two ([`leaf_count_for`]: about `chunk_size` entries a
//! leaf, at most [`MERKLE_LEAF_COUNT_MAX`] leaves). Both sides of a sync build with the
//! same leaf count, which the responder chooses and announces.
//!
//! # What is hashed
//!
//! Each entry, tombstones included, contributes its key and its version (counter,
//! origin and boot), length-prefixed so that no two lists of entries encode to the same bytes.
//! The value and the kind (item or tombstone) are not hashed: a version names one write,
//! so equal versions mean equal writes. The one exception, an expired item and the
//! tombstone it is swept into (same version), is the same state seen before and after a
//! local sweep, and must not count as a difference that no pull can repair. Leaves are
//! hashed with a `0x00` prefix and inner nodes with `0x01`, so a leaf can never pass for
//! an inner node.

use std::fmt;

use sha2::{Digest, Sha256};
use xxhash_rust::xxh64::xxh64;

use crate::version::Version;

/// The most leaves a tree may have: it bounds the summary a sync exchanges (32 bytes a
/// leaf, 128 KiB at most).
pub const MERKLE_LEAF_COUNT_MAX: usize = 4096;
/// The largest chunk size (entries a leaf is sized for) an option may ask for.
pub const MERKLE_CHUNK_SIZE_MAX: usize = 1 << 16;

const _: () = assert!(MERKLE_LEAF_COUNT_MAX.is_power_of_two());
// Leaf indices travel as `usize` and are compared with `u64` hashes.
const _: () = assert!(MERKLE_LEAF_COUNT_MAX <= u32::MAX as usize);

/// The seed of the bucket hash: a constant, so that every node puts a key in the same
/// leaf; not the ring's seed (0), so that leaves do not follow the ring's arcs.
const LEAF_HASH_SEED: u64 = 0x6d65_726b_6c65_6c66;
/// Domain separation: the first byte hashed for a leaf and for an inner node.
const LEAF_PREFIX: u8 = 0x00;
const INNER_PREFIX: u8 = 0x01;

/// A SHA-256 digest: a leaf's, an inner node's or a root's.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MerkleHash([u8; 32]);

impl MerkleHash {
    /// The digest's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for MerkleHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for MerkleHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The first 8 bytes tell digests apart in a trace; Display prints all 32.
        self.0[..8].iter().try_for_each(|byte| write!(f, "{byte:02x}"))?;
        f.write_str("…")
    }
}

/// A hash tree over `(key, version)` entries: the leaf hashes and the root.
///
/// ```
/// use cache::{MerkleTree, NodeId, Version};
///
/// let version = Version::new(7, NodeId::new("n1").unwrap());
/// let ours = MerkleTree::build(4, [("a", &version), ("b", &version)]);
/// let theirs = MerkleTree::build(4, [("b", &version)]);
/// assert_ne!(ours.root(), theirs.root());
/// assert_eq!(ours.diff(&theirs), vec![cache::leaf_index("a", 4)]);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct MerkleTree {
    leaves: Vec<MerkleHash>,
    root: MerkleHash,
}

impl fmt::Debug for MerkleTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MerkleTree")
            .field("root", &self.root)
            .field("leaf_count", &self.leaves.len())
            .finish_non_exhaustive()
    }
}

impl MerkleTree {
    /// The tree over `entries`, given in any order, with `leaf_count` leaves.
    ///
    /// # Panics
    ///
    /// When `leaf_count` is not a power of two in `1..=MERKLE_LEAF_COUNT_MAX`, or a key
    /// appears twice.
    pub fn build<'a>(
        leaf_count: usize,
        entries: impl IntoIterator<Item = (&'a str, &'a Version)>,
    ) -> MerkleTree {
        assert!(is_valid_leaf_count(leaf_count), "invalid leaf count {leaf_count}");
        let mut buckets: Vec<Vec<(&str, &Version)>> = vec![Vec::new(); leaf_count];
        for (key, version) in entries {
            buckets[leaf_index(key, leaf_count)].push((key, version));
        }
        let leaves: Vec<MerkleHash> = buckets
            .iter_mut()
            .map(|bucket| {
                // Key order inside a leaf makes the hash independent of the input order.
                bucket.sort_unstable_by_key(|(key, _)| *key);
                assert!(bucket.windows(2).all(|pair| pair[0].0 < pair[1].0), "key given twice");
                leaf_hash(bucket)
            })
            .collect();
        assert_eq!(leaves.len(), leaf_count);
        let root = root_of(&leaves);
        MerkleTree { leaves, root }
    }

    /// The tree whose leaf hashes are `leaves` (a peer's summary); `None` when their
    /// count is not a power of two in `1..=MERKLE_LEAF_COUNT_MAX`.
    pub fn from_leaves(leaves: Vec<MerkleHash>) -> Option<MerkleTree> {
        if !is_valid_leaf_count(leaves.len()) {
            return None;
        }
        let root = root_of(&leaves);
        Some(MerkleTree { leaves, root })
    }

    /// The root hash.
    pub fn root(&self) -> MerkleHash {
        self.root
    }

    /// The leaf hashes, by leaf index.
    pub fn leaves(&self) -> &[MerkleHash] {
        &self.leaves
    }

    /// The number of leaves.
    pub fn leaf_count(&self) -> usize {
        self.leaves.len()
    }

    /// The indices of the leaves that differ from `other`'s, ascending; empty when the
    /// roots are equal (the roots are compared first, the leaves only when they differ).
    ///
    /// # Panics
    ///
    /// When the two trees have different leaf counts: they were not built to be
    /// compared.
    pub fn diff(&self, other: &MerkleTree) -> Vec<usize> {
        assert_eq!(self.leaf_count(), other.leaf_count(), "trees of different shapes");
        if self.root == other.root {
            return Vec::new();
        }
        let differing: Vec<usize> = (0..self.leaf_count())
            .filter(|&index| self.leaves[index] != other.leaves[index])
            .collect();
        // Different roots over equal leaves would be a broken hash or a broken fold.
        assert!(!differing.is_empty(), "roots differ over equal leaves");
        assert!(differing.len() <= self.leaf_count());
        differing
    }
}

/// The leaf that `key` falls in, in a tree of `leaf_count` leaves.
///
/// # Panics
///
/// When `leaf_count` is not a power of two in `1..=MERKLE_LEAF_COUNT_MAX`.
pub fn leaf_index(key: &str, leaf_count: usize) -> usize {
    assert!(is_valid_leaf_count(leaf_count), "invalid leaf count {leaf_count}");
    let mask = leaf_count as u64 - 1; // OK because leaf_count ≥ 1, a power of two.
    let index = usize::try_from(xxh64(key.as_bytes(), LEAF_HASH_SEED) & mask)
        .expect("masked below MERKLE_LEAF_COUNT_MAX, which fits usize");
    assert!(index < leaf_count);
    index
}

/// The leaf count for `entry_count` entries at about `chunk_size` entries a leaf: the
/// next power of two, between 1 and [`MERKLE_LEAF_COUNT_MAX`] (past it, leaves grow
/// beyond `chunk_size`).
///
/// # Panics
///
/// When `chunk_size` is 0.
pub fn leaf_count_for(entry_count: usize, chunk_size: usize) -> usize {
    assert!(chunk_size >= 1, "a chunk holds at least one entry");
    let wanted = entry_count.div_ceil(chunk_size).max(1);
    let leaf_count = wanted.checked_next_power_of_two().unwrap_or(MERKLE_LEAF_COUNT_MAX);
    let leaf_count = leaf_count.min(MERKLE_LEAF_COUNT_MAX);
    assert!(is_valid_leaf_count(leaf_count));
    leaf_count
}

/// Whether `leaf_count` is a power of two in `1..=MERKLE_LEAF_COUNT_MAX`.
pub fn is_valid_leaf_count(leaf_count: usize) -> bool {
    leaf_count.is_power_of_two() && leaf_count <= MERKLE_LEAF_COUNT_MAX
}

/// The root over `leaves`: pairwise `SHA-256(0x01 ‖ left ‖ right)`, level by level.
///
/// # Panics
///
/// When the leaf count is not a power of two in `1..=MERKLE_LEAF_COUNT_MAX`.
pub fn root_of(leaves: &[MerkleHash]) -> MerkleHash {
    assert!(is_valid_leaf_count(leaves.len()), "invalid leaf count {}", leaves.len());
    let mut level: Vec<MerkleHash> = leaves.to_vec();
    // A power of two halves to 1 in log2(count) steps.
    for _depth in 0..=MERKLE_LEAF_COUNT_MAX.trailing_zeros() {
        if level.len() == 1 {
            return level[0];
        }
        level = level
            .chunks_exact(2)
            .map(|pair| {
                let mut hasher = Sha256::new();
                hasher.update([INNER_PREFIX]);
                hasher.update(pair[0].0);
                hasher.update(pair[1].0);
                MerkleHash(hasher.finalize().into())
            })
            .collect();
    }
    unreachable!("a valid leaf count folds to one root within log2(MERKLE_LEAF_COUNT_MAX) levels")
}

/// `SHA-256(0x00 ‖ entries)`, each entry as key length (u32, big-endian), key, counter
/// (u64, big-endian), origin length (u32, big-endian), origin, boot (u64, big-endian).
fn leaf_hash(entries: &[(&str, &Version)]) -> MerkleHash {
    let mut hasher = Sha256::new();
    hasher.update([LEAF_PREFIX]);
    for (key, version) in entries {
        hasher.update(len_u32(key.len()).to_be_bytes());
        hasher.update(key.as_bytes());
        hasher.update(version.counter.to_be_bytes());
        let origin = version.origin.as_bytes();
        hasher.update(len_u32(origin.len()).to_be_bytes());
        hasher.update(origin);
        hasher.update(version.boot.to_be_bytes());
    }
    MerkleHash(hasher.finalize().into())
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len).expect("keys and node ids are far shorter than 4 GiB")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_id::NodeId;

    fn version(counter: u64, origin: &str) -> Version {
        Version::new(counter, NodeId::new(origin).unwrap())
    }

    /// `count` entries `key-0`… at counter 1 from n1.
    fn entries(count: usize) -> Vec<(String, Version)> {
        (0..count).map(|index| (format!("key-{index}"), version(1, "n1"))).collect()
    }

    fn tree(leaf_count: usize, entries: &[(String, Version)]) -> MerkleTree {
        MerkleTree::build(leaf_count, entries.iter().map(|(key, version)| (key.as_str(), version)))
    }

    #[test]
    fn same_entries_give_the_same_root() {
        let entries = entries(100);
        let (a, b) = (tree(16, &entries), tree(16, &entries));
        assert_eq!(a.root(), b.root());
        assert_eq!(a, b);
        assert!(a.diff(&b).is_empty());
        assert_eq!(a.leaf_count(), 16);
    }

    #[test]
    fn one_changed_version_changes_the_root_and_only_its_leaf() {
        let ours = entries(100);
        let mut theirs = ours.clone();
        theirs[37].1 = version(2, "n1");
        let (a, b) = (tree(16, &ours), tree(16, &theirs));
        assert_ne!(a.root(), b.root());
        let differing = a.diff(&b);
        assert_eq!(differing, vec![leaf_index("key-37", 16)]);
        assert_eq!(differing, b.diff(&a), "the diff is symmetric");
        // The leaf holds key-37 and its other keys are unchanged: the diff names the key.
        let in_leaf: Vec<&str> = ours
            .iter()
            .zip(&theirs)
            .filter(|((key, _), _)| leaf_index(key, 16) == differing[0])
            .filter(|((_, ours), (_, theirs))| ours != theirs)
            .map(|((key, _), _)| key.as_str())
            .collect();
        assert_eq!(in_leaf, ["key-37"]);
    }

    #[test]
    fn the_origin_is_part_of_the_version() {
        // Equal counters from different origins are different writes (the tie-break).
        let a = MerkleTree::build(1, [("k", &version(5, "n1"))]);
        let b = MerkleTree::build(1, [("k", &version(5, "n2"))]);
        assert_ne!(a.root(), b.root());
    }

    #[test]
    fn a_missing_key_changes_only_its_leaf() {
        // Positional chunks would shift every later chunk; hash buckets do not.
        let ours = entries(1000);
        let mut theirs = ours.clone();
        let missing = theirs.remove(3);
        let (a, b) = (tree(64, &ours), tree(64, &theirs));
        assert_eq!(a.diff(&b), vec![leaf_index(&missing.0, 64)]);
    }

    #[test]
    fn input_order_does_not_matter() {
        let ordered = entries(300);
        let mut shuffled = ordered.clone();
        shuffled.reverse();
        shuffled.rotate_left(77);
        assert_ne!(ordered, shuffled);
        for leaf_count in [1, 2, 64, MERKLE_LEAF_COUNT_MAX] {
            assert_eq!(tree(leaf_count, &ordered).root(), tree(leaf_count, &shuffled).root());
        }
    }

    #[test]
    fn tombstones_change_the_hash() {
        // A tombstone is an entry: a tree with one differs from a tree without it, and a
        // delete (a newer version) differs from the item it replaced.
        let item = version(3, "n1");
        let tombstone = version(4, "n1");
        let empty = MerkleTree::build(8, []);
        let with_item = MerkleTree::build(8, [("k", &item)]);
        let with_tombstone = MerkleTree::build(8, [("k", &tombstone)]);
        assert_ne!(empty.root(), with_tombstone.root());
        assert_ne!(with_item.root(), with_tombstone.root());
        assert_eq!(with_item.diff(&with_tombstone), vec![leaf_index("k", 8)]);
    }

    #[test]
    fn empty_trees_are_equal_and_differ_from_any_entry() {
        let a = MerkleTree::build(4, []);
        let b = MerkleTree::build(4, []);
        assert_eq!(a.root(), b.root());
        assert!(a.diff(&b).is_empty());
        let one = MerkleTree::build(4, [("only", &version(1, "n1"))]);
        assert_eq!(a.diff(&one), vec![leaf_index("only", 4)]);
        // All empty leaves hash alike.
        assert!(a.leaves().windows(2).all(|pair| pair[0] == pair[1]));
    }

    #[test]
    fn entry_boundaries_are_unambiguous() {
        // Without length prefixes, ("ab", …) and ("a", …"b"…) could hash alike.
        let a = MerkleTree::build(1, [("ab", &version(1, "n1"))]);
        let b = MerkleTree::build(1, [("a", &version(1, "n1")), ("b", &version(1, "n1"))]);
        assert_ne!(a.root(), b.root());
    }

    #[test]
    fn a_peer_summary_rebuilds_the_same_root() {
        let built = tree(32, &entries(50));
        let rebuilt = MerkleTree::from_leaves(built.leaves().to_vec()).unwrap();
        assert_eq!(rebuilt, built);
        assert_eq!(root_of(built.leaves()), built.root());
        assert!(MerkleTree::from_leaves(vec![built.root(); 3]).is_none());
        assert!(MerkleTree::from_leaves(Vec::new()).is_none());
        let too_many = vec![built.root(); MERKLE_LEAF_COUNT_MAX * 2];
        assert!(MerkleTree::from_leaves(too_many).is_none());
    }

    #[test]
    fn a_single_leaf_is_its_own_root() {
        let one = MerkleTree::build(1, [("k", &version(1, "n1"))]);
        assert_eq!(one.root(), one.leaves()[0]);
    }

    #[test]
    fn leaf_count_follows_the_entry_count_within_bounds() {
        assert_eq!(leaf_count_for(0, 128), 1);
        assert_eq!(leaf_count_for(128, 128), 1);
        assert_eq!(leaf_count_for(129, 128), 2);
        assert_eq!(leaf_count_for(1000, 128), 8);
        assert_eq!(leaf_count_for(usize::MAX, 1), MERKLE_LEAF_COUNT_MAX);
        assert_eq!(leaf_count_for(10_000_000, 128), MERKLE_LEAF_COUNT_MAX);
    }

    #[test]
    fn keys_spread_over_the_leaves() {
        let leaf_count = 16;
        let mut counts = vec![0_usize; leaf_count];
        for (key, _) in entries(16_000) {
            counts[leaf_index(&key, leaf_count)] += 1;
        }
        // 1000 expected a leaf; a fair hash stays well within ±20%.
        assert!(counts.iter().all(|&count| (800..=1200).contains(&count)), "{counts:?}");
    }

    #[test]
    #[should_panic(expected = "key given twice")]
    fn a_key_given_twice_is_a_bug() {
        let _ = MerkleTree::build(1, [("k", &version(1, "n1")), ("k", &version(2, "n1"))]);
    }

    #[test]
    #[should_panic(expected = "trees of different shapes")]
    fn trees_of_different_shapes_are_not_compared() {
        let _ = MerkleTree::build(2, []).diff(&MerkleTree::build(4, []));
    }
}
