//! The workload on this project's `sim`.
#[path = "bench.rs"]
mod bench;
#[path = "rt_sim.rs"]
mod rt;
#[path = "workload.rs"]
mod workload;

fn main() {
    bench::main("sim");
}
