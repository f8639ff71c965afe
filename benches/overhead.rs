//! Per-call overhead of cb's breaker against failsafe and recloser.
//!
//! Every library is driven the same way: a ready `Result` future is wrapped by
//! the library's own async call API and polled exactly once with a no-op waker.
//! No runtime, no allocation by the bench itself, no `.await` machinery: what is
//! left is the breaker's admission check and outcome recording.
//!
//! Groups (see `benches/README.md`):
//! - `closed_success`: closed breaker, successful call.
//! - `closed_success_preset_llm`: ours with `Preset::Llm` (slow-call detection and
//!   a call timeout on).
//! - `open_rejection`: open breaker, rejected call.
//! - `two_threads`: two threads share one breaker, successful calls; per-call time.
//!
//! Run: `cargo bench --bench overhead`.

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

mod common;

use cb_runtime::{CallError, CircuitBreaker, Config, Preset, State};
use common::poll_once;
use criterion::{criterion_group, criterion_main, Bencher, Criterion};
use failsafe::futures::CircuitBreaker as _;

/// Long enough that no breaker leaves the open state during a run.
const OPEN_FOR: Duration = Duration::from_secs(3600);
/// Consecutive failures that trip ours and failsafe.
const TRIP_AFTER: u32 = 5;

type Failsafe =
    failsafe::StateMachine<failsafe::failure_policy::ConsecutiveFailures<failsafe::backoff::Constant>, ()>;

/// The wrapped body: a ready success. `black_box` keeps the value opaque so the
/// compiler cannot fold the body's result into the breaker's code.
#[inline(always)]
fn ok_body() -> std::future::Ready<Result<u64, ()>> {
    std::future::ready(Ok(black_box(1)))
}

/// A ready failure, used only to trip breakers before measuring.
fn err_body() -> std::future::Ready<Result<u64, ()>> {
    std::future::ready(Err(()))
}

// ---------------------------------------------------------------- builders

fn ours_default() -> CircuitBreaker {
    let config = Config::builder()
        .failure_threshold(TRIP_AFTER)
        .open_duration(OPEN_FOR)
        .build()
        .expect("bench config is valid");
    CircuitBreaker::new("bench", config)
}

fn ours_llm() -> CircuitBreaker {
    CircuitBreaker::new("bench-llm", Preset::Llm.config())
}

fn failsafe_breaker() -> Failsafe {
    let backoff = failsafe::backoff::constant(OPEN_FOR);
    let policy = failsafe::failure_policy::consecutive_failures(TRIP_AFTER, backoff);
    failsafe::Config::new().failure_policy(policy).build()
}

fn recloser_breaker() -> recloser::AsyncRecloser {
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

#[inline(always)]
fn ours_call(b: &CircuitBreaker) -> Result<u64, CallError<()>> {
    poll_once(b.call(ok_body()))
}

#[inline(always)]
fn failsafe_call(b: &Failsafe) -> Result<u64, failsafe::Error<()>> {
    poll_once(b.call(ok_body()))
}

#[inline(always)]
fn recloser_call(b: &recloser::AsyncRecloser) -> Result<u64, recloser::Error<()>> {
    poll_once(b.call(ok_body()))
}

// ------------------------------------------------------------ state checks

fn assert_ours_closed(b: &CircuitBreaker) {
    assert!(
        matches!(b.state(), State::Closed),
        "ours: expected a closed breaker"
    );
    assert!(matches!(ours_call(b), Ok(1)), "ours: closed call must succeed");
}

fn assert_failsafe_closed(b: &Failsafe) {
    assert!(
        matches!(failsafe_call(b), Ok(1)),
        "failsafe: closed call must succeed"
    );
}

fn assert_recloser_closed(b: &recloser::AsyncRecloser) {
    assert!(
        matches!(recloser_call(b), Ok(1)),
        "recloser: closed call must succeed"
    );
}

/// Trips ours with real failures, the same way a failing backend would.
fn trip_ours(b: &CircuitBreaker) {
    for _ in 0..TRIP_AFTER {
        let r = poll_once(b.call(err_body()));
        assert!(
            matches!(r, Err(ref e) if !e.is_rejected()),
            "ours: failure must be let through"
        );
    }
    assert!(
        matches!(b.state(), State::Open),
        "ours: must be open after the failures"
    );
}

fn trip_failsafe(b: &Failsafe) {
    for _ in 0..TRIP_AFTER {
        let r = poll_once(b.call(err_body()));
        assert!(
            matches!(r, Err(failsafe::Error::Inner(()))),
            "failsafe: failure must be let through"
        );
    }
}

fn trip_recloser(b: &recloser::AsyncRecloser) {
    for _ in 0..=TRIP_AFTER {
        let r = poll_once(b.call(err_body()));
        assert!(
            matches!(r, Err(recloser::Error::Inner(()))),
            "recloser: failure must be let through"
        );
    }
}

fn assert_ours_rejects(b: &CircuitBreaker) {
    let r = ours_call(b);
    assert!(
        matches!(r, Err(ref e) if e.is_rejected()),
        "ours: open call must be rejected"
    );
}

fn assert_failsafe_rejects(b: &Failsafe) {
    assert!(
        matches!(failsafe_call(b), Err(failsafe::Error::Rejected)),
        "failsafe: open call must be rejected"
    );
}

fn assert_recloser_rejects(b: &recloser::AsyncRecloser) {
    assert!(
        matches!(recloser_call(b), Err(recloser::Error::Rejected)),
        "recloser: open call must be rejected"
    );
}

// ------------------------------------------------------------------ groups

fn closed_success(c: &mut Criterion) {
    let mut g = c.benchmark_group("closed_success");

    let ours = ours_default();
    assert_ours_closed(&ours);
    g.bench_function("cb", |bn| bn.iter(|| ours_call(black_box(&ours))));
    assert_ours_closed(&ours);

    let fs = failsafe_breaker();
    assert_failsafe_closed(&fs);
    g.bench_function("failsafe", |bn| bn.iter(|| failsafe_call(black_box(&fs))));
    assert_failsafe_closed(&fs);

    let rc = recloser_breaker();
    assert_recloser_closed(&rc);
    g.bench_function("recloser", |bn| bn.iter(|| recloser_call(black_box(&rc))));
    assert_recloser_closed(&rc);

    g.finish();
}

fn closed_success_preset_llm(c: &mut Criterion) {
    let mut g = c.benchmark_group("closed_success_preset_llm");

    let ours = ours_llm();
    assert_ours_closed(&ours);
    g.bench_function("cb", |bn| bn.iter(|| ours_call(black_box(&ours))));
    assert_ours_closed(&ours);

    g.finish();
}

fn open_rejection(c: &mut Criterion) {
    let mut g = c.benchmark_group("open_rejection");

    let forced = ours_default();
    forced.force_open();
    assert!(
        matches!(forced.state(), State::ForcedOpen),
        "ours: must be forced open"
    );
    assert_ours_rejects(&forced);
    g.bench_function("cb_forced_open", |bn| bn.iter(|| ours_call(black_box(&forced))));
    assert_ours_rejects(&forced);

    let tripped = ours_default();
    trip_ours(&tripped);
    assert_ours_rejects(&tripped);
    g.bench_function("cb_tripped", |bn| bn.iter(|| ours_call(black_box(&tripped))));
    assert!(matches!(tripped.state(), State::Open), "ours: must still be open");

    let fs = failsafe_breaker();
    trip_failsafe(&fs);
    assert_failsafe_rejects(&fs);
    g.bench_function("failsafe", |bn| bn.iter(|| failsafe_call(black_box(&fs))));
    assert_failsafe_rejects(&fs);

    let rc = recloser_breaker();
    trip_recloser(&rc);
    assert_recloser_rejects(&rc);
    g.bench_function("recloser", |bn| bn.iter(|| recloser_call(black_box(&rc))));
    assert_recloser_rejects(&rc);

    g.finish();
}

/// Two threads share `breaker`; each makes `iters` calls, started together by a
/// barrier. Returns the slower thread's time, so criterion reports the time one
/// call takes while another thread hammers the same breaker.
fn two_thread_time<B, R, F>(bn: &mut Bencher<'_>, breaker: &Arc<B>, call: F)
where
    B: Send + Sync,
    F: Fn(&B) -> R + Sync,
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
                        let start = Instant::now();
                        for _ in 0..iters {
                            black_box(call(black_box(breaker)));
                        }
                        start.elapsed()
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

fn two_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("two_threads");

    let ours = Arc::new(ours_default());
    assert_ours_closed(&ours);
    g.bench_function("cb", |bn| two_thread_time(bn, &ours, ours_call));
    assert_ours_closed(&ours);

    let fs = Arc::new(failsafe_breaker());
    assert_failsafe_closed(&fs);
    g.bench_function("failsafe", |bn| two_thread_time(bn, &fs, failsafe_call));
    assert_failsafe_closed(&fs);

    let rc = Arc::new(recloser_breaker());
    assert_recloser_closed(&rc);
    g.bench_function("recloser", |bn| two_thread_time(bn, &rc, recloser_call));
    assert_recloser_closed(&rc);

    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = overhead;
    config = config();
    targets = closed_success, closed_success_preset_llm, open_rejection, two_threads
}
criterion_main!(overhead);
