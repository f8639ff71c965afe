//! OpenTelemetry instruments for every breaker of a registry, and transitions
//! as `tracing` events with the same attributes (feature `otel`).
//!
//! [`install`] reports every breaker of a [`Registry`], present or created
//! later, through an OpenTelemetry [`Meter`]. cb-runtime depends on the
//! `opentelemetry` API crate only (0.33, `metrics` feature); the application
//! picks the SDK and the exporter. It works with `opentelemetry_sdk` 0.33.x
//! and the exporters of that release (`opentelemetry-otlp` and
//! `opentelemetry-stdout` 0.33), and for the transition events with
//! `tracing-opentelemetry` 0.34, the release built on `opentelemetry` 0.33.
//! Each 0.x release of `opentelemetry` is a breaking one, so another SDK
//! release needs the cb-runtime release that follows it.
//!
//! ```
//! use cb_runtime::{Config, Registry};
//! use opentelemetry::metrics::MeterProvider as _;
//!
//! // The application's SDK; any `opentelemetry::metrics::Meter` does.
//! let provider = opentelemetry::global::meter_provider();
//! let registry: &'static Registry = Box::leak(Box::new(Registry::new()));
//! cb_runtime::otel::install(registry, &provider.meter("my-service"));
//! registry.get_or_insert("payments", Config::default); // reported too
//! ```
//!
//! # Instruments
//!
//! Every instrument carries `circuitbreaker.name`, and `circuitbreaker.key`
//! for a keyed breaker (one series per key: their number is bounded by the
//! breaker's `max_keys`). Counts and states are observable instruments, read
//! from the breakers' own exact counters ([`Stats`]) when the
//! SDK collects: they add nothing to a call. Only the duration histogram is
//! recorded on the call path.
//!
//! | instrument | kind | unit | attributes beyond the name | value |
//! |---|---|---|---|---|
//! | `circuitbreaker.calls` | counter | `{call}` | `circuitbreaker.outcome` | calls by outcome: `success`, `failure`, `rejected`, `timeout`, `ignored`, `cancelled`, `throttled`, `saturated` (the words of the Prometheus `outcome` label) |
//! | `circuitbreaker.state` | gauge | `1` | `circuitbreaker.state` | 1 for the state the breaker is in, 0 for the others: `closed`, `open`, `half_open`, `forced_open`, `disabled` ([`State`]'s display words) |
//! | `circuitbreaker.transitions` | counter | `{transition}` | `circuitbreaker.from`, `circuitbreaker.to` | transitions since the breaker joined the registry |
//! | `circuitbreaker.call.duration` | histogram | `s` | | admitted calls' durations, from admission to the outcome (rejected and cancelled calls are not timed); buckets [`DURATION_BUCKETS`] |
//! | `circuitbreaker.slow_calls` | counter | `{call}` | | calls slower than `slow_call_duration`, whatever their outcome |
//! | `circuitbreaker.consecutive_failures` | gauge | `{call}` | | failures since the last success, while closed |
//! | `circuitbreaker.failure_rate` | gauge | `1` | | the window's failure rate (0 to 1), once it holds `minimum_calls` calls |
//! | `circuitbreaker.slow_call_rate` | gauge | `1` | | the window's slow-call rate (0 to 1), once it holds `minimum_calls` calls |
//! | `circuitbreaker.shadow_rejections` | counter | `{call}` | | shadow mode: calls the breaker would have refused, and let through |
//! | `circuitbreaker.refusal_share` | gauge | `1` | | adaptive throttling: the probability of refusing the next call (adaptive breakers only) |
//! | `circuitbreaker.health_checks` | counter | `{check}` | `circuitbreaker.result` | health checks run while open, by result: `passed`, `failed`; breakers with a health check only |
//! | `circuitbreaker.ramp_share` | gauge | `1` | | while ramping up after a close, the share of calls admitted (0.1 to 1) |
//!
//! The state is what the next call would meet: an open breaker whose open
//! duration has elapsed is reported half-open, as the Prometheus metrics do.
//! A breaker removed from the registry leaves the observable instruments at
//! the next collection; the histogram keeps what it recorded (the
//! OpenTelemetry API cannot remove a series).
//!
//! `install` turns on call timing: every call reads the breaker's clock at
//! admission and at its outcome (the coarse monotonic clock by default:
//! millisecond resolution), and records one histogram measurement. The
//! `otel_overhead` bench measures that cost (`benches/README.md`): about
//! 0.2 µs a call on one thread, most of it the SDK's own measurement. The
//! Prometheus histogram ([`Registry::record_call_durations`]) is independent
//! of it: both can be on.
//!
//! # The same breakers in Prometheus and resilience4j
//!
//! | OpenTelemetry | Prometheus ([`metrics`](crate::metrics)) | resilience4j (Micrometer) |
//! |---|---|---|
//! | `circuitbreaker.calls{outcome=success}` | `circuit_breaker_calls_total{outcome="success"}` | `resilience4j.circuitbreaker.calls{kind="successful"}` (the timer's count) |
//! | `circuitbreaker.calls{outcome=failure}` | `circuit_breaker_calls_total{outcome="failure"}` | `resilience4j.circuitbreaker.calls{kind="failed"}` |
//! | `circuitbreaker.calls{outcome=timeout}` | `circuit_breaker_calls_total{outcome="timeout"}` | counted in `kind="failed"` (a timeout is an error to resilience4j's breaker) |
//! | `circuitbreaker.calls{outcome=ignored}` | `circuit_breaker_calls_total{outcome="ignored"}` | `resilience4j.circuitbreaker.calls{kind="ignored"}` |
//! | `circuitbreaker.calls{outcome=rejected}` | `circuit_breaker_calls_total{outcome="rejected"}` | `resilience4j.circuitbreaker.not.permitted.calls` |
//! | `circuitbreaker.state{state=...}`, 0 or 1 | `circuit_breaker_state`, one series whose value is the state's code | `resilience4j.circuitbreaker.state{state=...}`, 0 or 1 (the same shape as ours) |
//! | `circuitbreaker.transitions{from,to}` | `circuit_breaker_state_transitions_total{from,to}` | none (resilience4j publishes transitions as events only) |
//! | `circuitbreaker.call.duration` | `circuit_breaker_call_duration_seconds` (opt-in) | `resilience4j.circuitbreaker.calls` (the timer's durations) |
//! | `circuitbreaker.slow_calls` (total) | `circuit_breaker_slow_calls_total` | `resilience4j.circuitbreaker.slow.calls` is a gauge of the slow calls in the sliding window, by `kind` |
//! | `circuitbreaker.consecutive_failures` | `circuit_breaker_consecutive_failures` | none |
//! | `circuitbreaker.failure_rate` (0 to 1, absent until `minimum_calls`) | `circuit_breaker_failure_rate` | `resilience4j.circuitbreaker.failure.rate` (percent, -1 until the minimum number of calls) |
//! | `circuitbreaker.slow_call_rate` (0 to 1) | none | `resilience4j.circuitbreaker.slow.call.rate` (percent) |
//! | none: [`Stats::calls_in_window`](crate::Stats::calls_in_window) | none | `resilience4j.circuitbreaker.buffered.calls` |
//! | none: the configuration's window size | none | `resilience4j.circuitbreaker.max.buffered.calls` |
//!
//! An OpenTelemetry pipeline that ends in Prometheus (the collector's
//! Prometheus exporter, or Prometheus's OTLP receiver) spells these names its
//! own way (`circuitbreaker_calls_total`, `circuitbreaker_call_duration_seconds`):
//! not the names of [`metrics`](crate::metrics), which the dashboard and the
//! alert rules in `dashboards/` read. A service scraped by Prometheus should
//! register [`metrics`](crate::metrics) for those.
//!
//! # Semantic conventions
//!
//! There is no OpenTelemetry convention for circuit breakers yet. The open
//! proposal, semantic-conventions issue #2355, names the attributes
//! `circuitbreaker.name` and `circuitbreaker.state` (for spans) and asks for
//! an event on each change of state; we use both attributes with those
//! meanings. Beyond it: the instruments themselves (#2355 defines none), the
//! attributes `circuitbreaker.key`, `circuitbreaker.outcome`,
//! `circuitbreaker.from`, `circuitbreaker.to` and `circuitbreaker.reason`, the
//! state words (#2355 gives none), and the event's name,
//! `circuitbreaker.transition`.
//!
//! # Transitions as `tracing` events
//!
//! Once `install` ran, each transition of a breaker of the registry is also a
//! `tracing` event, target `cb_runtime::otel`, message (and name)
//! `circuitbreaker.transition`, at WARN when the circuit opens and INFO
//! otherwise, with the fields `circuitbreaker.name`, `circuitbreaker.from`,
//! `circuitbreaker.to` and `circuitbreaker.reason` ([`Reason`](crate::Reason)'s
//! words). `tracing-opentelemetry` turns it into a span event of the span
//! current when the breaker moved (the call whose failure opened it, the admin
//! request that forced it open), named `circuitbreaker.transition`, with those
//! attributes; `opentelemetry-appender-tracing` turns it into a log record.
//! The breaker's own log lines (target `cb_runtime`) are unchanged; filter
//! the target `cb_runtime::otel` out of a console layer so that it does not
//! print each transition twice. Wiring it (from `examples/otel.rs`, which
//! runs it):
//!
//! ```ignore
//! use opentelemetry::trace::TracerProvider as _;
//! use tracing_subscriber::{filter::filter_fn, prelude::*};
//!
//! let tracer_provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
//!     .with_simple_exporter(opentelemetry_stdout::SpanExporter::default())
//!     .build();
//! tracing_subscriber::registry()
//!     .with(tracing_opentelemetry::layer().with_tracer(tracer_provider.tracer("my-service")))
//!     .with(tracing_subscriber::fmt::layer().with_filter(filter_fn(|m| m.target() != "cb_runtime::otel")))
//!     .init();
//! ```

use std::sync::Arc;

use opentelemetry::metrics::{AsyncInstrument, Histogram, Meter};
use opentelemetry::KeyValue;

use crate::breaker::CircuitBreaker;
use crate::hook::Hook;
pub use crate::metrics::DURATION_BUCKETS;
use crate::registry::Registry;
use crate::state::State;
use crate::stats::Stats;
use crate::transition::Transition;

/// `circuitbreaker.calls`: calls by outcome.
pub const CALLS: &str = "circuitbreaker.calls";
/// `circuitbreaker.state`: 1 for the current state, 0 for the others.
pub const STATE: &str = "circuitbreaker.state";
/// `circuitbreaker.transitions`: transitions by from and to state.
pub const TRANSITIONS: &str = "circuitbreaker.transitions";
/// `circuitbreaker.call.duration`: admitted calls' durations, in seconds.
pub const CALL_DURATION: &str = "circuitbreaker.call.duration";
/// `circuitbreaker.slow_calls`: calls slower than `slow_call_duration`.
pub const SLOW_CALLS: &str = "circuitbreaker.slow_calls";
/// `circuitbreaker.consecutive_failures`: failures since the last success, while closed.
pub const CONSECUTIVE_FAILURES: &str = "circuitbreaker.consecutive_failures";
/// `circuitbreaker.failure_rate`: the window's failure rate.
pub const FAILURE_RATE: &str = "circuitbreaker.failure_rate";
/// `circuitbreaker.slow_call_rate`: the window's slow-call rate.
pub const SLOW_CALL_RATE: &str = "circuitbreaker.slow_call_rate";

/// `circuitbreaker.shadow_rejections`: calls shadow mode let through.
pub const SHADOW_REJECTIONS: &str = "circuitbreaker.shadow_rejections";
/// `circuitbreaker.refusal_share`: an adaptive breaker's refusal probability.
pub const REFUSAL_SHARE: &str = "circuitbreaker.refusal_share";
/// `circuitbreaker.health_checks`: health checks run while open, by result.
pub const HEALTH_CHECKS: &str = "circuitbreaker.health_checks";
/// `circuitbreaker.ramp_share`: the share admitted while ramping up.
pub const RAMP_SHARE: &str = "circuitbreaker.ramp_share";
/// The attribute of `circuitbreaker.health_checks` naming the result.
pub const ATTR_RESULT: &str = "circuitbreaker.result";

/// The attribute naming the breaker, on every instrument.
pub const ATTR_NAME: &str = "circuitbreaker.name";
/// The attribute naming a keyed breaker's key, on every instrument.
pub const ATTR_KEY: &str = "circuitbreaker.key";
/// The attribute of `circuitbreaker.calls` naming the outcome.
pub const ATTR_OUTCOME: &str = "circuitbreaker.outcome";
/// The attribute of `circuitbreaker.state` naming the state.
pub const ATTR_STATE: &str = "circuitbreaker.state";
/// The attribute of `circuitbreaker.transitions` naming the state left.
pub const ATTR_FROM: &str = "circuitbreaker.from";
/// The attribute of `circuitbreaker.transitions` naming the state entered.
pub const ATTR_TO: &str = "circuitbreaker.to";
/// The field of the transition event naming the [`Reason`](crate::Reason).
pub const ATTR_REASON: &str = "circuitbreaker.reason";
/// The name (and message) of the transition `tracing` event.
pub const TRANSITION_EVENT: &str = "circuitbreaker.transition";

/// Reports every breaker of `registry`, present or created later, through
/// `meter`, and emits its transitions as `tracing` events (see the
/// [module docs](self) for the instruments, their units and attributes).
///
/// It turns on call timing for the registry's breakers. Call it once per
/// meter: a second call with the same meter would report every series twice.
pub fn install(registry: &'static Registry, meter: &Meter) {
    let _ = meter
        .u64_observable_counter(CALLS)
        .with_description("Calls through the circuit breaker, by outcome.")
        .with_unit("{call}")
        .with_callback(move |obs| {
            for_each_breaker(registry, |attrs, s| {
                for (outcome, n) in s.outcomes() {
                    observe_with(obs, attrs, n, KeyValue::new(ATTR_OUTCOME, outcome));
                }
            });
        })
        .build();
    let _ = meter
        .u64_observable_gauge(STATE)
        .with_description("Circuit state: 1 for the current state, 0 for the others.")
        .with_unit("1")
        .with_callback(move |obs| {
            for_each_breaker(registry, |attrs, s| {
                for state in State::ALL {
                    let value = u64::from(state == s.state);
                    observe_with(obs, attrs, value, KeyValue::new(ATTR_STATE, state.as_str()));
                }
            });
        })
        .build();
    let _ = meter
        .u64_observable_counter(TRANSITIONS)
        .with_description("State transitions, by from and to state.")
        .with_unit("{transition}")
        .with_callback(move |obs| {
            for (breaker, counts) in registry.observed() {
                let mut attrs = breaker_attributes(&breaker);
                let base = attrs.len();
                for from in State::ALL {
                    for to in State::ALL {
                        let n = counts.transitions(from, to);
                        if n > 0 {
                            attrs.truncate(base);
                            attrs.push(KeyValue::new(ATTR_FROM, from.as_str()));
                            attrs.push(KeyValue::new(ATTR_TO, to.as_str()));
                            obs.observe(n, &attrs);
                        }
                    }
                }
            }
        })
        .build();
    let _ = meter
        .u64_observable_counter(SHADOW_REJECTIONS)
        .with_description("Shadow mode: calls the breaker would have refused, let through.")
        .with_unit("{call}")
        .with_callback(move |obs| {
            for_each_breaker(registry, |attrs, s| obs.observe(s.shadow_rejected, attrs));
        })
        .build();
    let _ = meter
        .f64_observable_gauge(REFUSAL_SHARE)
        .with_description("Adaptive throttling: the probability of refusing the next call.")
        .with_unit("1")
        .with_callback(move |obs| {
            for_each_breaker(registry, |attrs, s| {
                if let Some(share) = s.refusal_share {
                    obs.observe(share, attrs);
                }
            });
        })
        .build();
    let _ = meter
        .u64_observable_counter(SLOW_CALLS)
        .with_description("Calls slower than the slow-call duration.")
        .with_unit("{call}")
        .with_callback(move |obs| for_each_breaker(registry, |attrs, s| obs.observe(s.slow_calls, attrs)))
        .build();
    let _ = meter
        .u64_observable_gauge(CONSECUTIVE_FAILURES)
        .with_description("Consecutive failures while closed.")
        .with_unit("{call}")
        .with_callback(move |obs| {
            for_each_breaker(registry, |attrs, s| obs.observe(s.consecutive_failures, attrs));
        })
        .build();
    let _ = meter
        .u64_observable_counter(HEALTH_CHECKS)
        .with_description("Health checks run while the circuit was open, by result.")
        .with_unit("{check}")
        .with_callback(move |obs| {
            for_each_breaker(registry, |attrs, s| {
                if s.health_checks_passed + s.health_checks_failed > 0 {
                    observe_with(
                        obs,
                        attrs,
                        s.health_checks_passed,
                        KeyValue::new(ATTR_RESULT, "passed"),
                    );
                    observe_with(
                        obs,
                        attrs,
                        s.health_checks_failed,
                        KeyValue::new(ATTR_RESULT, "failed"),
                    );
                }
            });
        })
        .build();
    let _ = meter
        .f64_observable_gauge(RAMP_SHARE)
        .with_description("While ramping up after a close: the share of calls admitted.")
        .with_unit("1")
        .with_callback(move |obs| {
            for_each_breaker(registry, |attrs, s| {
                if let Some(share) = s.ramp_share() {
                    obs.observe(share, attrs);
                }
            });
        })
        .build();
    let rates: [(&'static str, &'static str, Rate); 2] = [
        (
            FAILURE_RATE,
            "Failure rate of the sliding window, once it holds minimum_calls calls.",
            |s| s.failure_rate,
        ),
        (
            SLOW_CALL_RATE,
            "Slow-call rate of the sliding window, once it holds minimum_calls calls.",
            |s| s.slow_call_rate,
        ),
    ];
    for (name, description, rate) in rates {
        let _ = meter
            .f64_observable_gauge(name)
            .with_description(description)
            .with_unit("1")
            .with_callback(move |obs| {
                for_each_breaker(registry, |attrs, s| {
                    if let Some(r) = rate(s) {
                        obs.observe(r, attrs);
                    }
                });
            })
            .build();
    }
    let durations = meter
        .f64_histogram(CALL_DURATION)
        .with_description("Duration of calls admitted by the circuit breaker.")
        .with_unit("s")
        .with_boundaries(DURATION_BUCKETS.to_vec())
        .build();
    registry.add_hook(Arc::new(OtelHook { durations }));
}

/// Reads one of the window's rates from a breaker's stats.
type Rate = fn(&Stats) -> Option<f64>;

/// The attributes every instrument carries for `breaker`: its name (and a
/// keyed breaker's key). The one place they are built.
fn breaker_attributes(breaker: &CircuitBreaker) -> Vec<KeyValue> {
    let mut attrs = vec![KeyValue::new(ATTR_NAME, breaker.name().to_owned())];
    if let Some(key) = breaker.key() {
        attrs.push(KeyValue::new(ATTR_KEY, key.to_owned()));
    }
    attrs
}

/// Calls `f` with the attributes and the stats of every breaker of
/// `registry`, the keys of its families included.
fn for_each_breaker(registry: &Registry, mut f: impl FnMut(&[KeyValue], &Stats)) {
    for breaker in registry.all_breakers() {
        f(&breaker_attributes(&breaker), &breaker.stats());
    }
}

/// Observes `value` with `attrs` and one more attribute.
fn observe_with(obs: &dyn AsyncInstrument<u64>, attrs: &[KeyValue], value: u64, extra: KeyValue) {
    let mut all = Vec::with_capacity(attrs.len() + 1);
    all.extend_from_slice(attrs);
    all.push(extra);
    obs.observe(value, &all);
}

/// The registry's hook that feeds the duration histogram and emits the
/// transition events.
struct OtelHook {
    durations: Histogram<f64>,
}

impl Hook for OtelHook {
    fn attach(&self, breaker: &Arc<CircuitBreaker>) {
        let attrs = breaker_attributes(breaker);
        let durations = self.durations.clone();
        breaker.observe_call_durations(Box::new(move |d| durations.record(d.as_secs_f64(), &attrs)));
        breaker.on_transition(transition_event);
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

/// One transition as a `tracing` event with the instruments' attribute names.
fn transition_event(t: &Transition) {
    let (name, from, to, reason) = (t.name, t.from.as_str(), t.to.as_str(), t.reason.as_str());
    macro_rules! event {
        ($level:expr) => {
            tracing::event!(
                name: "circuitbreaker.transition",
                target: "cb_runtime::otel",
                $level,
                circuitbreaker.name = name,
                circuitbreaker.from = from,
                circuitbreaker.to = to,
                circuitbreaker.reason = reason,
                "circuitbreaker.transition"
            )
        };
    }
    if t.to.is_open() {
        event!(tracing::Level::WARN);
    } else {
        event!(tracing::Level::INFO);
    }
}
