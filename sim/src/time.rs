//! Virtual time: an [`Instant`] that only the simulator moves, sleeps, timeouts,
//! intervals and each node's wall clock.
//!
//! The clock starts at zero, never reads the OS, and advances only when no task is
//! ready, jumping straight to the earliest timer. Durations are `std::time::Duration`.

use std::fmt;
use std::future::Future;
use std::ops::{Add, AddAssign, Sub};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pin_project_lite::pin_project;

use crate::context;
use crate::timer::TimerKey;
use crate::world::Shared;

/// A point in virtual time: nanoseconds since the start of the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The start of every run.
    pub const ZERO: Instant = Instant(0);

    /// The current virtual time.
    ///
    /// # Panics
    ///
    /// Outside a running simulation (use [`crate::Handle::now`] between steps).
    pub fn now() -> Instant {
        Instant(context::with(|shared| shared.now_ns.get()))
    }

    /// From nanoseconds since the start of the run.
    pub const fn from_nanos(nanos: u64) -> Instant {
        Instant(nanos)
    }

    /// Nanoseconds since the start of the run.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time since the start of the run.
    pub const fn since_start(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// Virtual time elapsed since `self` (zero if `self` is in the future).
    ///
    /// # Panics
    ///
    /// Outside a running simulation.
    pub fn elapsed(self) -> Duration {
        Instant::now().saturating_duration_since(self)
    }

    /// `self - earlier`, or `None` when `earlier` is later.
    pub fn checked_duration_since(self, earlier: Instant) -> Option<Duration> {
        self.0.checked_sub(earlier.0).map(Duration::from_nanos)
    }

    /// `self - earlier`, or zero when `earlier` is later (as `std`'s `Instant` does).
    pub fn duration_since(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }

    /// `self - earlier`, or zero when `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self + duration`, saturating at the end of time.
    pub fn saturating_add(self, duration: Duration) -> Instant {
        Instant(self.0.saturating_add(duration_nanos(duration)))
    }
}

/// A duration in nanoseconds, saturating (a `Duration` can exceed `u64` nanoseconds).
pub(crate) fn duration_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl Add<Duration> for Instant {
    type Output = Instant;

    fn add(self, duration: Duration) -> Instant {
        self.saturating_add(duration)
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, duration: Duration) {
        *self = *self + duration;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;

    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}s", self.0 / 1_000_000_000, (self.0 % 1_000_000_000) / 1_000)
    }
}

/// A future that completes at a virtual deadline. Dropping it cancels its timer.
///
/// Created inside a simulation, its deadline is fixed at creation. Created outside
/// one (say, `sim.block_on(sleep(d))`), it binds to the simulation that first polls
/// it, and its deadline counts from then.
#[must_use = "a Sleep does nothing unless awaited"]
pub struct Sleep {
    deadline: Deadline,
    shared: Option<Rc<Shared>>,
    timer: Option<TimerKey>,
}

#[derive(Clone, Copy, Debug)]
enum Deadline {
    At(Instant),
    /// Not bound to a simulation yet: this long after the first poll.
    After(Duration),
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep").field("deadline", &self.deadline).finish_non_exhaustive()
    }
}

impl Sleep {
    /// The deadline; `None` for a sleep created outside a simulation and not polled yet.
    pub fn deadline(&self) -> Option<Instant> {
        match self.deadline {
            Deadline::At(deadline) => Some(deadline),
            Deadline::After(_) => None,
        }
    }

    /// Moves the deadline (an armed timer is cancelled and set again on next poll).
    pub fn reset(&mut self, deadline: Instant) {
        self.cancel_timer();
        self.deadline = Deadline::At(deadline);
    }

    fn cancel_timer(&mut self) {
        if let Some(timer) = self.timer.take()
            && let Some(shared) = &self.shared
            && let Ok(mut world) = shared.world.try_borrow_mut()
        {
            world.timers.remove(timer);
        }
    }

    /// Binds to the running simulation on first use; returns it and the deadline.
    fn bind(&mut self) -> (Rc<Shared>, Instant) {
        let shared = self.shared.get_or_insert_with(context::current);
        if let Deadline::After(duration) = self.deadline {
            self.deadline = Deadline::At(Instant(shared.now_ns.get()).saturating_add(duration));
        }
        let Deadline::At(deadline) = self.deadline else { unreachable!("bound above") };
        (Rc::clone(shared), deadline)
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let (shared, deadline) = this.bind();
        if shared.now_ns.get() >= deadline.0 {
            this.cancel_timer();
            return Poll::Ready(());
        }
        let mut world = shared.world.borrow_mut();
        match this.timer {
            Some(timer) => world.timers.update(timer, cx.waker()),
            None => this.timer = Some(world.timers.insert(deadline.0, cx.waker().clone())),
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.cancel_timer();
    }
}

/// Completes after `duration` of virtual time.
pub fn sleep(duration: Duration) -> Sleep {
    match context::try_with(|shared| Instant(shared.now_ns.get())) {
        Some(now) => Sleep {
            deadline: Deadline::At(now.saturating_add(duration)),
            shared: Some(context::current()),
            timer: None,
        },
        None => Sleep { deadline: Deadline::After(duration), shared: None, timer: None },
    }
}

/// Completes at `deadline` (at once if it has passed).
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline: Deadline::At(deadline),
        shared: context::try_with(|_| context::current()),
        timer: None,
    }
}

/// The error of a [`timeout`] whose deadline passed first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed;

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

pin_project! {
    /// A future with a virtual deadline; see [`timeout`].
    #[derive(Debug)]
    #[must_use = "a Timeout does nothing unless awaited"]
    pub struct Timeout<F> {
        #[pin]
        future: F,
        sleep: Sleep,
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        match Pin::new(this.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Runs `future` until it completes or `duration` of virtual time passes. The future
/// is polled first, so one that is ready at the deadline still wins.
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    Timeout { future, sleep: sleep(duration) }
}

/// Ticks every `period`; see [`interval`].
#[derive(Debug)]
pub struct Interval {
    period: Duration,
    sleep: Sleep,
}

impl Interval {
    /// Waits for the next tick and returns its scheduled time. The first tick is
    /// immediate. A late tick (say, after a pause) fires once, and the next one is a
    /// full period after it: missed ticks are not replayed in a burst.
    pub async fn tick(&mut self) -> Instant {
        std::future::poll_fn(|cx| self.poll_tick(cx)).await
    }

    /// Polls for the next tick; see [`Interval::tick`].
    pub fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Instant> {
        if Pin::new(&mut self.sleep).poll(cx).is_pending() {
            return Poll::Pending;
        }
        let (shared, scheduled) = self.sleep.bind();
        let now = Instant(shared.now_ns.get());
        let next = scheduled.saturating_add(self.period);
        let next = if next > now { next } else { now.saturating_add(self.period) };
        self.sleep.reset(next);
        Poll::Ready(scheduled)
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }
}

/// Ticks now and then every `period` of virtual time.
///
/// # Panics
///
/// When `period` is zero.
pub fn interval(period: Duration) -> Interval {
    assert!(!period.is_zero(), "interval period must be positive");
    Interval { period, sleep: sleep(Duration::ZERO) }
}

/// The current node's wall clock: a fixed epoch (2025-01-01T00:00:00Z) plus virtual
/// time plus the node's clock offset and drift, which faults may change. Use it for
/// TTLs and timestamps; it may jump backwards when a fault sets the clock back.
///
/// # Panics
///
/// Outside a running simulation.
pub fn wall_clock() -> SystemTime {
    context::with(|shared| shared.wall_clock(shared.current_node.get()))
}

impl Shared {
    pub(crate) fn wall_clock(&self, node: crate::NodeId) -> SystemTime {
        let now_ns = self.now_ns.get();
        let unix_ns = self.world.borrow().nodes[node.index()].clock.wall_unix_ns(now_ns);
        UNIX_EPOCH + Duration::from_nanos(unix_ns)
    }
}
