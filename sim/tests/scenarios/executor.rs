//! Goal: the executor runs, joins, aborts and drops tasks correctly, wakers are safe
//! for any future, and every failure ends the run with a report that carries the seed.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use sim::{ErrorKind, JoinError, Sim, Step};

/// Counts live instances; decrements on drop.
struct DropGuard(Rc<Cell<usize>>);

impl DropGuard {
    fn new(live: &Rc<Cell<usize>>) -> DropGuard {
        live.set(live.get() + 1);
        DropGuard(Rc::clone(live))
    }
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

#[test]
fn join_returns_output_and_abort_cancels() {
    let mut sim = Sim::new(1);
    let live = Rc::new(Cell::new(0));
    let live_in = Rc::clone(&live);
    sim.block_on(async move {
        assert_eq!(sim::spawn(async { 40 + 2 }).await, Ok(42));
        let guard = DropGuard::new(&live_in);
        let sleeper = sim::spawn(async move {
            let _guard = guard;
            sim::time::sleep(Duration::from_secs(100)).await;
        });
        sim::time::sleep(Duration::from_secs(1)).await;
        assert!(!sleeper.is_finished());
        assert_eq!(live_in.get(), 1);
        sleeper.abort();
        assert_eq!(live_in.get(), 0, "abort drops the future at once");
        assert!(sleeper.is_finished());
        assert_eq!(sleeper.await, Err(JoinError::Cancelled));
    })
    .unwrap();
    assert_eq!(sim.timer_count(), 0, "the aborted task's timer is cancelled");
    assert_eq!(sim.elapsed(), Duration::from_secs(1));
}

#[test]
fn dropping_a_join_handle_detaches() {
    let mut sim = Sim::new(2);
    let done = Rc::new(Cell::new(false));
    let flag = Rc::clone(&done);
    sim.block_on(async move {
        drop(sim::spawn(async move {
            sim::time::sleep(Duration::from_millis(5)).await;
            flag.set(true);
        }));
    })
    .unwrap();
    assert!(!done.get());
    sim.run_for(Duration::from_millis(5)).unwrap();
    assert!(done.get(), "a detached task runs on");
}

#[test]
fn a_task_can_abort_itself_and_wake_itself() {
    let mut sim = Sim::new(3);
    sim.block_on(async {
        // Wakes itself from inside its own poll, three times.
        let mut polls = 0;
        std::future::poll_fn(|cx| {
            polls += 1;
            if polls < 4 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(())
        })
        .await;
        assert_eq!(polls, 4);
        let slot: Rc<RefCell<Option<sim::JoinHandle<()>>>> = Rc::default();
        let inner = Rc::clone(&slot);
        let task = sim::spawn(async move {
            sim::yield_now().await;
            inner.borrow().as_ref().unwrap().abort();
            sim::yield_now().await;
            unreachable!("an aborted task is not polled again");
        });
        *slot.borrow_mut() = Some(task);
        sim::time::sleep(Duration::from_millis(1)).await;
        let task = slot.borrow_mut().take().unwrap();
        assert_eq!(task.await, Err(JoinError::Cancelled));
    })
    .unwrap();
}

/// A future that records its polls and hands out its waker.
struct Probe {
    polls: Rc<Cell<u32>>,
    waker: Rc<RefCell<Option<Waker>>>,
    ready: Rc<Cell<bool>>,
}

impl Future for Probe {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.polls.set(self.polls.get() + 1);
        *self.waker.borrow_mut() = Some(cx.waker().clone());
        if self.ready.get() { Poll::Ready(()) } else { Poll::Pending }
    }
}

#[test]
fn stale_wakers_never_wake_a_new_task() {
    let mut sim = Sim::builder().seed(4).scheduler(sim::SchedulerMode::Fifo).build();
    let old_waker = Rc::new(RefCell::new(None));
    let old = Probe {
        polls: Rc::default(),
        waker: Rc::clone(&old_waker),
        ready: Rc::new(Cell::new(true)),
    };
    drop(sim.spawn_on(sim::NodeId::MAIN, "old", old).unwrap());
    sim.run_for(Duration::ZERO).unwrap();
    assert_eq!(sim.task_count(), 0);
    let stale = old_waker.borrow_mut().take().expect("the finished task's waker");
    // A new task takes the finished task's slab slot (the only free one).
    let polls = Rc::new(Cell::new(0));
    let ready = Rc::new(Cell::new(false));
    let fresh = Probe { polls: Rc::clone(&polls), waker: Rc::default(), ready: Rc::clone(&ready) };
    let handle = sim.spawn_on(sim::NodeId::MAIN, "fresh", fresh).unwrap();
    sim.run_for(Duration::ZERO).unwrap();
    assert_eq!(polls.get(), 1);
    // Waking the finished task does nothing, however often.
    stale.wake_by_ref();
    stale.wake();
    sim.run_for(Duration::ZERO).unwrap();
    assert_eq!(polls.get(), 1, "a stale waker polled the slot's new task");
    drop(handle);
}

#[test]
fn wakers_from_other_futures_and_after_finish_are_safe() {
    let mut sim = Sim::new(5);
    sim.block_on(async {
        let (tx, rx) = futures::channel::oneshot::channel::<u32>();
        let receiver = sim::spawn(async move { rx.await.unwrap() });
        sim::spawn(async move {
            sim::time::sleep(Duration::from_millis(3)).await;
            tx.send(9).unwrap();
        })
        .await
        .unwrap();
        assert_eq!(receiver.await, Ok(9));
    })
    .unwrap();
}

#[test]
fn panic_report_carries_seed_node_task_and_location() {
    let mut sim = Sim::new(31337);
    let node = sim.node("db").build();
    let _ = sim.spawn_on(node, "compactor", async {
        sim::time::sleep(Duration::from_millis(1500)).await;
        panic!("invariant broken: {}", 7);
    });
    let error = sim.block_on(sim::time::sleep(Duration::from_secs(10))).unwrap_err();
    assert_eq!(error.seed(), 31337);
    assert_eq!(error.time(), Duration::from_millis(1500));
    match error.kind() {
        ErrorKind::Panic { node, task, location, message } => {
            assert_eq!(node, "db");
            assert_eq!(task, "compactor");
            assert!(location.contains("executor.rs"), "{location}");
            assert_eq!(message, "invariant broken: 7");
        }
        other => panic!("unexpected {other:?}"),
    }
    let text = error.to_string();
    assert!(text.contains("SIM_SEED=31337"), "{text}");
    assert!(text.contains("1.500000s"), "{text}");
    // The run is over: driving again returns the same error.
    assert_eq!(sim.run_for(Duration::from_secs(1)).unwrap_err(), error);
}

#[test]
fn deadlock_report_lists_blocked_tasks_with_seed() {
    let mut sim = Sim::new(99);
    let node = sim.node("n1").build();
    let (_tx, rx) = futures::channel::oneshot::channel::<()>();
    let _ = sim.spawn_on(node, "waiter", async move {
        let _ = rx.await;
    });
    let (_never_tx, never) = futures::channel::oneshot::channel::<()>();
    let error = sim.block_on(never).unwrap_err();
    let ErrorKind::Deadlock { blocked } = error.kind() else { panic!("{error}") };
    let names: Vec<_> =
        blocked.iter().map(|task| (task.task.as_str(), task.node.as_str())).collect();
    assert!(names.contains(&("waiter", "n1")), "{names:?}");
    assert!(names.contains(&("main", "main")), "{names:?}");
    assert!(error.to_string().contains("SIM_SEED=99"));
    assert!(error.to_string().contains("'waiter' on node n1"));
}

#[test]
fn time_and_step_limits_end_the_run() {
    let mut sim = Sim::builder().seed(6).time_limit(Duration::from_secs(10)).build();
    let error = sim.block_on(sim::time::sleep(Duration::from_secs(11))).unwrap_err();
    assert!(matches!(error.kind(), ErrorKind::TimeLimit { .. }), "{error}");
    assert!(error.to_string().contains("SIM_SEED=6"));

    let mut sim = Sim::builder().seed(7).step_limit(1_000).build();
    let error = sim
        .block_on(async {
            loop {
                sim::yield_now().await;
            }
        })
        .unwrap_err();
    assert!(matches!(error.kind(), ErrorKind::StepLimit { limit: 1_000 }), "{error}");
    assert_eq!(sim.steps(), 1_000);

    let mut sim = Sim::builder().seed(8).time_limit(Duration::from_secs(2)).build();
    let error = sim.run_for(Duration::from_secs(3)).unwrap_err();
    assert!(matches!(error.kind(), ErrorKind::TimeLimit { .. }));
    assert_eq!(sim.elapsed(), Duration::from_secs(2));
}

#[test]
fn step_polls_then_advances_then_idles() {
    let mut sim = Sim::new(10);
    let _ = sim.spawn_on(sim::NodeId::MAIN, "sleeper", sim::time::sleep(Duration::from_secs(2)));
    assert_eq!(sim.step().unwrap(), Step::Polled);
    assert_eq!(sim.elapsed(), Duration::ZERO);
    assert_eq!(sim.step().unwrap(), Step::Advanced);
    assert_eq!(sim.elapsed(), Duration::from_secs(2));
    assert_eq!(sim.step().unwrap(), Step::Polled);
    assert_eq!(sim.task_count(), 0);
    assert_eq!(sim.step().unwrap(), Step::Idle);
}

#[test]
fn run_until_stops_when_the_condition_holds_or_reports_deadlock() {
    let mut sim = Sim::new(12);
    let count = Rc::new(Cell::new(0u32));
    let counter = Rc::clone(&count);
    let _ = sim.spawn_on(sim::NodeId::MAIN, "ticker", async move {
        let mut interval = sim::time::interval(Duration::from_millis(100));
        for _ in 0..10 {
            interval.tick().await;
            counter.set(counter.get() + 1);
        }
    });
    let seen = Rc::clone(&count);
    sim.run_until(|| seen.get() == 5).unwrap();
    assert_eq!(count.get(), 5);
    assert_eq!(sim.elapsed(), Duration::from_millis(400));
    let seen = Rc::clone(&count);
    let error = sim.run_until(|| seen.get() == 99).unwrap_err();
    assert!(matches!(error.kind(), ErrorKind::Deadlock { .. }), "{error}");
}

#[test]
fn dropping_the_sim_drops_every_task_and_timer() {
    let live = Rc::new(Cell::new(0));
    {
        let mut sim = Sim::new(13);
        let a = sim.node("a").build();
        let b = sim.node("b").build();
        for (node, count) in [(a, 10), (b, 5), (sim::NodeId::MAIN, 3)] {
            for _ in 0..count {
                let guard = DropGuard::new(&live);
                let _ = sim.spawn_on(node, "holder", async move {
                    let _guard = guard;
                    sim::time::sleep(Duration::from_secs(3600)).await;
                });
            }
        }
        sim.pause(b).unwrap();
        sim.run_for(Duration::from_secs(1)).unwrap();
        assert_eq!(live.get(), 18);
        assert_eq!(sim.task_count(), 18);
        assert_eq!(sim.timer_count(), 10 + 3, "b was paused before its tasks first ran");
    }
    assert_eq!(live.get(), 0, "every task's future was dropped with the sim");
}

#[test]
fn spawn_outside_a_simulation_panics_with_a_clear_message() {
    let result = std::panic::catch_unwind(|| drop(sim::spawn(async {})));
    let payload = result.unwrap_err();
    let message = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .unwrap_or_else(|| payload.downcast_ref::<&str>().unwrap());
    assert!(message.contains("outside a running simulation"), "{message}");
}
