//! Per-call overhead of cb's breaker against failsafe and recloser, in one run.
//!
//! Every library is driven the same way: a ready `Result` future is wrapped by
//! the library's own async call API and polled exactly once with a no-op waker.
//! No runtime, no allocation by the bench itself, no `.await` machinery: what is
//! left is the breaker's admission check and outcome recording.
//!
//! cb runs in two configurations, side by side in every group: `cb` is the
//! builder defaults (no slow-call timing, so no clock read while closed) and
//! `cb_llm` is `Preset::Llm.config()` (slow-call timing and a call timeout on:
//! what `#[circuit_breaker(preset = "llm")]` users run).
//!
//! Groups (see `benches/README.md`):
//! - `closed_success`: closed breaker, successful call (and `cb_bulkhead`: the
//!   same with a bulkhead set, against `cb` with no protection mode);
//!   `cb_recovery_idle` is `cb` with `ramp_up` and a health check set, closed
//!   and not ramping: the recovery features must cost a closed call nothing
//!   (compare with `cb`).
//! - `open_rejection`: open breaker, rejected call (tripped by real failures,
//!   and forced open for cb).
//! - `two_threads`: two threads share one breaker, successful calls; per-call time.
//!
//! Run: `cargo bench --bench overhead`.

use std::sync::Arc;
use std::time::Duration;

mod common;
mod peers;

use cb_runtime::State;
use criterion::{criterion_group, criterion_main, Criterion};
use peers::*;

// ------------------------------------------------------------------ groups

fn closed_success(c: &mut Criterion) {
    let mut g = c.benchmark_group("closed_success");

    for (id, ours) in [("cb", cb_default()), ("cb_llm", cb_llm())] {
        assert_cb_closed(&ours);
        g.bench_function(id, |bn| bn.iter_custom(|n| time_calls(&ours, n, cb_timed)));
        assert_cb_closed(&ours);
    }

    // Recovery set up and idle: admission still tests one word.
    let idle = cb_recovery_idle();
    assert_cb_closed(&idle);
    g.bench_function("cb_recovery_idle", |bn| {
        bn.iter_custom(|n| time_calls(&idle, n, cb_timed))
    });
    assert_cb_closed(&idle);
    assert_eq!(idle.stats().ramp_share(), None, "not ramping");

    let fs = failsafe_breaker();
    assert_failsafe_closed(&fs);
    g.bench_function("failsafe", |bn| {
        bn.iter_custom(|n| time_calls(&fs, n, failsafe_timed))
    });
    assert_failsafe_closed(&fs);

    let rc = recloser_breaker();
    assert_recloser_closed(&rc);
    g.bench_function("recloser", |bn| {
        bn.iter_custom(|n| time_calls(&rc, n, recloser_timed))
    });
    assert_recloser_closed(&rc);

    // A protection mode set: the bulkhead's slot (one compare-and-swap to
    // take, one subtraction to give back) and the out-of-line admission.
    // `cb` above has no mode set: its admission tests one bit of a word it
    // loads anyway, so it should match the figures from before the modes.
    let bulkhead = cb_bulkhead();
    assert_cb_closed(&bulkhead);
    g.bench_function("cb_bulkhead", |bn| {
        bn.iter_custom(|n| time_calls(&bulkhead, n, cb_timed))
    });
    assert_cb_closed(&bulkhead);
    assert_eq!(bulkhead.stats().concurrent_calls, 0, "every slot given back");

    g.finish();
}

fn open_rejection(c: &mut Criterion) {
    let mut g = c.benchmark_group("open_rejection");

    for (id, ours) in [("cb_forced_open", cb_default()), ("cb_llm_forced_open", cb_llm())] {
        ours.force_open();
        assert!(
            matches!(ours.state(), State::ForcedOpen),
            "cb: must be forced open"
        );
        assert_cb_rejects(&ours);
        g.bench_function(id, |bn| bn.iter_custom(|n| time_calls(&ours, n, cb_timed)));
        assert_cb_rejects(&ours);
    }

    for (id, ours) in [("cb_tripped", cb_default()), ("cb_llm_tripped", cb_llm())] {
        trip_cb(&ours);
        assert_cb_rejects(&ours);
        g.bench_function(id, |bn| bn.iter_custom(|n| time_calls(&ours, n, cb_timed)));
        assert!(matches!(ours.state(), State::Open), "cb: must still be open");
    }

    let fs = failsafe_breaker();
    trip_failsafe(&fs);
    assert_failsafe_rejects(&fs);
    g.bench_function("failsafe", |bn| {
        bn.iter_custom(|n| time_calls(&fs, n, failsafe_timed))
    });
    assert_failsafe_rejects(&fs);

    let rc = recloser_breaker();
    trip_recloser(&rc);
    assert_recloser_rejects(&rc);
    g.bench_function("recloser", |bn| {
        bn.iter_custom(|n| time_calls(&rc, n, recloser_timed))
    });
    assert_recloser_rejects(&rc);

    g.finish();
}

fn two_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("two_threads");

    for (id, ours) in [("cb", cb_default()), ("cb_llm", cb_llm())] {
        let ours = Arc::new(ours);
        assert_cb_closed(&ours);
        g.bench_function(id, |bn| two_thread_time(bn, &ours, cb_timed));
        assert_cb_closed(&ours);
    }

    let fs = Arc::new(failsafe_breaker());
    assert_failsafe_closed(&fs);
    g.bench_function("failsafe", |bn| two_thread_time(bn, &fs, failsafe_timed));
    assert_failsafe_closed(&fs);

    let rc = Arc::new(recloser_breaker());
    assert_recloser_closed(&rc);
    g.bench_function("recloser", |bn| two_thread_time(bn, &rc, recloser_timed));
    assert_recloser_closed(&rc);

    g.finish();
}

/// `cb_default`'s configuration with `ramp_up` and a health check: closed,
/// never ramping in the bench.
fn cb_recovery_idle() -> cb_runtime::CircuitBreaker {
    let config = cb_default()
        .config()
        .to_builder()
        .ramp_up(Duration::from_secs(30))
        .build()
        .expect("bench config is valid");
    let breaker = cb_runtime::CircuitBreaker::new("bench-recovery", config);
    breaker.set_health_check(|| async { true });
    breaker
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
    targets = closed_success, open_rejection, two_threads
}
criterion_main!(overhead);
