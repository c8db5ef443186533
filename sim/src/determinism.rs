//! Determinism checks: run one seed twice and name the first event that differs.

use std::fmt;

use crate::fingerprint::Event;
use crate::sim::{Builder, Sim};

/// Events each run keeps for the comparison; past this, runs are compared by their
/// fingerprints alone.
pub const EVENT_LOG_CHECK_MAX: usize = 1 << 20;
/// Events of context shown before the first difference.
const CONTEXT_BEFORE: usize = 4;
/// Events of context shown after it.
const CONTEXT_AFTER: usize = 2;

/// Two runs of one seed did not do the same thing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeterminismError {
    seed: u64,
    /// The index of the first differing event, if it was within the logs.
    index: Option<u64>,
    context: [Vec<Event>; 2],
    fingerprints: [u64; 2],
    counts: [u64; 2],
}

impl DeterminismError {
    /// The seed that ran differently.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The index of the first differing event, when it fell within the event logs.
    pub fn first_difference(&self) -> Option<u64> {
        self.index
    }

    /// The events around the first difference, in the first and the second run.
    pub fn context(&self) -> (&[Event], &[Event]) {
        (&self.context[0], &self.context[1])
    }
}

impl fmt::Display for DeterminismError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "non-determinism: two runs of seed {} differ", self.seed)?;
        match self.index {
            Some(index) => write!(f, " first at event #{index}")?,
            None => write!(f, " after the first {EVENT_LOG_CHECK_MAX} events")?,
        }
        for run in 0..2 {
            write!(
                f,
                "\n  run {}: {} events, fingerprint {:#018x}",
                run + 1,
                self.counts[run],
                self.fingerprints[run]
            )?;
            for event in &self.context[run] {
                let marker = if Some(event.index) == self.index { ">" } else { " " };
                write!(f, "\n   {marker} {event}")?;
            }
        }
        write!(f, "\nreplay with SIM_SEED={} SIM_CHECK_DETERMINISM=1", self.seed)
    }
}

impl std::error::Error for DeterminismError {}

struct Run {
    fingerprint: u64,
    count: u64,
    events: Vec<Event>,
}

impl Builder {
    /// Runs `body` on two fresh simulations of this configuration and compares every
    /// event; returns the fingerprint when both runs match.
    ///
    /// # Errors
    ///
    /// When the runs differ; the error names the first differing event with a few
    /// events of context from both runs.
    pub fn check_determinism<F: FnMut(&mut Sim)>(
        &self,
        mut body: F,
    ) -> Result<u64, DeterminismError> {
        let builder = self.clone().event_log(EVENT_LOG_CHECK_MAX);
        let mut run = || {
            let mut sim = builder.build();
            body(&mut sim);
            Run {
                fingerprint: sim.fingerprint(),
                count: sim.event_count(),
                events: sim.event_log(),
            }
        };
        let first = run();
        let second = run();
        compare(self.seed_value(), first, second)
    }
}

/// Runs `body` twice on simulations seeded with `seed` and compares them event by
/// event; see [`Builder::check_determinism`].
///
/// # Errors
///
/// When the runs differ.
///
/// ```
/// let fingerprint = sim::check_determinism(3, |sim| {
///     sim.block_on(async { sim::rand::u64() }).unwrap();
/// });
/// assert!(fingerprint.is_ok());
/// ```
pub fn check_determinism<F: FnMut(&mut Sim)>(seed: u64, body: F) -> Result<u64, DeterminismError> {
    Builder::new().seed(seed).check_determinism(body)
}

fn compare(seed: u64, first: Run, second: Run) -> Result<u64, DeterminismError> {
    let same_log = first.events == second.events;
    if same_log && first.fingerprint == second.fingerprint && first.count == second.count {
        return Ok(first.fingerprint);
    }
    let differing = first.events.iter().zip(&second.events).position(|(a, b)| a != b);
    let logged = first.events.len().min(second.events.len());
    // A log that is a strict prefix of the other differs where the shorter one ends.
    let index = differing.or((first.events.len() != second.events.len()).then_some(logged));
    let context = |events: &[Event]| match index {
        Some(index) => {
            let start = index.saturating_sub(CONTEXT_BEFORE);
            let end = (index + CONTEXT_AFTER + 1).min(events.len());
            events.get(start..end).map(<[Event]>::to_vec).unwrap_or_default()
        }
        None => Vec::new(),
    };
    Err(DeterminismError {
        seed,
        index: index.map(|index| index as u64),
        context: [context(&first.events), context(&second.events)],
        fingerprints: [first.fingerprint, second.fingerprint],
        counts: [first.count, second.count],
    })
}
