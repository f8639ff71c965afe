//! Feature `otel`: the instruments read back through the SDK's in-memory
//! exporter, against the breakers' `Stats` and the Prometheus exposition of
//! the same registry. The transition events are read back from `tracing` in
//! `tests/otel_events.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use cb_runtime::clock::ManualClock;
use cb_runtime::metrics::BreakerCollector;
use cb_runtime::otel::{self, DURATION_BUCKETS};
use cb_runtime::{CallError, CircuitBreaker, Clock, Config, Outcome, Registry, State};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, Metric, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

type Res = Result<u32, CallError<&'static str>>;

/// One series: its attributes (by key) and its value.
type Point<T> = (BTreeMap<String, String>, T);

/// A private registry with the OpenTelemetry instruments installed on an SDK
/// whose exports land in memory.
struct Otel {
    registry: &'static Registry,
    provider: SdkMeterProvider,
    exporter: InMemoryMetricExporter,
}

impl Otel {
    fn install() -> Self {
        let registry: &'static Registry = Box::leak(Box::new(Registry::with_env(Vec::new)));
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        otel::install(registry, &provider.meter("cb-test"));
        Otel {
            registry,
            provider,
            exporter,
        }
    }

    /// `f` of the instrument `name` in a fresh collection, if it was exported.
    fn metric<R>(&self, name: &str, f: impl FnOnce(&Metric) -> R) -> Option<R> {
        self.exporter.reset();
        self.provider.force_flush().expect("the SDK collects");
        let exported = self.exporter.get_finished_metrics().expect("exported metrics");
        // With no data point at all (no breaker yet) the SDK exports nothing.
        let metric = exported
            .last()?
            .scope_metrics()
            .flat_map(|scope| scope.metrics())
            .find(|m| m.name() == name);
        metric.map(f)
    }

    /// The u64 series of the counter or gauge `name`, for breaker `breaker`.
    fn u64_points(&self, name: &str, breaker: &str) -> Vec<Point<u64>> {
        let points = self.metric(name, |metric| match metric.data() {
            AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                assert!(sum.is_monotonic(), "{name} is a counter");
                sum.data_points()
                    .map(|p| (attrs(p.attributes()), p.value()))
                    .collect()
            }
            AggregatedMetrics::U64(MetricData::Gauge(gauge)) => gauge
                .data_points()
                .map(|p| (attrs(p.attributes()), p.value()))
                .collect(),
            other => panic!("{name}: unexpected data {other:?}"),
        });
        of_breaker(points.unwrap_or_default(), breaker)
    }

    /// The f64 series of the gauge `name`, for breaker `breaker`.
    fn f64_points(&self, name: &str, breaker: &str) -> Vec<Point<f64>> {
        let points = self.metric(name, |metric| {
            let AggregatedMetrics::F64(MetricData::Gauge(gauge)) = metric.data() else {
                panic!("{name} is an f64 gauge: {:?}", metric.data());
            };
            gauge
                .data_points()
                .map(|p| (attrs(p.attributes()), p.value()))
                .collect()
        });
        of_breaker(points.unwrap_or_default(), breaker)
    }

    /// The value of `name` with the one extra attribute `key=value`.
    fn value(&self, name: &str, breaker: &str, key: &str, value: &str) -> Option<u64> {
        self.u64_points(name, breaker)
            .into_iter()
            .find(|(a, _)| a.get(key).map(String::as_str) == Some(value))
            .map(|(_, v)| v)
    }
}

impl Drop for Otel {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

fn attrs<'a>(kvs: impl Iterator<Item = &'a opentelemetry::KeyValue>) -> BTreeMap<String, String> {
    kvs.map(|kv| (kv.key.to_string(), kv.value.to_string())).collect()
}

fn of_breaker<T>(points: Vec<Point<T>>, breaker: &str) -> Vec<Point<T>> {
    points
        .into_iter()
        .filter(|(a, _)| a.get(otel::ATTR_NAME).map(String::as_str) == Some(breaker))
        .collect()
}

fn manual(clock: &ManualClock) -> cb_runtime::ConfigBuilder {
    Config::builder().clock(clock.clock())
}

/// One call through `b` that takes `ms` on `clock`, and succeeds when `ok`.
async fn call_taking(b: &CircuitBreaker, clock: &ManualClock, ms: u64, ok: bool) -> Res {
    let c = clock.clone();
    b.call(async move {
        c.advance(Duration::from_millis(ms));
        if ok {
            Ok(1)
        } else {
            Err("503")
        }
    })
    .await
}

/// Opens after `failures` failures in a row, for `open`; one probe closes it.
fn recovering(clock: &ManualClock, failures: u32, open: Duration) -> Config {
    manual(clock)
        .failure_threshold(failures)
        .open_duration(open)
        .success_threshold(1)
        .build()
        .unwrap()
}

/// The counter's values equal the breaker's `Stats`, outcome by outcome, and
/// its outcome words are exactly the Prometheus `outcome` label's.
#[tokio::test(start_paused = true)]
async fn calls_by_outcome_equal_stats_and_use_the_prometheus_words() {
    let o = Otel::install();
    let config = Config::builder()
        .clock(Clock::tokio())
        .failure_threshold(3)
        .call_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let b = o.registry.get_or_insert("otel-calls", || config);
    for _ in 0..4 {
        let r: Res = b.call(async { Ok(1) }).await;
        assert!(r.is_ok());
    }
    let ignored: Res = b
        .call_with(async { Err("bad request") }, |_| Outcome::Ignored)
        .await;
    assert!(ignored.is_err());
    let failed: Res = b.call(async { Err("503") }).await;
    assert!(failed.is_err());
    let timed_out: Res = b
        .call(async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(1)
        })
        .await;
    assert!(timed_out.unwrap_err().is_timeout());
    let last: Res = b.call(async { Err("503") }).await;
    assert!(last.is_err());
    assert_eq!(b.state(), State::Open);
    for _ in 0..3 {
        let r: Res = b.call(async { Ok(1) }).await;
        assert!(r.unwrap_err().is_rejected());
    }

    let s = b.stats();
    assert_eq!(
        (s.successes, s.failures, s.timeouts, s.ignored, s.rejected),
        (4, 2, 1, 1, 3)
    );
    let points = o.u64_points(otel::CALLS, "otel-calls");
    let by_outcome: BTreeMap<String, u64> = points
        .iter()
        .map(|(a, v)| (a[otel::ATTR_OUTCOME].clone(), *v))
        .collect();
    for (word, n) in [
        ("success", s.successes),
        ("failure", s.failures),
        ("timeout", s.timeouts),
        ("ignored", s.ignored),
        ("rejected", s.rejected),
    ] {
        assert_eq!(by_outcome.get(word), Some(&n), "outcome {word}");
    }
    for (a, _) in &points {
        let keys: BTreeSet<&str> = a.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from([otel::ATTR_NAME, otel::ATTR_OUTCOME]),
            "{a:?}"
        );
    }

    // The words: exactly the Prometheus label's, read from its exposition.
    let prom = prometheus::Registry::new();
    prom.register(Box::new(BreakerCollector::new(o.registry)))
        .unwrap();
    let text = cb_runtime::metrics::encode(&prom.gather());
    let prom_words: BTreeSet<String> = text
        .lines()
        .filter(|l| l.starts_with("circuit_breaker_calls_total{"))
        .filter_map(|l| l.split("outcome=\"").nth(1)?.split('"').next().map(str::to_owned))
        .collect();
    let otel_words: BTreeSet<String> = by_outcome.keys().cloned().collect();
    assert_eq!(otel_words, prom_words);
    // Every call counted lands in one outcome (cancelled ones only where
    // that is an outcome word).
    let uncounted = if by_outcome.contains_key("cancelled") {
        0
    } else {
        s.cancelled
    };
    assert_eq!(by_outcome.values().sum::<u64>(), s.calls() - uncounted);
}

/// Five series per breaker, exactly one of them 1: the state `state()` reports.
#[tokio::test]
async fn state_gauge_follows_every_transition() {
    let o = Otel::install();
    let clock = ManualClock::new();
    let config = recovering(&clock, 2, Duration::from_secs(10));
    let b = o.registry.get_or_insert("otel-state", || config);

    let check = |expected: State| {
        assert_eq!(b.state(), expected);
        let points = o.u64_points(otel::STATE, "otel-state");
        let states: BTreeMap<String, u64> = points
            .iter()
            .map(|(a, v)| (a[otel::ATTR_STATE].clone(), *v))
            .collect();
        let all: BTreeSet<String> = State::ALL.iter().map(|s| s.to_string()).collect();
        assert_eq!(states.keys().cloned().collect::<BTreeSet<_>>(), all);
        for (state, v) in &states {
            assert_eq!(
                *v,
                u64::from(*state == expected.to_string()),
                "{state} while {expected}"
            );
        }
    };

    check(State::Closed);
    for _ in 0..2 {
        let r: Res = b.call(async { Err("503") }).await;
        assert!(r.is_err());
    }
    check(State::Open);
    clock.advance(Duration::from_secs(10));
    check(State::HalfOpen);
    let probe: Res = b.call(async { Ok(1) }).await;
    assert!(probe.is_ok());
    check(State::Closed);
    b.force_open();
    check(State::ForcedOpen);
    b.disable();
    check(State::Disabled);
    b.reset();
    check(State::Closed);
}

/// The transitions counter equals the registry's counts, pair by pair, and
/// has no series for a pair that never happened.
#[tokio::test]
async fn transitions_counter_counts_each_pair() {
    let o = Otel::install();
    let clock = ManualClock::new();
    let config = recovering(&clock, 1, Duration::from_secs(5));
    let b = o.registry.get_or_insert("otel-transitions", || config);
    assert!(o.u64_points(otel::TRANSITIONS, "otel-transitions").is_empty());

    for _ in 0..2 {
        let r: Res = b.call(async { Err("503") }).await;
        assert!(r.is_err());
        clock.advance(Duration::from_secs(5));
        assert_eq!(b.state(), State::HalfOpen);
        let probe: Res = b.call(async { Ok(1) }).await;
        assert!(probe.is_ok());
    }
    b.force_open();

    let points = o.u64_points(otel::TRANSITIONS, "otel-transitions");
    let pairs: BTreeMap<(String, String), u64> = points
        .iter()
        .map(|(a, v)| ((a[otel::ATTR_FROM].clone(), a[otel::ATTR_TO].clone()), *v))
        .collect();
    let expected: BTreeMap<(String, String), u64> = [
        (("closed", "open"), 2),
        (("open", "half_open"), 2),
        (("half_open", "closed"), 2),
        (("closed", "forced_open"), 1),
    ]
    .into_iter()
    .map(|((f, t), n)| ((f.to_owned(), t.to_owned()), n))
    .collect();
    assert_eq!(pairs, expected);
    for ((from, to), n) in &pairs {
        let (from, to) = (from.parse().unwrap(), to.parse().unwrap());
        assert_eq!(o.registry.transitions("otel-transitions", from, to), *n);
    }
}

/// The histogram is in seconds with the Prometheus buckets, and counts one
/// measurement per admitted call (rejected ones are not timed), alongside the
/// Prometheus histogram of the same registry.
#[tokio::test]
async fn duration_histogram_is_in_seconds_and_counts_each_admitted_call() {
    let o = Otel::install();
    o.registry.record_call_durations();
    let clock = ManualClock::new();
    let config = manual(&clock).failure_threshold(3).build().unwrap();
    let b = o.registry.get_or_insert("otel-durations", || config);
    for (ms, ok) in [
        (150u64, true),
        (20, true),
        (2_000, false),
        (5, false),
        (40, false),
    ] {
        let r = call_taking(&b, &clock, ms, ok).await;
        assert_eq!(r.is_ok(), ok);
    }
    assert_eq!(b.state(), State::Open);
    let rejected: Res = b.call(async { Ok(1) }).await;
    assert!(rejected.unwrap_err().is_rejected());

    o.metric(otel::CALL_DURATION, |metric| {
        assert_eq!(metric.unit(), "s");
        let AggregatedMetrics::F64(MetricData::Histogram(h)) = metric.data() else {
            panic!("an f64 histogram: {:?}", metric.data());
        };
        let points: Vec<_> = h
            .data_points()
            .filter(|p| {
                attrs(p.attributes()).get(otel::ATTR_NAME).map(String::as_str) == Some("otel-durations")
            })
            .collect();
        assert_eq!(points.len(), 1);
        let p = points[0];
        assert_eq!(
            p.count(),
            5,
            "one per admitted call; the rejected one is not timed"
        );
        assert!((p.sum() - 2.215).abs() < 1e-9, "sum {}", p.sum());
        assert_eq!(p.bounds().collect::<Vec<_>>(), DURATION_BUCKETS.to_vec());
        assert_eq!(p.max(), Some(2.0));
        let keys: BTreeSet<String> = attrs(p.attributes()).into_keys().collect();
        assert_eq!(keys, BTreeSet::from([otel::ATTR_NAME.to_owned()]));
    })
    .expect("the histogram is exported");

    // The Prometheus histogram still gets every call too.
    let prom = prometheus::Registry::new();
    prom.register(Box::new(BreakerCollector::new(o.registry)))
        .unwrap();
    let text = cb_runtime::metrics::encode(&prom.gather());
    assert!(
        text.lines()
            .any(|l| l == r#"circuit_breaker_call_duration_seconds_count{name="otel-durations"} 5"#),
        "{text}"
    );
}

/// Breakers made or registered after `install` are reported by every
/// instrument, the histogram included; a removed one leaves the observable ones.
#[tokio::test]
async fn breakers_created_after_install_are_reported() {
    let o = Otel::install();
    assert!(o.u64_points(otel::CALLS, "otel-later").is_empty());
    let clock = ManualClock::new();
    let config = manual(&clock)
        .slow_call_duration(Duration::from_millis(100))
        .build()
        .unwrap();
    let later = o.registry.get_or_insert("otel-later", || config);
    let registered = Arc::new(CircuitBreaker::new(
        "otel-registered",
        manual(&clock).failure_threshold(1).build().unwrap(),
    ));
    o.registry.register(Arc::clone(&registered)).unwrap();

    assert!(call_taking(&later, &clock, 300, true).await.is_ok());
    let failed: Res = registered.call(async { Err("503") }).await;
    assert!(failed.is_err());

    assert_eq!(
        o.value(otel::CALLS, "otel-later", otel::ATTR_OUTCOME, "success"),
        Some(1)
    );
    assert_eq!(
        o.value(otel::CALLS, "otel-registered", otel::ATTR_OUTCOME, "failure"),
        Some(1)
    );
    assert_eq!(
        o.value(otel::STATE, "otel-registered", otel::ATTR_STATE, "open"),
        Some(1)
    );
    assert_eq!(
        o.u64_points(otel::SLOW_CALLS, "otel-later"),
        vec![(
            BTreeMap::from([(otel::ATTR_NAME.to_owned(), "otel-later".to_owned())]),
            1
        )]
    );
    assert_eq!(o.u64_points(otel::CONSECUTIVE_FAILURES, "otel-later")[0].1, 0);
    let counts: BTreeMap<String, u64> = o
        .metric(otel::CALL_DURATION, |metric| {
            let AggregatedMetrics::F64(MetricData::Histogram(h)) = metric.data() else {
                panic!("an f64 histogram");
            };
            h.data_points()
                .map(|p| (attrs(p.attributes())[otel::ATTR_NAME].clone(), p.count()))
                .collect()
        })
        .expect("the histogram is exported");
    assert_eq!(counts.get("otel-later"), Some(&1));
    assert_eq!(counts.get("otel-registered"), Some(&1));

    assert!(o.registry.remove("otel-later").is_some());
    assert!(o.u64_points(otel::CALLS, "otel-later").is_empty());
    assert!(o.u64_points(otel::STATE, "otel-later").is_empty());
    assert!(!o.u64_points(otel::CALLS, "otel-registered").is_empty());
}

/// The rates appear once the window holds `minimum_calls` calls, and equal
/// the breaker's.
#[tokio::test]
async fn rates_appear_with_minimum_calls_and_equal_stats() {
    let o = Otel::install();
    let clock = ManualClock::new();
    let config = manual(&clock)
        .failure_threshold(100)
        .failure_rate_threshold(0.9)
        .minimum_calls(4)
        .slow_call_duration(Duration::from_millis(100))
        .build()
        .unwrap();
    let b = o.registry.get_or_insert("otel-rates", || config);
    let r: Res = b.call(async { Err("503") }).await;
    assert!(r.is_err());
    assert!(o.f64_points(otel::FAILURE_RATE, "otel-rates").is_empty());
    for ok in [true, true, false] {
        let r = call_taking(&b, &clock, if ok { 150 } else { 1 }, ok).await;
        assert_eq!(r.is_ok(), ok);
    }
    let s = b.stats();
    assert_eq!(s.failure_rate, Some(0.5));
    assert_eq!(o.f64_points(otel::FAILURE_RATE, "otel-rates")[0].1, 0.5);
    assert_eq!(
        o.f64_points(otel::SLOW_CALL_RATE, "otel-rates")[0].1,
        s.slow_call_rate.unwrap()
    );
    assert_eq!(o.u64_points(otel::CONSECUTIVE_FAILURES, "otel-rates")[0].1, 1);
}
