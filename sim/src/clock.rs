//! A node's wall clock: the fixed epoch, plus virtual now, plus the node's own offset
//! and drift. Virtual time itself ([`crate::time::Instant`]) is one for all nodes;
//! only the wall clock, which TTLs and timestamps read, is skewed.

/// The wall clock's epoch: 2025-01-01T00:00:00Z, in Unix nanoseconds. Fixed, so that a
/// run never depends on the day it ran.
pub(crate) const WALL_EPOCH_UNIX_NS: u64 = 1_735_689_600 * 1_000_000_000;

/// Drift is limited to ±10% (100,000 ppm): enough for any fault worth simulating.
pub(crate) const DRIFT_PPM_MAX: i32 = 100_000;

/// One node's clock error: a fixed offset plus a linear drift since `anchor_ns`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct NodeClock {
    offset_ns: i64,
    drift_ppm: i32,
    anchor_ns: u64,
}

impl NodeClock {
    /// The clock's total error at virtual time `now_ns`.
    pub(crate) fn error_ns(&self, now_ns: u64) -> i64 {
        assert!(now_ns >= self.anchor_ns);
        let elapsed = i128::from(now_ns - self.anchor_ns);
        let drift = elapsed * i128::from(self.drift_ppm) / 1_000_000;
        let total = i128::from(self.offset_ns) + drift;
        i64::try_from(total).unwrap_or(if total < 0 { i64::MIN } else { i64::MAX })
    }

    /// Unix nanoseconds on this node at virtual time `now_ns` (never before 1970).
    pub(crate) fn wall_unix_ns(&self, now_ns: u64) -> u64 {
        let wall = i128::from(WALL_EPOCH_UNIX_NS) + i128::from(now_ns);
        let wall = wall + i128::from(self.error_ns(now_ns));
        u64::try_from(wall.max(0)).unwrap_or(u64::MAX)
    }

    /// From now on the clock is `offset_ns` off, drifting as before.
    pub(crate) fn set_offset(&mut self, now_ns: u64, offset_ns: i64) {
        self.offset_ns = offset_ns;
        self.anchor_ns = now_ns;
        assert_eq!(self.error_ns(now_ns), offset_ns);
    }

    /// From now on the clock drifts by `drift_ppm`; the error so far is kept.
    pub(crate) fn set_drift(&mut self, now_ns: u64, drift_ppm: i32) {
        assert!(drift_ppm.abs() <= DRIFT_PPM_MAX);
        let error_before = self.error_ns(now_ns);
        self.offset_ns = error_before;
        self.anchor_ns = now_ns;
        self.drift_ppm = drift_ppm;
        assert_eq!(self.error_ns(now_ns), error_before);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_and_drift_compose() {
        let mut clock = NodeClock::default();
        assert_eq!(clock.wall_unix_ns(5), WALL_EPOCH_UNIX_NS + 5);
        clock.set_offset(0, -2_000);
        assert_eq!(clock.error_ns(1_000_000), -2_000);
        clock.set_drift(1_000_000, 1_000); // 0.1% fast
        assert_eq!(clock.error_ns(1_000_000), -2_000);
        assert_eq!(clock.error_ns(2_000_000), -2_000 + 1_000);
        clock.set_offset(2_000_000, 0);
        assert_eq!(clock.error_ns(3_000_000), 1_000);
    }
}
