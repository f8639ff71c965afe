//! Every breaker as OpenTelemetry instruments, and its transitions as span
//! events, exported to stdout by the SDK's stdout exporters.
//!
//! Run with `cargo run --example otel` (feature `otel` of cb-runtime, on in
//! this workspace's dev-dependencies). It finishes in about a second and
//! prints the spans (with their `circuitbreaker.transition` events), then the
//! metrics, as the stdout exporters write them.
//!
//! To send them to a collector instead, build the providers with
//! `opentelemetry-otlp`'s `MetricExporter` and `SpanExporter` in place of the
//! stdout ones: nothing else changes.

use std::time::Duration;

use cb_runtime::{circuit_breaker, registry, BreakerError, State};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Instrument as _;
use tracing_subscriber::filter::{filter_fn, LevelFilter};
use tracing_subscriber::prelude::*;

/// The error of our pretend payment provider.
#[derive(Debug)]
enum PaymentError {
    /// The provider answered with an error.
    Down,
    /// The breaker refused the call.
    Breaker(BreakerError),
}

impl From<BreakerError> for PaymentError {
    fn from(e: BreakerError) -> Self {
        PaymentError::Breaker(e)
    }
}

/// A payment provider that is down while `up` is false.
#[circuit_breaker(
    name = "payments",
    failure_threshold = 3,
    success_threshold = 1,
    open_duration = "200ms"
)]
async fn charge(up: bool) -> Result<u32, PaymentError> {
    tokio::time::sleep(Duration::from_millis(5)).await;
    if up {
        Ok(42)
    } else {
        Err(PaymentError::Down)
    }
}

#[tokio::main]
async fn main() {
    // Traces: `tracing` spans and events through tracing-opentelemetry. The
    // breaker's transitions are events of target `cb_runtime::otel`, carried
    // as span events of the span current when the breaker moved; the console
    // layer leaves them out, so that its log shows each transition once.
    let tracer_provider = SdkTracerProvider::builder()
        .with_simple_exporter(opentelemetry_stdout::SpanExporter::default())
        .build();
    tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(tracer_provider.tracer("otel-example")))
        .with(
            tracing_subscriber::fmt::layer()
                .with_filter(filter_fn(|meta| meta.target() != "cb_runtime::otel"))
                .with_filter(LevelFilter::INFO),
        )
        .init();

    // Metrics: every breaker of the registry, present or created later.
    let meter_provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(opentelemetry_stdout::MetricExporter::default()).build())
        .build();
    cb_runtime::otel::install(registry(), &meter_provider.meter("otel-example"));

    println!("== the provider fails three times: the breaker opens");
    for i in 0..3 {
        let r = charge(false)
            .instrument(tracing::info_span!("checkout", attempt = i))
            .await;
        assert!(matches!(r, Err(PaymentError::Down)));
    }
    let payments = registry().get("payments").expect("made by the first call");
    assert_eq!(payments.state(), State::Open);

    println!("== while it is open, calls are refused at once");
    for _ in 0..2 {
        let r = charge(true).instrument(tracing::info_span!("checkout")).await;
        assert!(matches!(r, Err(PaymentError::Breaker(e)) if e.is_rejected()));
    }

    println!("== after the open duration, a probe succeeds: the breaker closes");
    tokio::time::sleep(Duration::from_millis(250)).await;
    let r = charge(true)
        .instrument(tracing::info_span!("checkout", probe = true))
        .await;
    assert!(matches!(r, Ok(42)));
    assert_eq!(payments.state(), State::Closed);

    let s = payments.stats();
    println!(
        "== stats: {} successes, {} failures, {} rejected; the exporters print the same below",
        s.successes, s.failures, s.rejected
    );
    // Shutting the providers down flushes them: the metrics are printed now.
    tracer_provider
        .shutdown()
        .expect("the tracer provider shuts down");
    meter_provider.shutdown().expect("the meter provider shuts down");
}
