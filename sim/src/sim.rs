//! The handle you drive ([`Sim`]), its builder, and the handle tasks use ([`Handle`]).

use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::panic::Location;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use crate::buggify::BuggifyConfig;
use crate::context;
use crate::error::{ErrorKind, SimError};
use crate::executor::Step;
use crate::fingerprint::Event;
use crate::node::{NodeBuilder, NodeId, NodeState};
use crate::rand::SimRng;
use crate::task::JoinHandle;
use crate::time::{Instant, duration_nanos};
use crate::trace::{Trace, TraceSink};
use crate::world::Shared;

/// Virtual time a run may reach unless configured otherwise: one day.
pub const TIME_LIMIT_DEFAULT: Duration = Duration::from_secs(24 * 3600);
/// Polls a run may make unless configured otherwise; catches livelocks.
pub const STEP_LIMIT_DEFAULT: u64 = 200_000_000;

/// How the scheduler picks the next task among the ready ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SchedulerMode {
    /// Uniformly at random, from the scheduler's stream: explores interleavings.
    #[default]
    Random,
    /// The task that became ready first: predictable, for debugging.
    Fifo,
}

#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) seed: u64,
    pub(crate) time_limit_ns: u64,
    pub(crate) step_limit: u64,
    pub(crate) scheduler: SchedulerMode,
    pub(crate) buggify: Option<BuggifyConfig>,
    pub(crate) event_log_max: usize,
}

impl Config {
    pub(crate) fn time_limit(&self) -> Duration {
        Duration::from_nanos(self.time_limit_ns)
    }
}

/// Configures a [`Sim`].
///
/// ```
/// use std::time::Duration;
/// let sim = sim::Sim::builder()
///     .seed(42)
///     .time_limit(Duration::from_secs(60))
///     .scheduler(sim::SchedulerMode::Fifo)
///     .build();
/// assert_eq!(sim.seed(), 42);
/// ```
#[derive(Clone, Debug)]
#[must_use = "a Builder does nothing until build()"]
pub struct Builder {
    config: Config,
    trace: Trace,
    capture_trace: bool,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder::new()
    }
}

impl Builder {
    /// Seed 0, the default limits, the random scheduler, buggify off, and tracing as
    /// `SIM_LOG` says.
    pub fn new() -> Builder {
        Builder {
            config: Config {
                seed: 0,
                time_limit_ns: duration_nanos(TIME_LIMIT_DEFAULT),
                step_limit: STEP_LIMIT_DEFAULT,
                scheduler: SchedulerMode::Random,
                buggify: None,
                event_log_max: 0,
            },
            trace: Trace::FromEnv,
            capture_trace: false,
        }
    }

    /// The root seed: everything random in the run derives from it.
    pub fn seed(mut self, seed: u64) -> Builder {
        self.config.seed = seed;
        self
    }

    /// The virtual time the run may reach; past it, driving calls fail.
    pub fn time_limit(mut self, limit: Duration) -> Builder {
        self.config.time_limit_ns = duration_nanos(limit);
        self
    }

    /// The number of polls the run may make; past it, driving calls fail.
    pub fn step_limit(mut self, limit: u64) -> Builder {
        self.config.step_limit = limit;
        self
    }

    /// How the next ready task is chosen.
    pub fn scheduler(mut self, mode: SchedulerMode) -> Builder {
        self.config.scheduler = mode;
        self
    }

    /// Turns [`crate::buggify`] on with the default chances.
    pub fn buggify(self, on: bool) -> Builder {
        self.buggify_config(on.then(BuggifyConfig::default))
    }

    /// Turns [`crate::buggify`] on with these chances, or off with `None`.
    pub fn buggify_config(mut self, config: Option<BuggifyConfig>) -> Builder {
        self.config.buggify = config;
        self
    }

    /// Keeps the first `max` events of the run for [`Sim::event_log`] (0: none).
    pub fn event_log(mut self, max: usize) -> Builder {
        self.config.event_log_max = max;
        self
    }

    /// Where the run's `tracing` events go; see [`Trace`].
    pub fn trace(mut self, trace: Trace) -> Builder {
        self.trace = trace;
        self
    }

    /// Captures the run's trace in memory instead of printing it; read it with
    /// [`Sim::take_trace`]. With no filter configured, captures `info` and above.
    pub fn capture_trace(mut self, capture: bool) -> Builder {
        self.capture_trace = capture;
        self
    }

    /// The seed this builder will use.
    pub fn seed_value(&self) -> u64 {
        self.config.seed
    }

    /// Creates the simulation.
    pub fn build(&self) -> Sim {
        let trace = crate::trace::sink(&self.trace, self.capture_trace);
        let shared = Shared::new(self.config.clone(), trace);
        Sim { handle: Handle { shared } }
    }
}

/// A handle on a simulation, usable from its tasks: [`Handle::current`].
///
/// It reads virtual time, creates nodes, injects node faults and spawns tasks. A
/// [`Sim`] dereferences to its `Handle`, so the same methods work between steps.
#[derive(Clone)]
pub struct Handle {
    pub(crate) shared: Rc<Shared>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").field("seed", &self.seed()).field("now", &self.now()).finish()
    }
}

impl Handle {
    /// The simulation running on this thread.
    ///
    /// # Panics
    ///
    /// Outside a running simulation.
    pub fn current() -> Handle {
        Handle { shared: context::current() }
    }

    /// The root seed.
    pub fn seed(&self) -> u64 {
        self.shared.world.borrow().seed()
    }

    /// Virtual now.
    pub fn now(&self) -> Instant {
        Instant::from_nanos(self.shared.now_ns.get())
    }

    /// Virtual time since the start of the run.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.shared.now_ns.get())
    }

    /// Starts building a new node named `name` (a name already taken fails the
    /// build); [`Handle::node_by_name`] finds an existing one.
    pub fn node(&self, name: impl Into<String>) -> NodeBuilder<'_> {
        NodeBuilder::new(self, name.into())
    }

    /// The node named `name`.
    ///
    /// # Errors
    ///
    /// When no node has that name; the error lists the names that exist.
    pub fn node_by_name(&self, name: &str) -> Result<NodeId, SimError> {
        self.node_id(name).ok_or_else(|| {
            let known = self.shared.node_names.borrow().iter().map(|n| n.to_string()).collect();
            let kind = ErrorKind::UnknownNodeName { name: name.to_string(), known };
            SimError::new(self.seed(), self.shared.now_ns.get(), kind)
        })
    }

    /// The node named `name`.
    pub fn node_id(&self, name: &str) -> Option<NodeId> {
        let names = self.shared.node_names.borrow();
        let index = names.iter().position(|candidate| **candidate == *name)?;
        Some(self.nodes()[index])
    }

    /// The name of `node`, or `None` for an unknown id.
    pub fn node_name(&self, node: NodeId) -> Option<String> {
        self.shared.node_names.borrow().get(node.index()).map(|name| name.to_string())
    }

    /// Every node, the main node first.
    pub fn nodes(&self) -> Vec<NodeId> {
        let count = self.shared.world.borrow().nodes.len();
        (0..count).map(|index| self.node_at(index)).collect()
    }

    fn node_at(&self, index: usize) -> NodeId {
        // NodeId is opaque outside; indices below the node count are valid ids.
        crate::node::node_id_from_index(index)
    }

    /// Whether `node` runs, is paused or is killed.
    ///
    /// # Errors
    ///
    /// For an unknown node.
    pub fn node_state(&self, node: NodeId) -> Result<NodeState, SimError> {
        self.shared.check_node(node, None)?;
        Ok(self.shared.node_state(node))
    }

    /// Kills `node`: all its tasks and their timers are dropped at once (their
    /// destructors run) and nothing of it runs until [`Handle::restart`]. Killing the
    /// running task's own node is allowed; the task stops when its poll returns.
    /// A no-op on a killed node.
    ///
    /// # Errors
    ///
    /// For an unknown node or the main node.
    pub fn kill(&self, node: NodeId) -> Result<(), SimError> {
        let _entered = Entered::new(&self.shared);
        self.shared.kill(node)
    }

    /// Kills `node` if it runs, then starts it again from its init future on fresh
    /// state. Its random stream and clock carry on.
    ///
    /// # Errors
    ///
    /// For an unknown node or the main node.
    #[track_caller]
    pub fn restart(&self, node: NodeId) -> Result<(), SimError> {
        let _entered = Entered::new(&self.shared);
        self.shared.restart(node, Location::caller())
    }

    /// Freezes `node` (a stop-the-world pause): its tasks are not polled; its timers
    /// that come due meanwhile fire on resume. A no-op on a paused node.
    ///
    /// # Errors
    ///
    /// For an unknown, main or killed node.
    pub fn pause(&self, node: NodeId) -> Result<(), SimError> {
        let _entered = Entered::new(&self.shared);
        self.shared.pause(node)
    }

    /// Thaws a paused node. A no-op on a running node.
    ///
    /// # Errors
    ///
    /// For an unknown, main or killed node.
    pub fn resume(&self, node: NodeId) -> Result<(), SimError> {
        let _entered = Entered::new(&self.shared);
        self.shared.resume(node)
    }

    /// Sets `node`'s wall clock `offset_ns` nanoseconds off true virtual time, from
    /// now on (negative: behind). Drift, if any, continues from here.
    ///
    /// # Errors
    ///
    /// For an unknown node.
    pub fn set_clock_offset(&self, node: NodeId, offset_ns: i64) -> Result<(), SimError> {
        self.shared.set_clock_offset(node, offset_ns)
    }

    /// Makes `node`'s wall clock run `drift_ppm` parts per million fast (or slow, if
    /// negative) from now on.
    ///
    /// # Errors
    ///
    /// For an unknown node, or a drift beyond ±100,000 ppm.
    pub fn set_clock_drift(&self, node: NodeId, drift_ppm: i32) -> Result<(), SimError> {
        self.shared.set_clock_drift(node, drift_ppm)
    }

    /// `node`'s wall clock; see [`crate::time::wall_clock`].
    ///
    /// # Errors
    ///
    /// For an unknown node.
    pub fn wall_clock(&self, node: NodeId) -> Result<SystemTime, SimError> {
        self.shared.check_node(node, None)?;
        Ok(self.shared.wall_clock(node))
    }

    /// Spawns a named task on `node`.
    ///
    /// # Errors
    ///
    /// For an unknown or killed node.
    #[track_caller]
    pub fn spawn_on<F>(
        &self,
        node: NodeId,
        name: impl Into<std::borrow::Cow<'static, str>>,
        future: F,
    ) -> Result<JoinHandle<F::Output>, SimError>
    where
        F: Future + 'static,
    {
        self.shared.check_node(node, None)?;
        if self.shared.node_state(node) == NodeState::Killed {
            let kind = ErrorKind::NodeKilled { node, action: "spawn on" };
            return Err(SimError::new(self.seed(), self.shared.now_ns.get(), kind));
        }
        Ok(self.shared.spawn_task(node, name.into(), Location::caller(), future))
    }

    /// An independent random stream named `label`, derived from the root seed. The
    /// same label gives the same stream; draws from it affect no other stream.
    pub fn fork_rng(&self, label: &str) -> SimRng {
        SimRng::forked(self.seed(), label)
    }

    /// The rolling hash of every event so far: equal for two runs of one seed.
    pub fn fingerprint(&self) -> u64 {
        self.shared.world.borrow().fingerprint.hash()
    }

    /// Events mixed into the fingerprint so far.
    pub fn event_count(&self) -> u64 {
        self.shared.world.borrow().fingerprint.count()
    }

    /// Polls made so far.
    pub fn steps(&self) -> u64 {
        self.shared.world.borrow().steps
    }

    /// Live tasks, on all nodes.
    pub fn task_count(&self) -> usize {
        self.shared.world.borrow().tasks.len()
    }

    /// Pending timers.
    pub fn timer_count(&self) -> usize {
        self.shared.world.borrow().timers.live_count()
    }

    /// The buggify call sites reached so far, and whether each is switched on.
    pub fn buggify_sites(&self) -> Vec<(String, bool)> {
        self.shared.world.borrow().buggify.sites()
    }

    /// Counts reaching `name` in this simulation, as [`crate::reachable`] does from
    /// inside it: for code that holds a handle and may run between steps (a harness
    /// calling into a node).
    pub fn reachable(&self, name: &'static str) {
        let kind = crate::assertion::AssertionKind::Reachable;
        crate::assertion::count_in(&self.shared.coverage, name, kind, true);
    }

    /// The named assertions ([`crate::always`], [`crate::sometimes`], …) met so far,
    /// with their counts.
    pub fn coverage(&self) -> crate::assertion::Coverage {
        self.shared.coverage.borrow().clone()
    }
}

/// A simulation: the handle you drive.
///
/// ```
/// use std::time::Duration;
/// let mut sim = sim::Sim::new(7);
/// let answer = sim.block_on(async {
///     sim::time::sleep(Duration::from_secs(5)).await;
///     sim::time::Instant::now().since_start().as_secs()
/// });
/// assert_eq!(answer.unwrap(), 5);
/// ```
pub struct Sim {
    handle: Handle,
}

impl fmt::Debug for Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim").field("handle", &self.handle).finish_non_exhaustive()
    }
}

impl Deref for Sim {
    type Target = Handle;

    fn deref(&self) -> &Handle {
        &self.handle
    }
}

/// Guards that make a simulation current (and its trace the default) while held.
pub(crate) struct Entered {
    _trace: Option<tracing::dispatcher::DefaultGuard>,
    _context: context::Enter,
}

impl Entered {
    pub(crate) fn new(shared: &Rc<Shared>) -> Entered {
        let trace = shared.trace.as_ref().map(TraceSink::enter);
        Entered { _trace: trace, _context: context::enter(shared) }
    }
}

impl Sim {
    /// A simulation with this seed and the defaults of [`Builder::new`].
    pub fn new(seed: u64) -> Sim {
        Builder::new().seed(seed).build()
    }

    /// A builder for a configured simulation.
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// A handle that tasks (and closures) can keep.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    fn enter(&self) -> Entered {
        Entered::new(&self.handle.shared)
    }

    /// Runs `f` as the simulation's driver would, between steps: with its virtual
    /// clock and its trace current, on no node's task. For a harness's own trace lines
    /// (a fault it applies, a phase it starts), which then carry virtual time like the
    /// nodes' own. `f` must not run the simulation.
    pub fn in_context<R>(&self, f: impl FnOnce() -> R) -> R {
        let _entered = self.enter();
        f()
    }

    /// Runs the simulation until `future`, spawned as a task on the main node,
    /// completes; other tasks run too, interleaved by the scheduler.
    ///
    /// # Errors
    ///
    /// A task panicked, the run deadlocked, or it reached its time or step limit.
    /// After an error the run is over: every later driving call returns it again.
    #[track_caller]
    pub fn block_on<F>(&mut self, future: F) -> Result<F::Output, SimError>
    where
        F: Future + 'static,
    {
        let _entered = self.enter();
        let shared = &self.handle.shared;
        if let Some(error) = &shared.world.borrow().failure {
            return Err(error.clone());
        }
        let main = shared.spawn_task(NodeId::MAIN, "main".into(), Location::caller(), future);
        loop {
            if let Some(output) = main.try_take() {
                return Ok(
                    output.expect("the main node is never killed and its task never aborted")
                );
            }
            if shared.step(None)? == Step::Idle {
                return Err(self.deadlock());
            }
        }
    }

    /// Runs for `duration` of virtual time: every task and timer due until then runs,
    /// and the clock ends exactly `duration` later.
    ///
    /// # Errors
    ///
    /// A task panicked, or the run reached its time or step limit.
    pub fn run_for(&mut self, duration: Duration) -> Result<(), SimError> {
        let _entered = self.enter();
        let shared = &self.handle.shared;
        let now_ns = shared.now_ns.get();
        let target_ns = now_ns.saturating_add(duration_nanos(duration));
        let limit_ns = shared.world.borrow().config.time_limit_ns;
        let deadline_ns = target_ns.min(limit_ns);
        while shared.step(Some(deadline_ns))? != Step::Idle {}
        shared.now_ns.set(deadline_ns.max(shared.now_ns.get()));
        if target_ns > limit_ns {
            let mut world = shared.world.borrow_mut();
            let limit = world.config.time_limit();
            return Err(world.fail(deadline_ns, ErrorKind::TimeLimit { limit }));
        }
        Ok(())
    }

    /// Runs until `condition` holds; it is checked before every step.
    ///
    /// # Errors
    ///
    /// A task panicked, the run reached its time or step limit, or nothing can run
    /// any more while the condition is still false (a deadlock).
    pub fn run_until(&mut self, mut condition: impl FnMut() -> bool) -> Result<(), SimError> {
        let _entered = self.enter();
        loop {
            if condition() {
                return Ok(());
            }
            if self.handle.shared.step(None)? == Step::Idle {
                return Err(self.deadlock());
            }
        }
    }

    /// Makes one scheduling decision: polls one ready task, or advances time to the
    /// next timer.
    ///
    /// # Errors
    ///
    /// A task panicked, or the run reached its time or step limit.
    pub fn step(&mut self) -> Result<Step, SimError> {
        let _entered = self.enter();
        self.handle.shared.step(None)
    }

    fn deadlock(&self) -> SimError {
        let shared = &self.handle.shared;
        let mut world = shared.world.borrow_mut();
        let blocked = world.blocked_tasks(shared);
        world.fail(shared.now_ns.get(), ErrorKind::Deadlock { blocked })
    }

    /// The trace captured so far (see [`Builder::capture_trace`]), emptying the buffer.
    pub fn take_trace(&self) -> Option<String> {
        self.handle.shared.trace.as_ref().and_then(TraceSink::take)
    }

    /// The logged events (see [`Builder::event_log`]), emptying the log.
    pub fn event_log(&mut self) -> Vec<Event> {
        let mut world = self.handle.shared.world.borrow_mut();
        world.fingerprint.take_log().map(|log| log.events).unwrap_or_default()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _entered = self.enter();
        self.handle.shared.drop_all_tasks();
    }
}
