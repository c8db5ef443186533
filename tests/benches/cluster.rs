//! A 5-node cluster doing 10,000 QUORUM sets and 10,000 QUORUM gets in simulation.
//!
//! Run with `cargo bench -p cachesim --bench cluster`. Criterion's throughput is in
//! simulated operations per wall-clock second.

use std::time::Duration;

use cache::{Consistency, Options};
use cachesim::setup_in_process_cluster;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sim::Sim;

const OPERATIONS_PER_KIND: u64 = 10_000;
const KEYS: u64 = 1_000;

fn quorum_sets_and_gets(c: &mut Criterion) {
    let mut group = c.benchmark_group("cluster");
    group.throughput(Throughput::Elements(2 * OPERATIONS_PER_KIND));
    group.bench_function("5_nodes_rf3_quorum_10k_sets_10k_gets", |b| {
        b.iter_batched(
            || {
                let mut sim = Sim::new(1);
                let options = Options::builder()
                    .read_consistency(Consistency::Quorum)
                    .write_consistency(Consistency::Quorum);
                let cluster = setup_in_process_cluster(&mut sim, 5, options).unwrap();
                (sim, cluster)
            },
            |(mut sim, cluster)| {
                let nodes: Vec<_> = (0..5).map(|index| cluster.node(index).unwrap()).collect();
                sim.block_on(async move {
                    for op in 0..OPERATIONS_PER_KIND {
                        let node = &nodes[(op % 5) as usize];
                        let key = format!("key{}", op % KEYS);
                        node.set(&key, "value", None).await.unwrap();
                    }
                    for op in 0..OPERATIONS_PER_KIND {
                        let node = &nodes[(op % 5) as usize];
                        let key = format!("key{}", op % KEYS);
                        assert!(node.get(&key).await.unwrap().is_some());
                    }
                })
                .unwrap();
                sim.run_for(Duration::from_secs(10)).unwrap();
                (sim, cluster)
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(10));
    targets = quorum_sets_and_gets
}
criterion_main!(benches);
