//! Ring benchmarks: owner lookup on the hot path, and the test helper that searches
//! for a key with chosen owners.
//!
//! Run with `cargo bench -p cache --bench ring`. Each figure is per call. Targets:
//! `lookup` ≤ 100 ns, `find_key_with_owners` ≤ 10 µs median.

use std::hint::black_box;

use cache::{NodeId, Ring};
use criterion::{Criterion, criterion_group, criterion_main};

/// Distinct keys cycled through, so that one cached path does not flatter the lookup.
const KEY_COUNT: usize = 1024;
const _: () = assert!(KEY_COUNT.is_power_of_two());
/// Candidates tried before giving up; an ordered triple out of 5 is 1 key in 60.
const CANDIDATE_COUNT_MAX: u64 = 1_000_000;

fn ring_of_five() -> (Ring, Vec<NodeId>) {
    let nodes: Vec<NodeId> =
        (1..=5).map(|index| NodeId::new(&format!("node-{index}")).unwrap()).collect();
    let mut ring = Ring::new(3, 64);
    ring.rebuild(&nodes);
    (ring, nodes)
}

/// 5 nodes × 64 vnodes, replication 3: one lookup.
fn lookup(c: &mut Criterion) {
    let (ring, _) = ring_of_five();
    let keys: Vec<String> = (0..KEY_COUNT).map(|index| format!("user:{index}")).collect();
    let mut index = 0;
    c.bench_function("ring/lookup_5_nodes_64_vnodes_rf3", |b| {
        b.iter(|| {
            index = (index + 1) & (KEY_COUNT - 1);
            let owners = ring.lookup(black_box(&keys[index]));
            black_box(owners.primary());
            owners.len()
        });
    });
}

/// An exact ordered triple out of 5 nodes, cycling through every triple that some arc
/// of the ring gives (58 of the 60 here; the other two return `None` at once).
fn find_key_with_owners(c: &mut Criterion) {
    let (ring, nodes) = ring_of_five();
    let mut triples: Vec<[NodeId; 3]> = Vec::new();
    for a in &nodes {
        for b in &nodes {
            for c in &nodes {
                let triple = [a.clone(), b.clone(), c.clone()];
                let distinct = a != b && b != c && a != c;
                if distinct
                    && ring.find_key_with_owners("key-", &triple, CANDIDATE_COUNT_MAX).is_some()
                {
                    triples.push(triple);
                }
            }
        }
    }
    assert!(triples.len() > 50, "most ordered triples are possible");
    let mut index = 0;
    c.bench_function("ring/find_key_with_owners_ordered_triple_of_5", |b| {
        b.iter(|| {
            index = (index + 1) % triples.len();
            let desired = black_box(&triples[index]);
            let key = ring.find_key_with_owners("key-", desired, CANDIDATE_COUNT_MAX);
            key.expect("only possible triples are benchmarked")
        });
    });
}

criterion_group!(benches, lookup, find_key_with_owners);
criterion_main!(benches);
