//! Monotonic clocks: the system's "recent time", and injectable ones for tests.
//!
//! Every time the breaker reads (open deadlines, slow-call detection, time
//! windows) comes from a [`Clock`] in its [`Config`](crate::Config). It never
//! reads wall-clock time, so clock jumps cannot reopen or close a circuit.
//!
//! # The system clock is a load, not a clock read
//!
//! [`Clock::system`], the default, reads a *recent time*: one atomic word that
//! a background thread, `cb-clock`, refreshes from the monotonic clock
//! (`CLOCK_MONOTONIC` on Linux, [`std::time::Instant`] elsewhere) once a
//! millisecond. A reading is one relaxed load and a predicted branch, where
//! even the kernel's coarse clock costs about 5 ns through the vDSO (and a
//! precise one tens on a virtual machine). Slow-call timing reads it twice
//! per call and a tripped breaker once per rejection: with the coarse clock
//! those reads were more than half of what such a call cost.
//!
//! * **Resolution.** A reading is the monotonic clock as of the thread's
//!   last wake-up, so it steps by about 1 ms and is at most one interval
//!   (plus that wake-up's scheduling delay) behind the true time: finer than
//!   the kernel's coarse clock it replaces, which steps once per kernel tick
//!   (4 ms on the benchmark VM, up to 10 ms on `HZ=100` kernels).
//!   [`Clock::resolution`] says 1 ms. A call's measured duration, the
//!   difference of two readings, is off by at most that lag either way.
//!   The 10 ms floor on `slow_call_duration`
//!   ([`MIN_SLOW_CALL_DURATION`](crate::MIN_SLOW_CALL_DURATION)), sized for
//!   the coarse clock's 10 ms worst case, now keeps a tenfold margin: a
//!   1 ms call measures about 2 ms at most and is never slow, and a call
//!   longer than 11 ms always measures longer than 10 ms. Only a machine so
//!   saturated that the upkeep thread waits 8 ms or more for a CPU could
//!   misjudge a call at the floor; a sleeping thread that wakes is normally
//!   scheduled within microseconds.
//! * **Started lazily, stopped when idle.** No thread exists until something
//!   first reads the system clock: a breaker with slow-call timing on, one
//!   that opens (its deadline), or a time window. A breaker with the builder
//!   defaults never reads it while closed. The thread stops by itself after a
//!   second in which nothing read the clock, and the next reading
//!   starts a new one (tens of microseconds, once). A reader that finds no
//!   thread reads the monotonic clock itself, so a reading is never stale
//!   for lack of a thread; if the thread cannot be spawned at all, every
//!   reading is a direct clock read.
//! * **Cost.** While it runs the thread wakes about 1,000 times a second
//!   (`std::thread::sleep` of 1 ms; timer slack and scheduling make it 900
//!   to 950) and does one clock read and one compare-and-swap per wake-up.
//!   On the 2-vCPU VM of the guide's benchmarks (docs/guide/internals.md) that is 1.4 % of one CPU
//!   (28 ms of thread CPU time in 2 s, 928 wake-ups a second, measured with
//!   the thread's own CPU clock by `upkeep_cost` in this module's tests:
//!   `cargo test -p cb-runtime --release --lib upkeep_cost -- --ignored
//!   --nocapture`), nearly all of it the kernel's sleep and wake-up, and it
//!   is paid only while something reads the clock: an idle service's thread
//!   stops after a second. Its stack is 64 KiB.
//! * **Ordering.** Readings on one thread never go backwards. The thread
//!   publishes only increasing values, and a reader that starts a thread
//!   publishes its own reading first; all readings come from the same
//!   monotonic clock.
//! * **Forks.** A child forked (without exec) while the upkeep thread runs
//!   inherits the word but not the thread, so its system clock stands still
//!   and an open breaker never half-opens there. Fork before the first
//!   breaker reads the clock (as tokio's runtime also requires), or at least
//!   a second after the last reading, when the thread has stopped: a child
//!   then starts its own on its first reading.
//! * **Tests and loom.** [`ManualClock`] and [`Clock::tokio`] are unchanged
//!   and never start the thread. Under `cfg(loom)` and `cfg(miri)` the system
//!   clock reads the monotonic clock directly, with no thread.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::sync::{AtomicU64, Ordering};

/// A monotonic time source, read in nanoseconds since an arbitrary origin.
///
/// Cloning is cheap. Two clocks are equal when they read the same source.
#[derive(Clone, Default)]
pub struct Clock(
    /// `None` for the system clock, so that telling it from the test clocks
    /// on every reading is one test of a pointer.
    Option<Arc<Source>>,
);

/// Which test time source a [`Clock`] reads.
enum Source {
    Manual(Arc<AtomicU64>),
    Tokio(tokio::time::Instant),
}

impl Clock {
    /// The process's monotonic clock, read as a recent time that a background
    /// thread refreshes every millisecond (see the [module](self) docs). This
    /// is the default.
    pub fn system() -> Self {
        Clock(None)
    }

    /// A clock that follows [`tokio::time::Instant`], so it stands still under
    /// a paused tokio runtime and moves with `tokio::time::advance`.
    ///
    /// Reading it costs much more than [`Clock::system`]; use it in tests.
    pub fn tokio() -> Self {
        Clock(Some(Arc::new(Source::Tokio(tokio::time::Instant::now()))))
    }

    /// Nanoseconds since this clock's origin.
    #[inline(always)]
    pub(crate) fn now_nanos(&self) -> u64 {
        match &self.0 {
            None => recent::now(),
            Some(source) => source.now_nanos(),
        }
    }

    /// The time since this clock's origin.
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.now_nanos())
    }

    /// How far apart two distinct readings can be: for the system clock the
    /// upkeep thread's interval, 1 ms (its readings lag the true time by
    /// about that much at most), and one nanosecond for the manual and tokio
    /// clocks, which are exact. A duration shorter than a few ticks cannot be
    /// timed reliably.
    pub fn resolution(&self) -> Duration {
        match &self.0 {
            None => recent::RESOLUTION,
            Some(_) => Duration::from_nanos(1),
        }
    }

    /// `true` for [`Clock::system`].
    pub(crate) fn is_system(&self) -> bool {
        self.0.is_none()
    }
}

impl Source {
    #[inline(never)]
    fn now_nanos(&self) -> u64 {
        match self {
            Source::Manual(t) => t.load(Ordering::Acquire),
            Source::Tokio(origin) => duration_nanos(origin.elapsed()),
        }
    }
}

impl PartialEq for Clock {
    fn eq(&self, other: &Self) -> bool {
        match (self.0.as_deref(), other.0.as_deref()) {
            (None, None) => true,
            (Some(Source::Manual(a)), Some(Source::Manual(b))) => Arc::ptr_eq(a, b),
            (Some(Source::Tokio(a)), Some(Source::Tokio(b))) => a == b,
            _ => false,
        }
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_deref() {
            None => f.write_str("Clock::system()"),
            Some(Source::Manual(t)) => write!(
                f,
                "Clock::manual(at {:?})",
                Duration::from_nanos(t.load(Ordering::Relaxed))
            ),
            Some(Source::Tokio(_)) => f.write_str("Clock::tokio()"),
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
        Clock(Some(Arc::new(Source::Manual(Arc::clone(&self.0)))))
    }
}

/// A duration in nanoseconds, saturating at `u64::MAX` (about 584 years).
#[inline]
pub(crate) fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The monotonic clock itself, in nanoseconds since an arbitrary origin (on
/// Linux, since boot): what the upkeep thread publishes, and what a reader
/// reads when there is no thread.
#[cfg(all(target_os = "linux", not(loom), not(miri)))]
fn precise_nanos() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

#[cfg(not(all(target_os = "linux", not(loom), not(miri))))]
fn precise_nanos() -> u64 {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    duration_nanos(ORIGIN.get_or_init(std::time::Instant::now).elapsed())
}

/// The system clock under loom and miri: a direct read, no thread.
#[cfg(any(loom, miri))]
mod recent {
    use std::time::Duration;

    /// [`Clock::resolution`](super::Clock::resolution) of the direct read.
    pub(super) const RESOLUTION: Duration = Duration::from_micros(1);

    #[inline]
    pub(super) fn now() -> u64 {
        super::precise_nanos()
    }
}

/// The recent time: one word the upkeep thread refreshes (module docs).
#[cfg(not(any(loom, miri)))]
mod recent {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::Duration;

    /// How often the upkeep thread refreshes [`WORD`].
    pub(super) const INTERVAL: Duration = Duration::from_millis(1);
    /// [`Clock::resolution`](super::Clock::resolution) of the system clock.
    pub(super) const RESOLUTION: Duration = INTERVAL;
    /// Wake-ups without a reader after which the thread stops (one second).
    const IDLE_TICKS: u32 = 1000;

    /// The word's low bit: somebody read it since the thread last cleared the
    /// bit. The time is kept in the other bits (its lowest bit dropped).
    const READ: u64 = 1;
    /// The word when no thread runs.
    const STOPPED: u64 = 0;

    /// The recent time, alone on its cache line(s): it is written once a
    /// millisecond and read on every timed call.
    #[repr(align(128))]
    pub(super) struct Recent {
        word: AtomicU64,
        /// Set when a thread could not be spawned: read directly from then on.
        no_thread: AtomicBool,
    }

    pub(super) static WORD: Recent = Recent::new();

    impl Recent {
        pub(super) const fn new() -> Self {
            Recent {
                word: AtomicU64::new(STOPPED),
                no_thread: AtomicBool::new(false),
            }
        }

        /// The recent time, in nanoseconds. `start` runs the upkeep for this
        /// word when none runs (and returns whether it could).
        #[inline(always)]
        pub(super) fn read(&self, start: impl FnOnce() -> bool) -> u64 {
            let t = self.word.load(Ordering::Relaxed);
            if t & READ != 0 {
                return t ^ READ;
            }
            self.read_cold(t, start)
        }

        /// The first reading since the thread cleared the read bit, or one
        /// with no thread running.
        #[cold]
        #[inline(never)]
        fn read_cold(&self, t: u64, start: impl FnOnce() -> bool) -> u64 {
            if t != STOPPED {
                // Tell the thread the clock is in use; losing the race to its
                // next refresh only means the next reader sets the bit.
                let _ = self
                    .word
                    .compare_exchange(t, t | READ, Ordering::Relaxed, Ordering::Relaxed);
                return t;
            }
            let now = stored(super::precise_nanos());
            if self.no_thread.load(Ordering::Relaxed) {
                return now;
            }
            // Publish a reading first, so that no reader sees a time older
            // than one already returned; the winner starts the thread.
            match self
                .word
                .compare_exchange(STOPPED, now | READ, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    if !start() {
                        self.no_thread.store(true, Ordering::Relaxed);
                        self.word.store(STOPPED, Ordering::Relaxed);
                    }
                    now
                }
                Err(current) => current & !READ,
            }
        }

        /// One wake-up of the upkeep thread: publishes `now` (never going
        /// back), and every `IDLE_TICKS`th wake-up (`check`) clears the read
        /// bit, or stops when nobody read since the last check. Returns
        /// `false` when the thread must stop: the word says stopped then.
        pub(super) fn tick(&self, now: u64, check: bool) -> bool {
            let now = stored(now);
            let mut old = self.word.load(Ordering::Relaxed);
            loop {
                let time = (old & !READ).max(now);
                let new = match (check, old & READ != 0) {
                    (false, _) => time | (old & READ),
                    (true, true) => time,
                    (true, false) => STOPPED,
                };
                match self
                    .word
                    .compare_exchange_weak(old, new, Ordering::Relaxed, Ordering::Relaxed)
                {
                    Ok(_) => return new != STOPPED,
                    Err(current) => old = current,
                }
            }
        }
    }

    /// A time as the word keeps it: its lowest bit dropped, and never
    /// [`STOPPED`].
    fn stored(nanos: u64) -> u64 {
        (nanos & !READ).max(2)
    }

    /// The system clock's reading.
    #[inline(always)]
    pub(super) fn now() -> u64 {
        WORD.read(spawn)
    }

    /// Starts the upkeep thread for [`WORD`]; `false` if it could not be
    /// spawned.
    fn spawn() -> bool {
        let spawned = std::thread::Builder::new()
            .name("cb-clock".into())
            .stack_size(64 * 1024)
            .spawn(|| upkeep(&WORD));
        if let Err(e) = &spawned {
            tracing::warn!(
                target: "cb_runtime",
                error = %e,
                "could not start the clock's upkeep thread; the system clock is read directly"
            );
        }
        spawned.is_ok()
    }

    /// The upkeep thread's loop: refresh once per interval, until idle.
    fn upkeep(word: &Recent) {
        let mut ticks = 0u32;
        loop {
            std::thread::sleep(INTERVAL);
            ticks += 1;
            let check = ticks == IDLE_TICKS;
            if check {
                ticks = 0;
            }
            if !word.tick(super::precise_nanos(), check) {
                return;
            }
        }
    }
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

    #[test]
    fn system_clock_resolution_is_the_upkeep_interval() {
        assert!(Clock::system().resolution() <= Duration::from_millis(1));
        // The floor on slow-call thresholds keeps a tenfold margin over it.
        assert!(crate::MIN_SLOW_CALL_DURATION >= 10 * Clock::system().resolution());
    }

    /// The recent time's word, driven by hand: ticks stand for the upkeep
    /// thread's wake-ups, so no test waits for the real one.
    #[cfg(not(any(miri, loom)))]
    mod recent_word {
        use std::time::Duration;

        use super::super::recent::Recent;
        use super::super::{duration_nanos, precise_nanos};

        const SEC: u64 = 1_000_000_000;

        /// A word with a thread "running" (no real thread: ticks are by hand).
        fn running() -> Recent {
            let r = Recent::new();
            let mut started = 0;
            r.read(|| {
                started += 1;
                true
            });
            assert_eq!(started, 1, "the first reading starts the upkeep");
            r
        }

        #[test]
        fn the_first_reading_starts_the_thread_once_and_is_a_direct_read() {
            let r = Recent::new();
            let before = precise_nanos();
            let mut starts = 0;
            let first = r.read(|| {
                starts += 1;
                true
            });
            let second = r.read(|| {
                starts += 1;
                true
            });
            assert_eq!(starts, 1);
            assert!(first + 1 >= before && first <= precise_nanos());
            assert_eq!(second, first, "no tick: the same recent time");
        }

        #[test]
        fn readings_follow_ticks_and_never_go_back() {
            let r = running();
            let t0 = r.read(|| unreachable!());
            r.tick(t0 + 5 * SEC, false);
            assert_eq!(r.read(|| unreachable!()) / 2, (t0 + 5 * SEC) / 2);
            // A late tick carrying an older time does not move it back.
            r.tick(t0 + SEC, false);
            assert_eq!(r.read(|| unreachable!()) / 2, (t0 + 5 * SEC) / 2);
        }

        /// The breaker's slow-call test, on the recent clock's own primitives:
        /// a call is the difference of two readings, one tick of 2 s apart
        /// for a 2 s call, and a tick of 1 ms for a 1 ms call.
        #[test]
        fn a_2_s_call_measures_2_s_and_a_1_ms_call_1_ms() {
            let r = running();
            let limit = duration_nanos(crate::MIN_SLOW_CALL_DURATION);
            let start = r.read(|| unreachable!());
            r.tick(start + 2 * SEC, false);
            let slow = r.read(|| unreachable!()) - start;
            assert!(slow > limit && slow.abs_diff(2 * SEC) <= 1, "{slow}");

            let start = r.read(|| unreachable!());
            r.tick(start + 1_000_000, false);
            let fast = r.read(|| unreachable!()) - start;
            assert!(fast < limit && fast.abs_diff(1_000_000) <= 1, "{fast}");
        }

        #[test]
        fn the_thread_stops_after_a_check_period_without_readers() {
            let r = running();
            let t = r.read(|| unreachable!());
            // Read since the last check: the check clears the mark, goes on.
            assert!(r.tick(t + 1_000_000, true));
            // Read again (the first reading after a check marks the word).
            let _ = r.read(|| unreachable!());
            assert!(r.tick(t + 2_000_000, true));
            // Nobody read during this period: stop.
            assert!(!r.tick(t + 3_000_000, true));
            // The next reading starts a new thread and is not older than the
            // last published time.
            let mut restarted = false;
            let again = r.read(|| {
                restarted = true;
                true
            });
            assert!(restarted);
            assert!(again >= t);
        }

        #[test]
        fn without_a_thread_every_reading_is_a_direct_read() {
            let r = Recent::new();
            let mut tries = 0;
            let a = r.read(|| {
                tries += 1;
                false
            });
            std::thread::sleep(Duration::from_millis(2));
            let b = r.read(|| {
                tries += 1;
                false
            });
            assert_eq!(tries, 1, "a failed spawn is not retried on every reading");
            assert!(b > a, "direct readings move: {a} then {b}");
        }

        /// What the upkeep thread costs: this runs its loop (sleep 1 ms, one
        /// clock read, one compare-and-swap) for 2 s on a thread of its own
        /// and prints the wake-ups per second and the share of one CPU it
        /// used, from the thread's CPU clock. The guide's Internals chapter quotes its output.
        /// `cargo test -p cb-runtime --release --lib upkeep_cost -- --ignored --nocapture`
        #[test]
        #[cfg(target_os = "linux")]
        #[ignore = "measures for 2 s; run by hand"]
        fn upkeep_cost() {
            let r = running();
            let (wakeups, cpu, wall) = std::thread::spawn(move || {
                let cpu = || {
                    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
                    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
                };
                let (cpu0, wall0) = (cpu(), std::time::Instant::now());
                let mut wakeups = 0u64;
                while wall0.elapsed() < Duration::from_secs(2) {
                    std::thread::sleep(Duration::from_millis(1));
                    r.tick(precise_nanos(), false);
                    wakeups += 1;
                }
                (wakeups, cpu() - cpu0, wall0.elapsed())
            })
            .join()
            .unwrap();
            println!(
                "upkeep: {:.0} wake-ups/s, {:.3} % of one CPU ({cpu:?} CPU in {wall:?})",
                wakeups as f64 / wall.as_secs_f64(),
                100.0 * cpu.as_secs_f64() / wall.as_secs_f64()
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let c = Clock::tokio();
        let before = c.now();
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(c.now() - before, Duration::from_secs(5));
    }
}
