use futures::StreamExt;
use std::time::Duration;
use sim::rand::{RngExt, SimRng};
fn main() {
    let mut rng = SimRng::new(3, 0);
    for _ in 0..10 {
        let deadlines: Vec<u64> = (0..100_000).map(|_| rng.below(1_000_000_000)).collect();
        let mut sim = sim::Sim::new(3);
        sim.block_on(async move {
            let mut sleeps: futures::stream::FuturesUnordered<_> = deadlines.into_iter().map(|d| sim::time::sleep(Duration::from_nanos(d))).collect();
            while sleeps.next().await.is_some() {}
        }).unwrap();
    }
}
