//! Executor micro-benchmarks: spawn-to-completion, wake-and-poll, timers.
//!
//! Run with `cargo bench -p sim --bench executor`. Each figure is per operation:
//! criterion's time per iteration divided by the batch size via `Throughput`.

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
    targets = spawn_empty, ping_pong, timers, timers_one_task
}
criterion_main!(benches);
