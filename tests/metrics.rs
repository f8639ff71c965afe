//! The Prometheus exposition after real calls: names, labels and exact counts,
//! read from the breakers at scrape time.

use std::time::Duration;

use cb_runtime::clock::ManualClock;
use cb_runtime::metrics::{self, BreakerCollector};
use cb_runtime::{CallError, Config, Registry, State};

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
