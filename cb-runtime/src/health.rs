//! Active health checks while the circuit is open.
//!
//! A breaker that learns only from user traffic recovers late (it waits out
//! its whole open period however early the dependency is back) and makes
//! users its probes. A health check is a function the breaker runs by itself
//! while open, as Envoy's active health checks run beside its outlier
//! detection:
//!
//! * it runs only while the circuit is open (open or throttled, not forced
//!   open), every `health_check_interval`, on the tokio runtime the breaker
//!   was first used on (the runtime current when the check was set, or else
//!   when the circuit opened), never on a call's path, and at most one at a
//!   time per breaker;
//! * each check is bounded by `call_timeout`, when set: a check still running
//!   then is abandoned and counts as failed (not in `Stats::timeouts`);
//! * `success_threshold` checks in a row that pass close the circuit at once,
//!   one transition open → closed with [`Reason::HealthCheck`], without any
//!   user call as a probe. After a passing check the next one follows a tenth
//!   of an interval later, so that a recovery is confirmed quickly rather
//!   than over `success_threshold` whole intervals;
//! * a failed check changes nothing but its count: the open period ends as
//!   usual (then the user calls probe, as without a check), so a broken check
//!   cannot keep a breaker open;
//! * checks are counted in [`Stats::health_checks_passed`](crate::Stats::health_checks_passed) and
//!   [`Stats::health_checks_failed`](crate::Stats::health_checks_failed), never in the call totals.
//!
//! # How it talks to the state machine
//!
//! The check and the state machine know nothing of each other's thresholds.
//! The breaker tells its `Checker` of each transition (the open period it
//! may check, or none); the checker's task runs the checks and, once enough
//! have passed, gives its verdict for that period. The one call back is
//! `close_by_health_check(generation)`, which closes the circuit only if it is
//! still open in that period (a verdict about an earlier period is ignored,
//! as a late probe result is: pitfall 5). A breaker in an `Arc` that the
//! registry or a family made is closed by the task at once; a breaker of your
//! own applies the verdict the next time it is used or read (a call,
//! [`state`](CircuitBreaker::state), [`stats`](CircuitBreaker::stats), a
//! metrics scrape), which is the same rule as the move to half-open
//! (pitfall 11).
//!
//! ```
//! use std::time::Duration;
//! use cb_runtime::{Clock, CircuitBreaker, Config, Reason, State};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let breaker = CircuitBreaker::new(
//!     "inventory",
//!     Config::builder()
//!         .failure_threshold(1)
//!         .open_duration(Duration::from_secs(60))
//!         .success_threshold(2)
//!         .health_check_interval(Duration::from_secs(5))
//!         .clock(Clock::tokio())
//!         .build()
//!         .unwrap(),
//! );
//! breaker.set_health_check(|| async { true }); // e.g. GET /healthz answered 200
//! let _ = breaker.call(async { Err::<(), _>("down") }).await;
//! assert_eq!(breaker.state(), State::Open);
//! tokio::time::sleep(Duration::from_secs(6)).await;
//! assert_eq!(breaker.state(), State::Closed); // 5.5 s, not 60 s
//! assert_eq!(breaker.stats().health_checks_passed, 2);
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use super::CircuitBreaker;
use crate::state::{State, StateWord};
use crate::sync::{lock, Mutex, Ordering};
use crate::transition::Reason;

/// A health check, boxed: what [`CircuitBreaker::set_health_check`] keeps.
pub(crate) type CheckFn = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// No open period to check.
const NO_PERIOD: u64 = 0;

/// How the last health check of a breaker ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthCheckResult {
    /// When it ended, on the wall clock.
    pub at: SystemTime,
    /// `true` when it passed; `false` when it failed or was abandoned at
    /// `call_timeout`.
    pub passed: bool,
}

/// One breaker's health check and what it has done.
pub(crate) struct Checker {
    check: Mutex<Option<CheckFn>>,
    /// The runtime the checks run on.
    handle: OnceLock<tokio::runtime::Handle>,
    /// A task is running the checks.
    running: AtomicBool,
    /// The open period to check: its generation + 1; [`NO_PERIOD`] when the
    /// circuit is not open.
    period: AtomicU64,
    /// A verdict not applied yet: the generation + 1 of the open period that
    /// enough checks passed in; [`NO_PERIOD`] when none.
    verdict: AtomicU64,
    passed: AtomicU64,
    failed: AtomicU64,
    last: Mutex<Option<HealthCheckResult>>,
    /// The breaker left its family (evicted): no more checks.
    stopped: AtomicBool,
    /// A family's bound on its keys' checks in flight.
    slots: OnceLock<Arc<tokio::sync::Semaphore>>,
    /// The `Arc` the breaker lives in, when the registry or a family made it:
    /// its checks then close it at once.
    owner: OnceLock<Weak<CircuitBreaker>>,
    /// `health_check_interval`, `call_timeout` (0: none) and
    /// `success_threshold`, as of the last open.
    interval_nanos: AtomicU64,
    timeout_nanos: AtomicU64,
    threshold: AtomicU64,
}

impl Checker {
    fn new() -> Self {
        Checker {
            check: Mutex::new(None),
            handle: OnceLock::new(),
            running: AtomicBool::new(false),
            period: AtomicU64::new(NO_PERIOD),
            verdict: AtomicU64::new(NO_PERIOD),
            passed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last: Mutex::new(None),
            stopped: AtomicBool::new(false),
            slots: OnceLock::new(),
            owner: OnceLock::new(),
            interval_nanos: AtomicU64::new(0),
            timeout_nanos: AtomicU64::new(0),
            threshold: AtomicU64::new(1),
        }
    }

    /// Captures the runtime current now, unless one was captured already.
    fn capture_runtime(&self) {
        if self.handle.get().is_none() {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                let _ = self.handle.set(handle);
            }
        }
    }

    /// Records how a check ended.
    fn record(&self, passed: bool) {
        let counter = if passed { &self.passed } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last) = Some(HealthCheckResult {
            at: SystemTime::now(),
            passed,
        });
    }

    /// Runs one check, bounded by the timeout: `false` for a check that
    /// failed, panicked or was abandoned.
    async fn run_one(&self, check: CheckFn) -> bool {
        let _slot = match self.slots.get() {
            Some(slots) => Arc::clone(slots).acquire_owned().await.ok(),
            None => None,
        };
        let fut = check();
        let timeout = self.timeout_nanos.load(Ordering::Relaxed);
        let passed = if timeout == 0 {
            fut.await
        } else {
            tokio::time::timeout(Duration::from_nanos(timeout), fut)
                .await
                .unwrap_or(false)
        };
        self.record(passed);
        passed
    }
}

/// Ends the `running` mark of a checker's task, even if the task is dropped
/// (its runtime shut down) or a check panicked.
struct Running<'a>(&'a Checker);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::Release);
    }
}

/// The checker's task: checks while an open period lasts, then ends.
async fn run(checker: Arc<Checker>, owner: Option<Weak<CircuitBreaker>>) {
    loop {
        {
            let _running = Running(&checker);
            check_periods(&checker, owner.as_ref()).await;
        }
        // An open that came while the task was ending found it running and
        // started nothing: take over if there is one.
        if checker.period.load(Ordering::Acquire) == NO_PERIOD
            || checker.stopped.load(Ordering::Acquire)
            || checker
                .running
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return;
        }
    }
}

async fn check_periods(checker: &Checker, owner: Option<&Weak<CircuitBreaker>>) {
    // Passing checks in a row, and the period they were in.
    let mut streak = (NO_PERIOD, 0u64);
    let mut confirming = false;
    loop {
        let interval = Duration::from_nanos(checker.interval_nanos.load(Ordering::Relaxed).max(1));
        tokio::time::sleep(if confirming { interval / 10 } else { interval }).await;
        // The owner moves an open period that has ended to half-open here,
        // which ends the checks (the period goes).
        if let Some(owner) = owner {
            match owner.upgrade() {
                Some(breaker) => {
                    let _ = breaker.state();
                }
                None => return,
            }
        }
        let period = checker.period.load(Ordering::Acquire);
        if period == NO_PERIOD || checker.stopped.load(Ordering::Acquire) {
            return;
        }
        let Some(check) = lock(&checker.check).clone() else {
            return;
        };
        // A fleet lets one replica check per open period.
        let gate = owner
            .and_then(Weak::upgrade)
            .and_then(|b| b.probe_gate().cloned());
        if gate.is_some_and(|gate| !gate.may_health_check()) {
            confirming = false;
            continue;
        }
        let passed = checker.run_one(check).await;
        let now = checker.period.load(Ordering::Acquire);
        if now != period {
            // The period ended while the check ran: it says nothing of the next.
            streak = (NO_PERIOD, 0);
            confirming = false;
            continue;
        }
        if !passed {
            streak = (NO_PERIOD, 0);
            confirming = false;
            continue;
        }
        streak = if streak.0 == period {
            (period, streak.1 + 1)
        } else {
            (period, 1)
        };
        confirming = true;
        if streak.1 >= checker.threshold.load(Ordering::Relaxed) {
            checker.verdict.store(period, Ordering::Release);
            if let Some(breaker) = owner.and_then(Weak::upgrade) {
                breaker.close_by_health_check(period - 1);
            }
            streak = (NO_PERIOD, 0);
            confirming = false;
        }
    }
}

impl CircuitBreaker {
    /// Sets the health check that runs while the circuit is open (see the
    /// [`health`](crate::health) module): `check` answers `true` when the
    /// dependency is healthy. It replaces any check set before.
    ///
    /// The checks run on the tokio runtime current when this is called (or,
    /// outside a runtime, the one current when the circuit next opens), every
    /// `health_check_interval` while the circuit is open, one at a time, each
    /// bounded by `call_timeout`; `success_threshold` passing checks in a row
    /// close the circuit with [`Reason::HealthCheck`].
    ///
    /// The check must be cheap for the dependency (a health endpoint, a
    /// `SELECT 1`, a `PING`, a model list) and must not call through this
    /// breaker (it is open: the call would be refused).
    pub fn set_health_check<F, Fut>(&self, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        let check: CheckFn = Arc::new(move || Box::pin(check()));
        self.install_health_check(check);
    }

    /// Installs a boxed check, and starts checking if the circuit is open.
    pub(crate) fn install_health_check(&self, check: CheckFn) {
        let checker = self.rare().health.get_or_init(|| Arc::new(Checker::new()));
        checker.capture_runtime();
        *lock(&checker.check) = Some(check);
        self.health_moved();
    }

    /// Bounds the checks of this breaker, and of every breaker given the same
    /// `slots`, to the semaphore's permits (a family's bound).
    pub(crate) fn share_health_check_slots(&self, slots: &Arc<tokio::sync::Semaphore>) {
        let checker = self.rare().health.get_or_init(|| Arc::new(Checker::new()));
        let _ = checker.slots.set(Arc::clone(slots));
    }

    /// Stops the health checks for good (the breaker left its family).
    pub(crate) fn stop_health_checks(&self) {
        if let Some(checker) = self.checker() {
            checker.stopped.store(true, Ordering::Release);
            checker.period.store(NO_PERIOD, Ordering::Release);
        }
    }

    /// How the last health check ended, and when; `None` before the first (or
    /// without a check).
    pub fn last_health_check(&self) -> Option<HealthCheckResult> {
        *lock(&self.checker()?.last)
    }

    /// `true` when a health check is set.
    pub fn has_health_check(&self) -> bool {
        self.checker().is_some_and(|c| lock(&c.check).is_some())
    }

    /// Health checks that passed and failed so far.
    pub(super) fn health_check_counts(&self) -> (u64, u64) {
        self.checker().map_or((0, 0), |c| {
            (c.passed.load(Ordering::Relaxed), c.failed.load(Ordering::Relaxed))
        })
    }

    fn checker(&self) -> Option<&Arc<Checker>> {
        self.rare.get()?.health.get()
    }

    /// The hook of every transition (and of a check set): tells the checker
    /// which open period there is to check, and starts its task if needed.
    /// Call with no lock held.
    pub(super) fn health_moved(&self) {
        let Some(checker) = self.checker() else {
            return;
        };
        let w = self.load();
        if w.state() != State::Open || checker.stopped.load(Ordering::Acquire) {
            checker.period.store(NO_PERIOD, Ordering::Release);
            return;
        }
        {
            let inner = lock(&self.inner);
            let c = &inner.config;
            checker.interval_nanos.store(
                crate::clock::duration_nanos(c.health_check_interval()),
                Ordering::Relaxed,
            );
            checker.timeout_nanos.store(
                c.call_timeout.map_or(0, crate::clock::duration_nanos),
                Ordering::Relaxed,
            );
            checker
                .threshold
                .store(u64::from(c.success_threshold), Ordering::Relaxed);
        }
        checker.period.store(w.generation() + 1, Ordering::Release);
        checker.capture_runtime();
        if lock(&checker.check).is_none() {
            return;
        }
        let Some(handle) = checker.handle.get() else {
            crate::log::no_runtime_for_health_check(self.name, self.key());
            return;
        };
        if checker
            .running
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let owner = checker.owner.get().cloned();
            handle.spawn(run(Arc::clone(checker), owner));
        }
    }

    /// Applies a verdict the checker gave for the open word `w`'s period, if
    /// there is one: `true` when the circuit closed (look again).
    #[inline]
    pub(super) fn health_verdict(&self, w: StateWord) -> bool {
        match self.checker() {
            Some(c) if c.verdict.load(Ordering::Acquire) == w.generation() + 1 => {
                self.close_by_health_check(w.generation())
            }
            _ => false,
        }
    }

    /// Remembers the `Arc` the breaker lives in, so that its checks close it
    /// at once (the registry and families call it on the breakers they make).
    pub(crate) fn adopt(self: &Arc<Self>) {
        let checker = self.rare().health.get_or_init(|| Arc::new(Checker::new()));
        let _ = checker.owner.set(Arc::downgrade(self));
    }

    /// The one call from the checks into the state machine: closes the
    /// circuit, open → closed with [`Reason::HealthCheck`], if it is still
    /// open in the period of `generation`; `false` otherwise.
    pub(crate) fn close_by_health_check(&self, generation: u64) -> bool {
        let transition = {
            let mut inner = lock(&self.inner);
            let w = self.load();
            if w.state() != State::Open || w.generation() != generation {
                return false;
            }
            let closed = w.next(State::Closed, inner.config.sliding_window.is_time());
            let closed = self.ramped(closed, inner.config.ramp_up());
            let Some(transition) = self.swap_locked(w, closed, Reason::HealthCheck) else {
                return false;
            };
            self.start_over(&mut inner);
            transition
        };
        self.emit(Some(transition));
        true
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;
    use crate::{Clock, Config};

    fn config(threshold: u32) -> Config {
        Config::builder()
            .failure_threshold(1)
            .open_duration(Duration::from_secs(60))
            .success_threshold(threshold)
            .health_check_interval(Duration::from_secs(5))
            .call_timeout(Duration::from_secs(2))
            .clock(Clock::tokio())
            .build()
            .unwrap()
    }

    async fn trip(b: &CircuitBreaker) {
        let _ = b.call(async { Err::<(), _>("down") }).await;
        assert_eq!(b.state(), State::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn passing_checks_close_an_owned_breaker_at_once_in_one_transition() {
        let b = Arc::new(CircuitBreaker::new("health-owned", config(2)));
        b.adopt();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&seen);
        b.on_transition(move |t| lock(&s).push((t.from, t.to, t.reason)));
        b.set_health_check(|| async { true });
        trip(&b).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        tokio::task::yield_now().await;
        assert_eq!(b.stats().health_checks_passed, 1);
        assert_eq!(b.load().state(), State::Open);
        tokio::time::sleep(Duration::from_millis(500)).await;
        tokio::task::yield_now().await;
        // Without reading `state()`: the task closed it.
        assert_eq!(b.load().state(), State::Closed);
        assert_eq!(
            *lock(&seen),
            [
                (State::Closed, State::Open, Reason::ConsecutiveFailures),
                (State::Open, State::Closed, Reason::HealthCheck)
            ]
        );
        let s = b.stats();
        assert_eq!((s.health_checks_passed, s.health_checks_failed), (2, 0));
        assert_eq!(s.calls(), 1, "checks are not calls");
        assert!(b.last_health_check().unwrap().passed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_breaker_of_ones_own_applies_the_verdict_when_read() {
        let b = CircuitBreaker::new("health-own", config(1));
        b.set_health_check(|| async { true });
        trip(&b).await;
        tokio::time::sleep(Duration::from_millis(5_001)).await;
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.stats().health_checks_passed, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn failing_checks_change_nothing_and_the_open_period_ends_as_usual() {
        let b = Arc::new(CircuitBreaker::new("health-failing", config(1)));
        b.adopt();
        b.set_health_check(|| async { false });
        trip(&b).await;
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert_eq!(b.state(), State::Open);
        let failed = b.stats().health_checks_failed;
        assert_eq!(failed, 11, "every 5 s for 59 s");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(b.state(), State::HalfOpen);
        // No checks while half-open.
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(b.stats().health_checks_failed, 11);
        assert_eq!(b.state(), State::HalfOpen);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_check_is_abandoned_at_call_timeout_and_counts_as_failed() {
        let b = Arc::new(CircuitBreaker::new("health-hung", config(1)));
        b.adopt();
        let started = Arc::new(AtomicU32::new(0));
        let s = Arc::clone(&started);
        b.set_health_check(move || {
            s.fetch_add(1, Ordering::Relaxed);
            std::future::pending::<bool>()
        });
        trip(&b).await;
        tokio::time::sleep(Duration::from_secs(8)).await;
        let s = b.stats();
        assert_eq!(
            (s.health_checks_passed, s.health_checks_failed, s.timeouts),
            (0, 1, 0)
        );
        assert!(!b.last_health_check().unwrap().passed);
        // One at a time: the second starts 5 s after the first was abandoned.
        assert_eq!(started.load(Ordering::Relaxed), 1);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(started.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn no_checks_while_closed_or_forced_open() {
        let b = Arc::new(CircuitBreaker::new("health-forced", config(1)));
        b.adopt();
        let runs = Arc::new(AtomicU32::new(0));
        let r = Arc::clone(&runs);
        b.set_health_check(move || {
            r.fetch_add(1, Ordering::Relaxed);
            async { true }
        });
        tokio::time::sleep(Duration::from_secs(30)).await;
        b.force_open();
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(runs.load(Ordering::Relaxed), 0);
        assert_eq!(b.state(), State::ForcedOpen);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pass_then_a_failure_starts_the_streak_over() {
        let b = Arc::new(CircuitBreaker::new("health-streak", config(2)));
        b.adopt();
        let n = Arc::new(AtomicU32::new(0));
        let c = Arc::clone(&n);
        // pass, fail, pass, pass
        b.set_health_check(move || {
            let i = c.fetch_add(1, Ordering::Relaxed);
            async move { i != 1 }
        });
        trip(&b).await;
        // 5 s: pass; 5.5 s: fail; 10.5 s: pass; 11 s: pass, closes.
        tokio::time::sleep(Duration::from_millis(10_900)).await;
        assert_eq!(b.load().state(), State::Open);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(b.load().state(), State::Closed);
        let s = b.stats();
        assert_eq!((s.health_checks_passed, s.health_checks_failed), (3, 1));
    }
}
