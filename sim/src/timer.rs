//! Pending timers, ordered by (deadline, insertion).
//!
//! A binary heap orders the deadlines; a slab holds each timer's waker. A timer whose
//! future is dropped leaves a stale heap entry behind (removing from the middle of a
//! heap is costly); stale entries are skipped when they surface and compacted away
//! when they outnumber the live ones.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::task::Waker;

use slab::Slab;

/// Stale heap entries tolerated before a compaction, on top of twice the live count.
const STALE_ENTRIES_SLACK: usize = 1024;

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
    /// (deadline in virtual ns, sequence number, slab key).
    heap: BinaryHeap<Reverse<(u64, u64, usize)>>,
    entries: Slab<Entry>,
    seq_next: u64,
}

impl Timers {
    pub(crate) fn insert(&mut self, deadline_ns: u64, waker: Waker) -> TimerKey {
        let seq = self.seq_next;
        self.seq_next += 1;
        let key = self.entries.insert(Entry { seq, waker });
        self.heap.push(Reverse((deadline_ns, seq, key)));
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
        if self.entries.get(timer.key).is_some_and(|entry| entry.seq == timer.seq) {
            self.entries.remove(timer.key);
        }
    }

    /// The earliest live deadline, dropping stale entries on the way.
    pub(crate) fn next_deadline(&mut self) -> Option<u64> {
        while let Some(&Reverse((deadline_ns, seq, key))) = self.heap.peek() {
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
        while let Some(&Reverse((deadline_ns, seq, key))) = self.heap.peek() {
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
        self.heap.clear();
        self.entries.clear();
    }

    fn is_live(&self, seq: u64, key: usize) -> bool {
        self.entries.get(key).is_some_and(|entry| entry.seq == seq)
    }

    fn compact(&mut self) {
        let entries = &self.entries;
        self.heap.retain(|Reverse((_, seq, key))| {
            entries.get(*key).is_some_and(|entry| entry.seq == *seq)
        });
        assert!(self.heap.len() == self.entries.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
