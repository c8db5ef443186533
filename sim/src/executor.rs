//! The executor: tasks in a slab, a ready set, wakers, and one scheduling step.
//!
//! A step drains the wake queue into the ready set, then polls one ready task chosen
//! from the scheduler's stream (or the oldest, in FIFO mode); with nothing ready it
//! advances virtual time to the earliest timer or network delivery, delivers every
//! message due then and fires every timer due then.

use std::any::Any;
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::{self, AssertUnwindSafe, Location};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use crate::error::{BlockedTask, ErrorKind, SimError};
use crate::fingerprint::{EventKind, tag};
use crate::node::{NodeId, NodeState};
use crate::rand::RngExt;
use crate::sim::SchedulerMode;
use crate::world::{Shared, World};

/// A task's slab key plus its spawn sequence number.
///
/// The sequence number is unique within a run, so a stale id (a waker of a finished
/// task whose slab slot was reused) never matches the new occupant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct TaskId {
    pub(crate) key: u32,
    pub(crate) seq: u64,
}

pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = ()>>>;

pin_project_lite::pin_project! {
    /// A task's future together with its waker, in one allocation, so that a poll
    /// needs no waker clone.
    struct TaskCell<F> {
        waker: Waker,
        #[pin]
        future: F,
    }
}

/// A task's future as the executor sees it: it polls itself with its own waker.
pub(crate) trait Runnable {
    fn run(self: Pin<&mut Self>) -> Poll<()>;
}

impl<F: Future<Output = ()>> Runnable for TaskCell<F> {
    fn run(self: Pin<&mut Self>) -> Poll<()> {
        let this = self.project();
        this.future.poll(&mut Context::from_waker(this.waker))
    }
}

type BoxRunnable = Pin<Box<dyn Runnable>>;

/// One spawned task.
pub(crate) struct Task {
    pub(crate) seq: u64,
    pub(crate) node: NodeId,
    /// `None` while the task is being polled.
    pub(crate) future: Option<BoxRunnable>,
    pub(crate) name: Cow<'static, str>,
    pub(crate) location: &'static Location<'static>,
    /// In the ready set or in its node's deferred list.
    pub(crate) queued: bool,
    /// Aborted, or its node killed, while it was being polled: drop it after the poll.
    pub(crate) cancelled: bool,
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task")
            .field("seq", &self.seq)
            .field("node", &self.node)
            .field("name", &self.name)
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// Ids of woken tasks, pushed by the tasks' wakers and drained by each step. Only the
/// simulation's thread touches it: a simulation is single-threaded, so no lock.
#[derive(Debug, Default)]
pub(crate) struct WakeQueue {
    woken: RefCell<Vec<TaskId>>,
}

impl WakeQueue {
    fn push(&self, id: TaskId) {
        self.woken.borrow_mut().push(id);
    }

    fn swap(&self, buffer: &mut Vec<TaskId>) {
        std::mem::swap(&mut *self.woken.borrow_mut(), buffer);
    }
}

/// A task's waker: single-threaded, reference-counted by hand, with no lock and no
/// atomic. `Waker` promises `Send + Sync`, which a simulation's task cannot use (its
/// queue lives on the simulation's thread), so every use checks the thread and panics
/// with a clear message on any other: never a silent race.
struct TaskWaker {
    id: TaskId,
    queue: Rc<WakeQueue>,
    /// Wakers sharing this allocation.
    refs: Cell<usize>,
    /// The thread that made it (see [`thread_mark`]).
    thread: usize,
}

/// Why a waker used on another thread panics.
const WRONG_THREAD: &str =
    "a simulated task's waker was used on another thread: a simulation is single-threaded";

thread_local! {
    static THREAD_MARK: u8 = const { 0 };
}

/// An identity of the current thread that costs a thread-local's address: unique among
/// the threads alive at once.
fn thread_mark() -> usize {
    THREAD_MARK.with(|mark| std::ptr::from_ref(mark) as usize)
}

impl TaskWaker {
    fn new_waker(id: TaskId, queue: Rc<WakeQueue>) -> Waker {
        let waker = Box::new(TaskWaker { id, queue, refs: Cell::new(1), thread: thread_mark() });
        let raw = RawWaker::new(Box::into_raw(waker).cast::<()>(), &VTABLE);
        // SAFETY: the vtable's functions take the pointer made just above, keep its
        // count, and touch it only on this thread (checked at every use).
        unsafe { Waker::from_raw(raw) }
    }

    /// The waker behind `data`, after checking this is its thread.
    ///
    /// # Safety
    ///
    /// `data` is a pointer made by [`TaskWaker::new_waker`] whose count is not zero.
    unsafe fn get<'a>(data: *const ()) -> &'a TaskWaker {
        // SAFETY: as the caller promises, `data` points to a live `TaskWaker`; reading
        // `thread` is safe from any thread (it never changes after creation).
        let waker = unsafe { &*data.cast::<TaskWaker>() };
        assert!(waker.thread == thread_mark(), "{WRONG_THREAD}");
        waker
    }
}

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone_waker, wake, wake_by_ref, drop_waker);

unsafe fn clone_waker(data: *const ()) -> RawWaker {
    // SAFETY: the waker machinery passes the pointer of a live waker.
    let waker = unsafe { TaskWaker::get(data) };
    waker.refs.set(waker.refs.get() + 1);
    RawWaker::new(data, &VTABLE)
}

unsafe fn wake(data: *const ()) {
    // SAFETY: the pointer of a live waker, whose count this call then gives up.
    unsafe {
        wake_by_ref(data);
        drop_waker(data);
    }
}

unsafe fn wake_by_ref(data: *const ()) {
    // SAFETY: the waker machinery passes the pointer of a live waker.
    let waker = unsafe { TaskWaker::get(data) };
    waker.queue.push(waker.id);
}

unsafe fn drop_waker(data: *const ()) {
    // SAFETY: the waker machinery passes the pointer of a live waker; `thread` never
    // changes, so reading it is safe from any thread.
    let waker = unsafe { &*data.cast::<TaskWaker>() };
    if waker.thread != thread_mark() {
        if std::thread::panicking() {
            // Dropped on another thread while that thread unwinds (from the panic of a
            // wake there): leak it rather than abort the process with a second panic.
            return;
        }
        panic!("{WRONG_THREAD}");
    }
    let refs = waker.refs.get() - 1;
    waker.refs.set(refs);
    if refs == 0 {
        // SAFETY: the last waker of a `Box` made by `new_waker`: nothing uses it after.
        drop(unsafe { Box::from_raw(data.cast::<TaskWaker>().cast_mut()) });
    }
}

/// What one step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Polled one task.
    Polled,
    /// Advanced virtual time to the earliest timer or message delivery, and fired the
    /// timers and delivered the messages due then.
    Advanced,
    /// Nothing is ready and no timer or delivery is pending (or none before the given
    /// deadline).
    Idle,
}

impl World {
    /// Inserts a task and makes it ready.
    pub(crate) fn insert_task(
        &mut self,
        wakes: &Rc<WakeQueue>,
        node: NodeId,
        name: Cow<'static, str>,
        location: &'static Location<'static>,
        future: impl Future<Output = ()> + 'static,
        now_ns: u64,
    ) -> TaskId {
        assert!(self.nodes[node.index()].state != NodeState::Killed);
        let seq = self.task_seq_next;
        self.task_seq_next += 1;
        let entry = self.tasks.vacant_entry();
        let key = u32::try_from(entry.key()).expect("fewer than 2^32 live tasks");
        let id = TaskId { key, seq };
        let waker = TaskWaker::new_waker(id, Rc::clone(wakes));
        let record_name = self.fingerprint.logging().then(|| name.to_string());
        let cell: BoxRunnable = Box::pin(TaskCell { waker, future });
        entry.insert(Task {
            seq,
            node,
            future: Some(cell),
            name,
            location,
            queued: false,
            cancelled: false,
        });
        self.fingerprint.record(now_ns, node, tag::SPAWN, seq, || EventKind::Spawn {
            task: seq,
            name: record_name.unwrap_or_default(),
        });
        self.schedule(id);
        id
    }

    /// Makes a woken task ready, unless it is gone, already queued or cancelled; a
    /// task of a paused node waits in the node's deferred list instead.
    pub(crate) fn schedule(&mut self, id: TaskId) {
        let Some(task) = self.tasks.get_mut(id.key as usize) else { return };
        if task.seq != id.seq || task.queued || task.cancelled {
            return;
        }
        task.queued = true;
        let node = &mut self.nodes[task.node.index()];
        match node.state {
            NodeState::Running => self.ready.push_back(id),
            NodeState::Paused => node.deferred.push(id),
            NodeState::Killed => unreachable!("a killed node has no live task"),
        }
    }

    /// Removes and returns the next task to poll.
    fn pick_ready(&mut self, now_ns: u64) -> Option<TaskId> {
        while !self.ready.is_empty() {
            let id = match self.config.scheduler {
                SchedulerMode::Fifo => self.ready.pop_front(),
                SchedulerMode::Random => {
                    let count = self.ready.len() as u64;
                    let index = if count == 1 { 0 } else { self.scheduler_rng.below(count) };
                    self.ready.swap_remove_back(index as usize)
                }
            }
            .expect("the ready set is not empty");
            let Some(task) = self.tasks.get(id.key as usize) else { continue };
            if task.seq != id.seq {
                continue;
            }
            assert!(task.queued);
            let node = task.node;
            let name = self.fingerprint.logging().then(|| task.name.to_string());
            self.fingerprint.record(now_ns, node, tag::POLL, id.seq, || EventKind::Poll {
                task: id.seq,
                name: name.unwrap_or_default(),
            });
            return Some(id);
        }
        None
    }

    /// Every live task, for a deadlock report.
    pub(crate) fn blocked_tasks(&self, shared: &Shared) -> Vec<BlockedTask> {
        self.tasks
            .iter()
            .map(|(_, task)| BlockedTask {
                task: task.name.to_string(),
                node: shared.node_name(task.node).to_string(),
                location: task.location.to_string(),
                paused: self.nodes[task.node.index()].state == NodeState::Paused,
            })
            .collect()
    }
}

impl Shared {
    /// One scheduling decision. With `deadline`, time never advances past it: a step
    /// that would have to returns [`Step::Idle`].
    pub(crate) fn step(&self, deadline_ns: Option<u64>) -> Result<Step, SimError> {
        if let Some(error) = &self.world.borrow().failure {
            return Err(error.clone());
        }
        self.drain_wakes();
        let picked = self.world.borrow_mut().pick_ready(self.now_ns.get());
        if let Some(id) = picked {
            self.poll_task(id)?;
            return Ok(Step::Polled);
        }
        self.advance(deadline_ns)
    }

    /// Moves woken tasks into the ready set.
    fn drain_wakes(&self) {
        let mut world = self.world.borrow_mut();
        let mut buffer = std::mem::take(&mut world.wake_buffer);
        debug_assert!(buffer.is_empty());
        self.wakes.swap(&mut buffer);
        for id in buffer.drain(..) {
            world.schedule(id);
        }
        world.wake_buffer = buffer;
    }

    fn poll_task(&self, id: TaskId) -> Result<(), SimError> {
        let now_ns = self.now_ns.get();
        let (mut future, node) = {
            let mut world = self.world.borrow_mut();
            if world.steps >= world.config.step_limit {
                let limit = world.config.step_limit;
                return Err(world.fail(now_ns, ErrorKind::StepLimit { limit }));
            }
            world.steps += 1;
            let task = &mut world.tasks[id.key as usize];
            task.queued = false;
            let future = task.future.take().expect("a ready task is not being polled");
            let found = (future, task.node);
            world.current_task = Some(id);
            found
        };
        self.current_node.set(node);
        let result = panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().run()));
        let mut world = self.world.borrow_mut();
        world.current_task = None;
        let key = id.key as usize;
        let outcome = match result {
            Ok(Poll::Pending) if !world.tasks[key].cancelled => {
                world.tasks[key].future = Some(future);
                self.current_node.set(NodeId::MAIN);
                return Ok(());
            }
            Ok(_) => Ok(()),
            Err(payload) => {
                let task = &world.tasks[key];
                let kind = ErrorKind::Panic {
                    node: self.node_name(task.node).to_string(),
                    task: task.name.to_string(),
                    location: task.location.to_string(),
                    message: panic_message(payload.as_ref()),
                };
                Err(world.fail(now_ns, kind))
            }
        };
        world.tasks.remove(key);
        drop(world);
        // The future's destructors may call back into the simulation.
        drop(future);
        self.current_node.set(NodeId::MAIN);
        outcome
    }

    /// Advances virtual time to the earliest timer or message delivery, delivers the
    /// messages due then (in delivery-time, then send order) and wakes the timers due
    /// then (in the order they were set).
    fn advance(&self, deadline_ns: Option<u64>) -> Result<Step, SimError> {
        let mut world = self.world.borrow_mut();
        let timer_ns = world.timers.next_deadline();
        let delivery_ns = world.net.next_delivery_ns();
        let next = match (timer_ns, delivery_ns) {
            (Some(timer_ns), Some(delivery_ns)) => Some(timer_ns.min(delivery_ns)),
            (timer_ns, delivery_ns) => timer_ns.or(delivery_ns),
        };
        let Some(next_ns) = next else { return Ok(Step::Idle) };
        if deadline_ns.is_some_and(|deadline| next_ns > deadline) {
            return Ok(Step::Idle);
        }
        let now_ns = self.now_ns.get();
        assert!(next_ns >= now_ns, "a timer is never in the past");
        if next_ns > world.config.time_limit_ns {
            let limit = world.config.time_limit();
            return Err(world.fail(now_ns, ErrorKind::TimeLimit { limit }));
        }
        self.now_ns.set(next_ns);
        world
            .fingerprint
            .record(next_ns, NodeId::MAIN, tag::ADVANCE, next_ns, || EventKind::Advance);
        let mut fired = std::mem::take(&mut world.fired_buffer);
        let World { timers, fingerprint, net, nodes, .. } = &mut *world;
        net.deliver_due(next_ns, nodes, fingerprint, &mut fired);
        timers.fire_due(next_ns, &mut fired, |timer| {
            fingerprint
                .record(next_ns, NodeId::MAIN, tag::TIMER, timer, || EventKind::Timer { timer });
        });
        let mut dropped = net.take_dropped();
        drop(world);
        // Wake, and release dropped messages, outside the borrow: both may be user code.
        for waker in fired.drain(..) {
            waker.wake();
        }
        dropped.clear();
        let mut world = self.world.borrow_mut();
        world.fired_buffer = fired;
        world.net.restore_dropped(dropped);
        Ok(Step::Advanced)
    }

    /// Drops every task; used when the simulation itself is dropped.
    pub(crate) fn drop_all_tasks(&self) {
        // Destructors may spawn; a bounded number of rounds catches that.
        const ROUNDS_MAX: usize = 16;
        for _ in 0..ROUNDS_MAX {
            let futures: Vec<_> = {
                let mut world = self.world.borrow_mut();
                world.ready.clear();
                world.tasks.drain().filter_map(|task| task.future).collect()
            };
            if futures.is_empty() {
                break;
            }
            drop(futures);
        }
        let mut world = self.world.borrow_mut();
        world.timers.clear();
        for node in &mut world.nodes {
            node.init = None;
            node.deferred.clear();
        }
        // Messages and mailboxes may hold user values: release them outside the borrow
        // and with the simulation still current, as the tasks were.
        let network = world.net.clear();
        drop(world);
        drop(network);
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_string()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}
