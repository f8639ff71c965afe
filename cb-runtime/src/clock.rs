//! Monotonic clocks: the fast system clock, and injectable ones for tests.
//!
//! Every time the breaker reads (open deadlines, slow-call detection, time
//! windows) comes from a [`Clock`] in its [`Config`](crate::Config). The
//! default, [`Clock::system`], reads the kernel's *coarse* monotonic clock on
//! Linux (a few nanoseconds, with a resolution of a few milliseconds, which is
//! plenty for open durations and slow-call thresholds) and [`std::time::Instant`]
//! elsewhere. It never reads wall-clock time, so clock jumps cannot reopen or
//! close a circuit.
//!
//! Tests drive time by hand with [`ManualClock`], or follow tokio's paused
//! clock with [`Clock::tokio`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::sync::{AtomicU64, Ordering};

/// A monotonic time source, read in nanoseconds since an arbitrary origin.
///
/// Cloning is cheap. Two clocks are equal when they read the same source.
#[derive(Clone, Default)]
pub struct Clock(Source);

/// Which time source a [`Clock`] reads.
#[derive(Clone, Default)]
enum Source {
    #[default]
    System,
    Manual(Arc<AtomicU64>),
    Tokio(tokio::time::Instant),
}

impl Clock {
    /// The process's monotonic clock (coarse on Linux). This is the default.
    pub fn system() -> Self {
        Clock(Source::System)
    }

    /// A clock that follows [`tokio::time::Instant`], so it stands still under
    /// a paused tokio runtime and moves with `tokio::time::advance`.
    ///
    /// Reading it costs more than [`Clock::system`]; use it in tests.
    pub fn tokio() -> Self {
        Clock(Source::Tokio(tokio::time::Instant::now()))
    }

    /// Nanoseconds since this clock's origin.
    #[inline]
    pub(crate) fn now_nanos(&self) -> u64 {
        match &self.0 {
            Source::System => system_nanos(),
            Source::Manual(t) => t.load(Ordering::Acquire),
            Source::Tokio(origin) => duration_nanos(origin.elapsed()),
        }
    }

    /// The time since this clock's origin.
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.now_nanos())
    }

    /// How far apart two distinct readings can be: the system clock's tick
    /// (a few milliseconds for Linux's coarse clock, as the kernel reports
    /// it), and one nanosecond for the manual and tokio clocks, which are
    /// exact. A duration shorter than a few ticks cannot be timed reliably.
    pub fn resolution(&self) -> Duration {
        match &self.0 {
            Source::System => system_resolution(),
            Source::Manual(_) | Source::Tokio(_) => Duration::from_nanos(1),
        }
    }

    /// `true` for [`Clock::system`].
    pub(crate) fn is_system(&self) -> bool {
        matches!(self.0, Source::System)
    }
}

impl PartialEq for Clock {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Source::System, Source::System) => true,
            (Source::Manual(a), Source::Manual(b)) => Arc::ptr_eq(a, b),
            (Source::Tokio(a), Source::Tokio(b)) => a == b,
            _ => false,
        }
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Source::System => f.write_str("Clock::system()"),
            Source::Manual(t) => write!(
                f,
                "Clock::manual(at {:?})",
                Duration::from_nanos(t.load(Ordering::Relaxed))
            ),
            Source::Tokio(_) => f.write_str("Clock::tokio()"),
        }
    }
}

/// A clock that moves only when told to: for deterministic tests.
///
/// ```
/// use std::time::Duration;
/// use cb_runtime::{clock::ManualClock, CircuitBreaker, Config, State};
///
/// let clock = ManualClock::new();
/// let config = Config::builder()
///     .failure_threshold(1)
///     .open_duration(Duration::from_secs(30))
///     .clock(clock.clock())
///     .build()
///     .unwrap();
/// let breaker = CircuitBreaker::new("manual-clock-doc", config);
/// breaker.force_open();
/// breaker.reset();
/// assert_eq!(breaker.state(), State::Closed);
/// clock.advance(Duration::from_secs(31));
/// ```
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A manual clock standing at time zero.
    pub fn new() -> Self {
        ManualClock(Arc::new(AtomicU64::new(0)))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(duration_nanos(by), Ordering::AcqRel);
    }

    /// The current reading.
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Acquire))
    }

    /// A [`Clock`] reading this manual clock, to put in a [`Config`](crate::Config).
    pub fn clock(&self) -> Clock {
        Clock(Source::Manual(Arc::clone(&self.0)))
    }
}

/// A duration in nanoseconds, saturating at `u64::MAX` (about 584 years).
#[inline]
pub(crate) fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(all(target_os = "linux", not(loom), not(miri)))]
#[inline]
fn system_nanos() -> u64 {
    // CLOCK_MONOTONIC_COARSE is served from the vDSO without reading the TSC:
    // a few nanoseconds, where `Instant::now()` costs tens on virtual machines.
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

#[cfg(all(target_os = "linux", not(loom), not(miri)))]
fn system_resolution() -> Duration {
    let ts = rustix::time::clock_getres(rustix::time::ClockId::MonotonicCoarse);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(not(all(target_os = "linux", not(loom), not(miri))))]
fn system_resolution() -> Duration {
    // `Instant` is served by a fine clock on the other platforms.
    Duration::from_micros(1)
}

#[cfg(not(all(target_os = "linux", not(loom), not(miri))))]
#[inline]
fn system_nanos() -> u64 {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    duration_nanos(ORIGIN.get_or_init(std::time::Instant::now).elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_is_monotonic() {
        let c = Clock::system();
        let mut last = c.now_nanos();
        for _ in 0..10_000 {
            let now = c.now_nanos();
            assert!(now >= last);
            last = now;
        }
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let m = ManualClock::new();
        let c = m.clock();
        assert_eq!(c.now(), Duration::ZERO);
        m.advance(Duration::from_millis(1500));
        assert_eq!(c.now(), Duration::from_millis(1500));
        assert_eq!(c, m.clock());
        assert_ne!(c, Clock::system());
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let c = Clock::tokio();
        let before = c.now();
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(c.now() - before, Duration::from_secs(5));
    }
}
