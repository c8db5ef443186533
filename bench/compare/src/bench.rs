//! Runs the workload over seeds on one thread and prints what it cost.

use std::sync::atomic::Ordering;

/// The CPU time this process has used, in nanoseconds.
fn cpu_ns() -> u128 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole `rusage` into the pointer it is given, which
    // points to one we own.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let micros = |time: libc::timeval| time.tv_sec as u128 * 1_000_000 + time.tv_usec as u128;
    (micros(usage.ru_utime) + micros(usage.ru_stime)) * 1_000
}

pub fn main(runtime: &str) {
    let seeds: u64 = std::env::args().nth(1).map_or(200, |text| {
        text.parse()
            .unwrap_or_else(|_| panic!("invalid seed count {text:?}: expected a whole number"))
    });
    // One seed first, out of the measurement: page faults and first allocations.
    let _ = crate::workload::run_seed(u64::MAX);
    let (mut delivered, mut ok, mut failed) = (0u64, 0u64, 0u64);
    let start = cpu_ns();
    for seed in 0..seeds {
        let counters = crate::workload::run_seed(seed);
        delivered += counters.delivered.load(Ordering::Relaxed);
        ok += counters.ok.load(Ordering::Relaxed);
        failed += counters.failed.load(Ordering::Relaxed);
    }
    let cpu = cpu_ns() - start;
    println!(
        "{runtime} seeds={seeds} cpu_ms_per_seed={:.3} messages_per_seed={} ns_per_message={:.1} ops_ok={ok} ops_failed={failed}",
        cpu as f64 / 1e6 / seeds as f64,
        delivered / seeds,
        cpu as f64 / delivered.max(1) as f64,
    );
}
