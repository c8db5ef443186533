//! Seeded randomness: one root seed, independent ChaCha streams per subsystem.
//!
//! The root seed keys ChaCha8; each subsystem (scheduler, network, faults, buggify,
//! every node) reads its own ChaCha *stream* under that key. Streams never overlap, so
//! drawing more numbers in one place never shifts what another place draws.
//!
//! Inside a task, the free functions of this module ([`u64`], [`range`], [`chance`],
//! [`fill`], [`choose`], [`shuffle`]) draw from the current node's stream, and every
//! draw is mixed into the run's fingerprint. [`rng`] returns a handle that implements
//! [`rand_core::RngCore`] so that `rand` distributions work too.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use crate::context;

/// The scheduler's stream: which ready task runs next.
pub(crate) const STREAM_SCHEDULER: u64 = 1;
/// The network's stream (latency, loss, duplication).
pub(crate) const STREAM_NETWORK: u64 = 2;
/// The fault stream (fault schedules, buggify site activation).
pub(crate) const STREAM_FAULTS: u64 = 3;
/// Node `i` reads stream `STREAM_NODE_BASE + i`.
pub(crate) const STREAM_NODE_BASE: u64 = 1 << 32;
/// Streams forked by label live above this bit, so they never meet the fixed ones.
const STREAM_FORK_BIT: u64 = 1 << 63;

/// A probability as an integer ratio `numerator / denominator`.
///
/// Probabilities are never floats in this crate: a ratio is exact, prints as written
/// and means the same on every machine.
///
/// ```
/// use sim::rand::Ratio;
/// let r: Ratio = "1/4".parse().unwrap();
/// assert_eq!(r, Ratio::new(1, 4));
/// assert_eq!(r.to_string(), "1/4");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ratio {
    numerator: u64,
    denominator: u64,
}

impl Ratio {
    /// Never true.
    pub const NEVER: Ratio = Ratio { numerator: 0, denominator: 1 };
    /// Always true.
    pub const ALWAYS: Ratio = Ratio { numerator: 1, denominator: 1 };

    /// `numerator / denominator`.
    ///
    /// # Panics
    ///
    /// When `denominator` is zero or `numerator > denominator`; use [`Ratio::try_new`]
    /// for values that come from users.
    pub const fn new(numerator: u64, denominator: u64) -> Ratio {
        match Ratio::try_new(numerator, denominator) {
            Some(ratio) => ratio,
            None => panic!("ratio needs 0 <= numerator <= denominator and denominator > 0"),
        }
    }

    /// `numerator / denominator`, or `None` unless `0 <= numerator <= denominator` and
    /// `denominator > 0`.
    pub const fn try_new(numerator: u64, denominator: u64) -> Option<Ratio> {
        if denominator == 0 || numerator > denominator {
            return None;
        }
        Some(Ratio { numerator, denominator })
    }

    /// The numerator.
    pub const fn numerator(self) -> u64 {
        self.numerator
    }

    /// The denominator.
    pub const fn denominator(self) -> u64 {
        self.denominator
    }

    /// Whether the ratio is zero (never fires).
    pub const fn is_never(self) -> bool {
        self.numerator == 0
    }
}

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.numerator, self.denominator)
    }
}

/// The error of parsing a [`Ratio`] from text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseRatioError {
    input: String,
}

impl fmt::Display for ParseRatioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid ratio {:?}: expected N/D with whole numbers 0 <= N <= D and D > 0, \
             for example 1/100",
            self.input
        )
    }
}

impl std::error::Error for ParseRatioError {}

impl FromStr for Ratio {
    type Err = ParseRatioError;

    fn from_str(s: &str) -> Result<Ratio, ParseRatioError> {
        let error = || ParseRatioError { input: s.to_string() };
        let (n, d) = s.trim().split_once('/').ok_or_else(error)?;
        let n: u64 = n.trim().parse().map_err(|_| error())?;
        let d: u64 = d.trim().parse().map_err(|_| error())?;
        Ratio::try_new(n, d).ok_or_else(error)
    }
}

/// Unbiased, portable draws on top of any [`RngCore`].
///
/// Implemented here rather than taken from `rand` so that an upstream change to
/// `rand`'s algorithms can never change what an old seed means.
pub trait RngExt: RngCore {
    /// A uniform value in `0..bound` (Lemire's multiply-shift, with rejection).
    ///
    /// # Panics
    ///
    /// When `bound` is zero.
    fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "below(0): the bound must be positive");
        let mut product = u128::from(self.next_u64()) * u128::from(bound);
        let mut low = product as u64;
        if low < bound {
            let threshold = bound.wrapping_neg() % bound;
            while low < threshold {
                product = u128::from(self.next_u64()) * u128::from(bound);
                low = product as u64;
            }
        }
        (product >> 64) as u64
    }

    /// A uniform value in the half-open range.
    ///
    /// # Panics
    ///
    /// When the range is empty.
    fn range(&mut self, range: Range<u64>) -> u64 {
        assert!(range.start < range.end, "range {range:?} is empty");
        range.start + self.below(range.end - range.start)
    }

    /// True with probability `ratio`. Draws nothing for `0/d` and `d/d`.
    fn chance(&mut self, ratio: Ratio) -> bool {
        if ratio.numerator == 0 {
            return false;
        }
        if ratio.numerator == ratio.denominator {
            return true;
        }
        self.below(ratio.denominator) < ratio.numerator
    }

    /// A uniformly chosen element, or `None` for an empty slice.
    fn choose<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            return None;
        }
        let index = self.below(items.len() as u64) as usize;
        Some(&items[index])
    }

    /// Shuffles in place (Fisher-Yates).
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

impl<R: RngCore + ?Sized> RngExt for R {}

/// An owned, seeded random stream (ChaCha8).
///
/// Get one with [`crate::Handle::fork_rng`] (an independent stream named by a label) or
/// [`SimRng::new`]. Draw with the [`RngExt`] methods or through [`RngCore`].
#[derive(Clone, Debug)]
pub struct SimRng {
    inner: ChaCha8Rng,
}

impl SimRng {
    /// Stream `stream` under the key derived from `seed`.
    pub fn new(seed: u64, stream: u64) -> SimRng {
        let mut inner = ChaCha8Rng::seed_from_u64(seed);
        inner.set_stream(stream);
        SimRng { inner }
    }

    /// The stream named `label` under the key derived from `seed`; labels are hashed
    /// (FNV-1a, stable) into a part of the stream space that the simulator's own
    /// streams never use.
    pub fn forked(seed: u64, label: &str) -> SimRng {
        SimRng::new(seed, STREAM_FORK_BIT | (fnv1a(label.as_bytes()) >> 1))
    }

    /// The next `u64` of the stream.
    pub fn u64(&mut self) -> u64 {
        self.inner.next_u64()
    }
}

impl RngCore for SimRng {
    fn next_u32(&mut self) -> u32 {
        self.inner.next_u32()
    }

    fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.inner.fill_bytes(dest);
    }
}

/// FNV-1a, 64 bits: a stable hash for labels and call sites.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// A handle on the current node's random stream; implements [`RngCore`].
///
/// Every draw goes to the node that is running when the draw happens, and is mixed into
/// the run's fingerprint. Zero-sized and `Copy`: get it anywhere with [`rng`].
///
/// # Panics
///
/// Drawing outside a running simulation panics.
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeRng;

impl RngCore for NodeRng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }

    fn next_u64(&mut self) -> u64 {
        context::with(|shared| {
            let node = shared.current_node.get();
            shared.world.borrow_mut().node_draw(node, shared.now_ns.get())
        })
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// The current node's stream as an [`RngCore`], for `rand` distributions.
pub fn rng() -> NodeRng {
    NodeRng
}

/// A uniform `u64` from the current node's stream.
///
/// # Panics
///
/// Outside a running simulation.
pub fn u64() -> u64 {
    NodeRng.next_u64()
}

/// A uniform value in the half-open range, from the current node's stream.
///
/// # Panics
///
/// Outside a running simulation, or when the range is empty.
pub fn range(range: Range<u64>) -> u64 {
    RngExt::range(&mut NodeRng, range)
}

/// True with probability `ratio`, from the current node's stream.
///
/// # Panics
///
/// Outside a running simulation.
pub fn chance(ratio: Ratio) -> bool {
    NodeRng.chance(ratio)
}

/// Fills `dest` with random bytes from the current node's stream.
///
/// # Panics
///
/// Outside a running simulation.
pub fn fill(dest: &mut [u8]) {
    NodeRng.fill_bytes(dest);
}

/// A uniformly chosen element, from the current node's stream.
///
/// # Panics
///
/// Outside a running simulation.
pub fn choose<T>(items: &[T]) -> Option<&T> {
    NodeRng.choose(items)
}

/// Shuffles in place, from the current node's stream.
///
/// # Panics
///
/// Outside a running simulation.
pub fn shuffle<T>(items: &mut [T]) {
    NodeRng.shuffle(items);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_independent() {
        let mut a = SimRng::new(7, STREAM_SCHEDULER);
        let mut b = SimRng::new(7, STREAM_NETWORK);
        let first_b: Vec<u64> = (0..4).map(|_| b.u64()).collect();
        // Drawing a lot from `a` must not change what a fresh `b` yields.
        for _ in 0..1000 {
            a.u64();
        }
        let mut b2 = SimRng::new(7, STREAM_NETWORK);
        let again: Vec<u64> = (0..4).map(|_| b2.u64()).collect();
        assert_eq!(first_b, again);
        assert_ne!(SimRng::new(7, 1).u64(), SimRng::new(7, 2).u64());
        assert_ne!(SimRng::new(7, 1).u64(), SimRng::new(8, 1).u64());
    }

    #[test]
    fn seed_meaning_is_pinned() {
        // A snapshot: if this changes, every seed in every corpus changes meaning.
        let mut rng = SimRng::new(0, STREAM_SCHEDULER);
        let got = (rng.u64(), rng.below(1000), rng.range(10..20));
        let mut again = SimRng::new(0, STREAM_SCHEDULER);
        assert_eq!(got, (again.u64(), again.below(1000), again.range(10..20)));
        assert!(got.1 < 1000);
        assert!((10..20).contains(&got.2));
        assert_eq!(SimRng::forked(0, "faults").u64(), SimRng::forked(0, "faults").u64());
        assert_ne!(SimRng::forked(0, "faults").u64(), SimRng::forked(0, "workload").u64());
    }

    #[test]
    fn below_is_uniform_enough() {
        let mut rng = SimRng::new(1, 99);
        let mut counts = [0u32; 6];
        for _ in 0..60_000 {
            counts[rng.below(6) as usize] += 1;
        }
        for count in counts {
            assert!((9_000..11_000).contains(&count), "count {count} far from 10000");
        }
    }

    #[test]
    fn chance_matches_ratio_and_edges() {
        let mut rng = SimRng::new(2, 5);
        let hits = (0..100_000).filter(|_| rng.chance(Ratio::new(1, 4))).count();
        assert!((24_000..26_000).contains(&hits), "{hits}");
        assert!(!(0..100).any(|_| rng.chance(Ratio::NEVER)));
        assert!((0..100).all(|_| rng.chance(Ratio::ALWAYS)));
    }

    #[test]
    fn shuffle_is_a_permutation_and_choose_covers() {
        let mut rng = SimRng::new(3, 5);
        let mut items: Vec<u32> = (0..50).collect();
        rng.shuffle(&mut items);
        assert_ne!(items, (0..50).collect::<Vec<_>>());
        items.sort_unstable();
        assert_eq!(items, (0..50).collect::<Vec<_>>());
        assert_eq!(rng.choose::<u8>(&[]), None);
        let mut seen = [false; 3];
        for _ in 0..100 {
            seen[*rng.choose(&[0usize, 1, 2]).unwrap()] = true;
        }
        assert_eq!(seen, [true; 3]);
    }

    #[test]
    fn ratio_parse_and_validate() {
        assert_eq!("3/10".parse::<Ratio>(), Ok(Ratio::new(3, 10)));
        assert!("1/0".parse::<Ratio>().is_err());
        assert!("5/4".parse::<Ratio>().is_err());
        assert!("0.25".parse::<Ratio>().is_err());
        let message = "x".parse::<Ratio>().unwrap_err().to_string();
        assert!(message.contains("expected N/D"), "{message}");
        assert_eq!(Ratio::try_new(2, 1), None);
    }

    #[test]
    #[should_panic(expected = "is empty")]
    fn empty_range_panics() {
        SimRng::new(0, 0).range(5..5);
    }
}
