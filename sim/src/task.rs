//! Spawning tasks and waiting for them.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::context;
use crate::executor::TaskId;
use crate::node::{NodeId, NodeState};
use crate::world::Shared;

/// Why a task produced no output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinError {
    /// The task was aborted, or its node was killed, before it finished.
    Cancelled,
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Cancelled => write!(f, "task was cancelled before it finished"),
        }
    }
}

impl std::error::Error for JoinError {}

enum Status<T> {
    Running,
    Done(T),
    Taken,
    Cancelled,
}

struct JoinState<T> {
    status: Status<T>,
    waker: Option<Waker>,
}

type JoinCell<T> = Rc<RefCell<JoinState<T>>>;

fn finish<T>(cell: &JoinCell<T>, status: Status<T>) {
    let waker = {
        let mut state = cell.borrow_mut();
        if !matches!(state.status, Status::Running) {
            return;
        }
        state.status = status;
        state.waker.take()
    };
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// Marks the task cancelled if its future is dropped before it completes.
struct CancelOnDrop<T>(JoinCell<T>);

impl<T> Drop for CancelOnDrop<T> {
    fn drop(&mut self) {
        finish(&self.0, Status::Cancelled);
    }
}

/// An owned permission to await a task's output or abort it. Dropping it detaches the
/// task, which runs on.
#[must_use = "dropping a JoinHandle detaches the task; bind it to `_` to say so"]
pub struct JoinHandle<T> {
    cell: JoinCell<T>,
    id: Option<TaskId>,
    shared: Rc<Shared>,
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle").field("id", &self.id).finish_non_exhaustive()
    }
}

impl<T> JoinHandle<T> {
    /// Cancels the task: its future is dropped now (or, if it is the running task,
    /// as soon as its poll returns) and awaiting the handle yields
    /// [`JoinError::Cancelled`]. A no-op on a finished task.
    pub fn abort(&self) {
        let Some(id) = self.id else { return };
        let future = {
            let mut world = self.shared.world.borrow_mut();
            let Some(task) = world.tasks.get_mut(id.key as usize) else { return };
            if task.seq != id.seq {
                return;
            }
            task.cancelled = true;
            if task.future.is_none() {
                return; // Being polled: the executor drops it after the poll.
            }
            world.tasks.remove(id.key as usize).future
        };
        drop(future);
    }

    /// Whether the task has finished, been aborted or been killed.
    pub fn is_finished(&self) -> bool {
        !matches!(self.cell.borrow().status, Status::Running)
    }

    /// The output, if the task finished and it was not taken yet.
    pub(crate) fn try_take(&self) -> Option<Result<T, JoinError>> {
        let mut state = self.cell.borrow_mut();
        match std::mem::replace(&mut state.status, Status::Taken) {
            Status::Done(output) => Some(Ok(output)),
            Status::Cancelled => Some(Err(JoinError::Cancelled)),
            other => {
                state.status = other;
                None
            }
        }
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(output) = self.try_take() {
            return Poll::Ready(output);
        }
        let mut state = self.cell.borrow_mut();
        assert!(!matches!(state.status, Status::Taken), "JoinHandle polled after it completed");
        match &state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Shared {
    /// Spawns `future` on `node`. On a killed node the task is cancelled at once.
    pub(crate) fn spawn_task<F>(
        self: &Rc<Shared>,
        node: NodeId,
        name: Cow<'static, str>,
        location: &'static Location<'static>,
        future: F,
    ) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
    {
        let cell: JoinCell<F::Output> =
            Rc::new(RefCell::new(JoinState { status: Status::Running, waker: None }));
        let guard = CancelOnDrop(Rc::clone(&cell));
        let task = async move {
            let guard = guard;
            let output = future.await;
            finish(&guard.0, Status::Done(output));
        };
        let now_ns = self.now_ns.get();
        let mut world = self.world.borrow_mut();
        let id = if world.nodes[node.index()].state == NodeState::Killed {
            drop(world);
            drop(task);
            None
        } else {
            Some(world.insert_task(&self.wakes, node, name, location, task, now_ns))
        };
        JoinHandle { cell, id, shared: Rc::clone(self) }
    }
}

/// Spawns a task on the current node (the main node outside any task).
///
/// # Panics
///
/// Outside a running simulation.
#[track_caller]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
{
    spawn_named("task", future)
}

/// Spawns a named task on the current node; the name shows in traces and reports.
///
/// # Panics
///
/// Outside a running simulation.
#[track_caller]
pub fn spawn_named<F>(name: impl Into<Cow<'static, str>>, future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
{
    let location = Location::caller();
    let shared = context::current();
    let node = shared.current_node.get();
    shared.spawn_task(node, name.into(), location, future)
}

/// The node of the running task.
///
/// # Panics
///
/// Outside a running simulation.
pub fn current_node() -> NodeId {
    context::with(|shared| shared.current_node.get())
}

/// Yields once: the task goes back to the ready set and the scheduler picks again.
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await;
}
