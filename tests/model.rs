//! Model-based property tests: a tiny, single-threaded reference model of the
//! breaker (plain integers, a `Vec` for the window) is run side by side with
//! the real [`CircuitBreaker`] over random sequences of steps, and after every
//! step the state and every field of [`Stats`](cb_runtime::Stats) must match.
//!
//! The steps: calls that succeed, fail, are ignored or are throttled (with
//! or without a `Retry-After` hint, capped at `max_retry_after`); slow calls (the clock
//! moves inside the call); hung calls that hit a real `call_timeout` or are
//! cancelled first; calls dropped before or after their first poll; panics;
//! clock advances; `reset`, `force_open`, `disable`, `open_for`; and permits
//! taken with `try_acquire` and held across any number of other steps, then
//! recorded, dropped, dropped while panicking or run.
//!
//! Everything runs on a current-thread tokio runtime with paused time, and the
//! breaker reads [`Clock::tokio`], so timeouts are real timers and the run is
//! deterministic. Every duration is a whole number of milliseconds (tokio's
//! timer resolution), and the harness checks after each step that the clock
//! reads what the model expects.
//!
//! Pitfalls covered (see `docs/pitfalls.md`):
//! * 1, half-open stampede: probes are capped counting those in flight (held
//!   permits are probes that have not finished).
//! * 3, leaked permits: dropped, cancelled, ignored and panicking probes give
//!   their slot back; `half_open_in_flight` is compared after every step.
//! * 4, cancellation: a dropped call records no outcome, only `cancelled`.
//! * 5, late results: a permit held across a trip, a reset or a half-open
//!   period counts in the totals only.
//! * 6, in-flight calls: slow-call detection and `call_timeout`.
//! * 7 and 8, time windows: the model keeps one record per call and judges
//!   the last ten bucket periods, against the real bucketed window.
//! * 11, stale state: `stats()` and `state()` report half-open as soon as the
//!   open duration has elapsed, with no call.
//! * 12, low traffic: the consecutive-failure trigger fires below
//!   `minimum_calls`.
//! * 16, zero probes: the invalid-config property refuses
//!   `half_open_max_calls = 0` (and every other out-of-range field).
//!
//! Case counts keep `cargo test --test model` well under a minute in debug;
//! raise them by hand with `PROPTEST_CASES=10000 cargo test --release --test model`.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::time::Duration;

use cb_runtime::{
    Backoff, CallError, CircuitBreaker, Clock, Config, Outcome, Permit, Preset, State, Stats, Window,
};
use futures::FutureExt;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

mod support;

use support::{silence_deliberate_panics, DELIBERATE_PANIC};

// ---------------------------------------------------------------------------
// The reference model.
// ---------------------------------------------------------------------------

/// How an admitted call ended, as the breaker counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Success,
    Failure,
    Timeout,
    Ignored,
    Cancelled,
    /// A rate limit: opens for the capped hint or `throttle_duration`.
    Throttled,
}

/// What a caller sees: refused, or admitted and ended somehow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    Rejected,
    Ended(End),
}

/// The state a call was admitted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    Closed,
    Probe,
    Disabled,
}

/// A call admitted by the model: when, how, and in which generation.
#[derive(Clone, Copy, Debug)]
struct Ticket {
    generation: u64,
    via: Via,
    start: u64,
}

/// One call in the window: the bucket period it fell in (time windows only),
/// whether it failed, whether it was slow.
#[derive(Clone, Copy, Debug)]
struct Rec {
    period: u64,
    failure: bool,
    slow: bool,
}

/// The breaker, as the contract describes it, in the plainest terms.
///
/// Times are nanoseconds since the clock's origin. `generation` goes up by one
/// at every transition (manual ones included, even to the same state); a
/// result whose ticket is of an older generation is counted in the totals only.
#[derive(Debug)]
struct Model {
    // Configuration.
    failure_threshold: u64,
    failure_rate: f64,
    window: Window,
    minimum_calls: u64,
    slow: Option<u64>,
    slow_rate: f64,
    open: Duration,
    backoff: Option<Backoff>,
    max_probes: u64,
    success_threshold: u64,
    throttle: Duration,
    max_retry_after: Duration,
    /// Issue 39: the window's agreement with a run of errors, and the open
    /// period's growth in a long outage.
    streak_rate: f64,
    growth: f64,
    // State.
    now: u64,
    state: State,
    generation: u64,
    open_until: u64,
    in_flight: u64,
    probe_successes: u64,
    /// Of `probe_successes`, the slow ones.
    probe_slow: u64,
    /// The generation of the open period whose window `stats()` still shows.
    window_open_gen: Option<u64>,
    reopens: u32,
    /// The open period (and the half-open after it) is a throttled answer's.
    throttled_period: bool,
    consecutive: u64,
    /// Of `consecutive`, the timeouts at its end.
    consecutive_timeouts: u64,
    /// When the circuit last left the closed state.
    opened_at: Option<u64>,
    calls: Vec<Rec>,
    // Totals.
    successes: u64,
    failures: u64,
    timeouts: u64,
    ignored: u64,
    cancelled: u64,
    rejected: u64,
    slow_calls: u64,
    throttled: u64,
}

/// Every field of `Stats`, in a struct the test can build.
#[derive(Clone, Debug, PartialEq)]
struct Snapshot {
    state: State,
    successes: u64,
    failures: u64,
    rejected: u64,
    slow_calls: u64,
    consecutive_failures: u64,
    timeouts: u64,
    ignored: u64,
    cancelled: u64,
    throttled: u64,
    calls_in_window: u64,
    failures_in_window: u64,
    slow_calls_in_window: u64,
    failure_rate: Option<f64>,
    slow_call_rate: Option<f64>,
    half_open_in_flight: u64,
}

impl From<&Stats> for Snapshot {
    fn from(s: &Stats) -> Self {
        Snapshot {
            state: s.state,
            successes: s.successes,
            failures: s.failures,
            rejected: s.rejected,
            slow_calls: s.slow_calls,
            consecutive_failures: s.consecutive_failures,
            timeouts: s.timeouts,
            ignored: s.ignored,
            cancelled: s.cancelled,
            throttled: s.throttled,
            calls_in_window: s.calls_in_window,
            failures_in_window: s.failures_in_window,
            slow_calls_in_window: s.slow_calls_in_window,
            failure_rate: s.failure_rate,
            slow_call_rate: s.slow_call_rate,
            half_open_in_flight: s.half_open_in_flight,
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What the runs reached, to check that the steps are not vacuous: how often
/// each state was seen, each end recorded, a late result dropped, a probe
/// refused for a full half-open, and each trigger fired.
#[derive(Clone, Debug, Default)]
struct Coverage {
    states: [u64; 5],
    ends: [u64; 6],
    late: u64,
    half_open_full: u64,
    trips: [u64; 3],
    slow: u64,
}

thread_local! {
    static COVERAGE: std::cell::RefCell<Coverage> = std::cell::RefCell::default();
}

fn cover(f: impl FnOnce(&mut Coverage)) {
    COVERAGE.with(|c| f(&mut c.borrow_mut()));
}

impl Model {
    fn new(c: &Config) -> Self {
        Model {
            failure_threshold: u64::from(c.failure_threshold()),
            failure_rate: c.failure_rate_threshold(),
            window: c.sliding_window(),
            minimum_calls: u64::from(c.minimum_calls()),
            slow: c.slow_call_duration().map(nanos),
            slow_rate: c.slow_call_rate_threshold(),
            open: c.open_duration(),
            backoff: c.open_backoff(),
            max_probes: u64::from(c.half_open_max_calls()),
            success_threshold: u64::from(c.success_threshold()),
            throttle: c.throttle_duration(),
            max_retry_after: c.max_retry_after(),
            streak_rate: c.streak_failure_rate(),
            growth: c.open_growth(),
            now: 0,
            state: State::Closed,
            generation: 0,
            open_until: 0,
            in_flight: 0,
            probe_successes: 0,
            probe_slow: 0,
            window_open_gen: None,
            reopens: 0,
            throttled_period: false,
            consecutive: 0,
            consecutive_timeouts: 0,
            opened_at: None,
            calls: Vec::new(),
            successes: 0,
            failures: 0,
            timeouts: 0,
            ignored: 0,
            cancelled: 0,
            rejected: 0,
            slow_calls: 0,
            throttled: 0,
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += nanos(d);
    }

    /// Every transition: a new generation, no probe in flight.
    fn go(&mut self, to: State) {
        self.state = to;
        self.generation += 1;
        self.in_flight = 0;
        self.probe_successes = 0;
        self.probe_slow = 0;
    }

    /// What `state()` does: an open circuit whose time is up is half-open.
    fn observe(&mut self) -> State {
        if self.state == State::Open && self.now >= self.open_until {
            self.go(State::HalfOpen);
        }
        self.state
    }

    fn admit(&mut self) -> Option<Ticket> {
        let via = match self.state {
            State::Closed => Via::Closed,
            State::Disabled => Via::Disabled,
            State::Open if self.now >= self.open_until => {
                self.go(State::HalfOpen);
                Via::Probe
            }
            State::HalfOpen if self.in_flight < self.max_probes => Via::Probe,
            State::Open | State::HalfOpen | State::ForcedOpen => {
                if self.state == State::HalfOpen {
                    cover(|c| c.half_open_full += 1);
                }
                self.rejected += 1;
                return None;
            }
        };
        if via == Via::Probe {
            self.in_flight += 1;
        }
        Some(Ticket {
            generation: self.generation,
            via,
            start: self.now,
        })
    }

    fn finish(&mut self, t: Ticket, end: End) {
        self.finish_hinted(t, end, None);
    }

    /// How a call ends, with the `Retry-After` hint a throttled one carried.
    fn finish_hinted(&mut self, t: Ticket, end: End, hint: Option<Duration>) {
        // "Slower than" is strictly longer.
        let slow = self.slow.is_some_and(|s| self.now - t.start > s);
        match end {
            End::Success => self.successes += 1,
            End::Failure => self.failures += 1,
            End::Timeout => self.timeouts += 1,
            End::Ignored => self.ignored += 1,
            End::Cancelled => self.cancelled += 1,
            End::Throttled => self.throttled += 1,
        }
        if slow && end != End::Cancelled {
            self.slow_calls += 1;
        }
        cover(|c| {
            c.ends[end as usize] += 1;
            c.slow += u64::from(slow);
        });
        if t.generation != self.generation {
            cover(|c| c.late += 1);
            return; // a late result: totals only
        }
        let failure = matches!(end, End::Failure | End::Timeout);
        if end == End::Throttled && t.via != Via::Disabled {
            // Not a failure: no window, no streak, no backoff. It opens for
            // the hint (a zero hint, or a zero cap, is none), capped.
            if t.via == Via::Probe {
                self.in_flight -= 1;
            }
            let period = match hint.filter(|h| !h.is_zero() && !self.max_retry_after.is_zero()) {
                Some(h) => h.min(self.max_retry_after),
                None => self.throttle,
            };
            let from = self.state;
            self.open_until = self.now.saturating_add(nanos(period));
            self.go(State::Open);
            self.throttled_period = true;
            if from == State::Closed {
                self.window_open_gen = Some(self.generation);
                self.consecutive = 0;
                self.consecutive_timeouts = 0;
                self.opened_at = Some(self.now);
            }
            return;
        }
        match t.via {
            Via::Disabled => {}
            Via::Closed => {
                if matches!(end, End::Ignored | End::Cancelled | End::Throttled) {
                    return;
                }
                self.calls.push(Rec {
                    period: self.period(),
                    failure,
                    slow,
                });
                if let Window::Count(n) = self.window {
                    if self.calls.len() > n as usize {
                        self.calls.remove(0);
                    }
                }
                self.consecutive = if failure { self.consecutive + 1 } else { 0 };
                self.consecutive_timeouts = if end == End::Timeout {
                    self.consecutive_timeouts + 1
                } else {
                    0
                };
                self.judge();
            }
            Via::Probe => {
                self.in_flight -= 1;
                if end == End::Success {
                    self.probe_successes += 1;
                    self.probe_slow += u64::from(slow);
                    let slow_rate = self.probe_slow as f64 / self.probe_successes as f64;
                    if self.probe_successes >= self.success_threshold
                        && self.probe_slow > 0
                        && slow_rate >= self.slow_rate
                    {
                        // Slow probes count against closing.
                        self.reopens += 1;
                        self.trip();
                    } else if self.probe_successes >= self.success_threshold {
                        self.go(State::Closed);
                        self.calls.clear();
                        self.consecutive = 0;
                        self.consecutive_timeouts = 0;
                        self.opened_at = None;
                        self.reopens = 0;
                    }
                } else if failure {
                    self.reopens += 1;
                    self.trip();
                }
            }
        }
    }

    fn judge(&mut self) {
        let (calls, failures, slow) = self.tally();
        let judged = calls >= self.minimum_calls;
        let rate = |n: u64| n as f64 / calls as f64;
        // A run of errors needs the window's agreement when `streak_rate` is
        // set: that share of the calls failed, counting at least
        // `minimum_calls`; unless the run is of timeouts, the window holds no
        // success, or the run is too long for chance (`streak_rate^run` under
        // one in a million).
        let agrees = self.streak_rate <= 0.0
            || self.consecutive_timeouts >= self.failure_threshold
            || failures >= calls
            || self.streak_rate.powi(self.consecutive.min(1_000) as i32) <= 1e-6
            || failures as f64 / calls.max(self.minimum_calls).max(1) as f64 >= self.streak_rate;
        let trigger = if self.consecutive >= self.failure_threshold && agrees {
            Some(0)
        } else if judged && failures > 0 && rate(failures) >= self.failure_rate {
            Some(1)
        } else if judged && self.slow.is_some() && slow > 0 && rate(slow) >= self.slow_rate {
            Some(2)
        } else {
            None
        };
        if let Some(i) = trigger {
            cover(|c| c.trips[i] += 1);
            self.reopens = 0;
            self.trip();
            // The window that tripped it stays readable while open.
            self.window_open_gen = Some(self.generation);
            self.consecutive = 0;
            self.consecutive_timeouts = 0;
        }
    }

    /// Opens for the open duration, grown by the backoff (no jitter here):
    /// `open_duration × multiplier^reopens`, capped, computed in `f64` seconds.
    fn trip(&mut self) {
        let mut open = match self.backoff {
            None => self.open,
            Some(b) => {
                let grown = self.open.as_secs_f64() * b.multiplier().powi(self.reopens as i32);
                Duration::try_from_secs_f64(grown.min(b.max().as_secs_f64())).unwrap_or(b.max())
            }
        };
        // After a failed probe, at least `growth` of the time since it opened.
        if let Some(at) = self.opened_at.filter(|_| self.reopens > 0 && self.growth > 0.0) {
            open = open.max(Duration::from_nanos(self.now - at).mul_f64(self.growth));
        }
        if self.state == State::Closed {
            self.opened_at = Some(self.now);
        }
        self.open_until = self.now.saturating_add(nanos(open));
        self.go(State::Open);
        self.throttled_period = false;
    }

    fn manual(&mut self, to: State) {
        self.go(to);
        self.throttled_period = false;
        self.calls.clear();
        self.consecutive = 0;
        self.consecutive_timeouts = 0;
        self.opened_at = None;
        self.reopens = 0;
    }

    /// `open_for` leaves forced-open and disabled alone; it keeps the window.
    /// On an open circuit it extends the deadline in place (never shortens
    /// it), with no transition.
    fn open_for(&mut self, d: Duration) -> bool {
        let deadline = self.now.saturating_add(nanos(d));
        match self.state {
            State::ForcedOpen | State::Disabled => return false,
            State::Open => self.open_until = self.open_until.max(deadline),
            State::Closed | State::HalfOpen => {
                let from = self.state;
                self.open_until = deadline;
                self.go(State::Open);
                self.throttled_period = false;
                if from == State::Closed {
                    self.window_open_gen = Some(self.generation);
                    self.consecutive = 0;
                    self.consecutive_timeouts = 0;
                    self.opened_at = Some(self.now);
                }
            }
        }
        true
    }

    /// The current bucket period of a time window (0 for a count window).
    fn period(&self) -> u64 {
        match self.window {
            Window::Time(span) => self.now / (nanos(span) / 10).max(1),
            Window::Count(_) => 0,
        }
    }

    /// Calls, failures and slow calls in the window: for a time window, those
    /// of the current bucket period and the nine before it.
    fn tally(&self) -> (u64, u64, u64) {
        let now = self.period();
        let live = self.calls.iter().filter(|r| now - r.period < 10);
        live.fold((0, 0, 0), |(c, f, s), r| {
            (c + 1, f + u64::from(r.failure), s + u64::from(r.slow))
        })
    }

    fn snapshot(&mut self) -> Snapshot {
        let state = self.observe();
        cover(|c| c.states[state.code() as usize] += 1);
        // The window shows while closed (and forced open or disabled, where it
        // is empty), and while open only in the period it tripped.
        let shown = match state {
            State::Open => self.window_open_gen == Some(self.generation),
            State::HalfOpen => false,
            _ => true,
        };
        let (calls, failures, slow) = if shown { self.tally() } else { (0, 0, 0) };
        let rate = |n: u64| (calls >= self.minimum_calls && calls > 0).then(|| n as f64 / calls as f64);
        Snapshot {
            state,
            successes: self.successes,
            failures: self.failures,
            rejected: self.rejected,
            slow_calls: self.slow_calls,
            consecutive_failures: if state == State::Closed {
                self.consecutive
            } else {
                0
            },
            timeouts: self.timeouts,
            ignored: self.ignored,
            cancelled: self.cancelled,
            throttled: self.throttled,
            calls_in_window: calls,
            failures_in_window: failures,
            slow_calls_in_window: slow,
            failure_rate: rate(failures),
            slow_call_rate: rate(slow),
            half_open_in_flight: if state == State::HalfOpen {
                self.in_flight
            } else {
                0
            },
        }
    }

    /// A call admitted now that runs for `d` and ends with `end`; nothing
    /// passes while a refused call is turned away.
    fn call(&mut self, d: Duration, end: End) -> Seen {
        self.call_hinted(d, end, None)
    }

    /// [`call`](Self::call), for a throttled answer with its hint.
    fn call_hinted(&mut self, d: Duration, end: End, hint: Option<Duration>) -> Seen {
        match self.admit() {
            None => Seen::Rejected,
            Some(t) => {
                self.advance(d);
                self.finish_hinted(t, end, hint);
                Seen::Ended(end)
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The steps.
// ---------------------------------------------------------------------------

/// One step: move the clock by `advance` milliseconds (with no check in
/// between, so admission itself may find the open duration elapsed), then act.
#[derive(Clone, Debug)]
struct Step {
    advance: u64,
    action: Action,
}

/// What a step does. Durations are in milliseconds.
#[derive(Clone, Debug)]
enum Action {
    /// Nothing but the clock advance.
    Nop,
    /// A call that returns `Ok` (or `Err`) on its first poll.
    Call {
        ok: bool,
    },
    /// A call whose error the classifier says to ignore.
    Ignored,
    /// A call the dependency throttles, with a `Retry-After` of `hint` ms.
    Throttled {
        hint: Option<u64>,
    },
    /// A call that sleeps `ms` on the tokio clock, then returns: slow, or
    /// abandoned at `call_timeout` if that is shorter.
    Sleep {
        ms: u64,
        ok: bool,
    },
    /// A call that moves the clock by `ms` itself (`tokio::time::advance`)
    /// and returns: slow, and never timed out (the timer is armed after).
    Jump {
        ms: u64,
        ok: bool,
    },
    /// A call that never finishes, polled under an outer timeout of `ms`:
    /// `call_timeout` abandons it if not longer, else it is cancelled at
    /// `ms`. `ms == 0`: polled once, then dropped.
    Hang {
        ms: u64,
    },
    /// A call future dropped before its first poll: nothing at all.
    DropUnpolled,
    /// A call that panics after sleeping `ms` (at once if 0).
    Panic {
        ms: u64,
    },
    /// `try_acquire`, holding the permit across the next steps.
    Acquire,
    /// Ends a held permit (`index` modulo the number held).
    Release {
        index: usize,
        how: Release,
    },
    Reset,
    ForceOpen,
    Disable,
    OpenFor {
        ms: u64,
    },
}

/// How a held permit ends.
#[derive(Clone, Copy, Debug)]
enum Release {
    Record {
        ok: bool,
    },
    Ignored,
    /// `record_outcome(Outcome::Throttled)`: no hint.
    Throttled,
    Drop,
    DropPanicking,
    /// `permit.run(..)` of a future that is ready at once.
    Run {
        ok: bool,
    },
    /// `permit.run(..)` of a future that never finishes, as `Action::Hang`.
    RunHang {
        ms: u64,
    },
}

const HELD_MAX: usize = 6;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// What a caller saw, from a call's result.
fn seen<T>(r: &Result<T, CallError<()>>, ignored: bool) -> Seen {
    match r {
        Ok(_) if ignored => Seen::Ended(End::Ignored),
        Ok(_) => Seen::Ended(End::Success),
        Err(e) if e.is_rejected() => Seen::Rejected,
        Err(e) if e.is_timeout() => Seen::Ended(End::Timeout),
        Err(_) if ignored => Seen::Ended(End::Ignored),
        Err(_) => Seen::Ended(End::Failure),
    }
}

/// A throttled answer's classifier, with its hint.
#[derive(Clone, Copy)]
struct Throttle(Option<Duration>);

impl<T, E> cb_runtime::Classify<T, E> for Throttle {
    fn classify(self, _: &Result<T, E>) -> Outcome {
        Outcome::Throttled
    }
    fn classify_with_retry_after(self, _: &Result<T, E>) -> (Outcome, Option<Duration>) {
        (Outcome::Throttled, self.0)
    }
}

fn result(ok: bool) -> Result<(), ()> {
    if ok {
        Ok(())
    } else {
        Err(())
    }
}

fn end(ok: bool) -> End {
    if ok {
        End::Success
    } else {
        End::Failure
    }
}

fn deliberate_panic() -> Result<(), ()> {
    panic!("{}", DELIBERATE_PANIC)
}

/// A future that never finishes.
fn hang() -> impl Future<Output = Result<(), ()>> {
    std::future::pending()
}

/// How long a hung call runs and how it ends, under an outer limit of `ms`.
fn hang_end(timeout: Option<Duration>, ms_: u64) -> (Duration, End) {
    match timeout {
        Some(t) if ms_ > 0 && t <= ms(ms_) => (t, End::Timeout),
        _ => (ms(ms_), End::Cancelled),
    }
}

/// Runs `steps` against a fresh breaker built from `config` and the model,
/// comparing them after every step. Call inside a paused tokio runtime.
async fn run(config: &Config, steps: &[Step]) -> Result<(), TestCaseError> {
    silence_deliberate_panics();
    let clock = Clock::tokio();
    let config = config
        .to_builder()
        .clock(clock.clone())
        .build()
        .expect("a valid config stays valid");
    let timeout = config.call_timeout();
    let breaker = CircuitBreaker::new("model", config.clone());
    let mut model = Model::new(&config);
    let mut held: Vec<(Permit<'_>, Ticket)> = Vec::new();
    compare(&breaker, &mut model, &clock, usize::MAX)?;

    for (i, step) in steps.iter().enumerate() {
        if step.advance > 0 {
            tokio::time::advance(ms(step.advance)).await;
            model.advance(ms(step.advance));
        }
        match step.action {
            Action::Nop => {}
            Action::Call { ok } => {
                let want = model.call(Duration::ZERO, end(ok));
                let got = breaker.call(async move { result(ok) }).await;
                prop_assert_eq!(seen(&got, false), want, "step {}: {:?}", i, step);
            }
            Action::Ignored => {
                let want = model.call(Duration::ZERO, End::Ignored);
                let got = breaker
                    .call_with(async { result(false) }, |_| Outcome::Ignored)
                    .await;
                prop_assert_eq!(seen(&got, true), want, "step {}: {:?}", i, step);
            }
            Action::Throttled { hint } => {
                let hint = hint.map(ms);
                let want = model.call_hinted(Duration::ZERO, End::Throttled, hint);
                let got = match breaker.try_acquire() {
                    Ok(permit) => {
                        let r = permit
                            .run_classified(async { result(false) }, Throttle(hint))
                            .await;
                        prop_assert!(matches!(r, Err(CallError::Inner(()))), "step {}", i);
                        Seen::Ended(End::Throttled)
                    }
                    Err(e) => {
                        // A refusal while a throttled period runs says so.
                        let throttled = model.state == State::Open && model.throttled_period;
                        prop_assert!(e.is_rejected(), "step {}", i);
                        prop_assert_eq!(e.is_throttled(), throttled, "step {}: {}", i, e);
                        Seen::Rejected
                    }
                };
                prop_assert_eq!(got, want, "step {}: {:?}", i, step);
            }
            Action::Sleep { ms: d, ok } => {
                let (took, how) = match timeout {
                    Some(t) if ms(d) > t => (t, End::Timeout),
                    _ => (ms(d), end(ok)),
                };
                let want = model.call(took, how);
                let got = breaker
                    .call(async move {
                        tokio::time::sleep(ms(d)).await;
                        result(ok)
                    })
                    .await;
                prop_assert_eq!(seen(&got, false), want, "step {}: {:?}", i, step);
            }
            Action::Jump { ms: d, ok } => {
                let want = model.call(ms(d), end(ok));
                let got = breaker
                    .call(async move {
                        tokio::time::advance(ms(d)).await;
                        result(ok)
                    })
                    .await;
                prop_assert_eq!(seen(&got, false), want, "step {}: {:?}", i, step);
            }
            Action::Hang { ms: d } => {
                let (took, how) = hang_end(timeout, d);
                let want = model.call(took, how);
                let got = if d == 0 {
                    let mut call = pin!(breaker.call(hang()));
                    match futures::poll!(call.as_mut()) {
                        std::task::Poll::Ready(r) => seen(&r, false),
                        std::task::Poll::Pending => Seen::Ended(End::Cancelled),
                    }
                } else {
                    match tokio::time::timeout(ms(d), breaker.call(hang())).await {
                        Ok(r) => seen(&r, false),
                        Err(_) => Seen::Ended(End::Cancelled),
                    }
                };
                prop_assert_eq!(got, want, "step {}: {:?}", i, step);
            }
            Action::DropUnpolled => drop(breaker.call(async { result(true) })),
            Action::Panic { ms: d } => {
                let (took, how) = match timeout {
                    Some(t) if ms(d) > t => (t, End::Timeout),
                    _ => (ms(d), End::Failure),
                };
                let want = model.call(took, how);
                let call = breaker.call(async move {
                    if d > 0 {
                        tokio::time::sleep(ms(d)).await;
                    }
                    deliberate_panic()
                });
                let got = match AssertUnwindSafe(call).catch_unwind().await {
                    Ok(r) => seen(&r, false),
                    Err(_) => Seen::Ended(End::Failure),
                };
                prop_assert_eq!(got, want, "step {}: {:?}", i, step);
            }
            Action::Acquire if held.len() < HELD_MAX => {
                let want = model.admit();
                match breaker.try_acquire() {
                    Ok(permit) => match want {
                        Some(t) => held.push((permit, t)),
                        None => {
                            drop(permit);
                            prop_assert!(false, "step {}: admitted, the model refuses", i);
                        }
                    },
                    Err(e) => {
                        prop_assert!(e.is_rejected(), "step {}: {}", i, e);
                        prop_assert!(want.is_none(), "step {}: refused, the model admits", i);
                    }
                }
            }
            Action::Acquire => {}
            Action::Release { index, how } if !held.is_empty() => {
                let (permit, t) = held.remove(index % held.len());
                match how {
                    Release::Record { ok } => {
                        permit.record(ok);
                        model.finish(t, end(ok));
                    }
                    Release::Ignored => {
                        permit.record_outcome(Outcome::Ignored);
                        model.finish(t, End::Ignored);
                    }
                    Release::Throttled => {
                        permit.record_outcome(Outcome::Throttled);
                        model.finish(t, End::Throttled);
                    }
                    Release::Drop => {
                        drop(permit);
                        model.finish(t, End::Cancelled);
                    }
                    Release::DropPanicking => {
                        let unwound = std::panic::catch_unwind(AssertUnwindSafe(move || {
                            let _permit = permit;
                            panic!("{}", DELIBERATE_PANIC);
                        }));
                        prop_assert!(unwound.is_err());
                        model.finish(t, End::Failure);
                    }
                    Release::Run { ok } => {
                        let got = permit.run(async move { result(ok) }).await;
                        prop_assert_eq!(seen(&got, false), Seen::Ended(end(ok)), "step {}", i);
                        model.finish(t, end(ok));
                    }
                    Release::RunHang { ms: d } => {
                        let (took, how) = hang_end(timeout, d.max(1));
                        let got = match tokio::time::timeout(ms(d.max(1)), permit.run(hang())).await {
                            Ok(r) => seen(&r, false),
                            Err(_) => Seen::Ended(End::Cancelled),
                        };
                        prop_assert_eq!(got, Seen::Ended(how), "step {}: {:?}", i, step);
                        model.advance(took);
                        model.finish(t, how);
                    }
                }
            }
            Action::Release { .. } => {}
            Action::Reset => {
                breaker.reset();
                model.manual(State::Closed);
            }
            Action::ForceOpen => {
                breaker.force_open();
                model.manual(State::ForcedOpen);
            }
            Action::Disable => {
                breaker.disable();
                model.manual(State::Disabled);
            }
            Action::OpenFor { ms: d } => {
                let got = breaker.open_for(ms(d));
                prop_assert_eq!(got, model.open_for(ms(d)), "step {}: {:?}", i, step);
            }
        }
        compare(&breaker, &mut model, &clock, i)?;
    }

    // Whatever is still held is dropped: cancelled, and no probe leaks.
    for (permit, t) in held.drain(..) {
        drop(permit);
        model.finish(t, End::Cancelled);
    }
    compare(&breaker, &mut model, &clock, steps.len())?;
    prop_assert_eq!(breaker.stats().half_open_in_flight, 0);
    Ok(())
}

/// The clock, the state and every stats field, breaker against model.
fn compare(
    breaker: &CircuitBreaker,
    model: &mut Model,
    clock: &Clock,
    step: usize,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        nanos(clock.now()),
        model.now,
        "the clock drifted from the model at step {}",
        step
    );
    let got = Snapshot::from(&breaker.stats());
    let want = model.snapshot();
    prop_assert_eq!(&got, &want, "stats differ after step {}", step);
    prop_assert_eq!(
        breaker.state(),
        model.observe(),
        "state differs after step {}",
        step
    );
    Ok(())
}

fn run_paused(config: &Config, steps: &[Step]) -> Result<(), TestCaseError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime")
        .block_on(run(config, steps))
}

// ---------------------------------------------------------------------------
// Strategies.
// ---------------------------------------------------------------------------

fn rate() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), Just(0.5), Just(1.0), 0.0..=1.0f64]
}

/// A random valid configuration; every duration a whole number of
/// milliseconds. Backoff without jitter, which the model cannot predict.
fn valid_config() -> impl Strategy<Value = Config> {
    let window = prop_oneof![
        3 => (1..=12u32).prop_map(Window::Count),
        1 => (100..=3000u64).prop_map(|m| Window::Time(ms(m))),
    ];
    let thresholds = (1..=8u32, rate(), window, 1..=12u32, 1..=4u32, 1..=4u32);
    let times = (
        proptest::option::of(1..=500u64),
        rate(),
        1..=2000u64,
        proptest::option::of(1..=1000u64),
        proptest::option::weighted(0.3, (1.0..=3.0f64, 0..=5000u64)),
        (1..=2000u64, prop_oneof![1 => Just(0u64), 3 => 1..=3000u64]),
    );
    (thresholds, times).prop_map(
        |(
            (failures, fail_rate, window, min, probes, successes),
            (slow, slow_rate, open, timeout, backoff, (throttle, max_retry_after)),
        )| {
            let min = match window {
                Window::Count(n) => min.min(n),
                Window::Time(_) => min,
            };
            let mut b = Config::builder()
                .failure_threshold(failures)
                .failure_rate_threshold(fail_rate)
                .sliding_window(window)
                .minimum_calls(min)
                .slow_call_rate_threshold(slow_rate)
                .open_duration(ms(open))
                .half_open_max_calls(probes)
                .success_threshold(successes)
                .throttle_duration(ms(throttle))
                .max_retry_after(ms(max_retry_after))
                // Exact, so that any slow-call duration is valid; the run
                // puts the tokio clock in its place.
                .clock(cb_runtime::clock::ManualClock::new().clock());
            if let Some(s) = slow {
                b = b.slow_call_duration(ms(s));
            }
            if let Some(t) = timeout {
                b = b.call_timeout(ms(t));
            }
            if let Some((mult, extra)) = backoff {
                b = b.open_backoff(Backoff::exponential(mult, ms(open + extra)));
            }
            b.build().expect("the strategy makes valid configs")
        },
    )
}

/// Durations around the config's own: the open duration, the slow-call
/// duration, the timeout and a time window's bucket, each ±1 ms.
fn interesting(c: &Config) -> Vec<u64> {
    let mut at = vec![1, 10, 100];
    let mut near = |d: Duration| {
        let m = d.as_millis() as u64;
        at.extend([m.saturating_sub(1).max(1), m, m + 1]);
    };
    near(c.open_duration());
    let backoff_max = c.open_backoff().map(|b| b.max());
    for d in [c.slow_call_duration(), c.call_timeout(), backoff_max]
        .into_iter()
        .flatten()
    {
        near(d);
    }
    if let Window::Time(span) = c.sliding_window() {
        near(span / 10);
        near(span);
    }
    at
}

fn steps(c: &Config, len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Step>> {
    let at = interesting(c);
    let dur = prop_oneof![3 => proptest::sample::select(at), 1 => 1..=3000u64].boxed();
    let how = prop_oneof![
        any::<bool>().prop_map(|ok| Release::Record { ok }),
        Just(Release::Ignored),
        Just(Release::Throttled),
        Just(Release::Drop),
        Just(Release::DropPanicking),
        any::<bool>().prop_map(|ok| Release::Run { ok }),
        dur.clone().prop_map(|ms| Release::RunHang { ms }),
    ];
    let mostly_ok = || proptest::bool::weighted(0.7);
    let action = prop_oneof![
        8 => Just(Action::Nop),
        20 => any::<bool>().prop_map(|ok| Action::Call { ok }),
        2 => Just(Action::Ignored),
        3 => proptest::option::weighted(0.7, dur.clone()).prop_map(|hint| Action::Throttled { hint }),
        8 => (dur.clone(), mostly_ok()).prop_map(|(ms, ok)| Action::Sleep { ms, ok }),
        4 => (dur.clone(), mostly_ok()).prop_map(|(ms, ok)| Action::Jump { ms, ok }),
        4 => dur.clone().prop_map(|ms| Action::Hang { ms }),
        2 => Just(Action::Hang { ms: 0 }),
        2 => Just(Action::DropUnpolled),
        2 => prop_oneof![Just(0), dur.clone()].prop_map(|ms| Action::Panic { ms }),
        6 => Just(Action::Acquire),
        6 => (any::<usize>(), how).prop_map(|(index, how)| Action::Release { index, how }),
        // Forced-open and disabled last until a reset: keep them short.
        5 => Just(Action::Reset),
        1 => Just(Action::ForceOpen),
        1 => Just(Action::Disable),
        2 => dur.clone().prop_map(|ms| Action::OpenFor { ms }),
    ];
    let advance = prop_oneof![2 => Just(0u64), 1 => dur];
    proptest::collection::vec(
        (advance, action).prop_map(|(advance, action)| Step { advance, action }),
        len,
    )
}

fn with_steps(config: Config, len: std::ops::Range<usize>) -> impl Strategy<Value = (Config, Vec<Step>)> {
    let s = steps(&config, len);
    (Just(config), s)
}

fn cases(default: u32) -> ProptestConfig {
    // `PROPTEST_CASES` overrides the default when set.
    let from_env = std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok());
    ProptestConfig {
        cases: from_env.unwrap_or(default),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(cases(256))]

    /// Random valid configs (count and time windows, slow calls, timeouts,
    /// backoff) against the model, every stats field after every step.
    #[test]
    fn random_configs_match_the_model((config, steps) in valid_config().prop_flat_map(|c| with_steps(c, 1..80))) {
        run_paused(&config, &steps)?;
    }

    /// Every preset against the model, with steps scaled to its durations.
    #[test]
    fn presets_match_the_model(
        (config, steps) in proptest::sample::select(Preset::ALL.to_vec())
            .prop_flat_map(|p| with_steps(p.config(), 1..120))
    ) {
        run_paused(&config, &steps)?;
    }
}

// ---------------------------------------------------------------------------
// Configuration validation.
// ---------------------------------------------------------------------------

/// Every builder field, each a valid or an out-of-range value.
#[derive(Clone, Debug)]
struct Raw {
    failure_threshold: u32,
    failure_rate: f64,
    window: Window,
    minimum_calls: u32,
    slow: Option<Duration>,
    slow_rate: f64,
    open: Duration,
    probes: u32,
    successes: u32,
    timeout: Option<Duration>,
    backoff: Option<(f64, Duration, f64)>,
}

impl Raw {
    /// The fields out of range, by the contract and the builder's docs,
    /// written independently of `Config::validate`.
    fn violations(&self) -> Vec<&'static str> {
        let bad_rate = |r: f64| !(0.0..=1.0).contains(&r); // NaN too
        let mut v = Vec::new();
        if self.failure_threshold == 0 {
            v.push("failure_threshold");
        }
        if bad_rate(self.failure_rate) {
            v.push("failure_rate_threshold");
        }
        if bad_rate(self.slow_rate) {
            v.push("slow_call_rate_threshold");
        }
        match self.window {
            Window::Count(n) if n == 0 || n > 100_000 => v.push("sliding_window"),
            Window::Time(d) if d < ms(100) || d > Duration::from_secs(86_400) => v.push("sliding_window"),
            _ => {}
        }
        let over = matches!(self.window, Window::Count(n) if self.minimum_calls > n);
        if self.minimum_calls == 0 || over {
            v.push("minimum_calls");
        }
        // Built on the system clock, which cannot time less than 10 ms.
        if self.slow.is_some_and(|d| d < ms(10)) {
            v.push("slow_call_duration");
        }
        // Every open is at most a day (issue 38: the one bound the fleet carries).
        let day = Duration::from_secs(86_400);
        if self.open.is_zero() || self.open > day {
            v.push("open_duration");
        }
        if self.probes == 0 || self.probes > 10_000 {
            v.push("half_open_max_calls");
        }
        if self.successes == 0 {
            v.push("success_threshold");
        }
        if self.timeout == Some(Duration::ZERO) {
            v.push("call_timeout");
        }
        if let Some((mult, max, jitter)) = self.backoff {
            if !(mult.is_finite() && mult >= 1.0) || max < self.open || max > day || bad_rate(jitter) {
                v.push("open_backoff");
            }
        }
        v
    }

    fn build(&self) -> Result<Config, cb_runtime::ConfigError> {
        let mut b = Config::builder()
            .failure_threshold(self.failure_threshold)
            .failure_rate_threshold(self.failure_rate)
            .sliding_window(self.window)
            .minimum_calls(self.minimum_calls)
            .slow_call_rate_threshold(self.slow_rate)
            .open_duration(self.open)
            .half_open_max_calls(self.probes)
            .success_threshold(self.successes);
        if let Some(d) = self.slow {
            b = b.slow_call_duration(d);
        }
        if let Some(d) = self.timeout {
            b = b.call_timeout(d);
        }
        if let Some((mult, max, jitter)) = self.backoff {
            b = b.open_backoff(Backoff::exponential(mult, max).jitter(jitter));
        }
        b.build()
    }
}

fn any_rate() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => 0.0..=1.0f64,
        1 => prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(1.0 + f64::EPSILON),
            Just(-f64::MIN_POSITIVE),
            -1e9..0.0f64,
            1.000_001..1e9f64,
        ],
    ]
}

fn any_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        4 => (1..=60_000u64).prop_map(ms),
        1 => Just(Duration::ZERO),
        1 => Just(Duration::from_nanos(1)),
        1 => Just(Duration::MAX),
    ]
}

fn any_u32(small: u32) -> impl Strategy<Value = u32> {
    prop_oneof![4 => 1..=small, 1 => Just(0u32), 1 => any::<u32>()]
}

fn raw_config() -> impl Strategy<Value = Raw> {
    let window = prop_oneof![
        (0..=300u32).prop_map(Window::Count),
        prop_oneof![Just(100_000u32), Just(100_001), any::<u32>()].prop_map(Window::Count),
        prop_oneof![
            (0..=200u64).prop_map(ms),
            Just(Duration::from_secs(86_400)),
            Just(Duration::from_secs(86_401)),
            Just(Duration::MAX),
        ]
        .prop_map(Window::Time),
    ];
    let probes = prop_oneof![0..=12u32, 9_990..=10_010u32, any::<u32>()];
    let backoff = proptest::option::of((
        prop_oneof![3 => 1.0..=4.0f64, 1 => any_rate(), 1 => Just(f64::NAN)],
        any_duration(),
        any_rate(),
    ));
    (
        (
            any_u32(20),
            any_rate(),
            window,
            any_u32(300),
            proptest::option::of(any_duration()),
        ),
        (any_rate(), any_duration(), probes, any_u32(5)),
        (proptest::option::of(any_duration()), backoff),
    )
        .prop_map(
            |((ft, fr, window, min, slow), (sr, open, probes, st), (timeout, backoff))| Raw {
                failure_threshold: ft,
                failure_rate: fr,
                window,
                minimum_calls: min,
                slow,
                slow_rate: sr,
                open,
                probes,
                successes: st,
                timeout,
                backoff,
            },
        )
}

proptest! {
    #![proptest_config(cases(2048))]

    /// Config validation: a random config, each field valid or not, is
    /// accepted exactly when every field is in range; a refusal names one of
    /// the fields out of range, in the error and in its message; nothing
    /// panics, and an accepted config makes a working breaker. Covers
    /// pitfall 16 (zero probes refused at build).
    #[test]
    fn invalid_configs_are_refused_naming_the_field(raw in raw_config()) {
        let violations = raw.violations();
        match raw.build() {
            Ok(config) => {
                prop_assert!(violations.is_empty(), "accepted, but {:?} are out of range", violations);
                let breaker = CircuitBreaker::new("model-config", config);
                for ok in [false, true, false] {
                    if let Ok(permit) = breaker.try_acquire() {
                        permit.record(ok);
                    }
                }
                let _ = breaker.stats();
            }
            Err(e) => {
                prop_assert!(
                    violations.contains(&e.field()),
                    "refused for `{}`, but out of range are {:?}: {}", e.field(), violations, e
                );
                let msg = e.to_string();
                prop_assert!(msg.contains(&format!("`{}`", e.field())), "{}", msg);
            }
        }
    }
}

/// The property runs are not vacuous: over a fixed-seed batch of random
/// configs and presets, the steps reach every state, every way a call ends,
/// late results (pitfall 5), full half-open refusals (pitfall 1), slow calls
/// and each of the three triggers.
#[test]
fn the_steps_reach_every_state_and_trigger() {
    use proptest::test_runner::{Config as RunnerConfig, RngAlgorithm, TestRng, TestRunner};
    let configs = prop_oneof![
        valid_config(),
        proptest::sample::select(Preset::ALL.to_vec()).prop_map(Preset::config)
    ];
    let strategy = configs.prop_flat_map(|c| with_steps(c, 40..80));
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]);
    let runner_config = RunnerConfig {
        cases: 64,
        failure_persistence: None,
        ..RunnerConfig::default()
    };
    let mut runner = TestRunner::new_with_rng(runner_config, rng);
    cover(|c| *c = Coverage::default());
    runner
        .run(&strategy, |(config, steps)| run_paused(&config, &steps))
        .expect("the model matches");
    let c = COVERAGE.with(|c| c.borrow().clone());
    println!("{c:?}");
    assert!(c.states.iter().all(|&n| n > 0), "{c:?}");
    assert!(c.ends.iter().all(|&n| n > 0), "{c:?}");
    assert!(c.trips.iter().all(|&n| n > 0), "{c:?}");
    assert!(c.late > 0 && c.half_open_full > 0 && c.slow > 0, "{c:?}");
}
