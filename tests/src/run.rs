//! One simulated run, end to end: a seed and a profile in, a verdict out.
//!
//! 1. A seed makes a `Sim`; per-seed cache options and the fault plan come from their
//!    own forked streams ("config", "faults").
//! 2. A cluster of cache nodes starts; client nodes run the workload.
//! 3. Fault phase: the nemesis applies the plan while clients run.
//! 4. Heal everything, stop the clients, and let the cluster settle (quiet period).
//! 5. The checkers read the history and the stores: safety, then liveness.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use cache::{Consistency, Options};
use sim::Sim;
use sim::rand::RngExt;

use crate::checker::{self, FinalState, Violation};
use crate::cluster::setup_in_process_cluster_mutant;
use crate::faults::{FaultPlan, Profile};
use crate::history::History;
use crate::nemesis::{Nemesis, timeline};
use crate::workload::{WorkloadConfig, start_clients};

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
            workload: WorkloadConfig::default(),
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
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Pass => write!(f, "pass"),
            Verdict::Safety(violations) | Verdict::Liveness(violations) => {
                write!(f, "{} failure: {} violation(s)", self.kind(), violations.len())?;
                for violation in violations.iter().take(10) {
                    write!(f, "\n  {violation}")?;
                }
                Ok(())
            }
            Verdict::Crash(error) => write!(f, "crash: {error}"),
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
    /// Simulated events (the fingerprint's event count).
    pub events: u64,
    /// Virtual time simulated.
    pub virtual_time: Duration,
    /// The run's fingerprint.
    pub fingerprint: u64,
    /// The captured trace, when asked for.
    pub trace: Option<String>,
    /// The first events of the run, when asked for.
    pub event_log: Vec<sim::Event>,
    /// The liveness mode it ran with.
    pub liveness: Liveness,
    /// The fault phase and quiet period it ran with.
    pub phases: (Duration, Duration),
}

/// Runs one seed. An invalid configuration ends as a [`Verdict::Crash`] naming the
/// problem (see [`RunConfig::validate`]).
pub fn run(config: &RunConfig) -> RunReport {
    if let Err(problem) = config.validate() {
        let mut invalid = RunConfig {
            nodes: 5,
            replication: 3,
            fault_phase: Duration::from_secs(1),
            ..config.clone()
        };
        invalid.workload = WorkloadConfig::default();
        invalid.plan = Some(FaultPlan::default());
        let mut report = run(&invalid);
        report.verdict = Verdict::Crash(format!("invalid run configuration: {problem}"));
        return report;
    }
    let trace = if config.trace { sim::Trace::FromEnv } else { sim::Trace::Off };
    let builder = Sim::builder().seed(config.seed).time_limit(RUN_TIME_LIMIT).trace(trace);
    let mut sim = builder.capture_trace(config.trace).event_log(config.event_log).build();
    let consistency = draw_consistency(&sim);
    let phase_ms = u64::try_from(config.fault_phase.as_millis()).unwrap_or(u64::MAX);
    let plan = config.plan.clone().unwrap_or_else(|| {
        FaultPlan::draw(config.profile, &mut sim.fork_rng("faults"), config.nodes, phase_ms)
    });
    let history = Rc::new(RefCell::new(History::default()));
    let verdict = match drive(&mut sim, config, consistency, &plan, &history) {
        Ok(verdict) => verdict,
        Err(error) => Verdict::Crash(error),
    };
    RunReport {
        seed: config.seed,
        profile: config.profile,
        plan,
        consistency,
        verdict,
        operations: history.borrow().ops.len(),
        events: sim.event_count(),
        virtual_time: sim.elapsed(),
        fingerprint: sim.fingerprint(),
        trace: sim.take_trace(),
        event_log: sim.event_log(),
        liveness: config.liveness,
        phases: (config.fault_phase, config.quiet),
    }
}

/// The read and write consistency of a run, from its own stream.
fn draw_consistency(sim: &Sim) -> (Consistency, Consistency) {
    let mut rng = sim.fork_rng("config");
    let levels = [Consistency::One, Consistency::Quorum, Consistency::Quorum, Consistency::All];
    (*rng.choose(&levels).expect("levels"), *rng.choose(&levels).expect("levels"))
}

fn drive(
    sim: &mut Sim,
    config: &RunConfig,
    consistency: (Consistency, Consistency),
    plan: &FaultPlan,
    history: &Rc<RefCell<History>>,
) -> Result<Verdict, String> {
    let options =
        Options::builder().read_consistency(consistency.0).write_consistency(consistency.1);
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
    let stop = Rc::new(Cell::new(false));
    start_clients(sim, &cluster, history, &stop, &config.workload)?;
    // Fault phase.
    let start = sim.now();
    let mut nemesis = Nemesis::new();
    for step in timeline(plan) {
        let at = start + Duration::from_millis(step.at_ms);
        sim.run_for(at - sim.now()).map_err(|e| e.to_string())?;
        nemesis.step(sim, &cluster, &mut history.borrow_mut(), &step)?;
    }
    sim.run_for((start + config.fault_phase) - sim.now()).map_err(|e| e.to_string())?;
    // Heal, stop the clients, settle.
    nemesis.heal_all(sim, &cluster)?;
    let converging = converging_nodes(sim, &cluster, config)?;
    stop.set(true);
    sim.run_for(config.quiet).map_err(|e| e.to_string())?;
    let history = history.borrow();
    let state = FinalState::read(&cluster);
    let mut safety = checker::phantom_reads(&history);
    safety.extend(checker::under_replicated(&history, config.replication));
    // Reads meet completed writes only when nothing fails (clock skew breaks nothing).
    let fault_free = config.liveness == Liveness::All
        && plan
            .episodes
            .iter()
            .all(|episode| matches!(episode.fault, crate::faults::Fault::ClockSkew { .. }));
    if fault_free {
        safety.extend(checker::stale_reads(&history, config.replication));
    }
    safety.extend(checker::lost_writes(&history, &state));
    safety.extend(checker::hint_accounting(&cluster));
    if !safety.is_empty() {
        return Ok(Verdict::Safety(safety));
    }
    let (ring, majority) = converging;
    let state = majority.map_or(state, |ids| FinalState::read_nodes(&cluster, &ids));
    let mut liveness = checker::divergence(&ring, &state);
    liveness.extend(checker::extra_copies(&cluster, &state));
    if !liveness.is_empty() {
        return Ok(Verdict::Liveness(liveness));
    }
    Ok(Verdict::Pass)
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
