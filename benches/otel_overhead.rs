//! What `cb_runtime::otel::install` adds to a call: the same closed,
//! successful call as `overhead`, on breakers of a registry with and without
//! the OpenTelemetry instruments installed on a real SDK meter provider.
//!
//! The counts and states are observable instruments, read when the SDK
//! collects; what a call pays is call timing (two clock reads, when the
//! configuration did not time calls already) and one histogram measurement
//! through the SDK. The Prometheus histogram is measured alongside, as the
//! other way to time calls.
//!
//! Groups (see `benches/README.md`):
//! - `otel_closed_success`: one thread, closed breaker, successful call; and
//!   one SDK histogram measurement alone, for what of the cost is the SDK's.
//! - `otel_two_threads`: two threads share one breaker; per-call time.
//!
//! Run: `cargo bench --bench otel_overhead`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

mod common;
#[allow(dead_code)]
mod peers;

use cb_runtime::{CircuitBreaker, Preset, Registry};
use criterion::{criterion_group, criterion_main, Criterion};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use peers::{assert_cb_closed, cb_default, cb_timed, time_calls, two_thread_time};

/// How the breaker's registry reports.
#[derive(Clone, Copy)]
enum Reporting {
    /// Nothing installed: the feature compiled in, unused.
    Nothing,
    /// `otel::install` on an SDK meter provider.
    Otel,
    /// The Prometheus call-duration histogram.
    PrometheusDurations,
}

/// A breaker in a registry of its own, reporting as `reporting` says, and
/// the provider to keep alive while it is measured.
fn breaker(
    make: fn() -> CircuitBreaker,
    reporting: Reporting,
) -> (Arc<CircuitBreaker>, Option<SdkMeterProvider>) {
    let registry: &'static Registry = Box::leak(Box::new(Registry::with_env(Vec::new)));
    let provider = match reporting {
        Reporting::Otel => {
            let provider = SdkMeterProvider::builder()
                .with_reader(PeriodicReader::builder(InMemoryMetricExporter::default()).build())
                .build();
            cb_runtime::otel::install(registry, &provider.meter("bench"));
            Some(provider)
        }
        Reporting::PrometheusDurations => {
            registry.record_call_durations();
            None
        }
        Reporting::Nothing => None,
    };
    let b = Arc::new(make());
    registry.register(Arc::clone(&b)).expect("a fresh registry");
    assert_cb_closed(&b);
    (b, provider)
}

fn llm() -> CircuitBreaker {
    CircuitBreaker::new("bench-llm", Preset::Llm.config())
}

/// Makes the breaker a case measures.
type Make = fn() -> CircuitBreaker;

const CASES: [(&str, Make, Reporting); 6] = [
    ("cb", cb_default, Reporting::Nothing),
    ("cb_otel", cb_default, Reporting::Otel),
    (
        "cb_prometheus_durations",
        cb_default,
        Reporting::PrometheusDurations,
    ),
    ("cb_llm", llm, Reporting::Nothing),
    ("cb_llm_otel", llm, Reporting::Otel),
    ("cb_llm_prometheus_durations", llm, Reporting::PrometheusDurations),
];

fn closed_success(c: &mut Criterion) {
    let mut g = c.benchmark_group("otel_closed_success");
    for (id, make, reporting) in CASES {
        let (b, provider) = breaker(make, reporting);
        g.bench_function(id, |bn| bn.iter_custom(|n| time_calls(&*b, n, cb_timed)));
        assert_cb_closed(&b);
        drop(provider);
    }
    // What the SDK's histogram costs by itself: one measurement with the
    // attributes `install` gives a breaker, no breaker around it.
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(InMemoryMetricExporter::default()).build())
        .build();
    let histogram = provider
        .meter("bench")
        .f64_histogram(cb_runtime::otel::CALL_DURATION)
        .with_unit("s")
        .with_boundaries(cb_runtime::otel::DURATION_BUCKETS.to_vec())
        .build();
    let attrs = [KeyValue::new(cb_runtime::otel::ATTR_NAME, "bench".to_owned())];
    g.bench_function("sdk_histogram_record_alone", |bn| {
        bn.iter_custom(|n| time_calls(&histogram, n, |h| h.record(black_box(0.005), &attrs)))
    });
    g.finish();
}

fn two_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("otel_two_threads");
    for (id, make, reporting) in CASES {
        let (b, provider) = breaker(make, reporting);
        g.bench_function(id, |bn| two_thread_time(bn, &b, cb_timed));
        assert_cb_closed(&b);
        drop(provider);
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = otel_overhead;
    config = config();
    targets = closed_success, two_threads
}
criterion_main!(otel_overhead);
