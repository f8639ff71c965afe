//! Model checks of the state machine's concurrency with loom: every
//! interleaving of 2–3 threads over admission, success and failure records,
//! drops without a record, the open → half-open transition, `reset`,
//! `force_open`, the bulkhead and the ramp after a close.
//!
//! Run with:
//!
//! ```sh
//! RUSTFLAGS="--cfg loom" cargo test -p cb-runtime --release --test loom
//! ```
//!
//! Under `cfg(loom)` the breaker's atomics and mutex come from loom (see
//! `cb-runtime/src/sync.rs`), so loom explores every interleaving of them.
//! The invariants checked: probes in flight never exceed
//! `half_open_max_calls` (pitfall 1); each transition happens once (pitfall
//! 2); no permit is leaked (pitfall 3); counts add up exactly.
#![cfg(loom)]

use std::sync::Mutex;
use std::time::Duration;

use cb_runtime::clock::ManualClock;
use cb_runtime::{CircuitBreaker, Config, State};
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

/// Checks `f` under every interleaving with at most `preemptions` forced
/// thread switches (loom's bound; 2–3 finds the bugs of this size and keeps
/// the run short).
fn model_bounded(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(preemptions);
    builder.check(f);
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    model_bounded(3, f);
}

/// A breaker on a manual clock that opens on the first failure and stays open 10 s.
fn breaker(clock: &ManualClock, max_probes: u32, success_threshold: u32) -> CircuitBreaker {
    CircuitBreaker::new(
        "loom",
        Config::builder()
            .clock(clock.clock())
            .failure_threshold(1)
            .failure_rate_threshold(1.0)
            .open_duration(Duration::from_secs(10))
            .half_open_max_calls(max_probes)
            .success_threshold(success_threshold)
            .build()
            .unwrap(),
    )
}

/// Counts transitions by (from, to).
fn record_transitions(b: &CircuitBreaker) -> std::sync::Arc<Mutex<Vec<(State, State)>>> {
    let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&seen);
    b.on_transition(move |t| sink.lock().unwrap().push((t.from, t.to)));
    seen
}

/// Opens the breaker and lets its open duration elapse.
fn open_and_elapse(b: &CircuitBreaker, clock: &ManualClock) {
    b.try_acquire().unwrap().record(false);
    clock.advance(Duration::from_secs(10));
}

/// Pitfalls 1 and 2: callers racing at the end of the open duration. The
/// transition to half-open happens once and probes in flight never exceed
/// the cap; every slot comes back.
#[test]
fn loom_open_to_half_open_race_admits_at_most_the_cap() {
    model(|| {
        let clock = ManualClock::new();
        let b = Arc::new(breaker(&clock, 1, 2));
        open_and_elapse(&b, &clock);
        let seen = record_transitions(&b);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|i| {
                let (b, in_flight) = (Arc::clone(&b), Arc::clone(&in_flight));
                thread::spawn(move || {
                    if let Ok(permit) = b.try_acquire() {
                        // Hold the probe while the others run.
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        assert!(now <= 1, "{now} probes in flight with a cap of 1");
                        thread::yield_now();
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        // One thread finishes its probe, the other drops it.
                        if i == 0 {
                            permit.record(true);
                        } else {
                            drop(permit);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = b.stats();
        assert_eq!(s.half_open_in_flight, 0, "a permit leaked");
        assert_eq!(s.state, State::HalfOpen);
        let transitions = seen.lock().unwrap().clone();
        assert_eq!(transitions, [(State::Open, State::HalfOpen)]);
        // Every attempt landed in exactly one total.
        assert_eq!(s.successes + s.cancelled + s.rejected, 2);
    });
}

/// Three callers, two probe slots: never more than two in flight, and
/// closing happens once, whatever the order.
#[test]
fn loom_probe_cap_holds_with_three_callers() {
    model_bounded(2, || {
        let clock = ManualClock::new();
        let b = Arc::new(breaker(&clock, 2, 1));
        open_and_elapse(&b, &clock);
        let seen = record_transitions(&b);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let (b, in_flight) = (Arc::clone(&b), Arc::clone(&in_flight));
                thread::spawn(move || {
                    if let Ok(permit) = b.try_acquire() {
                        // Hold the probe while the others run.
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        assert!(now <= 2, "{now} probes in flight with a cap of 2");
                        thread::yield_now();
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        permit.record(true);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = b.stats();
        assert_eq!(s.half_open_in_flight, 0);
        assert_eq!(s.state, State::Closed);
        let closes = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|t| t.1 == State::Closed)
            .count();
        assert_eq!(closes, 1, "closed more than once");
        assert_eq!(s.successes + s.rejected, 3);
    });
}

/// Two failures racing to trip a threshold of two: the circuit opens once.
#[test]
fn loom_trip_happens_once() {
    model(|| {
        let clock = ManualClock::new();
        let b = Arc::new(CircuitBreaker::new(
            "loom-trip",
            Config::builder()
                .clock(clock.clock())
                .failure_threshold(2)
                .build()
                .unwrap(),
        ));
        let seen = record_transitions(&b);
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let b = Arc::clone(&b);
                thread::spawn(move || {
                    if let Ok(p) = b.try_acquire() {
                        p.record(false);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = b.stats();
        assert_eq!(*seen.lock().unwrap(), [(State::Closed, State::Open)]);
        assert_eq!(s.failures + s.rejected, 2);
        assert_eq!(
            s.failures, 2,
            "both calls are admitted: the circuit opens only at the second failure"
        );
    });
}

/// Successes and failures racing with `reset` and `force_open`: the counts
/// add up, no permit leaks, and the breaker ends in a legal state.
#[test]
fn loom_calls_racing_manual_control_add_up() {
    model(|| {
        let clock = ManualClock::new();
        let b = Arc::new(breaker(&clock, 1, 1));
        let caller = {
            let b = Arc::clone(&b);
            thread::spawn(move || {
                let mut made = 0;
                for ok in [false, true] {
                    made += 1;
                    if let Ok(p) = b.try_acquire() {
                        p.record(ok);
                    }
                }
                made
            })
        };
        let operator = {
            let b = Arc::clone(&b);
            thread::spawn(move || {
                b.force_open();
                b.reset();
            })
        };
        let made = caller.join().unwrap();
        operator.join().unwrap();
        let s = b.stats();
        assert_eq!(s.successes + s.failures + s.rejected, made);
        assert_eq!(s.half_open_in_flight, 0);
        assert!(matches!(s.state, State::Closed | State::Open), "{:?}", s.state);
    });
}

/// Pitfall 5 under every interleaving: a permit admitted while closed that
/// finishes while another thread trips the breaker and half-opens it never
/// counts as a probe.
#[test]
fn loom_late_closed_result_is_not_a_probe() {
    model(|| {
        let clock = ManualClock::new();
        let b = Arc::new(breaker(&clock, 1, 1));
        let late = b.try_acquire().unwrap();
        let tripper = {
            let (b, clock) = (Arc::clone(&b), clock.clone());
            thread::spawn(move || {
                if let Ok(p) = b.try_acquire() {
                    p.record(false);
                }
                clock.advance(Duration::from_secs(10));
                b.state()
            })
        };
        late.record(true);
        let seen_by_tripper = tripper.join().unwrap();
        let s = b.stats();
        // Had the late success counted as a probe, the circuit would be closed.
        if seen_by_tripper == State::HalfOpen {
            assert_eq!(s.state, State::HalfOpen);
        }
        assert_eq!(s.successes + s.failures, 2);
        assert_eq!(s.half_open_in_flight, 0);
    });
}

/// The bulkhead under every interleaving: with `max_concurrent_calls = 1`,
/// two callers never hold a slot at once; a call that ends, is dropped, or
/// unwinds gives its slot back; each caller is either admitted or refused as
/// saturated, and the counts add up.
#[test]
fn loom_bulkhead_never_admits_more_than_its_cap_and_frees_every_slot() {
    model(|| {
        let b = Arc::new(CircuitBreaker::new(
            "loom-bulkhead",
            Config::builder().max_concurrent_calls(1).build().unwrap(),
        ));
        let inside = Arc::new(AtomicUsize::new(0));
        let caller = |drop_it: bool| {
            let (b, inside) = (Arc::clone(&b), Arc::clone(&inside));
            thread::spawn(move || match b.try_acquire() {
                Ok(permit) => {
                    assert_eq!(
                        inside.fetch_add(1, Ordering::SeqCst),
                        0,
                        "two calls in a bulkhead of one"
                    );
                    inside.fetch_sub(1, Ordering::SeqCst);
                    if drop_it {
                        drop(permit);
                    } else {
                        permit.record(true);
                    }
                    true
                }
                Err(e) => {
                    assert!(e.is_saturated(), "{e}");
                    false
                }
            })
        };
        let (one, two) = (caller(false), caller(true));
        let admitted = u64::from(one.join().unwrap()) + u64::from(two.join().unwrap());
        let s = b.stats();
        assert!(admitted >= 1);
        assert_eq!(s.concurrent_calls, 0, "every slot given back");
        assert_eq!(s.successes + s.cancelled, admitted);
        assert_eq!(s.saturated, 2 - admitted);
        assert!(b.try_acquire().is_ok());
    });
}

/// The ramp after a close admits exactly its share, in every interleaving:
/// at 10 % the first call of the ramp goes through and the next ones are
/// refused as ramping (the `n`-th call is admitted when fewer than
/// `n × share` were), whichever thread comes first; the counts add up.
#[test]
fn loom_ramp_admits_exactly_its_share_across_threads() {
    model(|| {
        let clock = ManualClock::new();
        let b = Arc::new(CircuitBreaker::new(
            "loom-ramp",
            Config::builder()
                .clock(clock.clock())
                .failure_threshold(1)
                .failure_rate_threshold(1.0)
                .open_duration(Duration::from_secs(10))
                .ramp_up(Duration::from_secs(100))
                .build()
                .unwrap(),
        ));
        open_and_elapse(&b, &clock);
        b.try_acquire().unwrap().record(true); // the probe closes it: the ramp starts
        assert_eq!(b.state(), State::Closed);
        let caller = || {
            let b = Arc::clone(&b);
            thread::spawn(move || match b.try_acquire() {
                Ok(permit) => {
                    permit.record(true);
                    true
                }
                Err(e) => {
                    assert!(e.is_ramping(), "{e}");
                    false
                }
            })
        };
        let (one, two) = (caller(), caller());
        let admitted = u64::from(one.join().unwrap()) + u64::from(two.join().unwrap());
        assert_eq!(admitted, 1, "10 % of the ramp's first two calls is its first");
        let s = b.stats();
        assert_eq!((s.successes, s.rejected), (2, 1));
        assert_eq!(b.state(), State::Closed);
    });
}
