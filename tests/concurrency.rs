//! Counts reconcile exactly under concurrency: every call that was made
//! lands in exactly one total, and the totals match what callers saw.

mod support;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use cb_runtime::clock::ManualClock;
use cb_runtime::{CallError, CircuitBreaker, Clock, Config, Outcome, State, Window};
use support::poll_once;

#[derive(Default)]
struct Seen {
    ok: AtomicU64,
    failed: AtomicU64,
    ignored: AtomicU64,
    rejected: AtomicU64,
    cancelled: AtomicU64,
}

/// Threads hammer one breaker with random outcomes while another moves the
/// clock, so the breaker cycles through every state; afterwards the stats
/// equal what the callers saw, one for one.
#[test]
fn threads_counts_reconcile_exactly_while_the_breaker_cycles() {
    const THREADS: u64 = 4;
    const CALLS: u64 = 50_000;
    let clock = ManualClock::new();
    let b = CircuitBreaker::new(
        "reconcile-threads",
        Config::builder()
            .clock(clock.clock())
            .failure_threshold(5)
            .failure_rate_threshold(0.3)
            .sliding_window(Window::Count(20))
            .minimum_calls(10)
            .open_duration(Duration::from_millis(5))
            .half_open_max_calls(2)
            .success_threshold(2)
            .build()
            .unwrap(),
    );
    let transitions = Arc::new(AtomicU64::new(0));
    let t = Arc::clone(&transitions);
    b.on_transition(move |_| {
        t.fetch_add(1, Ordering::Relaxed);
    });
    let seen = Seen::default();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|seed| {
                let (b, seen, clock) = (&b, &seen, &clock);
                s.spawn(move || {
                    let mut rng = fastrand::Rng::with_seed(seed);
                    for i in 0..CALLS {
                        if i % 64 == 0 {
                            clock.advance(Duration::from_millis(1));
                        }
                        let roll = rng.u8(0..100);
                        if roll < 3 {
                            // Dropped before it finishes.
                            match poll_once(b.call(std::future::pending::<Result<(), u8>>())) {
                                Poll::Pending => seen.cancelled.fetch_add(1, Ordering::Relaxed),
                                Poll::Ready(Err(e)) if e.is_rejected() => {
                                    seen.rejected.fetch_add(1, Ordering::Relaxed)
                                }
                                Poll::Ready(r) => panic!("unexpected {r:?}"),
                            };
                            continue;
                        }
                        let result = if roll < 25 { Err(roll) } else { Ok(()) };
                        let r = poll_once(b.call_with(async move { result }, |r| match r {
                            Err(n) if *n < 6 => Outcome::Ignored,
                            Err(_) => Outcome::Failure,
                            Ok(()) => Outcome::Success,
                        }));
                        let counter = match r {
                            Poll::Ready(Ok(())) => &seen.ok,
                            Poll::Ready(Err(CallError::Inner(n))) if n < 6 => &seen.ignored,
                            Poll::Ready(Err(CallError::Inner(_))) => &seen.failed,
                            Poll::Ready(Err(e)) if e.is_rejected() => &seen.rejected,
                            other => panic!("unexpected {other:?}"),
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
    });
    let s = b.stats();
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    assert_eq!(s.calls(), THREADS * CALLS);
    assert_eq!(s.successes, get(&seen.ok));
    assert_eq!(s.failures, get(&seen.failed));
    assert_eq!(s.ignored, get(&seen.ignored));
    assert_eq!(s.rejected, get(&seen.rejected));
    assert_eq!(s.cancelled, get(&seen.cancelled));
    assert_eq!(s.timeouts, 0);
    assert_eq!(s.half_open_in_flight, 0, "no permit leaked");
    assert!(
        get(&transitions) > 10,
        "the breaker cycled ({} transitions)",
        get(&transitions)
    );
    assert!(State::ALL.contains(&s.state));
}

/// The same on a multi-threaded tokio runtime with real tasks, timeouts and
/// cancellations: successes + failures + timeouts + cancelled + rejected =
/// calls, exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_counts_reconcile_exactly_with_timeouts() {
    const TASKS: u64 = 8;
    const CALLS: u64 = 300;
    let b = Arc::new(CircuitBreaker::new(
        "reconcile-tasks",
        Config::builder()
            .clock(Clock::system())
            .failure_threshold(4)
            .open_duration(Duration::from_millis(2))
            .half_open_max_calls(2)
            .call_timeout(Duration::from_millis(3))
            .build()
            .unwrap(),
    ));
    let seen = Arc::new(Seen::default());
    let timeouts = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for seed in 0..TASKS {
        let (b, seen, timeouts) = (Arc::clone(&b), Arc::clone(&seen), Arc::clone(&timeouts));
        tasks.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(seed);
            for _ in 0..CALLS {
                let roll = rng.u8(0..100);
                let hang = roll < 10;
                let fut = b.call(async move {
                    if hang {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    } else {
                        tokio::task::yield_now().await;
                    }
                    if roll < 30 {
                        Err(roll)
                    } else {
                        Ok(())
                    }
                });
                let result = if roll >= 95 {
                    // Cancelled: give it one poll, then drop it.
                    let mut fut = Box::pin(fut);
                    let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
                    match first {
                        Poll::Pending => {
                            seen.cancelled.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        Poll::Ready(r) => r,
                    }
                } else {
                    fut.await
                };
                let counter = match result {
                    Ok(()) => &seen.ok,
                    Err(CallError::Inner(_)) => &seen.failed,
                    Err(e) if e.is_timeout() => &*timeouts,
                    Err(_) => &seen.rejected,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let s = b.stats();
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    assert_eq!(
        s.successes + s.failures + s.timeouts + s.cancelled + s.rejected,
        TASKS * CALLS
    );
    assert_eq!(s.successes, get(&seen.ok));
    assert_eq!(s.failures, get(&seen.failed));
    assert_eq!(s.timeouts, get(&timeouts));
    assert_eq!(s.rejected, get(&seen.rejected));
    assert_eq!(s.cancelled, get(&seen.cancelled));
    assert_eq!(s.half_open_in_flight, 0, "no permit leaked");
}
