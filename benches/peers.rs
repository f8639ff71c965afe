//! The breakers `overhead` and `side_by_side` compare, built and driven the
//! same way in both: cb with the builder defaults and with `Preset::Llm`,
//! failsafe (consecutive failures) and recloser (`AsyncRecloser`).
//!
//! Every call is a ready `Result` future wrapped by the library's own async
//! call API and polled exactly once with a no-op waker (`common::poll_once`).

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::{Arc, Barrier};
use std::task::{Context, Waker};
use std::thread;
use std::time::Duration;

use cb_runtime::{CallError, CircuitBreaker, Config, Preset, State};
use criterion::Bencher;
use failsafe::futures::CircuitBreaker as _;

use crate::common::poll_once;

/// Long enough that no breaker with the builder defaults, failsafe's or
/// recloser's leaves the open state during a run.
pub const OPEN_FOR: Duration = Duration::from_secs(3600);
/// Consecutive failures that trip cb with the builder defaults, and failsafe.
pub const TRIP_AFTER: u32 = 5;

/// failsafe's breaker as the benches build it.
pub type Failsafe =
    failsafe::StateMachine<failsafe::failure_policy::ConsecutiveFailures<failsafe::backoff::Constant>, ()>;

/// The wrapped body: a ready success. `black_box` keeps the value opaque so the
/// compiler cannot fold the body's result into the breaker's code.
#[inline(always)]
pub fn ok_body() -> std::future::Ready<Result<u64, ()>> {
    std::future::ready(Ok(black_box(1)))
}

/// A ready failure, used only to trip breakers before measuring.
fn err_body() -> std::future::Ready<Result<u64, ()>> {
    std::future::ready(Err(()))
}

// ---------------------------------------------------------------- builders

/// cb with the builder defaults (no slow-call timing: no clock read while
/// closed), tripped by [`TRIP_AFTER`] failures, open for [`OPEN_FOR`].
pub fn cb_default() -> CircuitBreaker {
    let config = Config::builder()
        .failure_threshold(TRIP_AFTER)
        .open_duration(OPEN_FOR)
        .build()
        .expect("bench config is valid");
    CircuitBreaker::new("bench", config)
}

/// cb with `Preset::Llm.config()` unchanged: slow-call timing on (30 s), a
/// 60 s call timeout, 3 consecutive failures trip it for 120 s.
pub fn cb_llm() -> CircuitBreaker {
    CircuitBreaker::new("bench-llm", Preset::Llm.config())
}

/// [`cb_default`] with a bulkhead (`max_concurrent_calls`, never full
/// here): beside `cb`, what a protection mode costs, and that `cb`, with
/// none set, pays nothing for the modes.
#[allow(dead_code)] // side_by_side compares the libraries, not cb's modes
pub fn cb_bulkhead() -> CircuitBreaker {
    let config = Config::builder()
        .failure_threshold(TRIP_AFTER)
        .open_duration(OPEN_FOR)
        .max_concurrent_calls(1024)
        .build()
        .expect("bench config is valid");
    CircuitBreaker::new("bench-bulkhead", config)
}

/// failsafe with a consecutive-failures policy and a constant backoff.
pub fn failsafe_breaker() -> Failsafe {
    let backoff = failsafe::backoff::constant(OPEN_FOR);
    let policy = failsafe::failure_policy::consecutive_failures(TRIP_AFTER, backoff);
    failsafe::Config::new().failure_policy(policy).build()
}

/// recloser's `AsyncRecloser`.
pub fn recloser_breaker() -> recloser::AsyncRecloser {
    // recloser trips on a failure rate over a ring of `closed_len` calls, judged
    // once the ring is full; with all failures it opens after `closed_len + 1`.
    recloser::Recloser::custom()
        .error_rate(0.5)
        .closed_len(TRIP_AFTER as usize)
        .open_wait(OPEN_FOR)
        .build()
        .into()
}

// ------------------------------------------------------- one call per library

/// Polls `fut` once, like `common::poll_once`, and makes the compiler treat
/// every byte of the result as read, in place. What the benches time.
///
/// Returning the result to criterion (or `black_box`ing it by value) copies
/// a 16- or 24-byte `Result` out of the `Poll` with one 16-byte load right
/// after the callee wrote it with 8-byte stores: a store-forwarding stall
/// that `perf annotate` showed as half or more of every library's samples
/// in criterion's loop (4 to 5 ns a call on this VM, the same for each
/// library, so it squeezed every ratio towards 1), and that no caller pays.
#[inline(always)]
pub fn poll_observed<F: Future>(fut: F) {
    let mut cx = Context::from_waker(Waker::noop());
    let polled = pin!(fut).poll(&mut cx);
    black_box(&polled);
    if polled.is_pending() {
        unreachable!("a ready body wrapped by a breaker must finish at once");
    }
}

/// Makes `n` calls of `call` on `b` (through `black_box`) and returns the
/// wall-clock time they took: the one loop both harnesses time with.
///
/// Never inlined, so that each library's loop is the same machine code in
/// `overhead` and `side_by_side`: the inliner treated the call futures'
/// `poll` differently in criterion's closures and in a plain loop, and the
/// two harnesses disagreed by up to 2× for cb.
#[inline(never)]
pub fn time_calls<B>(b: &B, n: u64, call: impl Fn(&B)) -> std::time::Duration {
    let start = std::time::Instant::now();
    for _ in 0..n {
        call(black_box(b));
    }
    start.elapsed()
}

/// Two threads share `breaker`; each makes `iters` calls, started together by a
/// barrier. Returns the slower thread's time, so criterion reports the time one
/// call takes while another thread hammers the same breaker.
#[allow(dead_code)] // side_by_side times its threads without criterion
pub fn two_thread_time<B, F>(bn: &mut Bencher<'_>, breaker: &Arc<B>, call: F)
where
    B: Send + Sync,
    F: Fn(&B) + Sync,
{
    bn.iter_custom(|iters| {
        let barrier = Barrier::new(2);
        thread::scope(|s| {
            let workers: Vec<_> = (0..2)
                .map(|_| {
                    let barrier = &barrier;
                    let breaker: &B = breaker;
                    let call = &call;
                    s.spawn(move || {
                        barrier.wait();
                        time_calls(breaker, iters, call)
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("bench thread panicked"))
                .max()
                .expect("two workers")
        })
    });
}

/// One timed call through cb.
#[inline(always)]
pub fn cb_timed(b: &CircuitBreaker) {
    poll_observed(b.call(ok_body()));
}

/// One timed call through failsafe.
#[inline(always)]
pub fn failsafe_timed(b: &Failsafe) {
    poll_observed(b.call(ok_body()));
}

/// One timed call through recloser.
#[inline(always)]
pub fn recloser_timed(b: &recloser::AsyncRecloser) {
    poll_observed(b.call(ok_body()));
}

/// One successful-body call through cb.
#[inline(always)]
pub fn cb_call(b: &CircuitBreaker) -> Result<u64, CallError<()>> {
    poll_once(b.call(ok_body()))
}

/// One successful-body call through failsafe.
#[inline(always)]
pub fn failsafe_call(b: &Failsafe) -> Result<u64, failsafe::Error<()>> {
    poll_once(b.call(ok_body()))
}

/// One successful-body call through recloser.
#[inline(always)]
pub fn recloser_call(b: &recloser::AsyncRecloser) -> Result<u64, recloser::Error<()>> {
    poll_once(b.call(ok_body()))
}

// ------------------------------------------------------------ state checks

/// Panics unless `b` is closed and lets a call through.
pub fn assert_cb_closed(b: &CircuitBreaker) {
    assert!(
        matches!(b.state(), State::Closed),
        "cb: expected a closed breaker"
    );
    assert!(matches!(cb_call(b), Ok(1)), "cb: closed call must succeed");
}

/// Panics unless failsafe lets a call through.
pub fn assert_failsafe_closed(b: &Failsafe) {
    assert!(
        matches!(failsafe_call(b), Ok(1)),
        "failsafe: closed call must succeed"
    );
}

/// Panics unless recloser lets a call through.
pub fn assert_recloser_closed(b: &recloser::AsyncRecloser) {
    assert!(
        matches!(recloser_call(b), Ok(1)),
        "recloser: closed call must succeed"
    );
}

/// Trips cb with real failures, the same way a failing backend would: as
/// many consecutive failures as its `failure_threshold`.
pub fn trip_cb(b: &CircuitBreaker) {
    let n = b.config().failure_threshold();
    for _ in 0..n {
        let r = poll_once(b.call(err_body()));
        assert!(
            matches!(r, Err(ref e) if !e.is_rejected()),
            "cb: failure must be let through"
        );
    }
    assert!(
        matches!(b.state(), State::Open),
        "cb: must be open after the failures"
    );
}

/// Trips failsafe with real failures.
pub fn trip_failsafe(b: &Failsafe) {
    for _ in 0..TRIP_AFTER {
        let r = poll_once(b.call(err_body()));
        assert!(
            matches!(r, Err(failsafe::Error::Inner(()))),
            "failsafe: failure must be let through"
        );
    }
}

/// Trips recloser with real failures.
pub fn trip_recloser(b: &recloser::AsyncRecloser) {
    for _ in 0..=TRIP_AFTER {
        let r = poll_once(b.call(err_body()));
        assert!(
            matches!(r, Err(recloser::Error::Inner(()))),
            "recloser: failure must be let through"
        );
    }
}

/// Panics unless cb refuses a call.
pub fn assert_cb_rejects(b: &CircuitBreaker) {
    assert!(
        matches!(cb_call(b), Err(ref e) if e.is_rejected()),
        "cb: open call must be rejected"
    );
}

/// Panics unless failsafe refuses a call.
pub fn assert_failsafe_rejects(b: &Failsafe) {
    assert!(
        matches!(failsafe_call(b), Err(failsafe::Error::Rejected)),
        "failsafe: open call must be rejected"
    );
}

/// Panics unless recloser refuses a call.
pub fn assert_recloser_rejects(b: &recloser::AsyncRecloser) {
    assert!(
        matches!(recloser_call(b), Err(recloser::Error::Rejected)),
        "recloser: open call must be rejected"
    );
}
