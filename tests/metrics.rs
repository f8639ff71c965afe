//! The Prometheus exposition after real calls: names, labels and exact counts,
//! read from the breakers at scrape time.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Waker};
use std::time::Duration;

use cb_runtime::clock::ManualClock;
use cb_runtime::metrics::{self, BreakerCollector};
use cb_runtime::{CallError, Clock, Config, FallbackReason, Outcome, Registry, State};

type Res = Result<u32, CallError<&'static str>>;

fn private_registry() -> &'static Registry {
    Box::leak(Box::new(Registry::with_env(Vec::new)))
}

fn exposition(registry: &'static Registry) -> String {
    let prom = prometheus::Registry::new();
    prom.register(Box::new(BreakerCollector::new(registry))).unwrap();
    metrics::encode(&prom.gather())
}

fn has(text: &str, line: &str) {
    assert!(text.lines().any(|l| l == line), "missing `{line}` in:\n{text}");
}

#[tokio::test]
async fn counts_states_and_transitions_after_real_calls() {
    let registry = private_registry();
    let clock = ManualClock::new();
    let config = Config::builder()
        .failure_threshold(2)
        .open_duration(Duration::from_secs(10))
        .slow_call_duration(Duration::from_millis(100))
        .clock(clock.clock())
        .build()
        .unwrap();
    let b = registry.get_or_insert("payments-api", || config);
    for _ in 0..3 {
        let r: Res = b.call(async { Ok(1) }).await;
        assert!(r.is_ok());
    }
    let c = clock.clone();
    let slow: Res = b
        .call(async move {
            c.advance(Duration::from_millis(150));
            Ok(1)
        })
        .await;
    assert!(slow.is_ok());
    let ignored: Res = b
        .call_with(async { Err("bad request") }, |_| cb_runtime::Outcome::Ignored)
        .await;
    assert!(ignored.is_err());
    for _ in 0..2 {
        let r: Res = b.call(async { Err("503") }).await;
        assert!(r.is_err());
    }
    assert_eq!(b.state(), State::Open);
    for _ in 0..5 {
        let r: Res = b.call(async { Ok(1) }).await;
        assert!(r.unwrap_err().is_rejected());
    }

    let text = exposition(registry);
    has(&text, r#"circuit_breaker_state{name="payments-api"} 1"#);
    has(
        &text,
        r#"circuit_breaker_calls_total{name="payments-api",outcome="success"} 4"#,
    );
    has(
        &text,
        r#"circuit_breaker_calls_total{name="payments-api",outcome="failure"} 2"#,
    );
    has(
        &text,
        r#"circuit_breaker_calls_total{name="payments-api",outcome="rejected"} 5"#,
    );
    has(
        &text,
        r#"circuit_breaker_calls_total{name="payments-api",outcome="timeout"} 0"#,
    );
    has(
        &text,
        r#"circuit_breaker_calls_total{name="payments-api",outcome="ignored"} 1"#,
    );
    has(
        &text,
        r#"circuit_breaker_slow_calls_total{name="payments-api"} 1"#,
    );
    has(
        &text,
        r#"circuit_breaker_state_transitions_total{from="closed",name="payments-api",to="open"} 1"#,
    );
    has(&text, "# TYPE circuit_breaker_calls_total counter");
    has(&text, "# TYPE circuit_breaker_state gauge");
    // Off unless asked for.
    assert!(!text.contains("circuit_breaker_call_duration_seconds"), "{text}");

    // The state is what the next call meets, even with no call since (pitfall 11).
    clock.advance(Duration::from_secs(10));
    let text = exposition(registry);
    has(&text, r#"circuit_breaker_state{name="payments-api"} 2"#);
    has(
        &text,
        r#"circuit_breaker_state_transitions_total{from="open",name="payments-api",to="half_open"} 1"#,
    );
}

#[test]
fn every_state_has_its_code() {
    let registry = private_registry();
    let names = ["s-closed", "s-forced", "s-disabled"];
    for n in names {
        registry.get_or_insert(n, Config::default);
    }
    registry.get("s-forced").unwrap().force_open();
    registry.get("s-disabled").unwrap().disable();
    let text = exposition(registry);
    has(&text, r#"circuit_breaker_state{name="s-closed"} 0"#);
    has(&text, r#"circuit_breaker_state{name="s-forced"} 3"#);
    has(&text, r#"circuit_breaker_state{name="s-disabled"} 4"#);
}

#[tokio::test]
async fn call_duration_histogram_is_opt_in_and_uses_the_breakers_clock() {
    let registry = private_registry();
    let clock = ManualClock::new();
    let b = registry.get_or_insert("timed", || {
        Config::builder().clock(clock.clock()).build().unwrap()
    });
    let r: Res = b.call(async { Ok(1) }).await;
    assert!(r.is_ok());
    registry.record_call_durations();
    for ms in [30, 700] {
        let c = clock.clone();
        let r: Res = b
            .call(async move {
                c.advance(Duration::from_millis(ms));
                Ok(1)
            })
            .await;
        assert!(r.is_ok());
    }
    // Breakers created after turning it on are timed too.
    let later = registry.get_or_insert("timed-later", || {
        Config::builder().clock(clock.clock()).build().unwrap()
    });
    let r: Res = later.call(async { Err("down") }).await;
    assert!(r.is_err());

    let text = exposition(registry);
    has(&text, "# TYPE circuit_breaker_call_duration_seconds histogram");
    has(
        &text,
        r#"circuit_breaker_call_duration_seconds_count{name="timed"} 2"#,
    );
    has(
        &text,
        r#"circuit_breaker_call_duration_seconds_bucket{name="timed",le="0.025"} 0"#,
    );
    has(
        &text,
        r#"circuit_breaker_call_duration_seconds_bucket{name="timed",le="0.05"} 1"#,
    );
    has(
        &text,
        r#"circuit_breaker_call_duration_seconds_bucket{name="timed",le="0.5"} 1"#,
    );
    has(
        &text,
        r#"circuit_breaker_call_duration_seconds_bucket{name="timed",le="1"} 2"#,
    );
    has(
        &text,
        r#"circuit_breaker_call_duration_seconds_bucket{name="timed",le="60"} 2"#,
    );
    has(
        &text,
        r#"circuit_breaker_call_duration_seconds_count{name="timed-later"} 1"#,
    );
}

#[test]
fn global_registration_and_text() {
    let prom = prometheus::Registry::new();
    metrics::register(&prom).unwrap();
    assert!(metrics::register(&prom).is_err(), "registering twice is refused");
    let b = cb_runtime::registry().get_or_insert("metrics-global", Config::default);
    let _ = b.try_acquire().map(|p| p.record(true));
    let text = metrics::encode(&prom.gather());
    has(
        &text,
        r#"circuit_breaker_calls_total{name="metrics-global",outcome="success"} 1"#,
    );
    has(
        &metrics::text(),
        r#"circuit_breaker_state{name="metrics-global"} 0"#,
    );
}

#[test]
fn an_empty_registry_exposes_nothing_and_does_not_fail() {
    let text = exposition(private_registry());
    assert!(!text.contains("circuit_breaker_"), "{text}");
}

// ---- issue 29: the exposition agrees with `Stats`, total by total -------------------------
//
// `circuit_breaker_calls_total` has one `outcome` series per total, `cancelled` included, so a
// breaker's series add up to `Stats::calls()`; a timeout is `outcome="timeout"` and a failure in
// the window; fallbacks are `circuit_breaker_fallbacks_total{on}` and probes
// `circuit_breaker_probes_total{result}`.

/// The value of the series `metric{name="<name>",<label>="<value>"}`.
fn series(text: &str, metric: &str, name: &str, label: &str, value: &str) -> Option<u64> {
    let wanted = [format!("name=\"{name}\""), format!("{label}=\"{value}\"")];
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .find(|l| wanted.iter().all(|w| l.contains(w.as_str())))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Every `outcome` series of `name`, summed.
fn outcome_sum(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with("circuit_breaker_calls_total{") && l.contains(&format!("name=\"{name}\"")))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

#[tokio::test(start_paused = true)]
async fn every_total_of_stats_has_its_outcome_series_and_they_add_up() {
    let registry = private_registry();
    let b = registry.get_or_insert("counts", || {
        Config::builder()
            .clock(Clock::tokio())
            .call_timeout(Duration::from_millis(100))
            .failure_threshold(4)
            .build()
            .unwrap()
    });
    for _ in 0..3 {
        let ok: Res = b.call(async { Ok(1) }).await;
        assert!(ok.is_ok());
    }
    let failed: Res = b.call(async { Err("503") }).await;
    assert!(failed.is_err());
    let timed_out: Res = b.call(std::future::pending()).await;
    assert!(timed_out.unwrap_err().is_timeout());
    let ignored: Res = b.call_with(async { Err("400") }, |_| Outcome::Ignored).await;
    assert!(ignored.is_err());
    // Cancelled: dropped while pending, after admission.
    {
        let mut call = pin!(b.call(std::future::pending::<Res>()));
        let polled = call.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        assert!(polled.is_pending());
    }
    // The timeout and the failure are both failures in the window.
    let stats = b.stats();
    assert_eq!(
        (stats.failures, stats.timeouts, stats.consecutive_failures),
        (1, 1, 2)
    );
    assert_eq!(stats.failures_in_window, 2);
    b.force_open();
    for _ in 0..2 {
        let refused: Res = b.call(async { Ok(1) }).await;
        assert!(refused.unwrap_err().is_rejected());
    }

    let stats = b.stats();
    let text = exposition(registry);
    let expected = [
        ("success", 3),
        ("failure", 1),
        ("timeout", 1),
        ("ignored", 1),
        ("cancelled", 1),
        ("rejected", 2),
        ("throttled", 0),
        ("saturated", 0),
    ];
    for (outcome, n) in expected {
        assert_eq!(
            series(&text, "circuit_breaker_calls_total", "counts", "outcome", outcome),
            Some(n),
            "outcome {outcome} in:\n{text}"
        );
    }
    assert_eq!(stats.outcomes().collect::<Vec<_>>(), expected);
    assert_eq!(stats.calls(), 9);
    assert_eq!(outcome_sum(&text, "counts"), stats.calls(), "{text}");
}

#[tokio::test]
async fn fallbacks_and_probes_are_counted_by_reason_and_result() {
    let registry = private_registry();
    let b = registry.get_or_insert("fallbacks-probes", || {
        Config::builder()
            .clock(Clock::tokio())
            .failure_threshold(1)
            .open_duration(Duration::from_secs(10))
            .half_open_max_calls(2)
            .success_threshold(2)
            .build()
            .unwrap()
    });
    let text = exposition(registry);
    for on in ["refusal", "timeout", "failure", "throttled", "error"] {
        assert_eq!(
            series(
                &text,
                "circuit_breaker_fallbacks_total",
                "fallbacks-probes",
                "on",
                on
            ),
            Some(0),
            "{text}"
        );
    }
    b.record_fallback(FallbackReason::Refusal);
    b.record_fallback(FallbackReason::Refusal);
    b.record_fallback(FallbackReason::Failure);
    b.record_fallback(FallbackReason::Throttled);
    b.record_fallback(FallbackReason::Error);
    b.record_fallback(FallbackReason::Error);

    // Open, then half-open: one probe ignored, one succeeds, one fails.
    let failed: Res = b.call(async { Err("down") }).await;
    assert!(failed.is_err());
    assert_eq!(b.state(), State::Open);
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(11)).await;
    let ignored: Res = b.call_with(async { Err("400") }, |_| Outcome::Ignored).await;
    assert!(ignored.is_err());
    let ok: Res = b.call(async { Ok(1) }).await;
    assert!(ok.is_ok());
    let failed: Res = b.call(async { Err("still down") }).await;
    assert!(failed.is_err());
    assert_eq!(b.state(), State::Open);

    let stats = b.stats();
    assert_eq!(stats.fallbacks, 6);
    assert_eq!(stats.fallbacks_on(FallbackReason::Refusal), 2);
    assert_eq!(stats.fallbacks_on(FallbackReason::Timeout), 0);
    assert_eq!(stats.fallbacks_on(FallbackReason::Failure), 1);
    assert_eq!(stats.fallbacks_on(FallbackReason::Throttled), 1);
    assert_eq!(stats.fallbacks_on(FallbackReason::Error), 2);
    let probes: Vec<_> = stats.probe_results().collect();
    assert_eq!(
        probes,
        [
            ("success", 1),
            ("failure", 1),
            ("timeout", 0),
            ("ignored", 1),
            ("throttled", 0),
            ("cancelled", 0)
        ]
    );

    let text = exposition(registry);
    let fallbacks = |on| {
        series(
            &text,
            "circuit_breaker_fallbacks_total",
            "fallbacks-probes",
            "on",
            on,
        )
    };
    assert_eq!(
        FallbackReason::ALL.map(|r| fallbacks(r.as_str())),
        [Some(2), Some(0), Some(1), Some(1), Some(2)]
    );
    for (result, n) in probes {
        assert_eq!(
            series(
                &text,
                "circuit_breaker_probes_total",
                "fallbacks-probes",
                "result",
                result
            ),
            Some(n),
            "probe result {result} in:\n{text}"
        );
    }
    assert!(
        text.contains("# TYPE circuit_breaker_fallbacks_total counter"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE circuit_breaker_probes_total counter"),
        "{text}"
    );
}
