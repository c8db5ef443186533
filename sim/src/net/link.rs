//! Links: the model of one directed node-to-node path (latency, loss, duplication)
//! and its state (partitioned, clogged, held messages, counters).
//!
//! Reordering has no knob of its own: it comes from jitter, as on a real network. Two
//! messages sent back to back on a link whose latency ranges over 1–10 ms arrive in
//! either order.

use std::collections::VecDeque;
use std::time::Duration;

use crate::net::network::Envelope;
use crate::net::stats::LinkStats;
use crate::node::NodeId;
use crate::rand::{Ratio, RngExt, SimRng};
use crate::time::duration_nanos;

/// The least latency of a link unless configured otherwise.
pub const LATENCY_MIN_DEFAULT: Duration = Duration::from_millis(1);
/// The greatest latency of a link unless configured otherwise.
pub const LATENCY_MAX_DEFAULT: Duration = Duration::from_millis(10);
/// Messages a clogged link holds; past this, new ones are dropped as congestion.
pub const HELD_PER_LINK_MAX: usize = 1 << 16;

/// A heavy latency tail: with probability `ratio`, a message's latency is drawn from
/// `latency_min..=latency_max` instead of the link's usual range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatencyTail {
    /// How often the tail applies.
    pub ratio: Ratio,
    /// The least tail latency.
    pub latency_min: Duration,
    /// The greatest tail latency.
    pub latency_max: Duration,
}

/// How one directed link treats messages. The default (no loss, no duplication,
/// 1–10 ms uniform latency) is a healthy but jittery network; faults are opt-in.
///
/// ```
/// use std::time::Duration;
/// use sim::net::LinkConfig;
/// use sim::rand::Ratio;
///
/// let lossy = LinkConfig::DEFAULT
///     .with_latency(Duration::from_micros(100), Duration::from_millis(2))
///     .with_tail(Ratio::new(1, 1000), Duration::from_millis(50), Duration::from_millis(200))
///     .with_loss(Ratio::new(1, 100))
///     .with_duplicate(Ratio::new(1, 200));
/// assert_eq!(lossy.loss, Ratio::new(1, 100));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkConfig {
    /// The least latency (uniform between the two bounds, both included).
    pub latency_min: Duration,
    /// The greatest latency.
    pub latency_max: Duration,
    /// An optional heavy tail.
    pub tail: Option<LatencyTail>,
    /// The share of messages lost.
    pub loss: Ratio,
    /// The share of (not lost) messages delivered twice, each copy with its own
    /// latency.
    pub duplicate: Ratio,
}

impl LinkConfig {
    /// 1–10 ms uniform latency, no tail, no loss, no duplication.
    pub const DEFAULT: LinkConfig = LinkConfig {
        latency_min: LATENCY_MIN_DEFAULT,
        latency_max: LATENCY_MAX_DEFAULT,
        tail: None,
        loss: Ratio::NEVER,
        duplicate: Ratio::NEVER,
    };

    /// With latency uniform in `latency_min..=latency_max`.
    pub const fn with_latency(
        mut self,
        latency_min: Duration,
        latency_max: Duration,
    ) -> LinkConfig {
        self.latency_min = latency_min;
        self.latency_max = latency_max;
        self
    }

    /// With a heavy tail: `ratio` of messages take `latency_min..=latency_max`.
    pub const fn with_tail(
        mut self,
        ratio: Ratio,
        latency_min: Duration,
        latency_max: Duration,
    ) -> LinkConfig {
        self.tail = Some(LatencyTail { ratio, latency_min, latency_max });
        self
    }

    /// With this loss ratio.
    pub const fn with_loss(mut self, loss: Ratio) -> LinkConfig {
        self.loss = loss;
        self
    }

    /// With this duplication ratio.
    pub const fn with_duplicate(mut self, duplicate: Ratio) -> LinkConfig {
        self.duplicate = duplicate;
        self
    }

    /// What is wrong with the configuration, if anything.
    pub(crate) fn problem(&self) -> Option<&'static str> {
        if self.latency_min > self.latency_max {
            return Some("latency_min exceeds latency_max");
        }
        match self.tail {
            Some(tail) if tail.latency_min > tail.latency_max => {
                Some("tail latency_min exceeds tail latency_max")
            }
            _ => None,
        }
    }
}

impl Default for LinkConfig {
    fn default() -> LinkConfig {
        LinkConfig::DEFAULT
    }
}

/// A [`LinkConfig`] with its durations in nanoseconds, ready for the hot path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LinkModel {
    pub(crate) config: LinkConfig,
    latency_ns_min: u64,
    latency_ns_max: u64,
    tail_ratio: Ratio,
    tail_ns_min: u64,
    tail_ns_max: u64,
}

impl LinkModel {
    pub(crate) fn new(config: LinkConfig) -> LinkModel {
        assert!(config.problem().is_none(), "link configs are validated before use");
        let tail = config.tail.unwrap_or(LatencyTail {
            ratio: Ratio::NEVER,
            latency_min: Duration::ZERO,
            latency_max: Duration::ZERO,
        });
        let model = LinkModel {
            config,
            latency_ns_min: duration_nanos(config.latency_min),
            latency_ns_max: duration_nanos(config.latency_max),
            tail_ratio: tail.ratio,
            tail_ns_min: duration_nanos(tail.latency_min),
            tail_ns_max: duration_nanos(tail.latency_max),
        };
        assert!(model.latency_ns_min <= model.latency_ns_max);
        assert!(model.tail_ns_min <= model.tail_ns_max);
        model
    }

    pub(crate) fn loss(&self) -> Ratio {
        self.config.loss
    }

    pub(crate) fn duplicate(&self) -> Ratio {
        self.config.duplicate
    }

    /// One message's latency. Draws nothing for a fixed latency and no tail, so that a
    /// deterministic link spends none of the network's stream.
    pub(crate) fn latency_ns(&self, rng: &mut SimRng) -> u64 {
        let (min, max) = if rng.chance(self.tail_ratio) {
            (self.tail_ns_min, self.tail_ns_max)
        } else {
            (self.latency_ns_min, self.latency_ns_max)
        };
        let latency_ns = match max - min {
            0 => min,
            u64::MAX => rng.u64(),
            spread => min + rng.below(spread + 1),
        };
        assert!(latency_ns >= min && latency_ns <= max);
        latency_ns
    }
}

/// The state of one directed link.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) from: NodeId,
    pub(crate) to: NodeId,
    /// This link's own model, overriding the network's default.
    pub(crate) model: Option<LinkModel>,
    /// Partitioned: nothing passes.
    pub(crate) blocked: bool,
    /// Clogged: messages wait in `held` until the link is unclogged.
    pub(crate) clogged: bool,
    pub(crate) held: VecDeque<Envelope>,
    /// The sequence number of the last message sent on the link (the first is 1).
    pub(crate) seq_last: u64,
    pub(crate) stats: LinkStats,
}

impl Link {
    pub(crate) fn new(from: NodeId, to: NodeId) -> Link {
        Link {
            from,
            to,
            model: None,
            blocked: false,
            clogged: false,
            held: VecDeque::new(),
            seq_last: 0,
            stats: LinkStats::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_stays_in_range_and_tail_applies_at_its_ratio() {
        let config = LinkConfig::DEFAULT
            .with_latency(Duration::from_micros(10), Duration::from_micros(20))
            .with_tail(Ratio::new(1, 10), Duration::from_millis(1), Duration::from_millis(2));
        let model = LinkModel::new(config);
        let mut rng = SimRng::new(5, 2);
        let mut tail = 0;
        for _ in 0..10_000 {
            let latency_ns = model.latency_ns(&mut rng);
            if latency_ns >= 1_000_000 {
                assert!(latency_ns <= 2_000_000);
                tail += 1;
            } else {
                assert!((10_000..=20_000).contains(&latency_ns), "{latency_ns}");
            }
        }
        assert!((800..1_200).contains(&tail), "tail {tail} far from 1,000");
    }

    #[test]
    fn fixed_latency_draws_nothing() {
        let fixed = Duration::from_millis(3);
        let model = LinkModel::new(LinkConfig::DEFAULT.with_latency(fixed, fixed));
        let mut rng = SimRng::new(5, 2);
        assert_eq!(model.latency_ns(&mut rng), 3_000_000);
        assert_eq!(rng.u64(), SimRng::new(5, 2).u64());
    }

    #[test]
    fn inverted_bounds_are_a_problem() {
        let bad =
            LinkConfig::DEFAULT.with_latency(Duration::from_millis(2), Duration::from_millis(1));
        assert_eq!(bad.problem(), Some("latency_min exceeds latency_max"));
        let tail =
            LinkConfig::DEFAULT.with_tail(Ratio::ALWAYS, Duration::from_secs(2), Duration::ZERO);
        assert!(tail.problem().is_some());
        assert_eq!(LinkConfig::default().problem(), None);
    }
}
