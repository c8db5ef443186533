//! One cache run, in the three steps the harness calls (see `system.rs`):
//!
//! 1. [`build`]: per-seed cache options and consistency levels come from their own
//!    forked streams ("options", "config"); a cluster of cache nodes starts, and
//!    client nodes run the workload. (The harness drew the fault plan from "faults".)
//! 2. [`drive`]: the nemesis applies the plan while clients run, sampling the stores;
//!    then it heals everything, clients go on into the quiet period, probe every key
//!    at QUORUM and ALL, and stop, and the cluster settles.
//! 3. [`judge`]: the checkers read the history and the stores: safety, then liveness.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use cache::{Consistency, Options};
use sim::Sim;
use sim::net::RuleGuard;
use sim::rand::{Ratio, RngExt};
use sim::time::Instant;
use sim_harness::{Action, Nemesis, Run, timeline};

use crate::checker::{self, FinalState, Joined, Violation};
use crate::cluster::{DistCluster, setup_in_process_cluster_mutant};
use crate::faults::{CacheFault, Fault, FaultPlan, Profile};
use crate::history::History;
use crate::knobs::{Knobs, RepairPath};
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

/// What a run is, in the cache's terms.
#[derive(Clone, Debug)]
pub(crate) struct RunConfig {
    /// Cache nodes.
    pub(crate) nodes: usize,
    /// Replication factor.
    pub(crate) replication: usize,
    /// The workload.
    pub(crate) workload: WorkloadConfig,
    /// How long faults are injected (clients run meanwhile).
    pub(crate) fault_phase: Duration,
    /// How long the healed cluster settles before the liveness checks.
    pub(crate) quiet: Duration,
    /// A planted bug every cache node runs with (`cachesim mutants`).
    pub(crate) mutant: Option<cache::Mutant>,
    /// Which nodes must converge after the fault phase.
    pub(crate) liveness: Liveness,
}

/// Cache nodes in every run.
pub(crate) const NODE_COUNT: usize = 5;
/// The replication factor of every run.
const REPLICATION: usize = 3;

impl RunConfig {
    /// The cache's view of `run`: its knobs (checked when the record was parsed)
    /// applied to the profile's defaults.
    pub(crate) fn of(run: &Run<CacheFault>) -> RunConfig {
        let profile: Profile = run.record.profile.parse().unwrap_or(Profile::Swarm);
        let mut workload = WorkloadConfig::for_profile(profile);
        if let Some(clients) = run.knob("clients").and_then(|clients| clients.parse().ok()) {
            workload.clients = clients;
        }
        RunConfig {
            nodes: NODE_COUNT,
            replication: REPLICATION,
            workload,
            fault_phase: run.fault_phase,
            quiet: run.quiet,
            mutant: run.knob("mutant").and_then(|mutant| mutant.parse().ok()),
            liveness: run.knob("liveness").and_then(|mode| mode.parse().ok()).unwrap_or_default(),
        }
    }
}

/// The read and write consistency of a run, from its own stream.
fn draw_consistency(sim: &Sim) -> (Consistency, Consistency) {
    let mut rng = sim.fork_rng("config");
    let levels = [Consistency::One, Consistency::Quorum, Consistency::Quorum, Consistency::All];
    (*rng.choose(&levels).expect("levels"), *rng.choose(&levels).expect("levels"))
}

/// The cache built on one simulation: the cluster, its clients' history, the books
/// the harness keeps at the wire, and (once driven) the end state.
pub struct CacheWorld {
    pub(crate) config: RunConfig,
    pub(crate) consistency: (Consistency, Consistency),
    pub(crate) knobs: Knobs,
    pub(crate) cluster: Rc<DistCluster>,
    pub(crate) history: Rc<RefCell<History>>,
    phase: Rc<Cell<ClientPhase>>,
    wire: Rc<RefCell<WireBook>>,
    sync: Rc<RefCell<SyncBook>>,
    /// The rules that feed the books: kept until the verdict.
    _watching: (RuleGuard, RuleGuard),
    ended: Option<Ended>,
}

impl std::fmt::Debug for CacheWorld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheWorld").field("config", &self.config).finish_non_exhaustive()
    }
}

/// Builds the cluster and starts the clients.
pub(crate) fn build(sim: &mut Sim, run: &Run<CacheFault>) -> Result<CacheWorld, String> {
    let config = RunConfig::of(run);
    let consistency = draw_consistency(sim);
    let knobs = Knobs::draw(&mut sim.fork_rng("options"));
    let options =
        Options::builder().read_consistency(consistency.0).write_consistency(consistency.1);
    let options = knobs.apply(options);
    // Installed before any node starts (a node's first syncs are booked too); kept
    // until the verdict.
    let (wire, watching_wire) = WireBook::install(&sim.handle());
    let cluster = setup_in_process_cluster_mutant(
        sim,
        config.nodes,
        config.replication,
        options,
        config.mutant,
    );
    let cluster = Rc::new(cluster.map_err(|e| e.to_string())?);
    let (sync, watching_syncs) = SyncBook::install(&sim.handle(), &cluster);
    let history = Rc::new(RefCell::new(History::default()));
    let phase = Rc::new(Cell::new(ClientPhase::Workload));
    start_clients(sim, &cluster, &history, &phase, &config.workload)?;
    Ok(CacheWorld {
        config,
        consistency,
        knobs,
        cluster,
        history,
        phase,
        wire,
        sync,
        _watching: (watching_wire, watching_syncs),
        ended: None,
    })
}

/// Runs the simulation forward, sampling the stores every [`SAMPLE_INTERVAL`].
struct Driver {
    cluster: Rc<DistCluster>,
    history: Rc<RefCell<History>>,
    observer: Observer,
    next_sample: Instant,
}

impl Driver {
    fn advance_to(&mut self, sim: &mut Sim, target: Instant) -> Result<(), String> {
        while sim.now() < target {
            let until = target.min(self.next_sample);
            sim.run_for(until - sim.now()).map_err(|e| e.to_string())?;
            if sim.now() >= self.next_sample {
                let now_ns = sim.now().as_nanos();
                self.observer.sample(now_ns, &self.cluster, &self.history.borrow());
                self.next_sample += SAMPLE_INTERVAL;
            }
        }
        Ok(())
    }
}

/// The run's phases, in absolute virtual time.
struct Phases {
    start: Instant,
    heal: Instant,
    end: Instant,
    /// Where quiet ends: the heal in majority mode (a minority stays cut off), else
    /// the end of the probes.
    quiet_end: Instant,
}

/// Drives the run: the fault phase, the heal, the quiet period and the probes.
pub(crate) fn drive(sim: &mut Sim, world: &mut CacheWorld, plan: &FaultPlan) -> Result<(), String> {
    let config = world.config.clone();
    let start = sim.now();
    let heal = start + config.fault_phase;
    let end = heal + config.quiet;
    let quiet_end =
        if config.liveness == Liveness::Majority { heal } else { end + PROBE_PHASE_MAX };
    let phases = Phases { start, heal, end, quiet_end };
    let windows =
        QuietWindows::new(plan, start.as_nanos(), heal.as_nanos(), quiet_end.as_nanos(), SETTLE);
    let mut driver = driver(world, plan, &phases, windows.clone());
    // Fault phase.
    let mut nemesis = Nemesis::new();
    let joins = fault_phase(sim, &mut driver, &mut nemesis, world, plan, start)?;
    driver.advance_to(sim, heal)?;
    // Heal; clients go on into the quiet window that opens after it, then stop, and
    // the cluster settles.
    nemesis.heal_all(sim, world)?;
    let converging = converging_nodes(sim, &world.cluster, &config)?;
    let majority = converging.1.clone();
    let (state, hints_left) = quiet_and_probes(sim, &mut driver, world, &phases, majority)?;
    let Driver { observer, .. } = driver;
    let ended_ns = sim.now().as_nanos();
    world.ended = Some(Ended { observer, windows, converging, state, ended_ns, joins, hints_left });
    Ok(())
}

fn driver(world: &CacheWorld, plan: &FaultPlan, phases: &Phases, windows: QuietWindows) -> Driver {
    let settings = ObserverSettings {
        replication: world.config.replication,
        read_repair: world.knobs.runs(RepairPath::ReadRepair),
        tombstones_collected: world.knobs.collects_tombstones(),
        detector_bound: DETECTOR_BOUND,
        alive_until_ns: if loss_only(plan) { phases.quiet_end.as_nanos() } else { 0 },
    };
    let outages = outages(plan, &world.cluster.ids(), phases.start.as_nanos());
    Driver {
        cluster: Rc::clone(&world.cluster),
        history: Rc::clone(&world.history),
        observer: Observer::new(settings, windows, outages),
        next_sample: phases.start + SAMPLE_INTERVAL,
    }
}

/// After the heal: clients run on, go idle, the cluster settles; the end state (of
/// `majority` only, if given) is read before the probes write every key, which would
/// repair what the repair paths failed to.
fn quiet_and_probes(
    sim: &mut Sim,
    driver: &mut Driver,
    world: &mut CacheWorld,
    phases: &Phases,
    majority: Option<Vec<cache::NodeId>>,
) -> Result<(FinalState, Vec<(cache::NodeId, usize)>), String> {
    let (heal, quiet_end) = (phases.heal, phases.quiet_end);
    let clients_stop = if quiet_end == heal { heal } else { heal + world.config.quiet / 2 };
    driver.advance_to(sim, clients_stop)?;
    world.phase.set(if quiet_end == heal { ClientPhase::Stop } else { ClientPhase::Idle });
    driver.advance_to(sim, phases.end)?;
    let end_state = end_state(&world.cluster, majority.as_deref());
    world.sync.borrow_mut().settle(sim.now().as_nanos());
    if quiet_end != heal {
        probe(sim, driver, &world.phase, &world.config.workload)?;
    }
    // The last sample, at the very end, whatever the sampling grid.
    driver.observer.sample(sim.now().as_nanos(), &world.cluster, &world.history.borrow());
    Ok(end_state)
}

/// Applies the plan's steps in time, sampling the stores meanwhile; returns the nodes
/// that joined, with the keys live before each.
fn fault_phase(
    sim: &mut Sim,
    driver: &mut Driver,
    nemesis: &mut Nemesis,
    world: &mut CacheWorld,
    plan: &FaultPlan,
    start: Instant,
) -> Result<Vec<Joined>, String> {
    let (cluster, history) = (Rc::clone(&driver.cluster), Rc::clone(&driver.history));
    let mut joins = Vec::new();
    for step in timeline(plan) {
        driver.advance_to(sim, start + Duration::from_millis(step.at_ms))?;
        let joining = matches!(step.action, Action::Apply(Fault::Custom(CacheFault::Join)));
        let keys_before = joining.then(|| Joined::live_keys(&cluster));
        // The stores just before a node loses its memory: what it held there vouches.
        if matches!(
            step.action,
            Action::Apply(
                Fault::Crash { .. }
                    | Fault::Reboot { .. }
                    | Fault::Custom(CacheFault::Drain { .. })
            )
        ) {
            driver.observer.sample(sim.now().as_nanos(), &cluster, &history.borrow());
        }
        nemesis.step(sim, world, &step)?;
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
    driver: &mut Driver,
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
struct Ended {
    observer: Observer,
    windows: QuietWindows,
    converging: (cache::Ring, Option<Vec<cache::NodeId>>),
    /// The stores at the end of the quiet period, before the probes.
    state: FinalState,
    /// When the run ended (virtual ns).
    ended_ns: u64,
    /// The nodes that joined, with the keys live before each.
    joins: Vec<Joined>,
    /// The nodes with hints still queued at the end of the quiet period, and how many.
    hints_left: Vec<(cache::NodeId, usize)>,
}

/// The violations of a driven run, as the harness reports them: the safety clauses'
/// if any broke, else the liveness clauses'.
pub(crate) fn judge(world: &mut CacheWorld, run: &Run<CacheFault>) -> Vec<sim_harness::Violation> {
    let Some(ended) = world.ended.take() else {
        let problem = "the run ended before its checks: drive did not finish";
        return vec![sim_harness::Violation::liveness("not-judged", problem)];
    };
    let setting = Setting { world, plan: &run.plan, buggify: run.buggify };
    let (class, violations) = match clauses(&setting, &world.history.borrow(), ended) {
        Ok(liveness) => (sim_harness::Class::Liveness, liveness),
        Err(safety) => (sim_harness::Class::Safety, safety),
    };
    violations
        .into_iter()
        .map(|violation| {
            let mut message = violation.message;
            for op in &violation.ops {
                message.push_str(&format!("\n      {op}"));
            }
            sim_harness::Violation { check: violation.check.name().to_string(), class, message }
        })
        .collect()
}

/// What one run was set up with.
struct Setting<'a> {
    world: &'a CacheWorld,
    plan: &'a FaultPlan,
    buggify: bool,
}

/// The broken clauses: `Err` with the safety ones if any, else the liveness ones.
fn clauses(
    setting: &Setting<'_>,
    history: &History,
    ended: Ended,
) -> Result<Vec<Violation>, Vec<Violation>> {
    let (config, knobs, plan) = (&setting.world.config, &setting.world.knobs, setting.plan);
    let (cluster, wire, sync) = (&*setting.world.cluster, &setting.world.wire, &setting.world.sync);
    let Ended { observer, windows, converging, state, ended_ns, joins, hints_left } = ended;
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
        return Err(safety);
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
    Ok(liveness)
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
            // A cache node keeps nothing on disk: for it a reboot is a crash.
            Fault::Crash { node } | Fault::Reboot { node } => (&mut crashes, node),
            Fault::Pause { node } => (&mut pauses, node),
            Fault::Custom(CacheFault::Drain { node }) => (&mut restarts, node),
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
    let crashed = plan.episodes.iter().any(|e| {
        matches!(
            e.fault,
            Fault::Crash { .. } | Fault::Reboot { .. } | Fault::Custom(CacheFault::Drain { .. })
        )
    });
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
