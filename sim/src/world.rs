//! All the state of one simulation, and the cell the handles share.
//!
//! [`Shared`] is what a [`crate::Handle`], a [`crate::JoinHandle`] or a
//! [`crate::time::Sleep`] holds: the [`World`] in a `RefCell`, the wake queue (behind an
//! `Arc` because wakers must be `Send`), and the few values read on every hot path
//! (virtual now, the running node) in `Cell`s so that reading them borrows nothing.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::Waker;

use slab::Slab;

use crate::buggify::Buggify;
use crate::error::{ErrorKind, SimError};
use crate::executor::{Task, TaskId, WakeQueue};
use crate::fingerprint::{EventKind, Fingerprint, tag};
use crate::net::Network;
use crate::node::{Node, NodeId};
use crate::rand::{STREAM_SCHEDULER, SimRng};
use crate::sim::Config;
use crate::timer::Timers;
use crate::trace::TraceSink;

/// The cell shared by every handle on one simulation.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) world: RefCell<World>,
    pub(crate) wakes: Rc<WakeQueue>,
    /// Virtual nanoseconds since the start of the run.
    pub(crate) now_ns: Cell<u64>,
    /// The node whose task is being polled ([`NodeId::MAIN`] between polls).
    pub(crate) current_node: Cell<NodeId>,
    /// Node names, outside the world so that the trace formatter can read them while
    /// the world is borrowed.
    pub(crate) node_names: RefCell<Vec<Rc<str>>>,
    /// This simulation's `tracing` dispatcher, if tracing is on.
    pub(crate) trace: Option<TraceSink>,
    /// The named assertions met so far ([`crate::assertion`]), outside the world so that
    /// code holding it borrowed can still assert.
    pub(crate) coverage: RefCell<crate::assertion::Coverage>,
}

/// The state of one simulation: tasks, timers, nodes, randomness and the fingerprint.
#[derive(Debug)]
pub(crate) struct World {
    pub(crate) config: Config,
    pub(crate) tasks: Slab<Task>,
    /// Tasks ready to be polled; the scheduler picks among them.
    pub(crate) ready: VecDeque<TaskId>,
    pub(crate) timers: Timers,
    pub(crate) nodes: Vec<Node>,
    pub(crate) scheduler_rng: SimRng,
    pub(crate) fingerprint: Fingerprint,
    pub(crate) buggify: Buggify,
    /// Ports, links and messages in flight.
    pub(crate) net: Network,
    /// The task being polled, if any.
    pub(crate) current_task: Option<TaskId>,
    /// Tasks polled so far (bounded by `config.step_limit`).
    pub(crate) steps: u64,
    pub(crate) task_seq_next: u64,
    /// The error that ended the run; every later driving call returns it again.
    pub(crate) failure: Option<SimError>,
    /// Spare buffers, swapped in and out so that the hot loop does not allocate.
    pub(crate) wake_buffer: Vec<TaskId>,
    pub(crate) fired_buffer: Vec<Waker>,
}

impl Shared {
    pub(crate) fn new(config: Config, trace: Option<TraceSink>) -> Rc<Shared> {
        let seed = config.seed;
        let fingerprint = Fingerprint::new(config.event_log_max);
        let buggify = Buggify::new(seed, config.buggify);
        let world = World {
            config,
            tasks: Slab::new(),
            ready: VecDeque::new(),
            timers: Timers::default(),
            nodes: Vec::new(),
            scheduler_rng: SimRng::new(seed, STREAM_SCHEDULER),
            fingerprint,
            buggify,
            net: Network::new(seed),
            current_task: None,
            steps: 0,
            task_seq_next: 0,
            failure: None,
            wake_buffer: Vec::new(),
            fired_buffer: Vec::new(),
        };
        let shared = Rc::new(Shared {
            world: RefCell::new(world),
            wakes: Rc::new(WakeQueue::default()),
            now_ns: Cell::new(0),
            current_node: Cell::new(NodeId::MAIN),
            node_names: RefCell::new(Vec::new()),
            trace,
            coverage: RefCell::new(crate::assertion::Coverage::new()),
        });
        let main = shared.add_node_state("main", None);
        assert_eq!(main, NodeId::MAIN);
        shared
    }

    /// The name of `node`, for traces and reports.
    pub(crate) fn node_name(&self, node: NodeId) -> Rc<str> {
        match self.node_names.try_borrow() {
            Ok(names) => names.get(node.index()).cloned().unwrap_or_else(|| Rc::from("?")),
            Err(_) => Rc::from("?"),
        }
    }
}

impl World {
    pub(crate) fn seed(&self) -> u64 {
        self.config.seed
    }

    /// Records `kind` as the error that ends the run and returns it.
    pub(crate) fn fail(&mut self, now_ns: u64, kind: ErrorKind) -> SimError {
        let error = SimError::new(self.config.seed, now_ns, kind);
        if self.failure.is_none() {
            self.failure = Some(error.clone());
        }
        error
    }

    /// One draw from `node`'s own stream, mixed into the fingerprint.
    pub(crate) fn node_draw(&mut self, node: NodeId, now_ns: u64) -> u64 {
        let value = self.nodes[node.index()].rng.u64();
        self.fingerprint.record(now_ns, node, tag::DRAW, value, || EventKind::Draw { value });
        value
    }
}
