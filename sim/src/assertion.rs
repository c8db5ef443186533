//! Named assertions with coverage, in the style of Antithesis: `always` and
//! `unreachable` state what must hold; `sometimes` and `reachable` state what a good
//! test must make happen, and a sweep reports the ones that never did.
//!
//! - [`always`]`(name, condition)`: false fails the run (a panic of the calling task,
//!   with the name), like `assert!`, and counts the evaluation.
//! - [`unreachable`]`(name)`: reaching it fails the run.
//! - [`sometimes`]`(name, condition)`: counts the evaluations and how many were true.
//! - [`reachable`]`(name)`: counts how many times it was reached.
//!
//! Each simulation keeps its own counts ([`crate::Sim::coverage`]); nothing is drawn
//! and nothing changes the run, so a run with assertions is the run without them.
//! Outside a simulation `always` and `unreachable` still check, and nothing is counted.

use std::collections::BTreeMap;

use crate::context;

/// Assertions a simulation keeps counts for at most; later names are checked but not
/// counted.
pub const ASSERTIONS_MAX: usize = 4_096;

/// The kind of a named assertion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AssertionKind {
    /// Must hold every time it is evaluated.
    Always,
    /// Must never be reached.
    Unreachable,
    /// Should hold at least once in a good test.
    Sometimes,
    /// Should be reached at least once in a good test.
    Reachable,
}

impl AssertionKind {
    /// Whether a test should make it fire (`sometimes`, `reachable`).
    pub fn is_coverage(self) -> bool {
        matches!(self, AssertionKind::Sometimes | AssertionKind::Reachable)
    }

    /// Its name: always, unreachable, sometimes, reachable.
    pub fn name(self) -> &'static str {
        match self {
            AssertionKind::Always => "always",
            AssertionKind::Unreachable => "unreachable",
            AssertionKind::Sometimes => "sometimes",
            AssertionKind::Reachable => "reachable",
        }
    }
}

/// One assertion's counts in one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AssertionCount {
    /// Its kind.
    pub kind: AssertionKind,
    /// Times it was evaluated (or reached).
    pub evaluations: u64,
    /// Times it fired: held (`sometimes`), was reached (`reachable`, `unreachable`),
    /// or failed (`always`).
    pub fired: u64,
}

/// Every assertion a run met, by name.
pub type Coverage = BTreeMap<&'static str, AssertionCount>;

fn count(name: &'static str, kind: AssertionKind, fired: bool) {
    context::try_with(|shared| count_in(&shared.coverage, name, kind, fired));
}

/// Counts one evaluation into `coverage`.
pub(crate) fn count_in(
    coverage: &std::cell::RefCell<Coverage>,
    name: &'static str,
    kind: AssertionKind,
    fired: bool,
) {
    let mut coverage = coverage.borrow_mut();
    if coverage.len() >= ASSERTIONS_MAX && !coverage.contains_key(name) {
        return;
    }
    let entry = coverage.entry(name).or_insert(AssertionCount { kind, evaluations: 0, fired: 0 });
    entry.evaluations += 1;
    entry.fired += u64::from(fired);
}

/// `condition` must hold: when it does not, the calling task panics with `name`, which
/// fails the run with its seed.
///
/// # Panics
///
/// When `condition` is false.
#[track_caller]
pub fn always(name: &'static str, condition: bool) {
    count(name, AssertionKind::Always, !condition);
    assert!(condition, "always-assertion {name:?} failed");
}

/// This point must never be reached: reaching it fails the run with its seed.
///
/// # Panics
///
/// Always, when called.
#[track_caller]
pub fn unreachable(name: &'static str) {
    count(name, AssertionKind::Unreachable, true);
    panic!("unreachable point {name:?} was reached");
}

/// Counts an evaluation of `condition` under `name`, and whether it held: a good test
/// makes it hold at least once.
pub fn sometimes(name: &'static str, condition: bool) {
    count(name, AssertionKind::Sometimes, condition);
}

/// Counts reaching this point under `name`: a good test reaches it at least once.
pub fn reachable(name: &'static str) {
    count(name, AssertionKind::Reachable, true);
}
