//! One simulated run, end to end: a seed and a profile in, a verdict out.
//!
//! 1. A seed makes a `Sim`; per-seed cache options and the fault plan come from their
//!    own forked streams ("config", "faults").
//! 2. A cluster of cache nodes starts; client nodes run the workload.
//! 3. Fault phase: the nemesis applies the plan while clients run.
//! 4. Heal everything; clients go on into the quiet period, then probe every key at
//!    QUORUM and ALL, then stop, and the cluster settles.
//! 5. The checkers read the history and the stores: safety, then liveness.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use cache::{Consistency, Options};
use sim::Sim;
use sim::rand::{Ratio, RngExt, SimRng};
use sim::time::Instant;

use crate::checker::{self, Availability, FinalState, Joined, Violation};
use crate::cluster::{DistCluster, setup_in_process_cluster_mutant};
use crate::faults::{Fault, FaultPlan, Profile};
use crate::history::History;
use crate::knobs::{Knobs, RepairPath};
use crate::nemesis::{Action, Nemesis, timeline};
use crate::observer::{
    FALSE_DEAD_LOSS_MAX, Observer, ObserverSettings, Outage, Outages, SAMPLE_INTERVAL,
};
use crate::quiet::{QuietWindows, SETTLE};
use crate::sync_book::SyncBook;
use crate::wire::WireBook;
use crate::workload::{ClientPhase, WorkloadConfig, start_clients};

/// Which nodes must converge once faults stop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Liveness {
    /// Everything heals; every owner of every key must converge.
    #[default]
    All,
    /// A random minority stays cut off after the fault phase; the majority must
    /// converge among itself (on the ring of its own nodes).
    Majority,
}

impl std::str::FromStr for Liveness {
    type Err = String;

    fn from_str(text: &str) -> Result<Liveness, String> {
        match text {
            "all" => Ok(Liveness::All),
            "majority" => Ok(Liveness::Majority),
            _ => Err(format!("invalid liveness mode {text:?}: expected all or majority")),
        }
    }
}

impl std::fmt::Display for Liveness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Liveness::All => "all",
            Liveness::Majority => "majority",
        })
    }
}

/// Virtual time any run may reach: a bound that only a hung run meets.
const RUN_TIME_LIMIT: Duration = Duration::from_secs(3_600);

/// What to run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The seed.
    pub seed: u64,
    /// The fault profile.
    pub profile: Profile,
    /// Cache nodes.
    pub nodes: usize,
    /// Replication factor.
    pub replication: usize,
    /// The workload.
    pub workload: WorkloadConfig,
    /// How long faults are injected (clients run meanwhile).
    pub fault_phase: Duration,
    /// How long the healed cluster settles before the liveness checks.
    pub quiet: Duration,
    /// A plan to run instead of the one the seed draws (replays of shrunk plans).
    pub plan: Option<FaultPlan>,
    /// Capture the run's trace (`SIM_LOG` filter, or `info`).
    pub trace: bool,
    /// Keep the first this many simulation events (0: none), for determinism checks.
    pub event_log: usize,
    /// A planted bug every cache node runs with (`cachesim mutants`).
    pub mutant: Option<cache::Mutant>,
    /// Which nodes must converge after the fault phase.
    pub liveness: Liveness,
}

impl RunConfig {
    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// Fewer than 2 nodes, a replication factor out of `1..=nodes`, no client, or a
    /// fault phase shorter than a second.
    pub fn validate(&self) -> Result<(), String> {
        if self.nodes < 2 || self.nodes > crate::cluster::CLUSTER_NODES_MAX {
            return Err(format!(
                "invalid node count {}: expected 2 to {}",
                self.nodes,
                crate::cluster::CLUSTER_NODES_MAX
            ));
        }
        if self.replication == 0 || self.replication > self.nodes {
            return Err(format!(
                "invalid replication factor {}: expected 1 to {}",
                self.replication, self.nodes
            ));
        }
        if self.workload.clients == 0 || self.workload.keys == 0 {
            return Err("a run needs at least one client and one key".to_string());
        }
        if self.fault_phase < Duration::from_secs(1) {
            return Err(format!(
                "invalid fault phase {:?}: expected at least 1 s",
                self.fault_phase
            ));
        }
        Ok(())
    }

    /// The defaults for `seed` and `profile`: 5 nodes, replication 3, 3 clients,
    /// 20 s of faults, 40 s of quiet.
    pub fn new(seed: u64, profile: Profile) -> RunConfig {
        RunConfig {
            seed,
            profile,
            nodes: 5,
            replication: 3,
            workload: WorkloadConfig::for_profile(profile),
            fault_phase: Duration::from_secs(20),
            quiet: Duration::from_secs(40),
            plan: None,
            trace: false,
            event_log: 0,
            mutant: None,
            liveness: Liveness::All,
        }
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every check held.
    Pass,
    /// A safety clause broke.
    Safety(Vec<Violation>),
    /// Safety held, but the cluster did not converge after healing.
    Liveness(Vec<Violation>),
    /// The simulation itself failed: a panic (a cache assertion), a deadlock or a limit.
    Crash(String),
    /// The harness could not run it: the configuration is invalid (the system under
    /// test is not at fault).
    Invalid(String),
}

impl Verdict {
    /// Whether the run passed.
    pub fn is_pass(&self) -> bool {
        matches!(self, Verdict::Pass)
    }

    /// A short name: pass, safety, liveness or crash.
    pub fn kind(&self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Safety(_) => "safety",
            Verdict::Liveness(_) => "liveness",
            Verdict::Crash(_) => "crash",
            Verdict::Invalid(_) => "invalid",
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
                    *counts.entry(violation.check.name()).or_default() += 1;
                }
                let counts: Vec<String> =
                    counts.iter().map(|(check, count)| format!("{check} {count}")).collect();
                write!(
                    f,
                    "{} failure: {} violation(s) ({})",
                    self.kind(),
                    violations.len(),
                    counts.join(", ")
                )?;
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

/// What a run did and how it ended.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// The profile.
    pub profile: Profile,
    /// The faults injected.
    pub plan: FaultPlan,
    /// The consistency levels drawn for the run (read, write).
    pub consistency: (Consistency, Consistency),
    /// The verdict.
    pub verdict: Verdict,
    /// Client operations issued.
    pub operations: usize,
    /// How the operations ended.
    pub availability: Availability,
    /// The cache options the seed drew.
    pub knobs: Knobs,
    /// Whether buggify was on.
    pub buggify: bool,
    /// Simulated events (the fingerprint's event count).
    pub events: u64,
    /// Virtual time simulated.
    pub virtual_time: Duration,
    /// The run's fingerprint.
    pub fingerprint: u64,
    /// A digest of the run's history (every operation, outcome and memory loss): two
    /// runs of one record with the same fingerprint and a different history digest
    /// differ in what the harness saw.
    pub history_digest: u64,
    /// The captured trace, when asked for.
    pub trace: Option<String>,
    /// The history of client operations, when the trace was asked for.
    pub history: Option<History>,
    /// The first events of the run, when asked for.
    pub event_log: Vec<sim::Event>,
    /// The liveness mode it ran with.
    pub liveness: Liveness,
    /// The fault phase and quiet period it ran with.
    pub phases: (Duration, Duration),
    /// The named assertions and coverage points the run met (the cache's
    /// [`cache::COVERAGE_POINTS`] among them), with their counts.
    pub coverage: sim::Coverage,
}

/// Runs one seed. An invalid configuration ends as [`Verdict::Invalid`] naming the
/// problem (see [`RunConfig::validate`]), without running; a panic anywhere in the run
/// (a task's, or a destructor's during a kill, a restart or the end) as
/// [`Verdict::Crash`] with the panic's message: a run never unwinds into its caller.
pub fn run(config: &RunConfig) -> RunReport {
    if let Err(problem) = config.validate() {
        return report_without_run(config, Verdict::Invalid(problem));
    }
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_valid(config)));
    ran.unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(ToString::to_string)
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic with no message".to_string());
        report_without_run(config, Verdict::Crash(format!("panic outside a task: {message}")))
    })
}

/// The report of a run that did not run to its end, with what its seed draws.
fn report_without_run(config: &RunConfig, verdict: Verdict) -> RunReport {
    let sim = Sim::builder().seed(config.seed).build();
    RunReport {
        seed: config.seed,
        profile: config.profile,
        plan: config.plan.clone().unwrap_or_default(),
        consistency: draw_consistency(&sim),
        verdict,
        operations: 0,
        availability: Availability::default(),
        knobs: Knobs::draw(&mut sim.fork_rng("options")),
        buggify: buggify_drawn(config),
        events: 0,
        virtual_time: Duration::ZERO,
        fingerprint: 0,
        history_digest: 0,
        trace: None,
        history: None,
        event_log: Vec::new(),
        liveness: config.liveness,
        phases: (config.fault_phase, config.quiet),
        coverage: sim::Coverage::new(),
    }
}

fn run_valid(config: &RunConfig) -> RunReport {
    let trace = if config.trace { sim::Trace::FromEnv } else { sim::Trace::Off };
    let buggify = buggify_drawn(config);
    let builder = Sim::builder().seed(config.seed).time_limit(RUN_TIME_LIMIT).trace(trace);
    let builder = builder.buggify(buggify).capture_trace(config.trace);
    let mut sim = builder.event_log(config.event_log).build();
    let consistency = draw_consistency(&sim);
    let knobs = Knobs::draw(&mut sim.fork_rng("options"));
    let phase_ms = u64::try_from(config.fault_phase.as_millis()).unwrap_or(u64::MAX);
    let plan = config.plan.clone().unwrap_or_else(|| {
        FaultPlan::draw(config.profile, &mut sim.fork_rng("faults"), config.nodes, phase_ms)
    });
    let history = Rc::new(RefCell::new(History::default()));
    let setting = Setting { config, consistency, knobs: &knobs, plan: &plan, buggify };
    let verdict = match drive(&mut sim, &setting, &history) {
        Ok(verdict) => verdict,
        Err(error) => Verdict::Crash(error),
    };
    let history = history.borrow();
    RunReport {
        seed: config.seed,
        profile: config.profile,
        plan,
        consistency,
        verdict,
        operations: history.ops.len(),
        availability: Availability::of(&history),
        knobs,
        buggify,
        events: sim.event_count(),
        virtual_time: sim.elapsed(),
        fingerprint: sim.fingerprint(),
        history_digest: sim::fingerprint::digest(&*history),
        trace: sim.take_trace(),
        history: config.trace.then(|| history.clone()),
        event_log: sim.event_log(),
        liveness: config.liveness,
        phases: (config.fault_phase, config.quiet),
        coverage: sim.coverage(),
    }
}

/// Whether buggify is on for the run: for a quarter of swarm seeds, from the seed's own
/// "buggify" stream (drawn before the simulation exists, which needs to know).
fn buggify_drawn(config: &RunConfig) -> bool {
    config.profile == Profile::Swarm
        && SimRng::forked(config.seed, "buggify").chance(Ratio::new(1, 4))
}

/// The read and write consistency of a run, from its own stream.
fn draw_consistency(sim: &Sim) -> (Consistency, Consistency) {
    let mut rng = sim.fork_rng("config");
    let levels = [Consistency::One, Consistency::Quorum, Consistency::Quorum, Consistency::All];
    (*rng.choose(&levels).expect("levels"), *rng.choose(&levels).expect("levels"))
}

/// What one run was set up with.
struct Setting<'a> {
    config: &'a RunConfig,
    consistency: (Consistency, Consistency),
    knobs: &'a Knobs,
    plan: &'a FaultPlan,
    buggify: bool,
}

/// Runs the simulation forward, sampling the stores every [`SAMPLE_INTERVAL`].
struct Driver<'a> {
    cluster: &'a DistCluster,
    history: &'a Rc<RefCell<History>>,
    observer: Observer,
    next_sample: Instant,
}

impl Driver<'_> {
    fn advance_to(&mut self, sim: &mut Sim, target: Instant) -> Result<(), String> {
        while sim.now() < target {
            let until = target.min(self.next_sample);
            sim.run_for(until - sim.now()).map_err(|e| e.to_string())?;
            if sim.now() >= self.next_sample {
                let now_ns = sim.now().as_nanos();
                self.observer.sample(now_ns, self.cluster, &self.history.borrow());
                self.next_sample += SAMPLE_INTERVAL;
            }
        }
        Ok(())
    }
}

fn drive(
    sim: &mut Sim,
    setting: &Setting<'_>,
    history: &Rc<RefCell<History>>,
) -> Result<Verdict, String> {
    let (config, knobs, plan) = (setting.config, setting.knobs, setting.plan);
    let options = Options::builder()
        .read_consistency(setting.consistency.0)
        .write_consistency(setting.consistency.1);
    let options = knobs.apply(options);
    // Installed before any node starts (a node's first syncs are booked too); kept
    // until the verdict.
    let (wire, _watching) = WireBook::install(&sim.handle());
    let cluster = Rc::new(
        setup_in_process_cluster_mutant(
            sim,
            config.nodes,
            config.replication,
            options,
            config.mutant,
        )
        .map_err(|e| e.to_string())?,
    );
    let (sync, _watching_syncs) = SyncBook::install(&sim.handle(), &cluster);
    let phase = Rc::new(Cell::new(ClientPhase::Workload));
    start_clients(sim, &cluster, history, &phase, &config.workload)?;
    let start = sim.now();
    let heal = start + config.fault_phase;
    let end = heal + config.quiet;
    // In majority mode a minority stays cut off after the heal: nothing is quiet then,
    // and nothing is probed. Else the quiet lasts to the end of the probes.
    let quiet_end =
        if config.liveness == Liveness::Majority { heal } else { end + PROBE_PHASE_MAX };
    let windows =
        QuietWindows::new(plan, start.as_nanos(), heal.as_nanos(), quiet_end.as_nanos(), SETTLE);
    let settings = ObserverSettings {
        replication: config.replication,
        read_repair: knobs.runs(RepairPath::ReadRepair),
        tombstones_collected: knobs.collects_tombstones(),
        detector_bound: DETECTOR_BOUND,
        alive_until_ns: if loss_only(plan) { quiet_end.as_nanos() } else { 0 },
    };
    let outages = outages(plan, &cluster.ids(), start.as_nanos());
    let observer = Observer::new(settings, windows.clone(), outages);
    let mut driver =
        Driver { cluster: &cluster, history, observer, next_sample: start + SAMPLE_INTERVAL };
    // Fault phase.
    let mut nemesis = Nemesis::new();
    let joins = fault_phase(sim, &mut driver, &mut nemesis, plan, start)?;
    driver.advance_to(sim, heal)?;
    // Heal; clients go on into the quiet window that opens after it, then stop, and
    // the cluster settles.
    nemesis.heal_all(sim, &cluster)?;
    let converging = converging_nodes(sim, &cluster, config)?;
    let clients_stop = if quiet_end == heal { heal } else { heal + config.quiet / 2 };
    driver.advance_to(sim, clients_stop)?;
    phase.set(if quiet_end == heal { ClientPhase::Stop } else { ClientPhase::Idle });
    driver.advance_to(sim, end)?;
    // The end state, read before the probes write every key (which would repair what
    // the repair paths failed to).
    let (state, hints_left) = end_state(&cluster, converging.1.as_deref());
    sync.borrow_mut().settle(sim.now().as_nanos());
    if quiet_end != heal {
        probe(sim, &mut driver, &phase, &config.workload)?;
    }
    // The last sample, at the very end, whatever the sampling grid.
    driver.observer.sample(sim.now().as_nanos(), &cluster, &history.borrow());
    let (observer, ended_ns) = (driver.observer, sim.now().as_nanos());
    let ended = Ended {
        cluster: &cluster,
        observer,
        windows,
        converging,
        wire,
        sync,
        state,
        ended_ns,
        joins,
        hints_left,
    };
    Ok(judge(setting, &history.borrow(), ended))
}

/// Applies the plan's steps in time, sampling the stores meanwhile; returns the nodes
/// that joined, with the keys live before each.
fn fault_phase(
    sim: &mut Sim,
    driver: &mut Driver<'_>,
    nemesis: &mut Nemesis,
    plan: &FaultPlan,
    start: Instant,
) -> Result<Vec<Joined>, String> {
    let (cluster, history) = (driver.cluster, driver.history);
    let mut joins = Vec::new();
    for step in timeline(plan) {
        driver.advance_to(sim, start + Duration::from_millis(step.at_ms))?;
        let joining = matches!(step.action, Action::Apply(Fault::Join));
        let keys_before = joining.then(|| Joined::live_keys(cluster));
        // The stores just before a node loses its memory: what it held there vouches.
        if matches!(step.action, Action::Apply(Fault::Crash { .. } | Fault::Drain { .. })) {
            driver.observer.sample(sim.now().as_nanos(), cluster, &history.borrow());
        }
        nemesis.step(sim, cluster, &mut history.borrow_mut(), &step)?;
        let joined = history.borrow().joins.get(joins.len()).cloned();
        if let (Some((node, at_ns)), Some(keys_before)) = (joined, keys_before) {
            joins.push(Joined { node, at_ns, keys_before });
        }
    }
    Ok(joins)
}

/// The stores at the end of the quiet period (of `majority` only, if given), and the
/// nodes with hints still queued, with how many.
fn end_state(
    cluster: &DistCluster,
    majority: Option<&[cache::NodeId]>,
) -> (FinalState, Vec<(cache::NodeId, usize)>) {
    let state = match majority {
        None => FinalState::read(cluster),
        Some(majority) => FinalState::read_nodes(cluster, majority),
    };
    let hints_left = cluster
        .ids()
        .into_iter()
        .filter_map(|id| Some((id.clone(), cluster.by_id(&id)?.hints_queued())))
        .filter(|(_, queued)| *queued > 0)
        .collect();
    (state, hints_left)
}

/// The longest the probe phase may last: far more than every client needs to probe
/// its keys with every node up.
const PROBE_PHASE_MAX: Duration = Duration::from_secs(30);

/// The probe phase: every client writes and reads each of its probe keys at QUORUM
/// then ALL; runs until every probe has ended or [`PROBE_PHASE_MAX`].
fn probe(
    sim: &mut Sim,
    driver: &mut Driver<'_>,
    phase: &Cell<ClientPhase>,
    workload: &WorkloadConfig,
) -> Result<(), String> {
    let from = sim.now();
    driver.history.borrow_mut().probes_from_ns = Some(from.as_nanos());
    phase.set(ClientPhase::Probe);
    let expected = crate::workload::probe_count(workload);
    let ended = |history: &History| {
        let probes = history.ops.iter().filter(|op| history.is_probe(op));
        probes.filter(|op| op.complete_ns.is_some()).count()
    };
    while sim.now() < from + PROBE_PHASE_MAX && ended(&driver.history.borrow()) < expected {
        driver.advance_to(sim, sim.now() + PROBE_POLL)?;
    }
    phase.set(ClientPhase::Stop);
    Ok(())
}

/// How often the driver looks whether the probes have ended.
const PROBE_POLL: Duration = Duration::from_millis(100);

/// What a run leaves for the checkers.
struct Ended<'a> {
    cluster: &'a DistCluster,
    observer: Observer,
    windows: QuietWindows,
    converging: (cache::Ring, Option<Vec<cache::NodeId>>),
    wire: Rc<RefCell<WireBook>>,
    /// Anti-entropy's promises in each direction.
    sync: Rc<RefCell<SyncBook>>,
    /// The stores at the end of the quiet period, before the probes.
    state: FinalState,
    /// When the run ended (virtual ns).
    ended_ns: u64,
    /// The nodes that joined, with the keys live before each.
    joins: Vec<Joined>,
    /// The nodes with hints still queued at the end of the quiet period, and how many.
    hints_left: Vec<(cache::NodeId, usize)>,
}

/// The verdict: safety clauses first, then liveness.
fn judge(setting: &Setting<'_>, history: &History, ended: Ended<'_>) -> Verdict {
    let (config, knobs, plan) = (setting.config, setting.knobs, setting.plan);
    let Ended {
        cluster,
        observer,
        windows,
        converging,
        wire,
        sync,
        state,
        ended_ns,
        joins,
        hints_left,
    } = ended;
    let mut safety = checker::phantom_reads(history);
    safety.extend(crate::bad_input::bad_input_accepted(&history.bad_inputs));
    safety.extend(checker::under_replicated(
        history,
        config.replication,
        knobs.collects_tombstones(),
    ));
    let rebalance = knobs.runs(RepairPath::Rebalance);
    safety.extend(checker::stale_reads(history, config.replication, &windows, rebalance));
    let run_time = config.fault_phase + config.quiet;
    safety.extend(checker::expired_reads(history, skew_ns_max(plan, run_time)));
    safety.extend(checker::hint_accounting(cluster, &wire.borrow()));
    safety.extend(crate::tally::counters_untrue(cluster, wire.borrow().tallies()));
    let (progress, over_time): (Vec<Violation>, Vec<Violation>) =
        observer.into_violations().into_iter().partition(|violation| {
            matches!(violation.check, checker::Check::ReplicationLag | checker::Check::DetectorSlow)
        });
    safety.extend(over_time);
    if !safety.is_empty() {
        return Verdict::Safety(safety);
    }
    // Buggify's fault points slow requests down and fail them on purpose, so a run
    // with buggify on promises no availability.
    let mut liveness = Vec::new();
    if !setting.buggify {
        liveness.extend(checker::unavailable(history, &windows));
        let expected = crate::workload::probe_count(&config.workload);
        liveness.extend(checker::probes_unfinished(history, expected));
        if knobs.runs(RepairPath::ReadRepair) {
            let bound_ns = u64::try_from(READ_REPAIR_BOUND.as_nanos()).unwrap_or(u64::MAX);
            let (wire, bounds) = (&wire.borrow(), (bound_ns, ended_ns));
            liveness
                .extend(checker::read_repairs_missing(history, cluster, &windows, wire, bounds));
        }
        liveness.extend(sync.borrow().violations(&windows, knobs.collects_tombstones()));
    }
    liveness.extend(progress);
    let (ring, majority) = converging;
    // With every node up and reachable for the quiet period, every hint was delivered
    // or expired by its end (where hints live at most half of it: see hints_stuck).
    let hint_ttl = Duration::from_millis(knobs.hint_ttl_ms);
    if majority.is_none() && knobs.runs(RepairPath::HintedHandoff) && hint_ttl <= config.quiet / 2 {
        liveness.extend(checker::hints_stuck(&hints_left, config.quiet));
    }
    if converges(knobs, plan, cluster) {
        liveness.extend(checker::divergence(&ring, &state, knobs.collects_tombstones()));
    }
    // Rebalance is what drops the copies a node no longer owns, and what moves keys
    // to a node that joined.
    if knobs.runs(RepairPath::Rebalance) {
        liveness.extend(checker::extra_copies(cluster, &state));
        if knobs.runs(RepairPath::HintedHandoff) {
            let (wire, end) = (&wire.borrow(), (&ring, &state));
            liveness.extend(checker::rebalance_missing(&joins, history, end, cluster, wire));
        }
    }
    if liveness.is_empty() { Verdict::Pass } else { Verdict::Liveness(liveness) }
}

/// How soon after a read's answer its read repairs leave: the slowest owner's answer
/// (the repair waits for every owner, up to the RPC timeout of 5 s) and a second.
const READ_REPAIR_BOUND: Duration = Duration::from_secs(6);

/// How long a crashed node may stay on a live node's ring: the dead timeout (6 s), a
/// heartbeat round with its probes (1.5 s), and a gossip round's slack.
const DETECTOR_BOUND: Duration = Duration::from_secs(10);

/// Whether nothing worse than message loss at or below [`FALSE_DEAD_LOSS_MAX`] happens
/// in the plan (duplicates, clock skew and the latency tail aside): the failure
/// detector then promises to declare no running node dead.
fn loss_only(plan: &FaultPlan) -> bool {
    let at_most = |ratio: Ratio| {
        // a/b <= c/d, in integers.
        u128::from(ratio.numerator()) * u128::from(FALSE_DEAD_LOSS_MAX.denominator())
            <= u128::from(FALSE_DEAD_LOSS_MAX.numerator()) * u128::from(ratio.denominator())
    };
    plan.episodes.iter().all(|episode| match episode.fault {
        Fault::Loss { ratio } => at_most(ratio),
        Fault::Duplicate { .. } | Fault::ClockSkew { .. } => true,
        _ => false,
    })
}

/// The plan's crashes and pauses, in absolute virtual time.
fn outages(plan: &FaultPlan, ids: &[cache::NodeId], start_ns: u64) -> Outages {
    let (mut crashes, mut pauses, mut restarts) = (Vec::new(), Vec::new(), Vec::new());
    for episode in &plan.episodes {
        // A drained node leaves and rejoins at the episode's end: like a crash's end,
        // that starts a fresh node whose detector starts from scratch.
        let (list, node) = match episode.fault {
            Fault::Crash { node } => (&mut crashes, node),
            Fault::Pause { node } => (&mut pauses, node),
            Fault::Drain { node } => (&mut restarts, node),
            _ => continue,
        };
        list.push(Outage {
            node: ids[node].clone(),
            start_ns: start_ns + episode.start_ms * 1_000_000,
            end_ns: start_ns + episode.end_ms() * 1_000_000,
        });
    }
    // A crash ends in a restart too.
    restarts.extend(crashes.iter().cloned());
    Outages { crashes, pauses, restarts }
}

/// The most any clock of the plan is off: offsets and the drift over the run, for both
/// the clock that sets an expiry and the one that judges it, plus 10 ms for clocks read
/// in whole milliseconds. (The expiry is judged from the set's answer, by which it was
/// set: no latency needs allowing.)
fn skew_ns_max(plan: &FaultPlan, run: Duration) -> u64 {
    let run_ms = u64::try_from(run.as_millis()).unwrap_or(u64::MAX);
    let worst_ms = plan
        .episodes
        .iter()
        .filter_map(|episode| match episode.fault {
            Fault::ClockSkew { offset_ms, drift_ppm, .. } => Some(
                offset_ms.unsigned_abs() + u64::from(drift_ppm.unsigned_abs()) * run_ms / 1_000_000,
            ),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    (2 * worst_ms + 10) * 1_000_000
}

/// Whether every owner must converge by the end. With rebalance and anti-entropy on,
/// they repair anything. Without anti-entropy, only hints and rebalance repair, so convergence is promised
/// only if no node lost its memory (its unreplicated writes and its hints die with it)
/// and no hint expired or was dropped by a cap.
fn converges(knobs: &Knobs, plan: &FaultPlan, cluster: &DistCluster) -> bool {
    // Without rebalance, a key written on a node that owned it only while the ring was
    // changing stays there: no other path moves a key off a node that does not own it.
    // Loss (at most the detector's promised rate), duplication and skew change no ring.
    let ring_changed = !loss_only(plan);
    if !knobs.runs(RepairPath::Rebalance) {
        return !ring_changed;
    }
    if knobs.runs(RepairPath::AntiEntropy) {
        return true;
    }
    let crashed = plan
        .episodes
        .iter()
        .any(|episode| matches!(episode.fault, Fault::Crash { .. } | Fault::Drain { .. }));
    !crashed && !hints_lost(cluster)
}

/// Whether any running node let a hint expire or dropped one for a cap.
fn hints_lost(cluster: &DistCluster) -> bool {
    cluster.ids().iter().filter_map(|id| cluster.by_id(id)).any(|node| checker::let_hints_go(&node))
}

/// The ring the liveness checks use and, in majority mode, the nodes that must
/// converge: a random minority (from the run's own "liveness" stream) is cut off from
/// the rest for the quiet period.
fn converging_nodes(
    sim: &Sim,
    cluster: &crate::cluster::DistCluster,
    config: &RunConfig,
) -> Result<(cache::Ring, Option<Vec<cache::NodeId>>), String> {
    if config.liveness == Liveness::All {
        return Ok((cluster.ring().clone(), None));
    }
    let mut ids = cluster.ids();
    sim.fork_rng("liveness").shuffle(&mut ids);
    let minority = ids.split_off(ids.len() / 2 + 1);
    assert!(ids.len() > minority.len());
    let sim_nodes = |ids: &[cache::NodeId]| {
        ids.iter().map(|id| cluster.sim_node(id).expect("cluster node")).collect::<Vec<_>>()
    };
    if !minority.is_empty() {
        sim.partition(&sim_nodes(&ids), &sim_nodes(&minority)).map_err(|e| e.to_string())?;
    }
    let options = cluster.options();
    let mut ring = cache::Ring::new(options.replication_factor(), options.vnode_count_per_node());
    ring.rebuild(&ids);
    Ok((ring, Some(ids)))
}
