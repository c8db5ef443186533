//! Pending timers, ordered by (deadline, insertion).
//!
//! A 4-ary min-heap of packed `u128` keys orders the deadlines; a slab holds each
//! timer's waker. The key packs the deadline (high 64 bits), then the insertion
//! sequence number (40 bits) and the slab key (24 bits): one integer comparison orders
//! by deadline and then insertion, and a level of four children is one cache line.
//! A timer whose future is dropped leaves a stale heap entry behind (removing from the
//! middle of a heap is costly); stale entries are skipped when they surface and
//! compacted away when they outnumber the live ones.

use std::task::Waker;

use slab::Slab;

/// Timers pending at once, at most (the slab key has 24 bits in the heap key).
pub const TIMERS_LIVE_MAX: usize = 1 << SLAB_KEY_BITS;
/// Timers set in one run, at most (the sequence number has 40 bits): at a million
/// timers per second of wall time, some twelve days of simulation.
pub const TIMERS_PER_RUN_MAX: u64 = 1 << SEQ_BITS;
const SLAB_KEY_BITS: u32 = 24;
const SEQ_BITS: u32 = 40;
const _: () = assert!(SLAB_KEY_BITS + SEQ_BITS == 64);

/// Stale heap entries tolerated before a compaction, on top of twice the live count.
const STALE_ENTRIES_SLACK: usize = 1024;
/// Children per heap node.
const ARITY: usize = 4;

/// Identifies one timer: its slab key and its unique sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimerKey {
    key: usize,
    seq: u64,
}

#[derive(Debug)]
struct Entry {
    seq: u64,
    waker: Waker,
}

#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: QuadHeap,
    entries: Slab<Entry>,
    seq_next: u64,
}

fn pack(deadline_ns: u64, seq: u64, key: usize) -> u128 {
    assert!(seq < TIMERS_PER_RUN_MAX, "more than {TIMERS_PER_RUN_MAX} timers in one run");
    assert!(key < TIMERS_LIVE_MAX, "more than {TIMERS_LIVE_MAX} timers pending at once");
    (u128::from(deadline_ns) << 64) | u128::from(seq << SLAB_KEY_BITS) | key as u128
}

fn unpack(packed: u128) -> (u64, u64, usize) {
    let low = packed as u64;
    ((packed >> 64) as u64, low >> SLAB_KEY_BITS, (low & ((1 << SLAB_KEY_BITS) - 1)) as usize)
}

impl Timers {
    pub(crate) fn insert(&mut self, deadline_ns: u64, waker: Waker) -> TimerKey {
        let seq = self.seq_next;
        self.seq_next += 1;
        let key = self.entries.insert(Entry { seq, waker });
        self.heap.push(pack(deadline_ns, seq, key));
        if self.heap.len() > 2 * self.entries.len() + STALE_ENTRIES_SLACK {
            self.compact();
        }
        TimerKey { key, seq }
    }

    /// Replaces the waker of a pending timer (a future may move between tasks).
    pub(crate) fn update(&mut self, timer: TimerKey, waker: &Waker) {
        if let Some(entry) = self.entries.get_mut(timer.key)
            && entry.seq == timer.seq
            && !entry.waker.will_wake(waker)
        {
            entry.waker = waker.clone();
        }
    }

    /// Cancels a timer; a no-op when it already fired.
    pub(crate) fn remove(&mut self, timer: TimerKey) {
        if self.is_live(timer.seq, timer.key) {
            self.entries.remove(timer.key);
        }
    }

    /// The earliest live deadline, dropping stale entries on the way.
    pub(crate) fn next_deadline(&mut self) -> Option<u64> {
        while let Some(top) = self.heap.peek() {
            let (deadline_ns, seq, key) = unpack(top);
            if self.is_live(seq, key) {
                return Some(deadline_ns);
            }
            self.heap.pop();
        }
        None
    }

    /// Removes every timer due at or before `now_ns` and pushes its waker to `fired`,
    /// in (deadline, insertion) order; `on_fire` sees each timer's sequence number.
    pub(crate) fn fire_due(
        &mut self,
        now_ns: u64,
        fired: &mut Vec<Waker>,
        mut on_fire: impl FnMut(u64),
    ) {
        while let Some(top) = self.heap.peek() {
            let (deadline_ns, seq, key) = unpack(top);
            if deadline_ns > now_ns {
                break;
            }
            self.heap.pop();
            if self.is_live(seq, key) {
                on_fire(seq);
                fired.push(self.entries.remove(key).waker);
            }
        }
    }

    pub(crate) fn live_count(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn clear(&mut self) {
        self.heap.items.clear();
        self.entries.clear();
    }

    fn is_live(&self, seq: u64, key: usize) -> bool {
        self.entries.get(key).is_some_and(|entry| entry.seq == seq)
    }

    fn compact(&mut self) {
        let entries = &self.entries;
        self.heap.items.retain(|packed| {
            let (_, seq, key) = unpack(*packed);
            entries.get(key).is_some_and(|entry| entry.seq == seq)
        });
        self.heap.heapify();
        assert_eq!(self.heap.len(), self.entries.len());
    }
}

/// A 4-ary min-heap of packed keys: half the depth of a binary heap, and the four
/// children of a node share a cache line.
#[derive(Debug, Default)]
struct QuadHeap {
    items: Vec<u128>,
}

impl QuadHeap {
    fn len(&self) -> usize {
        self.items.len()
    }

    fn peek(&self) -> Option<u128> {
        self.items.first().copied()
    }

    fn push(&mut self, item: u128) {
        let mut index = self.items.len();
        self.items.push(item);
        while index > 0 {
            let parent = (index - 1) / ARITY;
            if self.items[parent] <= item {
                break;
            }
            self.items[index] = self.items[parent];
            index = parent;
        }
        self.items[index] = item;
    }

    fn pop(&mut self) -> Option<u128> {
        let last = self.items.pop()?;
        if self.items.is_empty() {
            return Some(last);
        }
        let top = self.items[0];
        self.sift_down(0, last);
        Some(top)
    }

    /// Places `item` at `index` or below, moving smaller children up.
    fn sift_down(&mut self, mut index: usize, item: u128) {
        let count = self.items.len();
        loop {
            let first = index * ARITY + 1;
            if first >= count {
                break;
            }
            let last = (first + ARITY).min(count);
            let mut smallest = first;
            for child in first + 1..last {
                if self.items[child] < self.items[smallest] {
                    smallest = child;
                }
            }
            if self.items[smallest] >= item {
                break;
            }
            self.items[index] = self.items[smallest];
            index = smallest;
        }
        self.items[index] = item;
    }

    fn heapify(&mut self) {
        if self.items.len() < 2 {
            return;
        }
        for index in (0..=(self.items.len() - 2) / ARITY).rev() {
            let item = self.items[index];
            self.sift_down(index, item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rand::{RngExt, SimRng};
    use std::task::Waker;

    #[test]
    fn fires_in_deadline_then_insertion_order() {
        let mut timers = Timers::default();
        let a = timers.insert(20, Waker::noop().clone());
        timers.insert(10, Waker::noop().clone());
        timers.insert(20, Waker::noop().clone());
        assert_eq!(timers.next_deadline(), Some(10));
        let mut order = Vec::new();
        let mut fired = Vec::new();
        timers.fire_due(10, &mut fired, |seq| order.push(seq));
        assert_eq!(order, [1]);
        timers.fire_due(20, &mut fired, |seq| order.push(seq));
        assert_eq!(order, [1, 0, 2]);
        assert_eq!(fired.len(), 3);
        // Removing a fired timer is a no-op, even if its slot was reused.
        let b = timers.insert(30, Waker::noop().clone());
        timers.remove(a);
        assert_eq!(timers.live_count(), 1);
        timers.remove(b);
        assert_eq!(timers.next_deadline(), None);
    }

    #[test]
    fn stale_entries_are_compacted() {
        let mut timers = Timers::default();
        for i in 0..10_000 {
            let key = timers.insert(1_000 + i, Waker::noop().clone());
            timers.remove(key);
        }
        assert_eq!(timers.live_count(), 0);
        assert!(timers.heap.len() <= STALE_ENTRIES_SLACK + 1);
        assert_eq!(timers.next_deadline(), None);
    }

    #[test]
    fn quad_heap_sorts_like_a_sort() {
        let mut rng = SimRng::new(1, 1);
        for size in [0usize, 1, 2, 5, 17, 1000] {
            let mut heap = QuadHeap::default();
            let mut items: Vec<u128> = (0..size).map(|_| u128::from(rng.below(100))).collect();
            for item in &items {
                heap.push(*item);
            }
            // Half the items go through heapify instead of push.
            let mut rebuilt = QuadHeap { items: items.clone() };
            rebuilt.heapify();
            items.sort_unstable();
            let drained: Vec<u128> = std::iter::from_fn(|| heap.pop()).collect();
            let drained_rebuilt: Vec<u128> = std::iter::from_fn(|| rebuilt.pop()).collect();
            assert_eq!(drained, items);
            assert_eq!(drained_rebuilt, items);
        }
    }

    #[test]
    fn packing_round_trips_and_orders() {
        let packed = pack(7, TIMERS_PER_RUN_MAX - 1, TIMERS_LIVE_MAX - 1);
        assert_eq!(unpack(packed), (7, TIMERS_PER_RUN_MAX - 1, TIMERS_LIVE_MAX - 1));
        assert!(pack(1, 9, 0) < pack(2, 0, 0));
        assert!(pack(1, 1, 5) < pack(1, 2, 0), "ties order by insertion");
    }
}
