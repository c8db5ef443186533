//! Nodes: named groups of tasks that can be killed, restarted, paused and resumed
//! together, each with its own random stream and wall clock.

use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::rc::Rc;

use crate::clock::{DRIFT_PPM_MAX, NodeClock};
use crate::error::{ErrorKind, SimError};
use crate::executor::{BoxFuture, TaskId};
use crate::fingerprint::{EventKind, tag};
use crate::rand::{STREAM_NODE_BASE, SimRng};
use crate::sim::Handle;
use crate::world::Shared;

/// Nodes per simulation, the main node included.
pub const NODES_MAX: usize = 1 << 16;

/// Identifies a node within one simulation. Node 0 is the main node, which runs the
/// future given to [`crate::Sim::block_on`] and cannot be killed or paused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(u32);

impl NodeId {
    /// The main node.
    pub const MAIN: NodeId = NodeId(0);

    /// The node's index: 0 for main, then 1, 2, … in creation order.
    pub fn index(self) -> usize {
        self.0 as usize
    }

    pub(crate) fn raw(self) -> u32 {
        self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node#{}", self.0)
    }
}

/// Whether a node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// Its tasks run.
    Running,
    /// Frozen: its tasks are not polled and its timers wait; time goes on.
    Paused,
    /// Stopped: it has no tasks until restarted.
    Killed,
}

pub(crate) type InitFn = Rc<dyn Fn() -> BoxFuture>;

/// A node's state inside the world.
pub(crate) struct Node {
    pub(crate) state: NodeState,
    pub(crate) init: Option<InitFn>,
    pub(crate) rng: SimRng,
    pub(crate) clock: NodeClock,
    /// Tasks woken while the node was paused, in wake order.
    pub(crate) deferred: Vec<TaskId>,
    pub(crate) restarts: u64,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("state", &self.state)
            .field("clock", &self.clock)
            .field("restarts", &self.restarts)
            .finish_non_exhaustive()
    }
}

/// Builds a node; see [`Handle::node`].
#[must_use = "a node is only created by build() or try_build()"]
pub struct NodeBuilder<'a> {
    handle: &'a Handle,
    name: String,
    init: Option<InitFn>,
    init_at: Option<InitAtFn>,
}

/// An init that is given the node's own address.
type InitAtFn = Rc<dyn Fn(crate::net::Addr) -> Pin<Box<dyn Future<Output = ()>>>>;

impl fmt::Debug for NodeBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeBuilder").field("name", &self.name).finish_non_exhaustive()
    }
}

impl<'a> NodeBuilder<'a> {
    pub(crate) fn new(handle: &'a Handle, name: String) -> NodeBuilder<'a> {
        NodeBuilder { handle, name, init: None, init_at: None }
    }

    /// The future the node runs when it starts and again after each restart. Every call
    /// builds fresh state: a restarted node remembers nothing.
    pub fn init<F, Fut>(mut self, init: F) -> NodeBuilder<'a>
    where
        F: Fn() -> Fut + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        self.init = Some(Rc::new(move || Box::pin(init()) as Pin<Box<dyn Future<Output = ()>>>));
        self.init_at = None;
        self
    }

    /// Like [`NodeBuilder::init`], for a node with an address of its own: a port is
    /// reserved on the node when it is built ([`NodeBuilder::try_build_at`] returns
    /// it), and every start, the first and each after a restart, is given that same
    /// address to bind, so that peers that know it reach the node again after a
    /// restart. (A port taken with `net::allocate_port` inside `init` is a new one at
    /// each start.)
    pub fn init_at<F, Fut>(mut self, init: F) -> NodeBuilder<'a>
    where
        F: Fn(crate::net::Addr) -> Fut + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        self.init_at =
            Some(Rc::new(move |addr| Box::pin(init(addr)) as Pin<Box<dyn Future<Output = ()>>>));
        self.init = None;
        self
    }

    /// Creates the node and returns it with its own address: the one reserved for
    /// [`NodeBuilder::init_at`], or (after [`NodeBuilder::init`], or neither) a port
    /// reserved on it now.
    ///
    /// # Errors
    ///
    /// As [`NodeBuilder::try_build`].
    #[track_caller]
    pub fn try_build_at(self) -> Result<(NodeId, crate::net::Addr), SimError> {
        let handle = self.handle;
        let (node, addr) = self.build_node()?;
        match addr {
            Some(addr) => Ok((node, addr)),
            None => Ok((node, handle.allocate_port(node)?)),
        }
    }

    /// Creates the node and starts its init future, if any (with its own address,
    /// after [`NodeBuilder::init_at`]).
    ///
    /// # Errors
    ///
    /// When the name is empty or already taken, or there are [`NODES_MAX`] nodes.
    #[track_caller]
    pub fn try_build(self) -> Result<NodeId, SimError> {
        self.build_node().map(|(node, _)| node)
    }

    /// Creates the node and starts it; the address reserved for an `init_at`, if any.
    #[track_caller]
    fn build_node(mut self) -> Result<(NodeId, Option<crate::net::Addr>), SimError> {
        let shared = &self.handle.shared;
        let location = Location::caller();
        let now_ns = shared.now_ns.get();
        let problem = if self.name.is_empty() {
            Some(ErrorKind::InvalidNodeName { name: self.name.clone() })
        } else if shared.node_names.borrow().iter().any(|name| **name == *self.name) {
            Some(ErrorKind::DuplicateNodeName { name: self.name.clone() })
        } else if shared.node_names.borrow().len() >= NODES_MAX {
            Some(ErrorKind::TooManyNodes { max: NODES_MAX })
        } else {
            None
        };
        if let Some(kind) = problem {
            return Err(SimError::new(shared.world.borrow().seed(), now_ns, kind));
        }
        let init_at = self.init_at.take();
        let node = shared.add_node_state(&self.name, self.init.take());
        let addr = match init_at {
            None => None,
            Some(init_at) => {
                // A new node's ephemeral range is empty: the reservation cannot fail.
                let addr = self.handle.allocate_port(node).expect("a new node has free ports");
                let init: InitFn = Rc::new(move || init_at(addr));
                shared.world.borrow_mut().nodes[node.index()].init = Some(init);
                Some(addr)
            }
        };
        shared.start_node(node, location);
        Ok((node, addr))
    }

    /// Creates the node and starts its init future, if any.
    ///
    /// # Panics
    ///
    /// When [`NodeBuilder::try_build`] fails (an empty or duplicate name).
    #[track_caller]
    pub fn build(self) -> NodeId {
        match self.try_build() {
            Ok(node) => node,
            Err(error) => panic!("{error}"),
        }
    }
}

impl Shared {
    pub(crate) fn add_node_state(&self, name: &str, init: Option<InitFn>) -> NodeId {
        let mut world = self.world.borrow_mut();
        let index = world.nodes.len();
        let node = NodeId(u32::try_from(index).expect("NODES_MAX fits in u32"));
        let rng = SimRng::new(world.seed(), STREAM_NODE_BASE + index as u64);
        world.nodes.push(Node {
            state: NodeState::Running,
            init,
            rng,
            clock: NodeClock::default(),
            deferred: Vec::new(),
            restarts: 0,
        });
        self.node_names.borrow_mut().push(Rc::from(name));
        assert_eq!(world.nodes.len(), self.node_names.borrow().len());
        node
    }

    /// Spawns the node's init future, if it has one.
    fn start_node(&self, node: NodeId, location: &'static Location<'static>) {
        let init = self.world.borrow().nodes[node.index()].init.clone();
        if let Some(init) = init {
            let future = init();
            let now_ns = self.now_ns.get();
            self.world.borrow_mut().insert_task(
                &self.wakes,
                node,
                "init".into(),
                location,
                future,
                now_ns,
            );
        }
    }

    /// Checks that `node` exists and, for lifecycle actions, is not the main node.
    pub(crate) fn check_node(
        &self,
        node: NodeId,
        action: Option<&'static str>,
    ) -> Result<(), SimError> {
        let world = self.world.borrow();
        let kind = if node.index() >= world.nodes.len() {
            ErrorKind::UnknownNode { node, count: world.nodes.len() }
        } else if let Some(action) = action.filter(|_| node == NodeId::MAIN) {
            ErrorKind::MainNode { action }
        } else {
            return Ok(());
        };
        Err(SimError::new(world.seed(), self.now_ns.get(), kind))
    }

    pub(crate) fn node_state(&self, node: NodeId) -> NodeState {
        self.world.borrow().nodes[node.index()].state
    }

    fn record_node_event(&self, node: NodeId, action: &'static str) {
        let now_ns = self.now_ns.get();
        let mut world = self.world.borrow_mut();
        world
            .fingerprint
            .record(now_ns, node, tag::NODE, action.len() as u64, || EventKind::Node { action });
        drop(world);
        tracing::info!(target: "sim::node", node = %self.node_name(node), "node {action}");
    }

    /// Drops every task of `node` at once; a task that is being polled (the caller
    /// itself) is dropped as soon as its poll returns.
    pub(crate) fn kill(&self, node: NodeId) -> Result<(), SimError> {
        self.check_node(node, Some("kill"))?;
        let (doomed, mailboxes): (Vec<_>, _) = {
            let mut world = self.world.borrow_mut();
            let state = &mut world.nodes[node.index()];
            if state.state == NodeState::Killed {
                return Ok(());
            }
            state.state = NodeState::Killed;
            state.deferred.clear();
            // Its ports are free at once; messages in flight to it are dropped when they
            // arrive (the delivery sees the node killed, or restarted since the send).
            let mailboxes = world.net.node_killed(node);
            let keys: Vec<usize> = world
                .tasks
                .iter_mut()
                .filter(|(_, task)| task.node == node)
                .filter_map(|(key, task)| {
                    task.cancelled = true;
                    task.future.is_some().then_some(key)
                })
                .collect();
            let doomed =
                keys.into_iter().filter_map(|key| world.tasks.remove(key).future).collect();
            (doomed, mailboxes)
        };
        self.record_node_event(node, "kill");
        // Destructors run outside the borrow: they may touch the simulation. Endpoints
        // that outlive their node (held elsewhere) see themselves closed.
        for mailbox in &mailboxes {
            mailbox.close();
        }
        drop(mailboxes);
        drop(doomed);
        Ok(())
    }

    /// Kills `node` (if it runs) and starts it again from its init future.
    pub(crate) fn restart(
        &self,
        node: NodeId,
        location: &'static Location<'static>,
    ) -> Result<(), SimError> {
        self.kill(node)?;
        {
            let mut world = self.world.borrow_mut();
            let state = &mut world.nodes[node.index()];
            state.state = NodeState::Running;
            state.restarts += 1;
        }
        self.record_node_event(node, "restart");
        self.start_node(node, location);
        Ok(())
    }

    /// Freezes `node`: its tasks stay queued and its timers, when they fire, only
    /// queue its tasks. A no-op on a paused node.
    pub(crate) fn pause(&self, node: NodeId) -> Result<(), SimError> {
        self.check_node(node, Some("pause"))?;
        {
            let mut world = self.world.borrow_mut();
            match world.nodes[node.index()].state {
                NodeState::Paused => return Ok(()),
                NodeState::Killed => {
                    let kind = ErrorKind::NodeKilled { node, action: "pause" };
                    return Err(SimError::new(world.seed(), self.now_ns.get(), kind));
                }
                NodeState::Running => {}
            }
            let world = &mut *world;
            let tasks = &world.tasks;
            let mut moved = Vec::new();
            world.ready.retain(|id| {
                let of_node = tasks
                    .get(id.key as usize)
                    .is_some_and(|task| task.seq == id.seq && task.node == node);
                if of_node {
                    moved.push(*id);
                }
                !of_node
            });
            let state = &mut world.nodes[node.index()];
            state.state = NodeState::Paused;
            state.deferred.extend(moved);
        }
        self.record_node_event(node, "pause");
        Ok(())
    }

    /// Thaws `node`: the tasks woken while it was paused become ready. A no-op on a
    /// running node.
    pub(crate) fn resume(&self, node: NodeId) -> Result<(), SimError> {
        self.check_node(node, Some("resume"))?;
        {
            let mut world = self.world.borrow_mut();
            match world.nodes[node.index()].state {
                NodeState::Running => return Ok(()),
                NodeState::Killed => {
                    let kind = ErrorKind::NodeKilled { node, action: "resume" };
                    return Err(SimError::new(world.seed(), self.now_ns.get(), kind));
                }
                NodeState::Paused => {}
            }
            let state = &mut world.nodes[node.index()];
            state.state = NodeState::Running;
            let deferred = std::mem::take(&mut state.deferred);
            world.ready.extend(deferred);
        }
        self.record_node_event(node, "resume");
        Ok(())
    }

    pub(crate) fn set_clock_offset(&self, node: NodeId, offset_ns: i64) -> Result<(), SimError> {
        self.check_node(node, None)?;
        let now_ns = self.now_ns.get();
        let mut world = self.world.borrow_mut();
        world.nodes[node.index()].clock.set_offset(now_ns, offset_ns);
        world.fingerprint.record(now_ns, node, tag::CLOCK, offset_ns as u64, || EventKind::Clock {
            value: offset_ns,
        });
        Ok(())
    }

    pub(crate) fn set_clock_drift(&self, node: NodeId, drift_ppm: i32) -> Result<(), SimError> {
        self.check_node(node, None)?;
        let now_ns = self.now_ns.get();
        let mut world = self.world.borrow_mut();
        if drift_ppm.abs() > DRIFT_PPM_MAX {
            let kind = ErrorKind::InvalidDrift { drift_ppm, max: DRIFT_PPM_MAX };
            return Err(SimError::new(world.seed(), now_ns, kind));
        }
        world.nodes[node.index()].clock.set_drift(now_ns, drift_ppm);
        world.fingerprint.record(now_ns, node, tag::CLOCK, drift_ppm as u64, || EventKind::Clock {
            value: i64::from(drift_ppm),
        });
        Ok(())
    }
}

pub(crate) fn node_id_from_index(index: usize) -> NodeId {
    NodeId(u32::try_from(index).expect("node indices fit in u32"))
}
