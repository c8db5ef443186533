//! [`cache::Runtime`] on tokio's current-thread runtime: tasks on the current
//! `LocalSet`, the OS clock, and a random stream seeded once from the OS clock.

use std::cell::RefCell;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cache::{LocalBoxFuture, Runtime, TaskGuard};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// Tasks, time and randomness of one node on a real network.
#[derive(Debug)]
pub struct TokioRuntime {
    started: Instant,
    rng: RefCell<ChaCha8Rng>,
}

impl TokioRuntime {
    /// A runtime whose random stream starts from `seed`.
    pub fn with_seed(seed: u64) -> TokioRuntime {
        // A real node's monotonic clock: this crate is the one place the cache meets
        // the OS, so it reads it.
        #[allow(clippy::disallowed_methods)]
        let started = Instant::now();
        TokioRuntime { started, rng: RefCell::new(ChaCha8Rng::seed_from_u64(seed)) }
    }

    /// A runtime seeded from the wall clock and the process id: two nodes started in
    /// the same nanosecond in one process still differ by `salt`.
    pub fn new(salt: u64) -> TokioRuntime {
        let nanos = wall_clock().as_nanos() as u64;
        TokioRuntime::with_seed(nanos ^ u64::from(std::process::id()).rotate_left(32) ^ salt)
    }
}

fn wall_clock() -> Duration {
    // A real node's wall clock (TTLs, tombstone ages); never inside a simulation.
    #[allow(clippy::disallowed_methods)]
    let now = SystemTime::now();
    now.duration_since(UNIX_EPOCH).unwrap_or_default()
}

impl Runtime for TokioRuntime {
    /// # Panics
    ///
    /// Outside a `tokio::task::LocalSet`.
    fn spawn(&self, name: &'static str, task: LocalBoxFuture<()>) -> TaskGuard {
        let handle = tokio::task::spawn_local(async move {
            task.await;
            tracing::trace!(target: "cache::net", task = name, "task ended");
        });
        TaskGuard::new(move || handle.abort())
    }

    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn wall_clock_ms(&self) -> u64 {
        u64::try_from(wall_clock().as_millis()).unwrap_or(u64::MAX)
    }

    fn sleep(&self, duration: Duration) -> LocalBoxFuture<()> {
        Box::pin(tokio::time::sleep(duration))
    }

    fn random_u64(&self) -> u64 {
        self.rng.borrow_mut().next_u64()
    }
}
