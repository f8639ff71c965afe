//! resilience4j's own state-machine and sliding-window tests, ported to our API.
//!
//! resilience4j is the breaker most users know, so its tests are a check that
//! ours means the same thing where the two share a meaning. The sources, in the
//! repository `resilience4j/resilience4j`:
//!
//! * `resilience4j-circuitbreaker/src/test/java/io/github/resilience4j/circuitbreaker/internal/CircuitBreakerStateMachineTest.java`
//! * `resilience4j-circuitbreaker/src/test/java/io/github/resilience4j/circuitbreaker/internal/CircuitBreakerMetricsTest.java`
//! * `resilience4j-core/src/test/java/io/github/resilience4j/core/metrics/FixedSizeSlidingWindowMetricsTest.java`
//! * `resilience4j-core/src/test/java/io/github/resilience4j/core/metrics/SlidingTimeWindowMetricsTest.java`
//!
//! The four classes hold 53 test methods: 39 are ported here, 14 are not (listed
//! below). One module per Java class, one `#[test]` per ported Java method,
//! named after it. One port ends differently on purpose:
//! `should_release_permission_when_exception_ignored`, whose last probe fails. The settings map as
//! `docs/guide/coming-from.md` ("Coming from resilience4j") says:
//! `slidingWindowSize` -> `Window::Count(n)` / `Window::Time(d)`,
//! `minimumNumberOfCalls` -> `minimum_calls`, `failureRateThreshold` (percent)
//! -> `failure_rate_threshold` (fraction), `slowCallRateThreshold` ->
//! `slow_call_rate_threshold`, `slowCallDurationThreshold` ->
//! `slow_call_duration`, `waitDurationInOpenState` -> `open_duration`,
//! `permittedNumberOfCallsInHalfOpenState` -> `half_open_max_calls` and
//! `success_threshold`. Our consecutive-failure trigger has no counterpart, so
//! the ports set `failure_threshold` to `u32::MAX`. resilience4j's
//! `transitionToOpenState()` is `open_for(open_duration)` here, and its
//! `transitionToHalfOpenState()` is letting that much time pass on the
//! [`ManualClock`]. resilience4j's windowed `getNumberOfSuccessfulCalls()` is
//! `calls_in_window - failures_in_window`; its `getNumberOfNotPermittedCalls()`
//! is `Stats::rejected`, which is a lifetime total here (see
//! `difference_rejection_totals_are_lifetime_counts`). resilience4j's failure
//! rate of `-1` (below the minimum) is `None`.
//!
//! resilience4j is told a call's duration and whether it was slow; ours measures
//! it. A call that "takes" `d` here acquires a permit, advances the clock by `d`
//! and then records, so nothing sleeps.
//!
//! The tests of the intended semantics of issue 17 (items 1-4) are in the module
//! `intended`; the intended differences from resilience4j are the `difference_*`
//! tests at the end.
//!
//! # Not ported, and why
//!
//! `CircuitBreakerStateMachineTest`:
//! * `shouldTransitionBackToOpenStateWhenFailureRateIsAboveThreshold` and
//!   `shouldTransitionBackToClosedStateWhenFailureIsBelowThreshold`: resilience4j
//!   judges the failure rate of the probes; here any failed probe reopens. Both
//!   sequences are replayed in `difference_any_failed_probe_reopens`.
//! * `shouldNotAllowTransitionFromClosedToHalfOpen`: there is no manual
//!   transition to half-open to refuse; half-open is reached only by the open
//!   duration elapsing.
//! * `shouldResetMetricsAfterMetricsOnlyStateTransition`,
//!   `shouldRecordMetricsInMetricsOnlyState`,
//!   `shouldPublishEachEventOnceInMetricOnlyState`,
//!   `allCircuitBreakerStatesAllowTransitionToMetricsOnlyMode`,
//!   `circuitBreakerInitializeInMetricOnlyState`: there is no metrics-only state
//!   (`difference_there_is_no_metrics_only_state`).
//! * `allCircuitBreakerStatesAllowTransitionToItsOwnState`: a check of
//!   resilience4j's internal `StateTransition` table; what it protects (a
//!   transition to the same state is harmless and silent) is ported in
//!   `circuit_breaker_does_not_publish_state_transition_events_for_internal_transitions`.
//! * `circuitBreakerTransitionsToOpenAfterWaitDurationInHalfOpenState`,
//!   `circuitBreakerTransitionsToClosedAfterWaitDurationInHalfOpenState`: there
//!   is no `maxWaitDurationInHalfOpenState`; a half-open circuit waits for its
//!   probes (and `call_timeout` bounds each probe). Both also sleep.
//! * `circuitBreakerInitializeInOpenState`: there is no `initialState`; a
//!   breaker starts closed (ported: `circuit_breaker_initialize_in_closed_state`).
//!
//! `FixedSizeSlidingWindowMetricsTest` and `SlidingTimeWindowMetricsTest`:
//! * `testMoveHeadIndexByOne` (both): a check of a private ring index; the ring's
//!   head is covered by the window's unit tests in `cb-runtime/src/window.rs`.
//! * The duration totals and averages those tests also assert
//!   (`getTotalDuration`, `getAverageDuration`) are not kept by our window, and
//!   the slow calls are not split into slow successes and slow failures; those
//!   assertions are left out of the ported methods. So is the check of bucket
//!   timestamps in `SlidingTimeWindowMetricsTest.checkInitialBucketCreation`.
//!
//! `CircuitBreakerMetricsTest.testCircuitBreakerMetrics` is ported without its two
//! `onCallNotPermitted()` calls: a closed breaker refuses nothing.

mod support;

use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use cb_runtime::clock::ManualClock;
use cb_runtime::{
    Backoff, BreakerErrorKind, CircuitBreaker, Config, ConfigBuilder, Outcome, Reason, State, Stats,
    Transition, Window,
};
use support::{poll_once, secs};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The configuration of `CircuitBreakerStateMachineTest.setUp()`: a 50 %
/// failure rate or a 50 % rate of calls over 4 s, over the calls of the last
/// 20 s once there are 5, 5 s open, 4 probes.
fn state_machine_config(clock: &ManualClock) -> ConfigBuilder {
    Config::builder()
        .clock(clock.clock())
        .failure_threshold(u32::MAX)
        .failure_rate_threshold(0.5)
        .half_open_max_calls(4)
        .success_threshold(4)
        .slow_call_duration(secs(4))
        .slow_call_rate_threshold(0.5)
        .sliding_window(Window::Time(secs(20)))
        .minimum_calls(5)
        .open_duration(secs(5))
}

/// A builder that only observes: the rates are computed but only a window of
/// nothing but failures (or slow calls) could reach a threshold of 1.0. For the
/// ports of resilience4j's metrics tests, which judge nothing.
fn observing(clock: &ManualClock, window: Window, minimum_calls: u32) -> ConfigBuilder {
    Config::builder()
        .clock(clock.clock())
        .failure_threshold(u32::MAX)
        .failure_rate_threshold(1.0)
        .slow_call_rate_threshold(1.0)
        .slow_call_duration(secs(1))
        .sliding_window(window)
        .minimum_calls(minimum_calls)
}

fn breaker(name: &str, config: ConfigBuilder) -> CircuitBreaker {
    CircuitBreaker::new(name, config.build().expect("a valid config"))
}

/// A call that takes no time: resilience4j's `onSuccess(0, ..)` / `onError(0, ..)`.
fn record(b: &CircuitBreaker, outcome: Outcome) {
    b.try_acquire()
        .expect("the call is permitted")
        .record_outcome(outcome);
}

/// A call that takes `took` on `clock`.
fn timed(b: &CircuitBreaker, clock: &ManualClock, took: Duration, outcome: Outcome) {
    let permit = b.try_acquire().expect("the call is permitted");
    clock.advance(took);
    permit.record_outcome(outcome);
}

/// resilience4j's `assertCircuitBreakerMetricsEqualTo(failureRate,
/// successfulCalls, bufferedCalls, failedCalls, notPermittedCalls)`, with the
/// successes and failures of the window and the lifetime rejection total.
#[track_caller]
fn assert_metrics(
    b: &CircuitBreaker,
    failure_rate: Option<f64>,
    successes: u64,
    buffered: u64,
    failed: u64,
    rejected: u64,
) {
    let s = b.stats();
    assert_rate(s.failure_rate, failure_rate, "failure_rate");
    assert_eq!(
        s.calls_in_window - s.failures_in_window,
        successes,
        "successes in the window"
    );
    assert_eq!(s.calls_in_window, buffered, "calls in the window");
    assert_eq!(s.failures_in_window, failed, "failures in the window");
    assert_eq!(s.rejected, rejected, "rejected");
}

/// resilience4j's `assertThatMetricsAreReset()`.
#[track_caller]
fn assert_metrics_are_reset(b: &CircuitBreaker, rejected: u64) {
    assert_metrics(b, None, 0, 0, 0, rejected);
}

#[track_caller]
fn assert_rate(got: Option<f64>, want: Option<f64>, what: &str) {
    match (got, want) {
        (Some(g), Some(w)) => assert!((g - w).abs() < 1e-9, "{what}: got {g}, expected {w}"),
        _ => assert_eq!(got, want, "{what}"),
    }
}

/// Every transition the breaker publishes, in order.
fn transitions(b: &CircuitBreaker) -> Arc<Mutex<Vec<Transition>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    b.on_transition(move |t| sink.lock().unwrap().push(t.clone()));
    seen
}

fn count(seen: &Mutex<Vec<Transition>>) -> usize {
    seen.lock().unwrap().len()
}

fn last(seen: &Mutex<Vec<Transition>>) -> Transition {
    seen.lock().unwrap().last().cloned().expect("a transition")
}

/// resilience4j's `transitionToOpenState(); transitionToHalfOpenState();`.
fn open_then_half_open(b: &CircuitBreaker, clock: &ManualClock) {
    let open = b.config().open_duration();
    assert!(b.open_for(open));
    clock.advance(open);
    assert_eq!(b.state(), State::HalfOpen);
}

/// The steps of resilience4j's `shouldTransitionToHalfOpenAfter*` tests, on a
/// breaker just opened with an empty window: refused, `still_open` later open
/// and refused, `then` later half-open with the caller's call as the probe.
/// The two refusals are the breaker's first.
fn refused_then_half_open(b: &CircuitBreaker, clock: &ManualClock, still_open: Duration, then: Duration) {
    assert_metrics_are_reset(b, 0);
    assert_eq!(b.state(), State::Open);
    assert!(b.try_acquire().is_err());
    clock.advance(still_open);
    assert_eq!(b.state(), State::Open, "{still_open:?} after opening");
    assert!(b.try_acquire().is_err());
    assert_metrics(b, None, 0, 0, 0, 2);

    clock.advance(then);
    let probe = b.try_acquire().expect("the open period is over");
    assert_eq!(b.state(), State::HalfOpen);
    assert_eq!(b.stats().half_open_in_flight, 1);
    drop(probe);
    // resilience4j starts a new count of refusals here; ours is a lifetime total.
    assert_metrics(b, None, 0, 0, 0, 2);
}

mod circuit_breaker_state_machine_test {
    use super::*;

    /// `CircuitBreakerStateMachineTest.shouldReturnTheCorrectName`.
    #[test]
    fn should_return_the_correct_name() {
        let clock = ManualClock::new();
        let b = breaker("testName", state_machine_config(&clock));
        assert_eq!(b.name(), "testName");
    }

    /// `CircuitBreakerStateMachineTest.shouldThrowCallNotPermittedExceptionWhenStateIsOpen`.
    #[test]
    fn should_throw_call_not_permitted_exception_when_state_is_open() {
        let clock = ManualClock::new();
        let b = breaker("testName", state_machine_config(&clock));
        b.open_for(b.config().open_duration());
        let refusal = b.try_acquire().unwrap_err();
        assert!(refusal.is_rejected());
        assert_eq!(refusal.kind(), BreakerErrorKind::Open);
        assert_eq!(b.stats().rejected, 1);
    }

    /// `CircuitBreakerStateMachineTest.shouldThrowCallNotPermittedExceptionWhenStateIsForcedOpen`.
    #[test]
    fn should_throw_call_not_permitted_exception_when_state_is_forced_open() {
        let clock = ManualClock::new();
        let b = breaker("testName", state_machine_config(&clock));
        b.force_open();
        let refusal = b.try_acquire().unwrap_err();
        assert!(refusal.is_rejected());
        assert_eq!(refusal.kind(), BreakerErrorKind::ForcedOpen);
        assert_eq!(b.stats().rejected, 1);
    }

    /// `CircuitBreakerStateMachineTest.shouldIncreaseCounterOnReleasePermission`.
    /// `releasePermission()` is dropping an unused permit.
    #[test]
    fn should_increase_counter_on_release_permission() {
        let clock = ManualClock::new();
        let b = breaker("testName", state_machine_config(&clock));
        open_then_half_open(&b, &clock);
        let first = b.try_acquire().unwrap();
        let _held: Vec<_> = (0..3).map(|_| b.try_acquire().unwrap()).collect();
        assert!(b.try_acquire().is_err());
        assert!(b.try_acquire().is_err());

        drop(first);
        assert!(b.try_acquire().is_ok());
    }

    /// `CircuitBreakerStateMachineTest.shouldThrowCallNotPermittedExceptionWhenNotFurtherTestCallsArePermitted`.
    #[test]
    fn should_throw_call_not_permitted_exception_when_not_further_test_calls_are_permitted() {
        let clock = ManualClock::new();
        let b = breaker("testName", state_machine_config(&clock));
        open_then_half_open(&b, &clock);
        let _held: Vec<_> = (0..4).map(|_| b.try_acquire().unwrap()).collect();
        let refusal = b.try_acquire().unwrap_err();
        assert!(refusal.is_rejected());
        assert_eq!(refusal.kind(), BreakerErrorKind::HalfOpenFull);
        assert_eq!(b.stats().rejected, 1);
    }

    /// `CircuitBreakerStateMachineTest.shouldOnlyPermitFourCallsInHalfOpenState`.
    #[test]
    fn should_only_permit_four_calls_in_half_open_state() {
        let clock = ManualClock::new();
        let b = breaker("testName", state_machine_config(&clock));
        assert_metrics_are_reset(&b, 0);
        open_then_half_open(&b, &clock);
        let first: Vec<_> = (0..4).map(|_| b.try_acquire().unwrap()).collect();
        assert!(b.try_acquire().is_err());
        assert!(b.try_acquire().is_err());

        // A new half-open period: the probes of the last one, still in flight,
        // take no slot in it.
        open_then_half_open(&b, &clock);
        let second: Vec<_> = (0..4).map(|_| b.try_acquire().unwrap()).collect();
        assert!(b.try_acquire().is_err());
        assert!(b.try_acquire().is_err());
        drop(first);
        assert_eq!(b.stats().half_open_in_flight, 4);
        drop(second);
    }

    /// `CircuitBreakerStateMachineTest.shouldOpenAfterFailureRateThresholdExceeded2`.
    #[test]
    fn should_open_after_failure_rate_threshold_exceeded2() {
        let clock = ManualClock::new();
        let b = breaker("testName", state_machine_config(&clock));
        record(&b, Outcome::Success);
        clock.advance(secs(1));
        record(&b, Outcome::Success);
        clock.advance(secs(1));
        record(&b, Outcome::Success);
        clock.advance(secs(1));
        record(&b, Outcome::Failure);
        clock.advance(secs(1));
        record(&b, Outcome::Failure);
        assert_eq!(b.state(), State::Closed, "2 of 5 is 40 %");
        clock.advance(secs(1));
        assert_eq!(b.state(), State::Closed);
        record(&b, Outcome::Failure);
        assert_eq!(b.state(), State::Open, "3 of 6 is 50 %");
    }

    /// `CircuitBreakerStateMachineTest.shouldOpenAfterFailureRateThresholdExceeded`.
    /// The window that tripped the circuit stays readable while open (issue 17, item 2).
    #[test]
    fn should_open_after_failure_rate_threshold_exceeded() {
        let clock = ManualClock::new();
        let b = breaker("testName", state_machine_config(&clock));
        assert!(b.try_acquire().is_ok());
        assert_eq!(b.state(), State::Closed);
        assert_metrics_are_reset(&b, 0);
        let seen = transitions(&b);

        record(&b, Outcome::Failure);
        assert_eq!(b.state(), State::Closed);
        assert_metrics(&b, None, 0, 1, 1, 0);

        record(&b, Outcome::Failure);
        assert_eq!(b.state(), State::Closed);
        assert_metrics(&b, None, 0, 2, 2, 0);

        record(&b, Outcome::Failure);
        assert_eq!(b.state(), State::Closed);
        assert_metrics(&b, None, 0, 3, 3, 0);

        record(&b, Outcome::Success);
        assert_eq!(b.state(), State::Closed);
        assert_metrics(&b, None, 1, 4, 3, 0);

        record(&b, Outcome::Success);
        assert_eq!(b.state(), State::Open);
        let opened = last(&seen);
        assert_eq!(count(&seen), 1);
        assert_eq!(
            (opened.from, opened.to, opened.reason),
            (State::Closed, State::Open, Reason::FailureRate)
        );
        assert_eq!((opened.calls_in_window, opened.failures_in_window), (5, 3));
        assert_metrics(&b, Some(0.6), 2, 5, 3, 0);

        assert!(b.try_acquire().is_err());
        assert_metrics(&b, Some(0.6), 2, 5, 3, 1);
    }

    /// `CircuitBreakerStateMachineTest.shouldOpenAfterSlowCallRateThresholdExceeded`.
    #[test]
    fn should_open_after_slow_call_rate_threshold_exceeded() {
        let clock = ManualClock::new();
        let b = breaker("testName", state_machine_config(&clock));
        assert_eq!(b.state(), State::Closed);
        assert_metrics_are_reset(&b, 0);
        let seen = transitions(&b);

        timed(&b, &clock, secs(5), Outcome::Failure);
        assert_eq!(b.state(), State::Closed);
        timed(&b, &clock, secs(5), Outcome::Success);
        assert_eq!(b.state(), State::Closed);
        timed(&b, &clock, ms(100), Outcome::Failure);
        assert_eq!(b.state(), State::Closed);
        timed(&b, &clock, ms(100), Outcome::Success);
        assert_eq!(b.state(), State::Closed);
        timed(&b, &clock, secs(5), Outcome::Success);

        assert_eq!(b.state(), State::Open, "3 slow calls of 5 is 60 %");
        assert_eq!(last(&seen).reason, Reason::SlowCallRate);
        let s = b.stats();
        assert_eq!(s.calls_in_window, 5);
        assert_eq!(s.slow_calls_in_window, 3);
        assert_rate(s.slow_call_rate, Some(0.6), "slow_call_rate");
    }

    /// `CircuitBreakerStateMachineTest.shouldOpenAfterSlowCallRateThresholdExceededUsingMockClock`.
    /// resilience4j's `decorateConsumer(mockClock::advanceBySeconds)` is a
    /// `call` whose body advances the clock.
    #[test]
    fn should_open_after_slow_call_rate_threshold_exceeded_using_mock_clock() {
        let clock = ManualClock::new();
        let b = breaker("testName", state_machine_config(&clock));
        assert_eq!(b.state(), State::Closed);
        assert_metrics_are_reset(&b, 0);
        let consume = |seconds: u64| {
            let body = async {
                clock.advance(secs(seconds));
                Ok::<(), ()>(())
            };
            match poll_once(b.call(body)) {
                Poll::Ready(r) => r.expect("the call is permitted and succeeds"),
                Poll::Pending => unreachable!("a ready body finishes on the first poll"),
            }
        };
        let window = |b: &CircuitBreaker| {
            let s = b.stats();
            (s.calls_in_window, s.slow_calls_in_window)
        };

        consume(5);
        assert_eq!(window(&b), (1, 1));
        assert_eq!(b.state(), State::Closed);
        consume(5);
        assert_eq!(window(&b), (2, 2));
        assert_eq!(b.state(), State::Closed);
        consume(1);
        assert_eq!(window(&b), (3, 2));
        assert_eq!(b.state(), State::Closed);
        consume(1);
        assert_eq!(window(&b), (4, 2));
        assert_eq!(b.state(), State::Closed);
        consume(5);
        assert_eq!(b.state(), State::Open);
        assert_eq!(window(&b), (5, 3));
        assert_rate(b.stats().slow_call_rate, Some(0.6), "slow_call_rate");
    }

    /// `CircuitBreakerStateMachineTest.shouldTransitionToHalfOpenAfterWaitDuration`.
    #[test]
    fn should_transition_to_half_open_after_wait_duration() {
        let clock = ManualClock::new();
        let b = breaker("testName", state_machine_config(&clock));
        let seen = transitions(&b);
        b.open_for(b.config().open_duration());
        refused_then_half_open(&b, &clock, secs(3), secs(3));
        assert_eq!(
            last(&seen).rejected_while_open,
            Some(2),
            "the open period's refusals"
        );
    }

    /// `CircuitBreakerStateMachineTest.shouldTransitionToHalfOpenAfterPassedWaitDuration`.
    /// `transitionToOpenStateFor(d)` is `open_for(d)`.
    #[test]
    fn should_transition_to_half_open_after_passed_wait_duration() {
        let clock = ManualClock::new();
        let b = breaker("testName", state_machine_config(&clock));
        b.open_for(secs(2 * 3600));
        refused_then_half_open(&b, &clock, secs(3600), secs(3600 + 1));
    }

    /// `CircuitBreakerStateMachineTest.shouldTransitionToHalfOpenAfterPassedWaitUntil`.
    /// `transitionToOpenStateUntil(instant)` is `open_for(instant - now)`.
    #[test]
    fn should_transition_to_half_open_after_passed_wait_until() {
        let clock = ManualClock::new();
        let b = breaker("testName", state_machine_config(&clock));
        let wait_until = clock.now() + secs(30 * 60);
        b.open_for(wait_until - clock.now());
        let halfway = secs(15 * 60);
        refused_then_half_open(
            &b,
            &clock,
            halfway,
            wait_until - (clock.now() + halfway) + secs(1),
        );
    }

    /// `CircuitBreakerStateMachineTest.shouldTransitionToHalfOpenAfterWaitInterval`.
    /// resilience4j's `IntervalFunction.ofExponentialBackoff(5000L)` (x 1.5 per
    /// opening) is `open_backoff(Backoff::exponential(1.5, ..))`; ours grows the
    /// open duration at each reopen by a failed probe, where resilience4j's
    /// second `transitionToOpenState()` is.
    #[test]
    fn should_transition_to_half_open_after_wait_interval() {
        let clock = ManualClock::new();
        let b = breaker(
            "testName",
            Config::builder()
                .clock(clock.clock())
                .failure_threshold(u32::MAX)
                .failure_rate_threshold(0.5)
                .sliding_window(Window::Count(5))
                .minimum_calls(5)
                .half_open_max_calls(4)
                .success_threshold(4)
                .open_duration(secs(5))
                .open_backoff(Backoff::exponential(1.5, secs(3600))),
        );
        let seen = transitions(&b);
        b.open_for(secs(5));
        refused_then_half_open(&b, &clock, secs(3), secs(3));

        record(&b, Outcome::Failure);
        assert_eq!(b.state(), State::Open);
        assert_eq!(last(&seen).open_for, Some(ms(7500)), "5 s x 1.5");
        clock.advance(secs(6));
        assert_eq!(b.state(), State::Open, "6 s of 7.5 s");
        assert!(b.try_acquire().is_err());

        clock.advance(secs(5));
        let _probe = b.try_acquire().unwrap();
        assert_eq!(b.state(), State::HalfOpen);
        assert_metrics(&b, None, 0, 0, 0, 3);
    }

    /// `CircuitBreakerStateMachineTest.shouldTransitionBackToOpenStateWhenSlowCallRateIsAboveThreshold`.
    /// Four successful probes of 5 s, 5 s, 5 s and 1 s: 75 % slow, the circuit
    /// reopens (issue 17, item 3). resilience4j's half-open metrics (slow rate
    /// 75 %, failure rate 0 %) have no counterpart in `stats()`: probes are not
    /// part of the closed window.
    #[test]
    fn should_transition_back_to_open_state_when_slow_call_rate_is_above_threshold() {
        let clock = ManualClock::new();
        let b = breaker("testName", state_machine_config(&clock));
        open_then_half_open(&b, &clock);
        let seen = transitions(&b);

        timed(&b, &clock, secs(5), Outcome::Success);
        timed(&b, &clock, secs(5), Outcome::Success);
        timed(&b, &clock, secs(5), Outcome::Success);
        timed(&b, &clock, secs(1), Outcome::Success);

        assert_eq!(b.state(), State::Open);
        let reopened = last(&seen);
        assert_eq!((reopened.from, reopened.to), (State::HalfOpen, State::Open));
        assert_eq!(reopened.reason, Reason::SlowProbes);
        let s = b.stats();
        assert_eq!(s.slow_calls, 3);
        assert_eq!((s.successes, s.failures), (4, 0));
    }

    /// `CircuitBreakerStateMachineTest.shouldResetMetrics`.
    #[test]
    fn should_reset_metrics() {
        let clock = ManualClock::new();
        let b = breaker("testName", state_machine_config(&clock));
        assert_eq!(b.state(), State::Closed);
        assert_metrics_are_reset(&b, 0);

        record(&b, Outcome::Success);
        record(&b, Outcome::Failure);
        assert_metrics(&b, None, 1, 2, 1, 0);

        b.reset();
        assert_metrics_are_reset(&b, 0);
        let s = b.stats();
        assert_eq!(
            (s.successes, s.failures),
            (1, 1),
            "reset keeps the lifetime totals"
        );
    }

    /// `CircuitBreakerStateMachineTest.shouldDisableCircuitBreaker`.
    #[test]
    fn should_disable_circuit_breaker() {
        let clock = ManualClock::new();
        let b = breaker("testName", state_machine_config(&clock));
        b.disable();
        assert_eq!(b.state(), State::Disabled);
        assert_metrics_are_reset(&b, 0);

        record(&b, Outcome::Success);
        record(&b, Outcome::Failure);
        record(&b, Outcome::Failure);
        record(&b, Outcome::Failure);
        b.try_acquire()
            .expect("acquirePermission() succeeds while disabled")
            .record(false);

        assert_eq!(b.state(), State::Disabled);
        assert_metrics_are_reset(&b, 0);
        let s = b.stats();
        assert_eq!(
            (s.successes, s.failures),
            (1, 4),
            "a disabled breaker still counts totals"
        );
    }

    /// `CircuitBreakerStateMachineTest.shouldForceOpenCircuitBreaker`.
    #[test]
    fn should_force_open_circuit_breaker() {
        let clock = ManualClock::new();
        let b = breaker("testName", state_machine_config(&clock));
        b.force_open();
        assert_eq!(b.state(), State::ForcedOpen);
        assert!(b.try_acquire().is_err());

        clock.advance(secs(6));
        assert!(b.try_acquire().is_err());
        assert_eq!(
            b.state(),
            State::ForcedOpen,
            "the open duration does not end a forced open"
        );
        assert_metrics(&b, None, 0, 0, 0, 2);
    }

    /// `CircuitBreakerStateMachineTest.shouldReleasePermissionWhenExceptionIgnored`.
    /// resilience4j's ignored `NumberFormatException` is `Outcome::Ignored`.
    /// The last probe fails: resilience4j closes there (3 of 4 probes
    /// succeeded, under its 50 % failure rate); ours reopens, as any failed
    /// probe does (`difference_any_failed_probe_reopens`).
    #[test]
    fn should_release_permission_when_exception_ignored() {
        let clock = ManualClock::new();
        let b = breaker("testName", state_machine_config(&clock));
        open_then_half_open(&b, &clock);

        for n in 1..=3 {
            record(&b, Outcome::Success);
            assert_eq!(b.state(), State::HalfOpen);
            let s = b.stats();
            assert_eq!((s.successes, s.failures, s.half_open_in_flight), (n, 0, 0));
        }

        let ignored = b.try_acquire().unwrap();
        assert_eq!(b.stats().half_open_in_flight, 1);
        ignored.record_outcome(Outcome::Ignored);
        assert_eq!(b.state(), State::HalfOpen);
        let s = b.stats();
        assert_eq!((s.successes, s.failures, s.ignored), (3, 0, 1));
        assert_eq!(s.half_open_in_flight, 0, "the ignored call gave its permit back");

        record(&b, Outcome::Failure);
        assert_eq!(b.state(), State::Open);
    }

    /// `CircuitBreakerStateMachineTest.shouldIgnoreExceptionsAndThenTransitionToClosed`.
    #[test]
    fn should_ignore_exceptions_and_then_transition_to_closed() {
        let clock = ManualClock::new();
        let b = breaker("testName", state_machine_config(&clock));
        open_then_half_open(&b, &clock);

        for _ in 0..4 {
            record(&b, Outcome::Ignored);
            assert_eq!(b.state(), State::HalfOpen);
        }
        assert_metrics_are_reset(&b, 0);
        assert_eq!(b.stats().ignored, 4);

        for _ in 0..3 {
            record(&b, Outcome::Success);
            assert_eq!(b.state(), State::HalfOpen);
        }
        assert_eq!(b.stats().successes, 3);

        record(&b, Outcome::Success);
        assert_eq!(b.state(), State::Closed);
        assert_metrics_are_reset(&b, 0);
    }

    /// `CircuitBreakerStateMachineTest.shouldResetToClosedState`.
    #[test]
    fn should_reset_to_closed_state() {
        let clock = ManualClock::new();
        let b = breaker("testName", state_machine_config(&clock));
        b.open_for(b.config().open_duration());
        b.reset();
        assert_eq!(b.state(), State::Closed);
    }

    /// `CircuitBreakerStateMachineTest.shouldResetClosedState`.
    #[test]
    fn should_reset_closed_state() {
        let clock = ManualClock::new();
        let b = breaker("testName", state_machine_config(&clock));
        record(&b, Outcome::Success);
        record(&b, Outcome::Success);
        assert_metrics(&b, None, 2, 2, 0, 0);

        b.reset();
        assert_eq!(b.state(), State::Closed);
        assert_metrics_are_reset(&b, 0);
    }

    /// `CircuitBreakerStateMachineTest.circuitBreakerDoesNotPublishStateTransitionEventsForInternalTransitions`.
    /// Moving to the state the breaker is already in publishes nothing, for
    /// `open_for` too (issue 17, item 1). There is no metrics-only state; the
    /// two `force_open()` calls stand in for that step.
    #[test]
    fn circuit_breaker_does_not_publish_state_transition_events_for_internal_transitions() {
        let clock = ManualClock::new();
        let b = breaker("testName", state_machine_config(&clock));
        let seen = transitions(&b);

        b.open_for(b.config().open_duration());
        assert_eq!(count(&seen), 1);
        b.open_for(b.config().open_duration());
        assert_eq!(count(&seen), 1, "open -> open is no transition");

        clock.advance(b.config().open_duration());
        assert_eq!(b.state(), State::HalfOpen);
        assert_eq!(count(&seen), 2);
        assert_eq!(b.state(), State::HalfOpen);
        assert_eq!(count(&seen), 2);

        b.disable();
        assert_eq!(count(&seen), 3);
        b.disable();
        assert_eq!(count(&seen), 3);

        b.force_open();
        assert_eq!(count(&seen), 4);
        b.force_open();
        assert_eq!(count(&seen), 4);

        b.reset();
        assert_eq!(count(&seen), 5);
        b.reset();
        assert_eq!(count(&seen), 5);

        let path: Vec<_> = seen.lock().unwrap().iter().map(|t| (t.from, t.to)).collect();
        assert_eq!(
            path,
            [
                (State::Closed, State::Open),
                (State::Open, State::HalfOpen),
                (State::HalfOpen, State::Disabled),
                (State::Disabled, State::ForcedOpen),
                (State::ForcedOpen, State::Closed),
            ]
        );
    }

    /// `CircuitBreakerStateMachineTest.circuitBreakerInitializeInClosedState`.
    #[test]
    fn circuit_breaker_initialize_in_closed_state() {
        let clock = ManualClock::new();
        let b = breaker(
            "testName",
            Config::builder()
                .clock(clock.clock())
                .failure_threshold(u32::MAX)
                .failure_rate_threshold(0.5)
                .sliding_window(Window::Count(5))
                .minimum_calls(5)
                .half_open_max_calls(4)
                .open_backoff(Backoff::exponential(1.5, secs(3600))),
        );
        assert_eq!(b.state(), State::Closed);
        b.open_for(b.config().open_duration());
        assert_eq!(b.state(), State::Open);
    }
}

mod circuit_breaker_metrics_test {
    use super::*;

    /// `CircuitBreakerMetricsTest.testCircuitBreakerMetrics`: the last 10 calls,
    /// judged once there are 10. The breaker only observes (thresholds at 1.0);
    /// resilience4j's `Result` is checked against its default 50 % threshold.
    #[test]
    fn test_circuit_breaker_metrics() {
        let clock = ManualClock::new();
        let b = breaker("testName", observing(&clock, Window::Count(10), 10));
        record(&b, Outcome::Success);
        record(&b, Outcome::Success);
        record(&b, Outcome::Failure);
        record(&b, Outcome::Failure);

        // Below the minimum: 50 % failures, but no rate yet.
        assert_metrics(&b, None, 2, 4, 2, 0);

        for _ in 0..4 {
            record(&b, Outcome::Failure);
        }
        for _ in 0..4 {
            record(&b, Outcome::Success);
        }
        // 12 calls, the last 10 in the window: 4 successes and 6 failures.
        assert_metrics(&b, Some(0.6), 4, 10, 6, 0);
        assert!(
            b.stats().failure_rate.unwrap() >= 0.5,
            "over resilience4j's default threshold"
        );

        for _ in 0..3 {
            record(&b, Outcome::Success);
        }
        assert_metrics(&b, Some(0.3), 7, 10, 3, 0);
        assert!(b.stats().failure_rate.unwrap() < 0.5, "below the thresholds");
        assert_eq!(b.state(), State::Closed);
    }
}

/// The ports of the two sliding-window metrics tests share their scenarios; each
/// module runs them on its kind of window.
mod scenarios {
    use super::*;

    /// `checkInitialBucketCreation`: a new window is empty.
    pub fn check_initial_bucket_creation(window: Window) {
        let clock = ManualClock::new();
        let b = breaker("window", observing(&clock, window, 1));
        let s = b.stats();
        assert_eq!(
            (s.calls_in_window, s.failures_in_window, s.slow_calls_in_window),
            (0, 0, 0)
        );
        assert_eq!((s.failure_rate, s.slow_call_rate), (None, None));
    }

    /// `testRecordSuccess`: one fast success.
    pub fn test_record_success(window: Window) {
        let clock = ManualClock::new();
        let b = breaker("window", observing(&clock, window, 1));
        timed(&b, &clock, ms(100), Outcome::Success);
        let s = b.stats();
        assert_eq!(
            (s.calls_in_window, s.failures_in_window, s.slow_calls_in_window),
            (1, 0, 0)
        );
        assert_rate(s.failure_rate, Some(0.0), "failure_rate");
        assert_rate(s.slow_call_rate, Some(0.0), "slow_call_rate");
    }

    /// One call alone in a window judged from one call is a 100 % rate, which
    /// reaches even a threshold of 1.0: the circuit opens. Returns the opening
    /// and the stats after it.
    fn one_call_opens(window: Window, took: Duration, outcome: Outcome) -> (Transition, Stats) {
        let clock = ManualClock::new();
        let b = breaker("window", observing(&clock, window, 1));
        let seen = transitions(&b);
        timed(&b, &clock, took, outcome);
        (last(&seen), b.stats())
    }

    /// `testRecordError`: one fast failure, a 100 % failure rate.
    pub fn test_record_error(window: Window) {
        let (opened, s) = one_call_opens(window, ms(100), Outcome::Failure);
        assert_eq!(opened.reason, Reason::FailureRate);
        assert_eq!((opened.calls_in_window, opened.failures_in_window), (1, 1));
        assert_eq!((s.successes, s.failures, s.slow_calls), (0, 1, 0));
    }

    /// `testRecordSlowSuccess`: one slow success (2 s against a 1 s threshold;
    /// resilience4j is told the outcome `SLOW_SUCCESS` instead), a 100 %
    /// slow-call rate with no failure.
    pub fn test_record_slow_success(window: Window) {
        let (opened, s) = one_call_opens(window, secs(2), Outcome::Success);
        assert_eq!(opened.reason, Reason::SlowCallRate);
        assert_eq!((opened.calls_in_window, opened.failures_in_window), (1, 0));
        assert_eq!((s.successes, s.failures, s.slow_calls), (1, 0, 1));
    }

    /// `testSlowCallsPercentage`: a slow success, a slow failure (10 s each,
    /// running at once) and three fast successes: 40 % slow.
    pub fn test_slow_calls_percentage(window: Window) {
        let clock = ManualClock::new();
        let b = breaker("window", observing(&clock, window, 5));
        let slow_success = b.try_acquire().unwrap();
        let slow_failure = b.try_acquire().unwrap();
        clock.advance(secs(10));
        slow_success.record(true);
        slow_failure.record(false);
        for _ in 0..3 {
            timed(&b, &clock, ms(100), Outcome::Success);
        }
        let s = b.stats();
        assert_eq!(s.calls_in_window, 5);
        assert_eq!(s.calls_in_window - s.failures_in_window, 4);
        assert_eq!(s.slow_calls_in_window, 2);
        assert_rate(s.slow_call_rate, Some(0.4), "slow_call_rate");
        assert_eq!(b.state(), State::Closed);
    }
}

/// One `#[test]` per method of `$class` that runs the scenario of the same
/// name on `$window`.
macro_rules! window_tests {
    ($class:literal, $window:expr) => {
        window_tests!(@one $class, $window, check_initial_bucket_creation, "checkInitialBucketCreation");
        window_tests!(@one $class, $window, test_record_success, "testRecordSuccess");
        window_tests!(@one $class, $window, test_record_error, "testRecordError");
        window_tests!(@one $class, $window, test_record_slow_success, "testRecordSlowSuccess");
        window_tests!(@one $class, $window, test_slow_calls_percentage, "testSlowCallsPercentage");
    };
    (@one $class:literal, $window:expr, $name:ident, $java:literal) => {
        #[doc = concat!("`", $class, ".", $java, "`.")]
        #[test]
        fn $name() {
            scenarios::$name($window);
        }
    };
}

mod fixed_size_sliding_window_metrics_test {
    use super::*;

    window_tests!("FixedSizeSlidingWindowMetricsTest", Window::Count(5));

    /// `FixedSizeSlidingWindowMetricsTest.testSlidingWindowMetrics`: a window of
    /// 4; the fifth call pushes the failure out. The minimum is 2 calls, so that
    /// the first failure alone (100 %) does not open the breaker; resilience4j's
    /// bare window reports 100 % there.
    #[test]
    fn test_sliding_window_metrics() {
        let clock = ManualClock::new();
        let b = breaker("window", observing(&clock, Window::Count(4), 2));
        let steps = [
            (Outcome::Failure, 1, 0, None),
            (Outcome::Success, 2, 1, Some(0.5)),
            (Outcome::Success, 3, 2, Some(1.0 / 3.0)),
            (Outcome::Success, 4, 3, Some(0.25)),
            (Outcome::Success, 4, 4, Some(0.0)),
        ];
        for (i, (outcome, calls, successes, rate)) in steps.into_iter().enumerate() {
            timed(&b, &clock, ms(100), outcome);
            let s = b.stats();
            assert_eq!(s.calls_in_window, calls, "call {i}");
            assert_eq!(s.calls_in_window - s.failures_in_window, successes, "call {i}");
            assert_rate(s.failure_rate, rate, "failure_rate");
        }
        assert_eq!(b.state(), State::Closed);
    }

    /// `FixedSizeSlidingWindowMetricsTest.testSlidingWindowMetricsWithSlowCalls`:
    /// slow calls leave the window with their calls. resilience4j's window of 2
    /// holding two slow calls is a 100 % slow rate, which opens any breaker with
    /// slow-call detection on, so the window here is 3 and one fast success
    /// comes first; the steps are otherwise the same.
    #[test]
    fn test_sliding_window_metrics_with_slow_calls() {
        let clock = ManualClock::new();
        let b = breaker("window", observing(&clock, Window::Count(3), 3));
        timed(&b, &clock, ms(100), Outcome::Success);
        // (outcome, took, calls, slow, failures) in the window after the call.
        let steps = [
            (Outcome::Failure, secs(2), 2, 1, 1),
            (Outcome::Success, secs(2), 3, 2, 1),
            (Outcome::Success, ms(100), 3, 2, 1),
            (Outcome::Success, ms(100), 3, 1, 0),
            (Outcome::Success, ms(100), 3, 0, 0),
            (Outcome::Success, ms(100), 3, 0, 0),
        ];
        for (i, (outcome, took, calls, slow, failures)) in steps.into_iter().enumerate() {
            timed(&b, &clock, took, outcome);
            let s = b.stats();
            assert_eq!(
                (s.calls_in_window, s.slow_calls_in_window, s.failures_in_window),
                (calls, slow, failures),
                "call {i}"
            );
        }
        assert_eq!(b.state(), State::Closed);
    }
}

mod sliding_time_window_metrics_test {
    use super::*;

    /// resilience4j's `SlidingTimeWindowMetrics(5, clock)`: the last 5 s.
    /// resilience4j cuts it in 5 buckets of a second, ours in 10 of half a
    /// second; the steps below land on the same side of both.
    const FIVE_SECONDS: Window = Window::Time(Duration::from_secs(5));

    // `checkInitialBucketCreation` is ported for its snapshot; the buckets'
    // timestamps it also checks are private.
    window_tests!("SlidingTimeWindowMetricsTest", FIVE_SECONDS);

    /// `SlidingTimeWindowMetricsTest.shouldClearSlidingTimeWindowMetrics`. The
    /// slow failure starts with the first call and ends 800 ms later (over a
    /// 500 ms threshold); resilience4j is told it took 1 s. The minimum is 2
    /// calls, so the first failure alone does not open the breaker.
    #[test]
    fn should_clear_sliding_time_window_metrics() {
        let clock = ManualClock::new();
        let b = breaker(
            "window",
            observing(&clock, FIVE_SECONDS, 2).slow_call_duration(ms(500)),
        );
        let window = |b: &CircuitBreaker| {
            let s = b.stats();
            (s.calls_in_window, s.failures_in_window, s.slow_calls_in_window)
        };
        let slow_failure = b.try_acquire().unwrap();

        record(&b, Outcome::Failure);
        assert_eq!(window(&b), (1, 1, 0));
        assert_eq!(b.stats().failure_rate, None);

        clock.advance(ms(100));
        record(&b, Outcome::Success);
        assert_eq!(window(&b), (2, 1, 0));
        assert_rate(b.stats().failure_rate, Some(0.5), "failure_rate");

        clock.advance(ms(700));
        slow_failure.record(false);
        assert_eq!(window(&b), (3, 2, 1));

        clock.advance(secs(4));
        assert_eq!(window(&b), (3, 2, 1), "4.8 s after the first call");

        clock.advance(secs(1));
        assert_eq!(window(&b), (0, 0, 0), "5.8 s after the first call");
        assert_eq!(b.stats().failure_rate, None);

        clock.advance(ms(100));
        record(&b, Outcome::Success);
        assert_eq!(window(&b), (1, 0, 0));

        clock.advance(secs(5));
        record(&b, Outcome::Success);
        assert_eq!(window(&b), (1, 0, 0));
        assert_eq!(b.state(), State::Closed);
    }

    /// `SlidingTimeWindowMetricsTest.testSlidingTimeWindowMetrics`.
    #[test]
    fn test_sliding_time_window_metrics() {
        let clock = ManualClock::new();
        let b = breaker("window", observing(&clock, FIVE_SECONDS, 2));
        // (advance before the call, outcome, calls, successes, failures).
        let steps = [
            (ms(0), Outcome::Failure, 1, 0, 1),
            (ms(100), Outcome::Success, 2, 1, 1),
            (ms(100), Outcome::Success, 3, 2, 1),
            (secs(1), Outcome::Success, 4, 3, 1),
            (secs(1), Outcome::Success, 5, 4, 1),
            (secs(1), Outcome::Failure, 6, 4, 2),
            (secs(1), Outcome::Success, 7, 5, 2),
            // 5.2 s: the three calls of the first second have left.
            (secs(1), Outcome::Success, 5, 4, 1),
            (secs(1), Outcome::Success, 5, 4, 1),
            (secs(5), Outcome::Success, 1, 1, 0),
        ];
        for (i, (advance, outcome, calls, successes, failures)) in steps.into_iter().enumerate() {
            clock.advance(advance);
            record(&b, outcome);
            let s = b.stats();
            assert_eq!(
                (
                    s.calls_in_window,
                    s.calls_in_window - s.failures_in_window,
                    s.failures_in_window
                ),
                (calls, successes, failures),
                "call {i}"
            );
        }
        assert_eq!(b.state(), State::Closed);
    }
}

/// Issue 17, items 1-4: where resilience4j's meaning is the one we intend.
mod intended {
    use super::*;

    fn open_for_config(clock: &ManualClock) -> ConfigBuilder {
        state_machine_config(clock).open_duration(secs(30))
    }

    /// Item 1: `open_for` on an open breaker publishes no transition, and moves
    /// the deadline later in place.
    #[test]
    fn open_for_on_an_open_breaker_extends_it_without_a_transition() {
        let clock = ManualClock::new();
        let b = breaker("intended", open_for_config(&clock));
        let seen = transitions(&b);
        assert!(b.open_for(secs(10)));
        clock.advance(secs(2));
        b.open_for(secs(20));
        assert_eq!(count(&seen), 1, "no open -> open transition");
        assert_eq!(b.try_acquire().unwrap_err().retry_after(), Some(secs(20)));

        clock.advance(secs(20) - Duration::from_nanos(1));
        assert_eq!(b.state(), State::Open, "the deadline moved to 22 s");
        clock.advance(Duration::from_nanos(1));
        assert_eq!(b.state(), State::HalfOpen);
        assert_eq!(count(&seen), 2);
    }

    /// Item 1: a shorter `open_for` never shortens the open period, whether the
    /// circuit was opened by hand or tripped.
    #[test]
    fn open_for_never_shortens_the_open_period() {
        let clock = ManualClock::new();
        let b = breaker("intended", open_for_config(&clock));
        let seen = transitions(&b);
        b.open_for(secs(30));
        clock.advance(secs(1));
        b.open_for(secs(5));
        clock.advance(secs(10));
        assert_eq!(b.state(), State::Open, "11 s into a 30 s open period");
        clock.advance(secs(19));
        assert_eq!(b.state(), State::HalfOpen);

        // Tripped by the failure rate: open for `open_duration`, 30 s.
        b.reset();
        for _ in 0..5 {
            record(&b, Outcome::Failure);
        }
        assert_eq!(b.state(), State::Open);
        b.open_for(secs(1));
        clock.advance(secs(2));
        assert_eq!(b.state(), State::Open, "a 1 s hint does not cut 30 s short");
        clock.advance(secs(28));
        assert_eq!(b.state(), State::HalfOpen);
        assert!(seen.lock().unwrap().iter().all(|t| t.from != t.to));
    }

    /// Item 1: the rejections of one open period are counted over all of it,
    /// across `open_for` calls.
    #[test]
    fn rejections_are_counted_over_the_whole_open_period() {
        let clock = ManualClock::new();
        let b = breaker("intended", open_for_config(&clock));
        let seen = transitions(&b);
        b.open_for(secs(10));
        assert!(b.try_acquire().is_err());
        assert!(b.try_acquire().is_err());
        clock.advance(secs(1));
        b.open_for(secs(20));
        for _ in 0..3 {
            assert!(b.try_acquire().is_err());
        }
        clock.advance(secs(20));
        assert_eq!(b.state(), State::HalfOpen);
        let half_open = last(&seen);
        assert_eq!((half_open.from, half_open.to), (State::Open, State::HalfOpen));
        assert_eq!(half_open.rejected_while_open, Some(5));
    }

    /// Item 2: while open, `stats()` shows the window that tripped the circuit;
    /// the move to half-open clears it.
    #[test]
    fn the_window_that_tripped_stays_readable_while_open() {
        let clock = ManualClock::new();
        let b = breaker(
            "intended",
            state_machine_config(&clock)
                .sliding_window(Window::Count(10))
                .minimum_calls(4),
        );
        record(&b, Outcome::Success);
        record(&b, Outcome::Success);
        record(&b, Outcome::Failure);
        record(&b, Outcome::Failure);
        assert_eq!(b.state(), State::Open);
        let s = b.stats();
        assert_eq!((s.calls_in_window, s.failures_in_window), (4, 2));
        assert_rate(s.failure_rate, Some(0.5), "failure_rate");

        clock.advance(secs(3));
        assert_eq!(b.state(), State::Open);
        assert_eq!(
            b.stats().calls_in_window,
            4,
            "still readable later in the open period"
        );

        clock.advance(secs(2));
        assert_eq!(b.state(), State::HalfOpen);
        let s = b.stats();
        assert_eq!((s.calls_in_window, s.failures_in_window), (0, 0));
        assert_eq!(s.failure_rate, None);
    }

    /// Item 3: one slow probe of four is 25 %, under the 50 % threshold: the
    /// circuit closes.
    #[test]
    fn one_slow_probe_of_four_closes() {
        let clock = ManualClock::new();
        let b = breaker("intended", state_machine_config(&clock));
        open_then_half_open(&b, &clock);
        timed(&b, &clock, secs(5), Outcome::Success);
        timed(&b, &clock, secs(1), Outcome::Success);
        timed(&b, &clock, secs(1), Outcome::Success);
        timed(&b, &clock, secs(1), Outcome::Success);
        assert_eq!(b.state(), State::Closed);
    }

    /// Item 3: two slow probes of four is 50 %, at the threshold (`>=`): the
    /// circuit reopens.
    #[test]
    fn slow_probes_at_the_threshold_reopen() {
        let clock = ManualClock::new();
        let b = breaker("intended", state_machine_config(&clock));
        open_then_half_open(&b, &clock);
        let seen = transitions(&b);
        timed(&b, &clock, secs(1), Outcome::Success);
        timed(&b, &clock, secs(5), Outcome::Success);
        timed(&b, &clock, secs(1), Outcome::Success);
        assert_eq!(
            b.state(),
            State::HalfOpen,
            "judged once success_threshold probes succeeded"
        );
        timed(&b, &clock, secs(5), Outcome::Success);
        assert_eq!(b.state(), State::Open);
        assert_eq!(count(&seen), 1);
        assert_eq!(last(&seen).reason, Reason::SlowProbes);
    }

    /// Item 3: without slow-call detection, long probes close the circuit.
    #[test]
    fn without_slow_call_detection_long_probes_close() {
        let clock = ManualClock::new();
        let b = breaker(
            "intended",
            Config::builder()
                .clock(clock.clock())
                .half_open_max_calls(4)
                .success_threshold(4)
                .open_duration(secs(5)),
        );
        open_then_half_open(&b, &clock);
        for _ in 0..4 {
            timed(&b, &clock, secs(60), Outcome::Success);
        }
        assert_eq!(b.state(), State::Closed);
    }

    /// Item 4: "slower than" is strictly longer; a call of exactly
    /// `slow_call_duration` is not slow, one nanosecond more is.
    #[test]
    fn slower_than_means_strictly_longer() {
        let clock = ManualClock::new();
        let b = breaker("intended", state_machine_config(&clock));
        timed(&b, &clock, secs(4), Outcome::Success);
        assert_eq!(b.stats().slow_calls, 0, "exactly 4 s is not slower than 4 s");
        timed(&b, &clock, secs(4) + Duration::from_nanos(1), Outcome::Success);
        assert_eq!(b.stats().slow_calls, 1);
        assert_eq!(b.stats().slow_calls_in_window, 1);
    }
}

/// Difference: any failed probe reopens; resilience4j judges the failure rate
/// of `permittedNumberOfCallsInHalfOpenState` probes. The sequence of
/// `CircuitBreakerStateMachineTest.shouldTransitionBackToClosedStateWhenFailureIsBelowThreshold`
/// (a failure, then three successes), which resilience4j closes on, reopens
/// here at the first probe; so the sequence of
/// `shouldTransitionBackToOpenStateWhenFailureRateIsAboveThreshold` (failure,
/// failure, success, failure) reopens at its first probe too.
#[test]
fn difference_any_failed_probe_reopens() {
    let clock = ManualClock::new();
    let b = breaker("difference", state_machine_config(&clock));
    open_then_half_open(&b, &clock);
    let seen = transitions(&b);

    record(&b, Outcome::Failure);
    assert_eq!(b.state(), State::Open);
    let reopened = last(&seen);
    assert_eq!(
        (reopened.from, reopened.to, reopened.reason),
        (State::HalfOpen, State::Open, Reason::ProbeFailed)
    );
    for _ in 0..3 {
        let refusal = b.try_acquire().unwrap_err();
        assert_eq!(
            refusal.kind(),
            BreakerErrorKind::Open,
            "the three successes never run"
        );
    }

    // The other sequence (failure, failure, success, failure) after the next
    // open period: its first probe reopens, and the second never runs.
    clock.advance(secs(5));
    record(&b, Outcome::Failure);
    assert_eq!(b.state(), State::Open);
    assert!(b.try_acquire().is_err());
    assert_eq!(
        count(&seen),
        3,
        "half-open -> open, open -> half-open, half-open -> open"
    );
}

/// Difference: `half_open_max_calls` caps the probes in flight, not the calls
/// of a half-open period. resilience4j permits 4 calls per half-open period;
/// here, with a cap of 2 and 10 successes to close, any number of probes run
/// one after another, and a third at once is refused.
#[test]
fn difference_probe_cap_counts_calls_in_flight() {
    let clock = ManualClock::new();
    let b = breaker(
        "difference",
        state_machine_config(&clock)
            .half_open_max_calls(2)
            .success_threshold(10),
    );
    open_then_half_open(&b, &clock);
    for _ in 0..6 {
        record(&b, Outcome::Success);
    }
    assert_eq!(b.state(), State::HalfOpen);

    let first = b.try_acquire().unwrap();
    let second = b.try_acquire().unwrap();
    assert_eq!(
        b.try_acquire().unwrap_err().kind(),
        BreakerErrorKind::HalfOpenFull
    );
    first.record(true);
    let third = b.try_acquire().expect("a finished probe frees its slot");
    second.record(true);
    third.record(true);
    assert_eq!(b.stats().successes, 9);
    record(&b, Outcome::Success);
    assert_eq!(b.state(), State::Closed, "10 successful probes");
}

/// Difference: `Stats::rejected` is a lifetime total; resilience4j's
/// `getNumberOfNotPermittedCalls()` starts over at every transition. The count
/// of one open period is on the transition that ends it.
#[test]
fn difference_rejection_totals_are_lifetime_counts() {
    let clock = ManualClock::new();
    let b = breaker("difference", state_machine_config(&clock));
    let seen = transitions(&b);
    b.open_for(secs(5));
    assert!(b.try_acquire().is_err());
    assert!(b.try_acquire().is_err());
    clock.advance(secs(5));
    record(&b, Outcome::Failure);
    assert_eq!(b.state(), State::Open);
    assert!(b.try_acquire().is_err());
    assert_eq!(b.stats().rejected, 3, "across two open periods");

    clock.advance(secs(5));
    assert_eq!(b.state(), State::HalfOpen);
    let periods: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|t| t.from == State::Open)
        .map(|t| t.rejected_while_open)
        .collect();
    assert_eq!(periods, [Some(2), Some(1)]);

    b.reset();
    assert_eq!(b.stats().rejected, 3, "reset keeps it");
}

/// Difference: there is no metrics-only state. The nearest, `disable()`, lets
/// every call through and never opens, but records no window: it counts only
/// the lifetime totals.
#[test]
fn difference_there_is_no_metrics_only_state() {
    assert!("metrics_only".parse::<State>().is_err());
    let clock = ManualClock::new();
    let b = breaker("difference", state_machine_config(&clock));
    b.disable();
    for _ in 0..10 {
        record(&b, Outcome::Failure);
    }
    assert_eq!(b.state(), State::Disabled);
    let s = b.stats();
    assert_eq!(s.failures, 10);
    assert_eq!((s.calls_in_window, s.failure_rate), (0, None));
}

/// Difference: a trigger of our own, `failure_threshold` consecutive failures,
/// opens the circuit long before a rate window reaches `minimum_calls` (for a
/// dependency called a few times a minute). A success starts the count over.
#[test]
fn difference_consecutive_failure_trigger() {
    let clock = ManualClock::new();
    let b = breaker(
        "difference",
        state_machine_config(&clock)
            .failure_threshold(3)
            .sliding_window(Window::Count(100))
            .minimum_calls(100),
    );
    let seen = transitions(&b);
    record(&b, Outcome::Failure);
    record(&b, Outcome::Failure);
    record(&b, Outcome::Success);
    record(&b, Outcome::Failure);
    record(&b, Outcome::Failure);
    assert_eq!(b.state(), State::Closed, "the success broke the streak");
    record(&b, Outcome::Failure);
    assert_eq!(b.state(), State::Open);
    let opened = last(&seen);
    assert_eq!(opened.reason, Reason::ConsecutiveFailures);
    assert_eq!(
        opened.calls_in_window, 6,
        "6 calls, far under the 100 the rate needs"
    );
}
