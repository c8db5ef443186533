//! Network micro-benchmarks: one-way messages and RPC round trips between two nodes.
//!
//! Run with `cargo bench -p sim --bench net`. Each figure is per operation: criterion's
//! time per iteration divided by the batch size via `Throughput`. Links use the default
//! config (1–10 ms uniform latency), so deliveries are spread over virtual time and
//! each one is its own executor step, as in a real run.

use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sim::net::{Addr, Endpoint, RpcClient, RpcServer};
use sim::{NodeId, Sim};

const MESSAGES: u64 = 10_000;
const CALLS: u64 = 10_000;

fn two_nodes(seed: u64) -> (Sim, NodeId, NodeId, Addr) {
    let sim = Sim::new(seed);
    let a = sim.node("a").build();
    let b = sim.node("b").build();
    let addr = sim.allocate_port(b).unwrap();
    (sim, a, b, addr)
}

/// Node a sends 10,000 messages to node b, `window` at a time every virtual
/// millisecond; b receives them as they arrive. Per message: send, delivery (a time
/// advance each), wake and receive.
fn one_way_run(mut sim: Sim, a: NodeId, b: NodeId, addr: Addr, window: u64) -> Sim {
    let receiver = sim
        .spawn_on(b, "receiver", async move {
            let endpoint = Endpoint::<u64>::bind(addr.port()).unwrap();
            endpoint.set_queue_max(MESSAGES as usize);
            let mut sum = 0;
            for _ in 0..MESSAGES {
                sum += endpoint.recv().await.unwrap().1;
            }
            sum
        })
        .unwrap();
    let sender = sim.spawn_on(a, "sender", async move {
        let endpoint = Endpoint::<u64>::bind(0).unwrap();
        let mut n = 0;
        while n < MESSAGES {
            for _ in 0..window {
                endpoint.send_to(addr, n).unwrap();
                n += 1;
            }
            sim::time::sleep(Duration::from_millis(1)).await;
        }
    });
    drop(sender.unwrap());
    let sum = sim.block_on(receiver).unwrap().unwrap();
    assert_eq!(sum, MESSAGES * (MESSAGES - 1) / 2);
    sim
}

fn one_way(c: &mut Criterion) {
    let mut group = c.benchmark_group("net");
    group.throughput(Throughput::Elements(MESSAGES));
    // All 10,000 in flight at once: the delivery queue at its largest.
    group.bench_function("send_deliver_recv_burst", |bencher| {
        bencher.iter_batched(
            || two_nodes(1),
            |(sim, a, b, addr)| one_way_run(sim, a, b, addr, MESSAGES),
            BatchSize::PerIteration,
        );
    });
    // About 500 in flight, as in a busy cluster.
    group.bench_function("send_deliver_recv_steady", |bencher| {
        bencher.iter_batched(
            || two_nodes(1),
            |(sim, a, b, addr)| one_way_run(sim, a, b, addr, 100),
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

/// Node a calls node b 10,000 times in a row; b's handler answers at once. Per round
/// trip: request and response each sent, delivered and received, plus the call's
/// timeout timer.
fn rpc_round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("net");
    group.throughput(Throughput::Elements(CALLS));
    group.bench_function("rpc_round_trip", |bencher| {
        bencher.iter_batched(
            || two_nodes(2),
            |(mut sim, a, b, addr)| {
                drop(
                    sim.spawn_on(b, "server", async move {
                        let server = RpcServer::<u64, u64>::bind(addr.port()).unwrap();
                        server.serve(|_, n| async move { n + 1 }).await;
                    })
                    .unwrap(),
                );
                let client = sim
                    .spawn_on(a, "client", async move {
                        let client = RpcClient::<u64, u64>::bind(0).unwrap();
                        for n in 0..CALLS {
                            let reply = client.call(addr, n, Duration::from_secs(1)).await;
                            assert_eq!(reply, Ok(n + 1));
                        }
                    })
                    .unwrap();
                sim.block_on(client).unwrap().unwrap();
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
    targets = one_way, rpc_round_trip
}
criterion_main!(benches);
