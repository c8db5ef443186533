//! Seeded tests: run one test body for many seeds, in parallel, and print a replay
//! command for every seed that fails.
//!
//! | variable | meaning |
//! |---|---|
//! | `SIM_SEED=S` | run seed `S` only (with `SIM_SEEDS`, start there) |
//! | `SIM_SEEDS=N` | run `N` consecutive seeds |
//! | `SIM_JOBS=J` | on `J` threads (default: all cores) |
//! | `SIM_CHECK_DETERMINISM=1` | run each seed twice and compare every event |

use std::fmt;
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sim::{Builder, Sim};

/// The seed to run (or the first one, with [`SEEDS_ENV`]).
pub const SEED_ENV: &str = "SIM_SEED";
/// How many consecutive seeds to run.
pub const SEEDS_ENV: &str = "SIM_SEEDS";
/// How many threads run seeds.
pub const JOBS_ENV: &str = "SIM_JOBS";
/// `1` to run every seed twice and compare the runs event by event.
pub const CHECK_DETERMINISM_ENV: &str = "SIM_CHECK_DETERMINISM";

/// Threads a seeded test may use at most, whatever `SIM_JOBS` says.
pub const JOBS_MAX: usize = 256;

/// A seeded test: which seeds, on how many threads, with which simulation settings.
#[derive(Clone, Debug)]
pub struct Seeds {
    seeds: Range<u64>,
    jobs: usize,
    check_determinism: bool,
    builder: Builder,
}

/// The seeds of a seeded test that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedFailures {
    /// How many seeds ran.
    pub total: u64,
    /// Each failing seed with its error.
    pub failures: Vec<(u64, String)>,
    replay_hint: String,
}

impl fmt::Display for SeedFailures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {} seeds failed", self.failures.len(), self.total)?;
        for (seed, error) in &self.failures {
            write!(f, "\n\nseed {seed}: {error}\n  replay: SIM_SEED={seed} {}", self.replay_hint)?;
        }
        Ok(())
    }
}

impl std::error::Error for SeedFailures {}

fn var_u64(lookup: &impl Fn(&str) -> Option<String>, name: &str) -> Result<Option<u64>, String> {
    match lookup(name) {
        None => Ok(None),
        Some(text) => text.trim().parse().map(Some).map_err(|_| {
            format!("invalid {name}={text:?}: expected a whole number from 0 to {}", u64::MAX)
        }),
    }
}

impl Seeds {
    /// Seeds `0..default_count`, on all cores, unless the environment says otherwise.
    ///
    /// # Errors
    ///
    /// When a variable is not a whole number (or `SIM_JOBS` is 0, or
    /// `SIM_CHECK_DETERMINISM` is neither 0 nor 1).
    pub fn try_from_env(default_count: u64) -> Result<Seeds, String> {
        Seeds::from_lookup(default_count, |name| std::env::var(name).ok())
    }

    /// Like [`Seeds::try_from_env`], reading variables through `lookup`.
    ///
    /// # Errors
    ///
    /// As [`Seeds::try_from_env`].
    pub fn from_lookup(
        default_count: u64,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Seeds, String> {
        let seed = var_u64(&lookup, SEED_ENV)?;
        let count = var_u64(&lookup, SEEDS_ENV)?;
        let start = seed.unwrap_or(0);
        let count = count.unwrap_or(if seed.is_some() { 1 } else { default_count });
        if count == 0 {
            return Err(format!("{SEEDS_ENV}=0 runs no seed: expected at least 1"));
        }
        let end = start.checked_add(count).ok_or_else(|| {
            format!("{SEED_ENV}={start} plus {SEEDS_ENV}={count} passes the largest seed")
        })?;
        let jobs = match var_u64(&lookup, JOBS_ENV)? {
            Some(0) => return Err(format!("invalid {JOBS_ENV}=0: expected at least 1")),
            Some(jobs) => usize::try_from(jobs).unwrap_or(JOBS_MAX).min(JOBS_MAX),
            None => std::thread::available_parallelism().map_or(1, usize::from),
        };
        let check_determinism = match lookup(CHECK_DETERMINISM_ENV).as_deref().map(str::trim) {
            None | Some("0") => false,
            Some("1") => true,
            Some(other) => {
                return Err(format!(
                    "invalid {CHECK_DETERMINISM_ENV}={other:?}: expected 0 (off) or 1 (on)"
                ));
            }
        };
        Ok(Seeds { seeds: start..end, jobs, check_determinism, builder: Builder::new() })
    }

    /// Like [`Seeds::try_from_env`].
    ///
    /// # Panics
    ///
    /// With a message naming the variable, when one is malformed.
    pub fn from_env(default_count: u64) -> Seeds {
        Seeds::try_from_env(default_count).unwrap_or_else(|error| panic!("{error}"))
    }

    /// Exactly these seeds, on `jobs` threads, without reading the environment.
    pub fn new(seeds: Range<u64>, jobs: usize) -> Seeds {
        Seeds {
            seeds,
            jobs: jobs.clamp(1, JOBS_MAX),
            check_determinism: false,
            builder: Builder::new(),
        }
    }

    /// The settings of every simulation (its seed is replaced by each seed in turn).
    pub fn builder(mut self, builder: Builder) -> Seeds {
        self.builder = builder;
        self
    }

    /// Runs each seed twice and compares the runs (as `SIM_CHECK_DETERMINISM=1`).
    pub fn check_determinism(mut self, on: bool) -> Seeds {
        self.check_determinism = on;
        self
    }

    /// The seeds that will run.
    pub fn seeds(&self) -> Range<u64> {
        self.seeds.clone()
    }

    /// The number of threads that will run them.
    pub fn jobs(&self) -> usize {
        self.jobs
    }

    /// Whether each seed runs twice and is compared.
    pub fn checks_determinism(&self) -> bool {
        self.check_determinism
    }

    /// Runs `body` for every seed and panics, listing each failing seed with its error
    /// and replay command, if any failed.
    ///
    /// # Panics
    ///
    /// When any seed fails: the body returns an error or panics, or (with the
    /// determinism check) two runs of a seed differ.
    pub fn run<F, E>(&self, body: F)
    where
        F: Fn(&mut Sim) -> Result<(), E> + Sync,
        E: fmt::Display,
    {
        if let Err(failures) = self.try_run(body) {
            panic!("{failures}");
        }
    }

    /// Runs `body` for every seed and returns the failures.
    ///
    /// # Errors
    ///
    /// When any seed fails.
    pub fn try_run<F, E>(&self, body: F) -> Result<(), SeedFailures>
    where
        F: Fn(&mut Sim) -> Result<(), E> + Sync,
        E: fmt::Display,
    {
        let failures = Mutex::new(Vec::new());
        let next = AtomicU64::new(self.seeds.start);
        let worker = || {
            loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= self.seeds.end {
                    break;
                }
                if let Err(error) = self.run_one(seed, &body) {
                    failures.lock().unwrap_or_else(|e| e.into_inner()).push((seed, error));
                }
            }
        };
        let count = self.seeds.end - self.seeds.start;
        let jobs = self.jobs.min(usize::try_from(count).unwrap_or(usize::MAX)).max(1);
        if jobs == 1 {
            worker();
        } else {
            // Each thread runs whole simulations of its own; nothing is shared between
            // them but the seed counter, so results do not depend on the thread count.
            #[allow(clippy::disallowed_methods)]
            std::thread::scope(|scope| {
                for _ in 0..jobs {
                    scope.spawn(worker);
                }
            });
        }
        let mut failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
        if failures.is_empty() {
            return Ok(());
        }
        failures.sort_by_key(|(seed, _)| *seed);
        Err(SeedFailures { total: count, failures, replay_hint: replay_hint() })
    }

    fn run_one<F, E>(&self, seed: u64, body: &F) -> Result<(), String>
    where
        F: Fn(&mut Sim) -> Result<(), E> + Sync,
        E: fmt::Display,
    {
        let builder = self.builder.clone().seed(seed);
        let mut outcome = None;
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            if self.check_determinism {
                let checked = builder.check_determinism(|sim| {
                    let result = body(sim).map_err(|error| error.to_string());
                    outcome.get_or_insert(result);
                });
                checked.map_err(|error| error.to_string())?;
                outcome.take().unwrap_or(Ok(()))
            } else {
                body(&mut builder.build()).map_err(|error| error.to_string())
            }
        }));
        match result {
            Ok(result) => result,
            Err(payload) => Err(format!("panicked: {}", panic_text(payload.as_ref()))),
        }
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-string payload".to_string())
}

/// The command that reruns the current test, for the replay line.
fn replay_hint() -> String {
    let package = std::env::var("CARGO_PKG_NAME").unwrap_or_else(|_| "<package>".to_string());
    let thread = std::thread::current();
    let test = match thread.name() {
        Some(name) if name != "main" => name.to_string(),
        _ => "<test name>".to_string(),
    };
    format!("cargo test -p {package} -- --exact {test}")
}

/// Runs `body` for the seeds the environment selects (default `0..default_count`);
/// see [`Seeds`].
///
/// # Panics
///
/// When a seed fails, listing every failing seed with its replay command, or when an
/// environment variable is malformed.
///
/// ```
/// sim::run_seeds(4, |sim| {
///     let value = sim.block_on(async { sim::rand::range(0..10) })?;
///     assert!(value < 10);
///     Ok::<(), sim::SimError>(())
/// });
/// ```
pub fn run_seeds<F, E>(default_count: u64, body: F)
where
    F: Fn(&mut Sim) -> Result<(), E> + Sync,
    E: fmt::Display,
{
    Seeds::from_env(default_count).run(body);
}

/// What a `#[sim::test]` body may return: `()`, or `Result<(), E>` with `E: Display`.
pub trait TestOutcome {
    /// The outcome as a seeded test's result.
    ///
    /// # Errors
    ///
    /// When the body returned an error: its text.
    fn into_test_result(self) -> Result<(), String>;
}

impl TestOutcome for () {
    fn into_test_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: fmt::Display> TestOutcome for Result<(), E> {
    fn into_test_result(self) -> Result<(), String> {
        self.map_err(|error| error.to_string())
    }
}
