//! One test per bug class that peers shipped (`docs/pitfalls.md`).
//! Each test's name starts with the pitfall's number.
//!
//! Pitfalls 7 and 8 (window boundaries, bucket reuse) are also tested at the
//! window's level in `cb-runtime/src/window.rs`; pitfall 16 also in
//! `cb-runtime/src/config.rs`.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

// The entry point of the attribute and the tower layer, which name their call site.
use cb_runtime::__private::get_or_insert_at;
use cb_runtime::clock::ManualClock;
use cb_runtime::{BreakerErrorKind, CircuitBreaker, Clock, Config, Preset, Registry, State, Window};
use support::{fail, manual, poll_once, secs, succeed};

/// Opens `b` and lets its open duration elapse, without any call.
fn open_and_elapse(b: &CircuitBreaker, clock: &ManualClock) {
    let _ = fail(b);
    assert_eq!(b.state(), State::Open);
    clock.advance(secs(10));
}

fn count_transitions(b: &CircuitBreaker) -> Arc<Mutex<Vec<(State, State)>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    b.on_transition(move |t| sink.lock().unwrap().push((t.from, t.to)));
    seen
}

/// Pitfall 1: while the probe is in flight, every other caller must be
/// rejected; probes are capped counting in-flight calls, not finished ones.
#[test]
fn pitfall_01_half_open_stampede_is_capped_by_in_flight_probes() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::new(
        "p01",
        manual(&clock)
            .failure_threshold(1)
            .half_open_max_calls(2)
            .build()
            .unwrap(),
    );
    open_and_elapse(&b, &clock);
    let admitted = AtomicUsize::new(0);
    let barrier = Barrier::new(8);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                barrier.wait();
                // A probe that has not finished yet.
                let permit = b.try_acquire();
                if permit.is_ok() {
                    admitted.fetch_add(1, Ordering::SeqCst);
                }
                barrier.wait();
                drop(permit);
            });
        }
    });
    assert_eq!(admitted.load(Ordering::SeqCst), 2);
    assert_eq!(b.stats().rejected, 6);
}

/// Pitfall 2: two callers both see the open duration elapse; the transition
/// to half-open must happen once, and the probe count must not be reset twice.
#[test]
fn pitfall_02_open_to_half_open_happens_once_under_a_race() {
    for round in 0..200 {
        let clock = ManualClock::new();
        let b = CircuitBreaker::new(
            format!("p02-{round}"),
            manual(&clock)
                .failure_threshold(1)
                .half_open_max_calls(1)
                .build()
                .unwrap(),
        );
        open_and_elapse(&b, &clock);
        let seen = count_transitions(&b);
        let admitted = AtomicUsize::new(0);
        let barrier = Barrier::new(4);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    barrier.wait();
                    let permit = b.try_acquire();
                    if permit.is_ok() {
                        admitted.fetch_add(1, Ordering::SeqCst);
                    }
                    barrier.wait();
                    drop(permit);
                });
            }
        });
        assert_eq!(admitted.load(Ordering::SeqCst), 1, "round {round}");
        assert_eq!(
            *seen.lock().unwrap(),
            [(State::Open, State::HalfOpen)],
            "round {round}"
        );
    }
}

/// Pitfall 3: a probe that never reports (future dropped, panic, early
/// return) must give its permit back, or half-open wedges forever.
#[test]
fn pitfall_03_leaked_probes_give_their_permit_back() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::new(
        "p03",
        manual(&clock)
            .failure_threshold(1)
            .half_open_max_calls(1)
            .success_threshold(1)
            .build()
            .unwrap(),
    );
    open_and_elapse(&b, &clock);

    // The future is dropped while pending.
    let pending = b.call(std::future::pending::<Result<(), ()>>());
    assert!(poll_once(pending).is_pending());
    assert_eq!(b.stats().half_open_in_flight, 0);

    // The body panics.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = poll_once(b.call(async {
            if true {
                panic!("probe panicked");
            }
            Ok::<(), ()>(())
        }));
    }));
    assert!(r.is_err());
    // A panic is a failed probe: reopened, nothing leaked.
    assert_eq!(b.state(), State::Open);
    clock.advance(secs(10));

    // An early return with an unused permit.
    fn early_return(b: &CircuitBreaker) -> Option<()> {
        let _permit = b.try_acquire().ok()?;
        None?;
        Some(())
    }
    assert_eq!(early_return(&b), None);
    assert_eq!(b.stats().half_open_in_flight, 0);
    assert_eq!(succeed(&b), Ok(1));
    assert_eq!(b.state(), State::Closed);
}

/// Pitfall 4: a dropped call is neither a success nor a failure of the
/// dependency; it records no outcome.
#[test]
fn pitfall_04_cancellation_records_no_outcome() {
    let b = CircuitBreaker::new("p04", Config::builder().failure_threshold(2).build().unwrap());
    let _ = fail(&b);
    for _ in 0..10 {
        assert!(poll_once(b.call(std::future::pending::<Result<(), ()>>())).is_pending());
    }
    let s = b.stats();
    assert_eq!((s.successes, s.failures, s.cancelled), (0, 1, 10));
    assert_eq!(
        s.consecutive_failures, 1,
        "cancellations neither reset nor add to the streak"
    );
    assert_eq!(s.calls_in_window, 1);
    assert_eq!(s.state, State::Closed);
}

/// Pitfall 5: a call admitted while closed that finishes after the circuit
/// opened and half-opened must not count as a probe result.
#[test]
fn pitfall_05_late_results_from_an_earlier_state_are_not_probe_results() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::new(
        "p05",
        manual(&clock)
            .failure_threshold(1)
            .success_threshold(1)
            .build()
            .unwrap(),
    );
    let late_success = b.try_acquire().unwrap();
    let late_failure = b.try_acquire().unwrap();
    open_and_elapse(&b, &clock);
    assert_eq!(b.state(), State::HalfOpen);
    late_success.record(true);
    assert_eq!(
        b.state(),
        State::HalfOpen,
        "a closed-era success must not close the circuit"
    );
    late_failure.record(false);
    assert_eq!(
        b.state(),
        State::HalfOpen,
        "a closed-era failure must not reopen it"
    );
    let s = b.stats();
    assert_eq!(
        (s.successes, s.failures),
        (1, 2),
        "late results still count in the totals"
    );
    // A real probe decides.
    assert_eq!(succeed(&b), Ok(1));
    assert_eq!(b.state(), State::Closed);
}

/// Pitfall 6: a slow dependency piles up calls before anything finishes;
/// `call_timeout` bounds them and the timeouts open the circuit.
#[tokio::test(start_paused = true)]
async fn pitfall_06_in_flight_pile_up_is_bounded_by_call_timeout() {
    let b = Arc::new(CircuitBreaker::new(
        "p06",
        Config::builder()
            .clock(Clock::tokio())
            .failure_threshold(3)
            .call_timeout(secs(2))
            .build()
            .unwrap(),
    ));
    let mut calls = Vec::new();
    for _ in 0..5 {
        let b = Arc::clone(&b);
        calls.push(tokio::spawn(async move {
            b.call(async {
                tokio::time::sleep(secs(90)).await;
                Ok::<(), ()>(())
            })
            .await
        }));
    }
    let started = tokio::time::Instant::now();
    for c in calls {
        assert!(c.await.unwrap().unwrap_err().is_timeout());
    }
    assert_eq!(
        started.elapsed(),
        secs(2),
        "nobody waited for the 90 s dependency"
    );
    assert_eq!(b.state(), State::Open);
    assert_eq!(b.stats().timeouts, 5);
}

/// Pitfall 7: a window that resets at fixed instants hides failures
/// straddling the boundary. Ours slides: failures on both sides of a
/// 10 s boundary are judged together.
#[test]
fn pitfall_07_failures_straddling_a_window_boundary_are_seen_together() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::new(
        "p07",
        Config::builder()
            .clock(clock.clock())
            .failure_threshold(1000)
            .failure_rate_threshold(0.5)
            .sliding_window(Window::Time(secs(10)))
            .minimum_calls(4)
            .build()
            .unwrap(),
    );
    clock.advance(Duration::from_millis(9_000));
    let _ = fail(&b);
    let _ = fail(&b);
    clock.advance(Duration::from_millis(1_500)); // past the 10 s mark
    assert_eq!(succeed(&b), Ok(1));
    let _ = fail(&b); // 3 failures / 4 calls within 10 s of each other
    assert_eq!(b.state(), State::Open);
}

/// Pitfall 8: a time bucket reused for a new period must have every field
/// reset, or old failures come back.
#[test]
fn pitfall_08_reused_time_buckets_start_empty() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::new(
        "p08",
        Config::builder()
            .clock(clock.clock())
            .failure_threshold(1000)
            .sliding_window(Window::Time(secs(1)))
            .minimum_calls(3)
            .failure_rate_threshold(1.0)
            .build()
            .unwrap(),
    );
    let _ = fail(&b);
    let _ = fail(&b);
    assert_eq!(succeed(&b), Ok(1));
    assert_eq!(b.stats().calls_in_window, 3);
    // Exactly one window later the same bucket serves a new period.
    clock.advance(secs(1));
    assert_eq!(succeed(&b), Ok(1));
    let s = b.stats();
    assert_eq!(
        (s.calls_in_window, s.failures_in_window, s.slow_calls_in_window),
        (1, 0, 0)
    );
}

/// Pitfall 9 (memory over 10^6 transitions) is `tests/memory.rs`, which
/// needs a counting global allocator of its own.
///
/// Pitfall 10: durations come from a monotonic clock, never the wall clock.
/// A breaker on a frozen injected monotonic clock stays open however much
/// real time passes.
#[test]
fn pitfall_10_open_duration_reads_only_the_monotonic_clock() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::new(
        "p10",
        manual(&clock)
            .failure_threshold(1)
            .open_duration(Duration::from_millis(1))
            .build()
            .unwrap(),
    );
    let _ = fail(&b);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(b.state(), State::Open);
    clock.advance(Duration::from_millis(1));
    assert_eq!(b.state(), State::HalfOpen);
    // And the system clock is monotonic: consecutive readings never go back.
    let sys = Clock::system();
    let mut last = sys.now();
    for _ in 0..1000 {
        let now = sys.now();
        assert!(now >= last);
        last = now;
    }
}

/// Pitfall 11: `state()` and stats report a breaker whose open duration has
/// elapsed as half-open even though no call arrived since.
#[test]
fn pitfall_11_state_is_truthful_at_low_traffic() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::new("p11", manual(&clock).failure_threshold(1).build().unwrap());
    let registry = Registry::new();
    let b = {
        let b = Arc::new(b);
        registry.register(Arc::clone(&b)).unwrap();
        b
    };
    open_and_elapse(&b, &clock);
    assert_eq!(registry.health().half_open, 1);
    assert_eq!(b.stats().state, State::HalfOpen);
    assert_eq!(b.state(), State::HalfOpen);
}

/// Pitfall 12: a rate trigger alone never fires on a dependency called a
/// few times a minute; the presets' consecutive trigger catches it. Since
/// issue 39 (pitfall 17, chance runs) a run of errors opens a preset once
/// half its window failed, or once the run is too long for chance: 20 errors
/// in a row, here while the window still holds 150 successes. A run of
/// `failure_threshold` timeouts, a hang, still opens it on its own
/// (tests/hang_detection.rs: `llm` after 3 timeouts).
#[test]
fn pitfall_12_low_traffic_still_opens_on_consecutive_failures() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::new("p12", Preset::Llm.builder().clock(clock.clock()).build().unwrap());
    // One call a minute.
    for _ in 0..150 {
        let _ = succeed(&b);
        clock.advance(secs(60));
    }
    for errors in 0..20 {
        assert_eq!(b.state(), State::Closed, "after {errors} errors in a row");
        let _ = fail(&b);
        clock.advance(secs(60));
    }
    let s = b.stats();
    assert_eq!(s.state, State::Open);
    assert_eq!(
        (s.calls_in_window, s.failures_in_window),
        (170, 20),
        "far under the 50 % rate"
    );
}

/// Pitfall 13: no lock is held across the protected call: two calls through
/// one breaker are in flight at the same time, each waiting for the other.
#[tokio::test]
async fn pitfall_13_calls_are_not_serialised() {
    let b = CircuitBreaker::new("p13", Config::default());
    let (tx_a, rx_a) = tokio::sync::oneshot::channel::<()>();
    let (tx_b, rx_b) = tokio::sync::oneshot::channel::<()>();
    let a = b.call(async move {
        tx_a.send(()).unwrap();
        rx_b.await.map_err(|_| "b never ran")
    });
    let c = b.call(async move {
        tx_b.send(()).unwrap();
        rx_a.await.map_err(|_| "a never ran")
    });
    let (ra, rc) = tokio::time::timeout(secs(5), async { tokio::join!(a, c) })
        .await
        .expect("deadlock");
    assert_eq!((ra, rc), (Ok(()), Ok(())));
    assert_eq!(b.stats().successes, 2);
}

/// Pitfall 14: two breakers with one name share state by design; the first
/// configuration wins and the sharing is visible in the registry.
#[test]
fn pitfall_14_one_name_one_breaker_first_config_wins() {
    let registry = Registry::new();
    let first = get_or_insert_at(&registry, "p14", "first::site", None, || {
        Preset::Database.config()
    });
    let second = get_or_insert_at(&registry, "p14", "second::site", None, || Preset::Cache.config());
    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!(
        second.config().failure_threshold(),
        10,
        "the database preset, first, wins"
    );
    assert_eq!(registry.names(), ["p14"]);
}

/// Pitfall 15: the open-circuit error must say it is a refusal, so a retry
/// layer can stop instead of hammering, and say when to come back.
#[test]
fn pitfall_15_refusals_say_they_are_refusals() {
    let b = CircuitBreaker::new("p15", Config::builder().failure_threshold(1).build().unwrap());
    let _ = fail(&b);
    let Err(e) = succeed(&b) else {
        panic!("expected a refusal")
    };
    let be = e.breaker_error().unwrap().clone();
    assert!(be.is_rejected() && !be.is_timeout());
    assert_eq!(be.kind(), BreakerErrorKind::Open);
    assert!(be.retry_after().is_some_and(|d| d <= secs(30)));
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(be);
    assert!(boxed.to_string().contains("rejected without being attempted"));
}

/// Pitfall 16: `half_open_max_calls = 0` would never close; refused at build.
#[test]
fn pitfall_16_zero_probes_are_refused() {
    let err = Config::builder().half_open_max_calls(0).build().unwrap_err();
    assert_eq!(err.field(), "half_open_max_calls");
    assert!(err.to_string().contains("1..=10000"));
}
