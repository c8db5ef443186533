//! The workload on madsim.
#[path = "bench.rs"]
mod bench;
#[path = "rt_madsim.rs"]
mod rt;
#[path = "workload.rs"]
mod workload;

fn main() {
    bench::main("madsim");
}
