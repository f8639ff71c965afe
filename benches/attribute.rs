//! What `#[circuit_breaker]` costs on top of calling `breaker.call` directly.
//!
//! Both sides protect a ready `Ok` body with a breaker of the same configuration, and each call
//! is polled exactly once with a no-op waker: no runtime, no allocation by the bench. What is
//! left is the attribute's own work (the static slot's load, the admission match, turning the
//! `CallError` back into `E`) against the breaker's admission and recording.
//!
//! Groups:
//! - `attribute/direct_call`: `breaker.call(async { Ok(x) })` on a breaker from the registry.
//! - `attribute/annotated`: an annotated `async fn` whose body is `Ok(x)`.
//! - both again with the `llm` preset (slow-call detection and a call timeout on).
//!
//! After Criterion's report, a plain timing loop prints the difference per call in ns.
//!
//! Run: `cargo bench --bench attribute`.

use std::hint::black_box;
use std::time::Instant;

mod common;

use cb_runtime::{circuit_breaker, registry, BreakerError, CallError, Config, Preset};
use common::poll_once;
use criterion::{criterion_group, Criterion};

/// The error type of the annotated functions.
#[derive(Debug)]
pub struct BenchError;

impl From<BreakerError> for BenchError {
    fn from(_: BreakerError) -> Self {
        BenchError
    }
}

#[circuit_breaker(name = "bench-attribute-http", preset = "http_api")]
async fn annotated_http(x: u64) -> Result<u64, BenchError> {
    Ok(x)
}

#[circuit_breaker(name = "bench-attribute-llm", preset = "llm")]
async fn annotated_llm(x: u64) -> Result<u64, BenchError> {
    Ok(x)
}

fn direct_breaker(name: &str, config: fn() -> Config) -> std::sync::Arc<cb_runtime::CircuitBreaker> {
    registry().get_or_insert(name, config)
}

fn bench_attribute(c: &mut Criterion) {
    let http = direct_breaker("bench-direct-http", || Preset::HttpApi.config());
    let llm = direct_breaker("bench-direct-llm", || Preset::Llm.config());

    let mut group = c.benchmark_group("attribute");
    group.bench_function("direct_call", |b| {
        b.iter(|| {
            let x = black_box(1u64);
            let out: Result<u64, CallError<BenchError>> = poll_once(http.call(async move { Ok(x) }));
            black_box(out)
        })
    });
    group.bench_function("annotated", |b| {
        b.iter(|| black_box(poll_once(annotated_http(black_box(1)))))
    });
    group.bench_function("direct_call_llm", |b| {
        b.iter(|| {
            let x = black_box(1u64);
            let out: Result<u64, CallError<BenchError>> = poll_once(llm.call(async move { Ok(x) }));
            black_box(out)
        })
    });
    group.bench_function("annotated_llm", |b| {
        b.iter(|| black_box(poll_once(annotated_llm(black_box(1)))))
    });
    group.finish();
}

/// Mean ns per call of `f` over `calls` calls, the best of a few rounds.
fn ns_per_call(calls: u32, mut f: impl FnMut()) -> f64 {
    (0..5)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..calls {
                f();
            }
            started.elapsed().as_nanos() as f64 / f64::from(calls)
        })
        .fold(f64::INFINITY, f64::min)
}

/// Prints the attribute's cost per call next to the direct call's.
fn print_difference() {
    let http = direct_breaker("bench-direct-http", || Preset::HttpApi.config());
    let calls = 2_000_000;
    let direct = ns_per_call(calls, || {
        let x = black_box(1u64);
        let out: Result<u64, CallError<BenchError>> = poll_once(http.call(async move { Ok(x) }));
        black_box(out).ok();
    });
    let annotated = ns_per_call(calls, || {
        black_box(poll_once(annotated_http(black_box(1)))).ok();
    });
    println!(
        "attribute overhead (http_api preset): direct {direct:.2} ns, annotated {annotated:.2} ns, difference {:+.2} ns per call",
        annotated - direct
    );
}

criterion_group!(benches, bench_attribute);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if !std::env::args().any(|arg| arg == "--list") {
        print_difference();
    }
}
