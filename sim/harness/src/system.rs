//! The one trait a user implements, and one run of it: a record in, a report out.
//!
//! 1. The seed makes a [`Sim`] (buggify drawn per profile); the plan is drawn from the
//!    seed's "faults" stream, or given (a replayed plan file, a shrink candidate).
//! 2. [`System::build`] builds the system on the simulation.
//! 3. [`System::drive`] runs it: by default the nemesis applies the plan through the
//!    fault phase, heals everything, and the quiet period follows.
//! 4. [`System::check`] judges the run: safety violations, then liveness.

use std::fmt;
use std::time::Duration;

use sim::Sim;

use crate::fault::{CustomFault, Plan};
use crate::nemesis::{Nemesis, Target, timeline};
use crate::profile::{Profile, buggify_drawn};
use crate::record::{Knob, Record, Vocabulary};

/// A system under test, as the harness sees it: how to build it on a simulation,
/// drive it, and judge it.
pub trait System: Sync {
    /// The faults the system defines on top of the simulator's ([`crate::NoFault`]:
    /// none).
    type Fault: CustomFault;
    /// The system built on one simulation: what [`System::drive`] runs and
    /// [`System::check`] reads, and what the nemesis acts on.
    type World: Target<Self::Fault>;

    /// The command that runs the system's sweep binary, as printed replay commands
    /// begin (`cargo run --release --`).
    fn command(&self) -> String;

    /// The profiles, the first being the default.
    fn profiles(&self) -> Vec<Profile<<Self::Fault as CustomFault>::Kind>>;

    /// The system's own knobs.
    fn knobs(&self) -> Vec<Knob> {
        Vec::new()
    }

    /// The default fault phase and quiet period, in virtual seconds.
    fn phase_seconds(&self) -> (u64, u64) {
        (20, 40)
    }

    /// How many nodes the plans of `record` name (at least 2).
    fn node_count(&self, record: &Record) -> usize;

    /// The most virtual time one run may take: only a hung run reaches it.
    fn time_limit(&self) -> Duration {
        Duration::from_secs(3_600)
    }

    /// Builds the system on `sim` for `run`.
    ///
    /// # Errors
    ///
    /// When it cannot be built (the run ends as a crash).
    fn build(&self, sim: &mut Sim, run: &Run<Self::Fault>) -> Result<Self::World, String>;

    /// Runs the workload and the plan. The default is [`drive`].
    ///
    /// # Errors
    ///
    /// When the simulation fails (the run ends as a crash).
    fn drive(
        &self,
        sim: &mut Sim,
        world: &mut Self::World,
        run: &Run<Self::Fault>,
    ) -> Result<(), String> {
        drive(sim, world, run)
    }

    /// Judges the run: every violation, safety and liveness.
    fn check(
        &self,
        sim: &mut Sim,
        world: &mut Self::World,
        run: &Run<Self::Fault>,
    ) -> Vec<Violation>;

    /// Totals the sweep summary adds up (operations, say), after the check.
    fn stats(&self, _world: &Self::World) -> Vec<(&'static str, u64)> {
        Vec::new()
    }

    /// Lines a replay prints about the run (what the seed drew).
    fn details(&self, _world: &Self::World, _run: &Run<Self::Fault>) -> Vec<String> {
        Vec::new()
    }

    /// A digest of what the checks saw (the history, say): `check-determinism`
    /// compares it, so that checks that depend on something outside the run show up.
    fn digest(&self, _world: &Self::World) -> u64 {
        0
    }

    /// Whatever else a caller of [`run`] should get back from the world, read with
    /// [`Report::outcome`] (the history, say); the command line ignores it.
    fn outcome(&self, _world: &Self::World, _run: &Run<Self::Fault>) -> Option<Outcome> {
        None
    }

    /// The summary's lines about the totals of [`System::stats`] over a sweep.
    fn summary_lines(&self, stats: &std::collections::BTreeMap<String, u64>) -> Vec<String> {
        if stats.is_empty() {
            return Vec::new();
        }
        let stats: Vec<String> =
            stats.iter().map(|(name, value)| format!("{name} {value}")).collect();
        vec![format!("totals: {}", stats.join(", "))]
    }

    /// The coverage points (`sim::sometimes`, `sim::reachable`) a sweep should reach:
    /// the summary names those no seed reached.
    fn coverage_points(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// Simpler records to try when shrinking `record` (fewer clients, say), simplest
    /// first; the shrinker keeps the first that fails the same way.
    fn shrink_knobs(&self, _record: &Record) -> Vec<Record> {
        Vec::new()
    }

    /// A run the system cannot make, named: checked before anything runs.
    ///
    /// # Errors
    ///
    /// What is wrong with the record.
    fn validate(&self, _record: &Record) -> Result<(), String> {
        Ok(())
    }
}

/// The profiles and knobs of `system`, for parsing records.
pub fn profile_names<S: System + ?Sized>(system: &S) -> Vec<&'static str> {
    system.profiles().iter().map(|profile| profile.name).collect()
}

/// Parses a record against `system`'s profiles and knobs.
///
/// # Errors
///
/// See [`Record::parse`].
pub fn parse_record<S: System + ?Sized>(
    system: &S,
    text: &str,
) -> Result<Record, crate::RecordError> {
    let (profiles, knobs) = (profile_names(system), system.knobs());
    let record = Record::parse(text, Vocabulary { profiles: &profiles, knobs: &knobs })?;
    Ok(without_default_phases(system, record))
}

/// `record` without the phases that equal the system's defaults: records print only
/// what differs, so two spellings of one run are one record.
pub(crate) fn without_default_phases<S: System + ?Sized>(system: &S, mut record: Record) -> Record {
    let (fault, quiet) = system.phase_seconds();
    record.fault_seconds = record.fault_seconds.filter(|seconds| *seconds != fault);
    record.quiet_seconds = record.quiet_seconds.filter(|seconds| *seconds != quiet);
    record
}

/// One run, as the system sees it.
#[derive(Clone, Debug)]
pub struct Run<C: CustomFault> {
    /// What shapes it.
    pub record: Record,
    /// Its profile.
    pub profile: Profile<C::Kind>,
    /// The faults it injects.
    pub plan: Plan<C>,
    /// Whether buggify is on.
    pub buggify: bool,
    /// The fault phase.
    pub fault_phase: Duration,
    /// The quiet period after it.
    pub quiet: Duration,
}

impl<C: CustomFault> Run<C> {
    /// The seed.
    pub fn seed(&self) -> u64 {
        self.record.seed
    }

    /// The value of the system's knob `name`, if set.
    pub fn knob(&self, name: &str) -> Option<&str> {
        self.record.knob(name)
    }
}

/// Whether a violation breaks safety (what must never happen) or liveness (what must
/// happen once faults stop).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// Must never happen.
    Safety,
    /// Must happen once faults stop.
    Liveness,
}

/// One broken promise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The check that failed (`lost-write`).
    pub check: String,
    /// Safety or liveness.
    pub class: Class,
    /// What happened, with times and nodes.
    pub message: String,
}

impl Violation {
    /// A safety violation.
    pub fn safety(check: impl Into<String>, message: impl Into<String>) -> Violation {
        Violation { check: check.into(), class: Class::Safety, message: message.into() }
    }

    /// A liveness violation.
    pub fn liveness(check: impl Into<String>, message: impl Into<String>) -> Violation {
        Violation { check: check.into(), class: Class::Liveness, message: message.into() }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.check, self.message)
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every check held.
    Pass,
    /// A safety check failed.
    Safety(Vec<Violation>),
    /// Safety held, a liveness check failed.
    Liveness(Vec<Violation>),
    /// The simulation itself failed: a panic, a deadlock, a limit, or an error from
    /// building or driving the system.
    Crash(String),
    /// The harness could not run it: the record is invalid for the system.
    Invalid(String),
}

impl Verdict {
    /// The verdict of `violations`: safety if any is, else liveness if any, else pass.
    pub fn of(violations: Vec<Violation>) -> Verdict {
        let (safety, liveness): (Vec<Violation>, Vec<Violation>) =
            violations.into_iter().partition(|violation| violation.class == Class::Safety);
        if !safety.is_empty() {
            Verdict::Safety(safety)
        } else if !liveness.is_empty() {
            Verdict::Liveness(liveness)
        } else {
            Verdict::Pass
        }
    }

    /// Whether the run passed.
    pub fn is_pass(&self) -> bool {
        matches!(self, Verdict::Pass)
    }

    /// A short name: pass, safety, liveness, crash or invalid.
    pub fn kind(&self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Safety(_) => "safety",
            Verdict::Liveness(_) => "liveness",
            Verdict::Crash(_) => "crash",
            Verdict::Invalid(_) => "invalid",
        }
    }

    /// The kind and the checks that fired: `safety: lost-write, stale-read`.
    pub fn checks(&self) -> String {
        match self {
            Verdict::Safety(violations) | Verdict::Liveness(violations) => {
                let mut names: Vec<&str> = violations.iter().map(|v| v.check.as_str()).collect();
                names.sort_unstable();
                names.dedup();
                format!("{}: {}", self.kind(), names.join(", "))
            }
            other => other.kind().to_string(),
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Pass => write!(f, "pass"),
            Verdict::Safety(violations) | Verdict::Liveness(violations) => {
                let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
                for violation in violations {
                    *counts.entry(violation.check.as_str()).or_default() += 1;
                }
                let counts: Vec<String> =
                    counts.iter().map(|(check, count)| format!("{check} {count}")).collect();
                let (kind, total) = (self.kind(), violations.len());
                write!(f, "{kind} failure: {total} violation(s) ({})", counts.join(", "))?;
                for violation in violations.iter().take(10) {
                    write!(f, "\n  {violation}")?;
                }
                Ok(())
            }
            Verdict::Crash(error) => write!(f, "crash: {error}"),
            Verdict::Invalid(problem) => write!(f, "invalid run, not run: {problem}"),
        }
    }
}

/// What a run may capture besides its verdict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capture {
    /// Capture the trace (`SIM_LOG` filter, or `info`).
    pub trace: bool,
    /// Keep the first this many simulation events (0: none).
    pub event_log: usize,
}

/// What [`System::outcome`] hands back from a run.
pub type Outcome = std::sync::Arc<dyn std::any::Any + Send + Sync>;

/// What a run did and how it ended.
#[derive(Clone, Debug)]
pub struct Report<C> {
    /// The record it ran, with its fingerprint when it ran at all.
    pub record: Record,
    /// The faults injected.
    pub plan: Plan<C>,
    /// The verdict.
    pub verdict: Verdict,
    /// Whether buggify was on.
    pub buggify: bool,
    /// Simulated events (0: it never ran).
    pub events: u64,
    /// Virtual time simulated.
    pub virtual_time: Duration,
    /// The run's fingerprint.
    pub fingerprint: u64,
    /// The named assertions and coverage points the run met.
    pub coverage: sim::Coverage,
    /// The system's totals ([`System::stats`]).
    pub stats: Vec<(&'static str, u64)>,
    /// The system's lines about the run ([`System::details`]).
    pub details: Vec<String>,
    /// The system's digest of what its checks saw ([`System::digest`]).
    pub digest: u64,
    /// What the system handed back ([`System::outcome`]).
    pub outcome: Option<Outcome>,
    /// The trace, when captured.
    pub trace: Option<String>,
    /// The first events, when asked for.
    pub event_log: Vec<sim::Event>,
}

/// Runs `record` (with `plan` instead of the drawn one, if given). An invalid record
/// ends as [`Verdict::Invalid`] without running; a panic anywhere in the run as
/// [`Verdict::Crash`]: a run never unwinds into its caller.
pub fn run<S: System + ?Sized>(
    system: &S,
    record: &Record,
    plan: Option<&Plan<S::Fault>>,
    capture: Capture,
) -> Report<S::Fault> {
    let profile = match resolve(system, record) {
        Ok(profile) => profile,
        Err(problem) => return report_without_run(record, plan, Verdict::Invalid(problem)),
    };
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_valid(system, record, profile, plan, capture)
    }));
    ran.unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(ToString::to_string)
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic with no message".to_string());
        let verdict = Verdict::Crash(format!("panic outside a task: {message}"));
        report_without_run(record, plan, verdict)
    })
}

/// The record's profile, after checking what the system can run.
fn resolve<S: System + ?Sized>(
    system: &S,
    record: &Record,
) -> Result<Profile<<S::Fault as CustomFault>::Kind>, String> {
    let profiles = system.profiles();
    let profile = profiles
        .into_iter()
        .find(|profile| profile.name == record.profile)
        .ok_or_else(|| format!("unknown profile {:?}", record.profile))?;
    let nodes = system.node_count(record);
    if nodes < 2 {
        return Err(format!("plans need at least 2 nodes to name; the system has {nodes}"));
    }
    system.validate(record)?;
    Ok(profile)
}

fn report_without_run<C: Clone>(
    record: &Record,
    plan: Option<&Plan<C>>,
    verdict: Verdict,
) -> Report<C> {
    Report {
        record: record.clone(),
        plan: plan.cloned().unwrap_or_default(),
        verdict,
        buggify: false,
        events: 0,
        virtual_time: Duration::ZERO,
        fingerprint: 0,
        coverage: sim::Coverage::new(),
        stats: Vec::new(),
        details: Vec::new(),
        digest: 0,
        outcome: None,
        trace: None,
        event_log: Vec::new(),
    }
}

fn run_valid<S: System + ?Sized>(
    system: &S,
    record: &Record,
    profile: Profile<<S::Fault as CustomFault>::Kind>,
    plan: Option<&Plan<S::Fault>>,
    capture: Capture,
) -> Report<S::Fault> {
    let (fault_default, quiet_default) = system.phase_seconds();
    let fault_phase = Duration::from_secs(record.fault_seconds.unwrap_or(fault_default).max(1));
    let quiet = Duration::from_secs(record.quiet_seconds.unwrap_or(quiet_default));
    let buggify = buggify_drawn(&profile, record.seed);
    let trace = if capture.trace { sim::Trace::FromEnv } else { sim::Trace::Off };
    let builder = Sim::builder().seed(record.seed).time_limit(system.time_limit()).trace(trace);
    let builder = builder.buggify(buggify).capture_trace(capture.trace);
    let mut sim = builder.event_log(capture.event_log).build();
    let phase_ms = u64::try_from(fault_phase.as_millis()).unwrap_or(u64::MAX);
    let plan = plan.cloned().unwrap_or_else(|| {
        let nodes = system.node_count(record);
        Plan::draw(&profile, &mut sim.fork_rng("faults"), nodes, phase_ms)
    });
    let run = Run { record: record.clone(), profile, plan, buggify, fault_phase, quiet };
    let (verdict, kept) = match system.build(&mut sim, &run) {
        Err(error) => (Verdict::Crash(error), Kept::default()),
        Ok(mut world) => {
            let verdict = match system.drive(&mut sim, &mut world, &run) {
                Ok(()) => Verdict::of(system.check(&mut sim, &mut world, &run)),
                Err(error) => Verdict::Crash(error),
            };
            let kept = Kept {
                stats: system.stats(&world),
                details: system.details(&world, &run),
                digest: system.digest(&world),
                outcome: system.outcome(&world, &run),
            };
            (verdict, kept)
        }
    };
    Report {
        record: record.clone().with_fingerprint(sim.fingerprint()),
        plan: run.plan,
        verdict,
        buggify,
        events: sim.event_count(),
        virtual_time: sim.elapsed(),
        fingerprint: sim.fingerprint(),
        coverage: sim.coverage(),
        stats: kept.stats,
        details: kept.details,
        digest: kept.digest,
        outcome: kept.outcome,
        trace: sim.take_trace(),
        event_log: sim.event_log(),
    }
}

/// What a run keeps of its world for the report.
#[derive(Default)]
struct Kept {
    stats: Vec<(&'static str, u64)>,
    details: Vec<String>,
    digest: u64,
    outcome: Option<Outcome>,
}

impl<C> Report<C> {
    /// What [`System::outcome`] handed back, if it is a `T`.
    pub fn outcome<T: 'static>(&self) -> Option<&T> {
        self.outcome.as_ref()?.downcast_ref()
    }
}

/// The default drive: the nemesis applies the plan through the fault phase (the
/// system's own tasks run meanwhile), heals everything, and the quiet period follows.
///
/// # Errors
///
/// When the simulation fails (a panic in a task, a deadlock, a limit) or the nemesis
/// cannot apply a step.
pub fn drive<C: CustomFault>(
    sim: &mut Sim,
    target: &mut impl Target<C>,
    run: &Run<C>,
) -> Result<(), String> {
    let start = sim.now();
    let mut nemesis = Nemesis::new();
    for step in timeline(&run.plan) {
        let at = start + Duration::from_millis(step.at_ms);
        sim.run_for(at.saturating_duration_since(sim.now())).map_err(|e| e.to_string())?;
        nemesis.step(sim, target, &step)?;
    }
    let heal = start + run.fault_phase;
    sim.run_for(heal.saturating_duration_since(sim.now())).map_err(|e| e.to_string())?;
    nemesis.heal_all(sim, target)?;
    sim.run_for(run.quiet).map_err(|e| e.to_string())
}
