//! Quiet windows: the stretches of a run where the contract promises progress and
//! fresh reads.
//!
//! A window opens a settle time after the last fault episode ended (so that failure
//! detectors, gossip, hints and rebalance have caught up and every node sees the same
//! ring) and closes when the next episode starts. Clock skew is not a fault here: it
//! breaks no read and no write, only the order of concurrent ones. After the fault
//! phase everything is healed, so a window opens one settle time after the heal and
//! lasts to the end of the run.

use std::time::Duration;

use crate::faults::{Fault, FaultPlan};

/// How long after the last fault ends the cluster is given before the contract's
/// progress and freshness clauses apply: longer than the failure detector's dead
/// timeout (6 s) plus a few gossip rounds, so that a node declared dead during the
/// fault is back on every ring.
pub const SETTLE: Duration = Duration::from_secs(10);

/// A half-open interval of virtual nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Where it opens.
    pub start_ns: u64,
    /// Where it closes (excluded).
    pub end_ns: u64,
}

impl Window {
    /// Whether `[from_ns, to_ns]` lies wholly inside the window.
    pub fn contains_span(&self, from_ns: u64, to_ns: u64) -> bool {
        self.start_ns <= from_ns && to_ns < self.end_ns
    }

    /// Whether `at_ns` lies inside the window.
    pub fn contains(&self, at_ns: u64) -> bool {
        self.start_ns <= at_ns && at_ns < self.end_ns
    }
}

/// The quiet windows of one run, in time order and disjoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuietWindows {
    windows: Vec<Window>,
}

/// Whether a fault breaks the contract's progress promise while it lasts.
fn breaks_quiet(fault: &Fault) -> bool {
    !matches!(fault, Fault::ClockSkew { .. })
}

fn ms_to_ns(ms: u64) -> u64 {
    ms.saturating_mul(1_000_000)
}

impl QuietWindows {
    /// The windows of a run whose fault phase starts at `phase_start_ns` and is healed
    /// at `heal_ns` (everything undone), ending at `end_ns`; `settle` is given after
    /// every episode and after the heal.
    pub fn new(
        plan: &FaultPlan,
        phase_start_ns: u64,
        heal_ns: u64,
        end_ns: u64,
        settle: Duration,
    ) -> QuietWindows {
        assert!(phase_start_ns <= heal_ns && heal_ns <= end_ns);
        let settle_ns = u64::try_from(settle.as_nanos()).unwrap_or(u64::MAX);
        // Busy intervals: each breaking episode plus its settle time, and the heal.
        let mut busy: Vec<(u64, u64)> = plan
            .episodes
            .iter()
            .filter(|episode| breaks_quiet(&episode.fault))
            .map(|episode| {
                let start = phase_start_ns + ms_to_ns(episode.start_ms);
                let end = phase_start_ns + ms_to_ns(episode.end_ms());
                (start, end.min(heal_ns).saturating_add(settle_ns))
            })
            .collect();
        // The heal undoes whatever was still on; it only disturbs the cluster if
        // anything was.
        let on_at_heal = plan.episodes.iter().any(|episode| {
            breaks_quiet(&episode.fault) && phase_start_ns + ms_to_ns(episode.end_ms()) >= heal_ns
        });
        if on_at_heal {
            busy.push((heal_ns, heal_ns.saturating_add(settle_ns)));
        }
        busy.sort_unstable();
        let mut windows = Vec::new();
        let mut cursor = phase_start_ns;
        for (start, end) in busy {
            if start > cursor {
                windows.push(Window { start_ns: cursor, end_ns: start });
            }
            cursor = cursor.max(end);
        }
        if cursor < end_ns {
            windows.push(Window { start_ns: cursor, end_ns });
        }
        QuietWindows { windows }
    }

    /// These windows, given by hand (a run whose faults are not a plan: a real
    /// cluster's kill and restart).
    ///
    /// # Panics
    ///
    /// When the windows overlap or are out of order.
    pub fn from_windows(windows: Vec<Window>) -> QuietWindows {
        assert!(windows.iter().all(|window| window.start_ns <= window.end_ns));
        assert!(windows.windows(2).all(|pair| pair[0].end_ns <= pair[1].start_ns));
        QuietWindows { windows }
    }

    /// No window at all (a run whose promises of progress are not checked).
    pub fn none() -> QuietWindows {
        QuietWindows::default()
    }

    /// The window containing `[from_ns, to_ns]` wholly, if any.
    pub fn around(&self, from_ns: u64, to_ns: u64) -> Option<Window> {
        self.windows.iter().copied().find(|window| window.contains_span(from_ns, to_ns))
    }

    /// The window containing `at_ns`, if any.
    pub fn at(&self, at_ns: u64) -> Option<Window> {
        self.windows.iter().copied().find(|window| window.contains(at_ns))
    }

    /// The windows, in time order.
    pub fn windows(&self) -> &[Window] {
        &self.windows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::Episode;

    fn plan(episodes: &[(u64, u64, Fault)]) -> FaultPlan {
        FaultPlan {
            episodes: episodes
                .iter()
                .map(|(start_ms, duration_ms, fault)| Episode {
                    start_ms: *start_ms,
                    duration_ms: *duration_ms,
                    fault: fault.clone(),
                })
                .collect(),
            ..FaultPlan::default()
        }
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_fault_free_run_is_quiet_throughout() {
        let windows = QuietWindows::new(&plan(&[]), 5 * S, 25 * S, 65 * S, SETTLE);
        assert_eq!(windows.windows(), &[Window { start_ns: 5 * S, end_ns: 65 * S }]);
    }

    #[test]
    fn episodes_and_the_heal_are_followed_by_a_settle_time() {
        let crash = Fault::Crash { node: 0 };
        let skew = Fault::ClockSkew { node: 1, offset_ms: 10, drift_ppm: 0 };
        let windows = QuietWindows::new(
            &plan(&[(2_000, 1_000, crash), (4_000, 10_000, skew)]),
            0,
            20 * S,
            60 * S,
            SETTLE,
        );
        assert_eq!(
            windows.windows(),
            &[Window { start_ns: 0, end_ns: 2 * S }, Window { start_ns: 13 * S, end_ns: 60 * S }]
        );
        assert!(windows.around(S, S + 5).is_some());
        assert!(windows.around(S, 3 * S).is_none(), "a span across a fault is not quiet");
        assert!(windows.at(12 * S).is_none(), "settling after the crash");
        let partition = Fault::Partition { side_a: vec![0], side_b: vec![1, 2] };
        let windows =
            QuietWindows::new(&plan(&[(15_000, 5_000, partition)]), 0, 20 * S, 60 * S, SETTLE);
        assert_eq!(
            windows.windows(),
            &[Window { start_ns: 0, end_ns: 15 * S }, Window { start_ns: 30 * S, end_ns: 60 * S }],
            "a fault still on at the heal settles after it"
        );
    }
}
