//! The breaker's state machine through its public API: every trigger, every
//! transition, manual control and the call future's guarantees.
//!
//! Time is injected ([`ManualClock`]) or paused (tokio); nothing sleeps.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use cb_runtime::clock::ManualClock;
use cb_runtime::{
    Backoff, BreakerErrorKind, CallError, CircuitBreaker, Clock, Config, Outcome, Preset, Reason, State,
    Window,
};
use support::{fail, manual, poll_once, secs, succeed};

fn open_by_failures(b: &CircuitBreaker) {
    for _ in 0..b.config().failure_threshold() {
        let _ = fail(b);
    }
    assert_eq!(b.state(), State::Open);
}

#[test]
fn consecutive_failures_open_and_a_success_starts_over() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::new(
        "consecutive",
        manual(&clock).failure_threshold(3).build().unwrap(),
    );
    fail(&b).unwrap_err();
    fail(&b).unwrap_err();
    assert_eq!(b.stats().consecutive_failures, 2);
    succeed(&b).unwrap();
    assert_eq!(b.stats().consecutive_failures, 0);
    fail(&b).unwrap_err();
    fail(&b).unwrap_err();
    assert_eq!(b.state(), State::Closed);
    fail(&b).unwrap_err();
    assert_eq!(b.state(), State::Open);
}

#[test]
fn failure_rate_opens_only_once_minimum_calls_are_in_the_window() {
    let b = CircuitBreaker::new(
        "rate",
        Config::builder()
            .failure_threshold(1000)
            .failure_rate_threshold(0.5)
            .sliding_window(Window::Count(10))
            .minimum_calls(6)
            .build()
            .unwrap(),
    );
    // 3 failures out of 5: a 60 % rate, but fewer than 6 calls.
    for r in [true, false, true, false, false] {
        let _ = if r { succeed(&b) } else { fail(&b) };
    }
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.stats().failure_rate, None);
    // The sixth call, a success: 3 / 6 = 50 % >= 50 %.
    succeed(&b).unwrap();
    assert_eq!(b.state(), State::Open);
}

#[test]
fn count_window_forgets_calls_that_slid_out() {
    let b = CircuitBreaker::new(
        "count-window",
        Config::builder()
            .failure_threshold(1000)
            .failure_rate_threshold(0.5)
            .sliding_window(Window::Count(4))
            .minimum_calls(4)
            .build()
            .unwrap(),
    );
    fail(&b).unwrap_err();
    for _ in 0..3 {
        succeed(&b).unwrap();
    }
    assert_eq!(b.stats().failures_in_window, 1);
    succeed(&b).unwrap(); // the failure leaves the window
    let s = b.stats();
    assert_eq!((s.calls_in_window, s.failures_in_window), (4, 0));
    fail(&b).unwrap_err();
    assert_eq!(b.state(), State::Closed); // 1 / 4
    fail(&b).unwrap_err();
    assert_eq!(b.state(), State::Open); // 2 / 4
}

#[test]
fn time_window_rate_counts_only_recent_calls() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::new(
        "time-window",
        Config::builder()
            .clock(clock.clock())
            .failure_threshold(1000)
            .failure_rate_threshold(0.5)
            .sliding_window(Window::Time(secs(10)))
            .minimum_calls(4)
            .build()
            .unwrap(),
    );
    fail(&b).unwrap_err();
    fail(&b).unwrap_err();
    fail(&b).unwrap_err();
    clock.advance(secs(11)); // those failures leave the window
    succeed(&b).unwrap();
    succeed(&b).unwrap();
    succeed(&b).unwrap();
    fail(&b).unwrap_err();
    let s = b.stats();
    assert_eq!((s.calls_in_window, s.failures_in_window), (4, 1));
    assert_eq!(b.state(), State::Closed);
    fail(&b).unwrap_err(); // 2 / 5 < 0.5
    assert_eq!(b.state(), State::Closed);
    fail(&b).unwrap_err(); // 3 / 6 >= 0.5
    assert_eq!(b.state(), State::Open);
}

#[test]
fn slow_call_rate_opens_and_slow_results_still_return() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::new(
        "slow-rate",
        Config::builder()
            .clock(clock.clock())
            .slow_call_duration(Duration::from_millis(100))
            .slow_call_rate_threshold(0.5)
            .sliding_window(Window::Count(4))
            .minimum_calls(4)
            .build()
            .unwrap(),
    );
    let slow_call = |b: &CircuitBreaker| {
        let c = clock.clone();
        poll_once(b.call(async move {
            c.advance(Duration::from_millis(150));
            Ok::<_, ()>("slow but fine")
        }))
    };
    assert_eq!(slow_call(&b), Poll::Ready(Ok("slow but fine")));
    succeed(&b).unwrap();
    succeed(&b).unwrap();
    assert_eq!(b.state(), State::Closed);
    assert_eq!(slow_call(&b), Poll::Ready(Ok("slow but fine")));
    let s = b.stats();
    assert_eq!(s.slow_calls, 2);
    assert_eq!(s.successes, 4);
    assert_eq!(s.state, State::Open);
}

#[test]
fn an_open_breaker_rejects_without_polling_the_call() {
    let b = CircuitBreaker::new("no-poll", Config::builder().failure_threshold(1).build().unwrap());
    fail(&b).unwrap_err();
    let polled = AtomicBool::new(false);
    let r = poll_once(b.call(async {
        polled.store(true, Ordering::SeqCst);
        Ok::<(), ()>(())
    }));
    let Poll::Ready(Err(e)) = r else {
        panic!("expected a rejection")
    };
    assert!(e.is_rejected() && !e.is_timeout());
    let be = e.breaker_error().unwrap();
    assert_eq!(be.kind(), BreakerErrorKind::Open);
    assert_eq!(be.name(), "no-poll");
    assert!(be.retry_after().unwrap() <= secs(30));
    assert!(!polled.load(Ordering::SeqCst));
    assert_eq!(b.stats().rejected, 1);
}

#[test]
fn probes_after_the_open_duration_close_on_success_threshold() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::new(
        "recovery",
        manual(&clock)
            .failure_threshold(2)
            .half_open_max_calls(2)
            .success_threshold(3)
            .build()
            .unwrap(),
    );
    open_by_failures(&b);
    clock.advance(secs(9));
    assert!(fail(&b).unwrap_err().is_rejected());
    clock.advance(secs(1));
    assert_eq!(b.state(), State::HalfOpen);
    succeed(&b).unwrap();
    succeed(&b).unwrap();
    assert_eq!(b.state(), State::HalfOpen);
    succeed(&b).unwrap();
    assert_eq!(b.state(), State::Closed);
    // The window starts empty after closing.
    assert_eq!(b.stats().calls_in_window, 0);
}

#[test]
fn a_failed_probe_reopens_for_another_open_duration() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::new(
        "reopen",
        manual(&clock)
            .failure_threshold(1)
            .success_threshold(2)
            .build()
            .unwrap(),
    );
    open_by_failures(&b);
    clock.advance(secs(10));
    succeed(&b).unwrap();
    fail(&b).unwrap_err();
    assert_eq!(b.state(), State::Open);
    clock.advance(secs(9));
    assert_eq!(b.state(), State::Open);
    clock.advance(secs(1));
    assert_eq!(b.state(), State::HalfOpen);
}

#[test]
fn backoff_grows_the_open_duration_on_reopens_and_resets_on_close() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::new(
        "backoff",
        manual(&clock)
            .failure_threshold(1)
            .open_backoff(Backoff::exponential(2.0, secs(35)))
            .build()
            .unwrap(),
    );
    open_by_failures(&b);
    let mut expected = Vec::new();
    for _ in 0..4 {
        // Find how long this open period lasts, a second at a time.
        let mut waited = 0;
        while b.state() == State::Open {
            clock.advance(secs(1));
            waited += 1;
        }
        expected.push(waited);
        fail(&b).unwrap_err(); // the probe fails: reopen
    }
    assert_eq!(expected, [10, 20, 35, 35]);
    clock.advance(secs(35));
    succeed(&b).unwrap();
    assert_eq!(b.state(), State::Closed);
    fail(&b).unwrap_err();
    let mut waited = 0;
    while b.state() == State::Open {
        clock.advance(secs(1));
        waited += 1;
    }
    assert_eq!(waited, 10);
}

#[test]
fn reset_force_open_and_disable() {
    let b = CircuitBreaker::new(
        "manual-control",
        Config::builder().failure_threshold(2).build().unwrap(),
    );
    b.force_open();
    assert_eq!(b.state(), State::ForcedOpen);
    let e = succeed(&b).unwrap_err();
    assert_eq!(e.breaker_error().unwrap().kind(), BreakerErrorKind::ForcedOpen);
    b.reset();
    assert_eq!(b.state(), State::Closed);
    fail(&b).unwrap_err();
    b.reset();
    assert_eq!(b.stats().consecutive_failures, 0);
    assert_eq!(b.stats().calls_in_window, 0);
    assert_eq!(b.stats().failures, 1, "reset keeps the totals");

    b.disable();
    for _ in 0..10 {
        fail(&b).unwrap_err();
    }
    assert_eq!(b.state(), State::Disabled);
    assert_eq!(b.stats().failures, 11, "a disabled breaker still counts");
    b.reset();
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn open_for_opens_exactly_that_long() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::new("open-for", manual(&clock).build().unwrap());
    assert!(b.open_for(secs(7)));
    let e = succeed(&b).unwrap_err();
    assert_eq!(e.breaker_error().unwrap().retry_after(), Some(secs(7)));
    clock.advance(Duration::from_millis(6999));
    assert_eq!(b.state(), State::Open);
    clock.advance(Duration::from_millis(1));
    assert_eq!(b.state(), State::HalfOpen);
    b.force_open();
    assert!(!b.open_for(secs(1)), "forced open stays forced open");
    assert_eq!(b.state(), State::ForcedOpen);
}

#[test]
fn a_panic_counts_as_a_failure_and_propagates() {
    let b = CircuitBreaker::new("panics", Config::builder().failure_threshold(2).build().unwrap());
    for _ in 0..2 {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = poll_once(b.call(async {
                if true {
                    panic!("the body panicked");
                }
                Ok::<(), ()>(())
            }));
        }));
        assert!(r.is_err(), "the panic propagates");
    }
    let s = b.stats();
    assert_eq!(s.failures, 2);
    assert_eq!(s.state, State::Open);
}

#[test]
fn classification_decides_what_counts() {
    let b = CircuitBreaker::new(
        "classify",
        Config::builder().failure_threshold(2).build().unwrap(),
    );
    for _ in 0..5 {
        let r = poll_once(b.call_with(async { Err::<(), _>(400) }, |r| match r {
            Err(400) => Outcome::Ignored,
            _ => Outcome::Failure,
        }));
        assert_eq!(r, Poll::Ready(Err(CallError::Inner(400))));
    }
    let s = b.stats();
    assert_eq!((s.ignored, s.failures, s.state), (5, 0, State::Closed));
    for _ in 0..2 {
        let _ = poll_once(b.call_with(async { Ok::<u16, ()>(503) }, |r| match r {
            Ok(s) if *s >= 500 => Outcome::Failure,
            _ => Outcome::Success,
        }));
    }
    assert_eq!(b.state(), State::Open);
}

#[test]
fn a_permit_reports_a_blocking_call() {
    let b = CircuitBreaker::new("permit", Config::builder().failure_threshold(1).build().unwrap());
    b.try_acquire().unwrap().record(true);
    b.try_acquire().unwrap().record_outcome(Outcome::Ignored);
    b.try_acquire().unwrap().record(false);
    assert!(b.try_acquire().unwrap_err().is_rejected());
    let s = b.stats();
    assert_eq!((s.successes, s.ignored, s.failures, s.rejected), (1, 1, 1, 1));
}

/// The contract: `call` needs no runtime and finishes on its first poll when
/// its future does, even with a `call_timeout` configured.
#[test]
fn call_needs_no_runtime_and_finishes_on_the_first_poll() {
    let b = CircuitBreaker::new("no-runtime", Preset::Llm.config());
    assert_eq!(b.config().call_timeout(), Some(secs(60)));
    assert_eq!(poll_once(b.call(async { Ok::<_, ()>(5) })), Poll::Ready(Ok(5)));
    // Pending outside any runtime: no timer can be armed, and nothing panics.
    assert!(poll_once(b.call(std::future::pending::<Result<(), ()>>())).is_pending());
    assert_eq!(b.stats().cancelled, 1);
}

#[test]
fn call_futures_are_send_when_the_body_is() {
    fn assert_send<T: Send>(_: &T) {}
    fn assert_sync<T: Send + Sync>() {}
    assert_sync::<CircuitBreaker>();
    let b = CircuitBreaker::new("send", Config::default());
    let fut = b.call(async { Ok::<_, String>(String::new()) });
    assert_send(&fut);
}

#[tokio::test(start_paused = true)]
async fn call_timeout_abandons_the_call_and_counts_a_failure() {
    let b = CircuitBreaker::new(
        "timeout",
        Config::builder()
            .clock(Clock::tokio())
            .failure_threshold(2)
            .call_timeout(Duration::from_millis(200))
            .build()
            .unwrap(),
    );
    let dropped = Arc::new(AtomicBool::new(false));
    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let guard = SetOnDrop(Arc::clone(&dropped));
    let started = tokio::time::Instant::now();
    let r = b
        .call(async move {
            let _g = guard;
            tokio::time::sleep(secs(90)).await;
            Ok::<(), ()>(())
        })
        .await;
    let e = r.unwrap_err();
    assert!(e.is_timeout() && !e.is_rejected());
    assert_eq!(
        e.breaker_error().unwrap().timeout(),
        Some(Duration::from_millis(200))
    );
    assert_eq!(started.elapsed(), Duration::from_millis(200));
    assert!(dropped.load(Ordering::SeqCst), "the abandoned call is dropped");
    let s = b.stats();
    assert_eq!((s.timeouts, s.failures, s.consecutive_failures), (1, 0, 1));
    let _ = b.call(std::future::pending::<Result<(), ()>>()).await;
    assert_eq!(b.state(), State::Open, "timeouts count as failures");
}

#[tokio::test(start_paused = true)]
async fn a_fast_call_beats_its_timeout() {
    let b = CircuitBreaker::new(
        "timeout-race",
        Config::builder().call_timeout(secs(1)).build().unwrap(),
    );
    let r = b
        .call(async {
            tokio::time::sleep(Duration::from_millis(999)).await;
            Ok::<_, ()>(3)
        })
        .await;
    assert_eq!(r, Ok(3));
    assert_eq!(b.stats().timeouts, 0);
}

#[test]
fn transitions_are_observable() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::new("observed", manual(&clock).failure_threshold(1).build().unwrap());
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    b.on_transition(move |t| sink.lock().unwrap().push((t.from, t.to, t.reason)));
    fail(&b).unwrap_err();
    let _ = succeed(&b);
    clock.advance(secs(10));
    succeed(&b).unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            (State::Closed, State::Open, Reason::ConsecutiveFailures),
            (State::Open, State::HalfOpen, Reason::OpenDurationElapsed),
            (State::HalfOpen, State::Closed, Reason::ProbesSucceeded),
        ]
    );
}

#[test]
fn reconfigure_keeps_state_and_counts() {
    let b = CircuitBreaker::new(
        "reconfigure",
        Config::builder().failure_threshold(5).build().unwrap(),
    );
    for _ in 0..3 {
        fail(&b).unwrap_err();
    }
    succeed(&b).unwrap();
    fail(&b).unwrap_err();
    fail(&b).unwrap_err();
    b.reconfigure(Config::builder().failure_threshold(2).build().unwrap())
        .unwrap();
    assert_eq!(b.state(), State::Open, "the lower threshold is already met");
    let s = b.stats();
    assert_eq!((s.failures, s.successes), (5, 1));
    assert_eq!(b.config().failure_threshold(), 2);
}

#[test]
fn probes_in_flight_are_capped_and_counted() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::new(
        "in-flight",
        manual(&clock)
            .failure_threshold(1)
            .half_open_max_calls(3)
            .build()
            .unwrap(),
    );
    open_by_failures(&b);
    clock.advance(secs(10));
    let permits: Vec<_> = (0..3).map(|_| b.try_acquire().unwrap()).collect();
    assert_eq!(b.stats().half_open_in_flight, 3);
    let e = b.try_acquire().unwrap_err();
    assert_eq!(e.kind(), BreakerErrorKind::HalfOpenFull);
    drop(permits);
    assert_eq!(b.stats().half_open_in_flight, 0);
    let counter = AtomicUsize::new(0);
    for _ in 0..3 {
        if b.try_acquire().is_ok() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    }
    assert_eq!(
        counter.load(Ordering::SeqCst),
        3,
        "given-back slots are usable again"
    );
}
