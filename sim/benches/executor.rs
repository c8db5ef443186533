//! Executor micro-benchmarks: spawn-to-completion, wake-and-poll, timers.
//!
//! Run with `cargo bench -p sim --bench executor`. Each figure is per operation:
//! criterion's time per iteration divided by the batch size via `Throughput`.
//!
//! Some benches come in two forms: one through `futures` (its atomic `mpsc` channel,
//! `FuturesUnordered`), as a user's code would run, and one that isolates the
//! executor's own share (a single-threaded mailbox, a timer among 100,000 idle ones).
//! The `futures` forms spend most of their time inside `futures` (see the README).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use futures::channel::mpsc;
use sim::Sim;
use sim::rand::{RngExt, SimRng};

const SPAWN_BATCH: u64 = 10_000;
const PING_PONG_ROUNDS: u64 = 10_000;
const TIMER_BATCH: u64 = 100_000;

/// Spawn an empty task and poll it to completion, 10,000 at a time.
fn spawn_empty(c: &mut Criterion) {
    let mut group = c.benchmark_group("executor");
    group.throughput(Throughput::Elements(SPAWN_BATCH));
    group.bench_function("spawn_and_complete_empty_task", |b| {
        b.iter_batched(
            || Sim::new(1),
            |mut sim| {
                sim.block_on(async {
                    for _ in 0..SPAWN_BATCH {
                        drop(sim::spawn(async {}));
                    }
                })
                .unwrap();
                sim.run_for(Duration::ZERO).unwrap();
                assert_eq!(sim.task_count(), 0);
                sim
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

/// Two tasks bounce a message over a pair of channels; per round trip.
fn ping_pong(c: &mut Criterion) {
    let mut group = c.benchmark_group("executor");
    group.throughput(Throughput::Elements(PING_PONG_ROUNDS));
    group.bench_function("channel_ping_pong_round_trip", |b| {
        b.iter_batched(
            || Sim::new(2),
            |mut sim| {
                sim.block_on(async {
                    let (ping_tx, mut ping_rx) = mpsc::channel::<u64>(1);
                    let (mut pong_tx, mut pong_rx) = mpsc::channel::<u64>(1);
                    let echo = sim::spawn(async move {
                        while let Some(value) = ping_rx.next().await {
                            pong_tx.try_send(value).unwrap();
                        }
                    });
                    let mut ping_tx = ping_tx;
                    for round in 0..PING_PONG_ROUNDS {
                        ping_tx.try_send(round).unwrap();
                        assert_eq!(pong_rx.next().await, Some(round));
                    }
                    drop(ping_tx);
                    echo.await.unwrap();
                })
                .unwrap();
                sim
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

/// One task yields to the scheduler over and over; per wake-and-poll (the waker is the
/// task's own, so this is the executor's wake, queue, step and poll, nothing else).
fn yield_loop(c: &mut Criterion) {
    let mut group = c.benchmark_group("executor");
    group.throughput(Throughput::Elements(PING_PONG_ROUNDS));
    group.bench_function("yield_wake_and_poll", |b| {
        b.iter_batched(
            || Sim::new(5),
            |mut sim| {
                sim.block_on(async {
                    for _ in 0..PING_PONG_ROUNDS {
                        sim::yield_now().await;
                    }
                })
                .unwrap();
                sim
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

/// A one-slot, single-threaded mailbox: what a wake from another task costs without an
/// atomic channel in the way.
#[derive(Default)]
struct Mailbox {
    value: Cell<Option<u64>>,
    waiter: RefCell<Option<Waker>>,
}

impl Mailbox {
    fn put(&self, value: u64) {
        assert!(self.value.replace(Some(value)).is_none(), "mailbox holds one value");
        if let Some(waker) = self.waiter.borrow_mut().take() {
            waker.wake();
        }
    }

    async fn take(&self) -> u64 {
        poll_fn(|cx| match self.value.take() {
            Some(value) => Poll::Ready(value),
            None => {
                *self.waiter.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// Two tasks bounce a value over a pair of single-threaded mailboxes; per round trip
/// (two cross-task wake-and-polls).
fn ping_pong_local(c: &mut Criterion) {
    let mut group = c.benchmark_group("executor");
    group.throughput(Throughput::Elements(PING_PONG_ROUNDS));
    group.bench_function("mailbox_ping_pong_round_trip", |b| {
        b.iter_batched(
            || Sim::new(6),
            |mut sim| {
                sim.block_on(async {
                    let ping = Rc::new(Mailbox::default());
                    let pong = Rc::new(Mailbox::default());
                    let (ping_echo, pong_echo) = (ping.clone(), pong.clone());
                    let echo = sim::spawn(async move {
                        for _ in 0..PING_PONG_ROUNDS {
                            pong_echo.put(ping_echo.take().await);
                        }
                    });
                    for round in 0..PING_PONG_ROUNDS {
                        ping.put(round);
                        assert_eq!(pong.take().await, round);
                    }
                    echo.await.unwrap();
                })
                .unwrap();
                sim
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

/// One task sleeps 10,000 times to random deadlines within a millisecond while 100,000
/// other timers stay pending (an hour away); per timer set, fired and awaited. The
/// timer structure holds 100,000 live entries throughout.
fn timer_among_100k_live(c: &mut Criterion) {
    let mut group = c.benchmark_group("executor");
    group.throughput(Throughput::Elements(PING_PONG_ROUNDS));
    group.bench_function("sleep_with_100k_live_timers", |b| {
        b.iter_batched(
            || {
                let mut sim = Sim::new(7);
                sim.block_on(async {
                    for index in 0..TIMER_BATCH {
                        let hour = Duration::from_secs(3_600) + Duration::from_nanos(index);
                        drop(sim::spawn(sim::time::sleep(hour)));
                    }
                })
                .unwrap();
                sim.run_for(Duration::ZERO).unwrap();
                let mut rng = SimRng::new(7, 0);
                let delays: Vec<u64> =
                    (0..PING_PONG_ROUNDS).map(|_| rng.below(1_000_000)).collect();
                (sim, delays)
            },
            |(mut sim, delays)| {
                sim.block_on(async move {
                    for delay in delays {
                        sim::time::sleep(Duration::from_nanos(delay)).await;
                    }
                })
                .unwrap();
                assert_eq!(sim.task_count(), TIMER_BATCH as usize);
                sim
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

/// 100,000 tasks sleep until random deadlines; per timer, spawn included. Memory-bound:
/// 100,000 live tasks are touched in random order.
fn timers(c: &mut Criterion) {
    let mut group = c.benchmark_group("executor");
    group.throughput(Throughput::Elements(TIMER_BATCH));
    group.bench_function("sleep_random_deadline_100k_tasks", |b| {
        b.iter_batched(
            || {
                let mut rng = SimRng::new(3, 0);
                let deadlines: Vec<u64> =
                    (0..TIMER_BATCH).map(|_| rng.below(1_000_000_000)).collect();
                (Sim::new(3), deadlines)
            },
            |(mut sim, deadlines)| {
                sim.block_on(async move {
                    for deadline in deadlines {
                        drop(sim::spawn(sim::time::sleep(Duration::from_nanos(deadline))));
                    }
                })
                .unwrap();
                sim.run_for(Duration::from_secs(1)).unwrap();
                assert_eq!(sim.task_count(), 0);
                sim
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

/// One task awaits 100,000 concurrent sleeps with random deadlines; per timer. This
/// isolates the timer machinery from task spawning.
fn timers_one_task(c: &mut Criterion) {
    let mut group = c.benchmark_group("executor");
    group.throughput(Throughput::Elements(TIMER_BATCH));
    group.bench_function("sleep_random_deadline_one_task", |b| {
        b.iter_batched(
            || {
                let mut rng = SimRng::new(4, 0);
                let deadlines: Vec<u64> =
                    (0..TIMER_BATCH).map(|_| rng.below(1_000_000_000)).collect();
                (Sim::new(4), deadlines)
            },
            |(mut sim, deadlines)| {
                sim.block_on(async move {
                    let mut sleeps: futures::stream::FuturesUnordered<_> = deadlines
                        .into_iter()
                        .map(|deadline| sim::time::sleep(Duration::from_nanos(deadline)))
                        .collect();
                    let mut fired = 0u64;
                    while sleeps.next().await.is_some() {
                        fired += 1;
                    }
                    assert_eq!(fired, TIMER_BATCH);
                })
                .unwrap();
                sim
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(4));
    targets = spawn_empty, ping_pong, yield_loop, ping_pong_local, timers, timers_one_task,
        timer_among_100k_live
}
criterion_main!(benches);
