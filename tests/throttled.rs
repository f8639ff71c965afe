//! Rate limits are not outages: `Outcome::Throttled`, rule by rule, on a
//! manual clock; then through the tower layer against a mock provider (axum
//! on 127.0.0.1) that answers 429 with `Retry-After`.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cb_runtime::clock::ManualClock;
use cb_runtime::{
    Backoff, BreakerErrorKind, CircuitBreaker, Classify, Config, ConfigBuilder, Outcome, Reason, State,
    Transition, Window,
};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn base(clock: &ManualClock) -> ConfigBuilder {
    Config::builder()
        .failure_threshold(3)
        .sliding_window(Window::Count(10))
        .minimum_calls(2)
        .open_duration(secs(60))
        .half_open_max_calls(1)
        .success_threshold(1)
        .throttle_duration(secs(5))
        .max_retry_after(secs(30))
        .clock(clock.clock())
}

fn breaker(name: &str, config: ConfigBuilder) -> CircuitBreaker {
    CircuitBreaker::new(name, config.build().unwrap())
}

/// A classifier for a result that the dependency throttled, with its hint.
#[derive(Clone, Copy)]
struct Throttle(Option<Duration>);

impl<T, E> Classify<T, E> for Throttle {
    fn classify(self, _: &Result<T, E>) -> Outcome {
        Outcome::Throttled
    }
    fn classify_with_retry_after(self, _: &Result<T, E>) -> (Outcome, Option<Duration>) {
        (Outcome::Throttled, self.0)
    }
}

/// One call through `b` that the dependency throttles with `hint`.
fn throttled(b: &CircuitBreaker, hint: Option<Duration>) {
    let permit = b.try_acquire().expect("admitted");
    let r = tokio_test::block_on(permit.run_classified(async { Err::<(), _>("429") }, Throttle(hint)));
    assert!(r.is_err());
}

fn transitions(b: &CircuitBreaker) -> Arc<Mutex<Vec<Transition>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    b.on_transition(move |t| s.lock().unwrap().push(t.clone()));
    seen
}

#[test]
fn a_throttled_call_is_counted_and_is_no_failure() {
    let clock = ManualClock::new();
    let b = breaker("throttled-counts", base(&clock).failure_threshold(1));
    b.try_acquire().unwrap().record(true);
    throttled(&b, None);
    let s = b.stats();
    assert_eq!(s.throttled, 1);
    assert_eq!((s.failures, s.successes, s.timeouts, s.ignored), (0, 1, 0, 0));
    assert_eq!(s.calls(), 2, "calls() counts the throttled call");
    // failure_threshold 1: one failure would have opened it for 60 s; the
    // throttled call opened it for throttle_duration, as a rate limit.
    assert_eq!(b.open_remaining(), Some(secs(5)));
    assert_eq!(b.open_reason(), Some(Reason::Throttled));
    // Not in the window: the one success is all it holds.
    assert_eq!((s.calls_in_window, s.failures_in_window), (1, 0));
    assert_eq!(s.consecutive_failures, 0);
}

#[test]
fn it_opens_for_the_hint_capped_at_max_retry_after() {
    let clock = ManualClock::new();
    let b = breaker("throttled-hint", base(&clock));
    let seen = transitions(&b);
    throttled(&b, Some(secs(8)));
    assert_eq!(b.state(), State::Open);
    assert_eq!(b.open_remaining(), Some(secs(8)), "the hint, not open_duration");
    let t = seen.lock().unwrap()[0].clone();
    assert_eq!(
        (t.from, t.to, t.reason),
        (State::Closed, State::Open, Reason::Throttled)
    );
    assert_eq!(t.open_for, Some(secs(8)));
    assert_eq!(t.reason.to_string(), "throttled");

    // A longer hint is cut to max_retry_after (30 s).
    let capped = breaker("throttled-hint-capped", base(&clock));
    throttled(&capped, Some(secs(3600)));
    assert_eq!(capped.open_remaining(), Some(secs(30)));
}

#[test]
fn without_a_hint_or_with_hints_off_it_opens_for_throttle_duration() {
    let clock = ManualClock::new();
    let b = breaker("throttled-no-hint", base(&clock));
    throttled(&b, None);
    assert_eq!(b.open_remaining(), Some(secs(5)));

    let zero = breaker("throttled-zero-hint", base(&clock));
    throttled(&zero, Some(Duration::ZERO));
    assert_eq!(zero.open_remaining(), Some(secs(5)), "a zero hint is no hint");

    let off = breaker(
        "throttled-hints-off",
        base(&clock).max_retry_after(Duration::ZERO),
    );
    throttled(&off, Some(secs(20)));
    assert_eq!(
        off.open_remaining(),
        Some(secs(5)),
        "max_retry_after 0s ignores hints"
    );
}

#[test]
fn a_refusal_while_throttled_says_so_with_the_time_left_then_one_probe_goes_through() {
    let clock = ManualClock::new();
    let b = breaker("throttled-refusal", base(&clock));
    throttled(&b, Some(secs(2)));
    let refusal = b.try_acquire().unwrap_err();
    assert!(refusal.is_throttled() && refusal.is_rejected());
    assert_eq!(refusal.kind(), BreakerErrorKind::Open);
    assert_eq!(refusal.retry_after(), Some(secs(2)));
    assert!(b.is_throttled() && b.throttling());

    clock.advance(Duration::from_millis(1500));
    let refusal = b.try_acquire().unwrap_err();
    assert!(refusal.is_throttled());
    assert_eq!(
        refusal.retry_after(),
        Some(Duration::from_millis(500)),
        "the time left"
    );

    clock.advance(Duration::from_millis(500));
    assert_eq!(b.state(), State::HalfOpen, "after the period, half-open as usual");
    assert!(!b.is_throttled());
    assert!(b.throttling(), "probing after a rate limit");
    let probe = b.try_acquire().expect("one probe goes through");
    let full = b.try_acquire().unwrap_err();
    assert_eq!(full.kind(), BreakerErrorKind::HalfOpenFull);
    assert!(!full.is_throttled());
    probe.record(true);
    assert_eq!(b.state(), State::Closed);
    assert!(!b.throttling() && b.open_reason().is_none());
    assert_eq!(b.stats().rejected, 3);
}

#[test]
fn a_failure_open_is_not_a_throttled_one() {
    let clock = ManualClock::new();
    let b = breaker("throttled-not-failures", base(&clock).failure_threshold(1));
    b.try_acquire().unwrap().record(false);
    let refusal = b.try_acquire().unwrap_err();
    assert!(!refusal.is_throttled() && refusal.is_rejected());
    assert!(!b.is_throttled() && !b.throttling());
    assert_eq!(b.open_reason(), Some(Reason::ConsecutiveFailures));
}

#[test]
fn a_late_throttled_answer_is_ignored() {
    let clock = ManualClock::new();
    let b = breaker("throttled-late", base(&clock));
    let early = b.try_acquire().unwrap();
    let first = b.try_acquire().unwrap();
    // The first answer opens for 2 s.
    tokio_test::block_on(first.run_classified(async { Err::<(), _>(()) }, Throttle(Some(secs(2)))))
        .unwrap_err();
    assert_eq!(b.open_remaining(), Some(secs(2)));
    // The other call was admitted before the circuit moved: its 20 s is ignored.
    tokio_test::block_on(early.run_classified(async { Err::<(), _>(()) }, Throttle(Some(secs(20)))))
        .unwrap_err();
    assert_eq!(b.open_remaining(), Some(secs(2)));
    assert_eq!(b.stats().throttled, 2, "a late answer still counts in the totals");

    // A late answer never shortens nor reopens either: a call admitted while
    // closed, then the circuit opens for 60 s, then half-opens.
    let c = breaker("throttled-late-after-open", base(&clock));
    let late = c.try_acquire().unwrap();
    assert!(c.open_for(secs(60)));
    late.record_outcome(Outcome::Throttled);
    assert_eq!(c.open_remaining(), Some(secs(60)));
    clock.advance(secs(60));
    assert_eq!(c.state(), State::HalfOpen);
    let late = c.try_acquire().unwrap();
    c.reset();
    late.record_outcome(Outcome::Throttled);
    assert_eq!(c.state(), State::Closed, "a probe's answer after a reset is late");
}

#[test]
fn it_never_shortens_an_open_period() {
    let clock = ManualClock::new();
    let b = breaker("throttled-never-shortens", base(&clock).failure_threshold(1));
    // A probe after a 60 s failure open...
    b.try_acquire().unwrap().record(false);
    clock.advance(secs(60));
    let probe = b.try_acquire().unwrap();
    // ...while another call, admitted with the probe, is in flight.
    assert_eq!(b.state(), State::HalfOpen);
    // The circuit is opened for an hour meanwhile (say, by an operator's
    // open_for); the probe's 1 s throttle must not shorten it.
    assert!(b.open_for(secs(3600)));
    probe.record_outcome(Outcome::Throttled);
    assert_eq!(b.open_remaining(), Some(secs(3600)));
    // Extending an open period with open_for is never shortened by a
    // throttle of the same period either.
    clock.advance(secs(3600));
    assert_eq!(b.state(), State::HalfOpen);
    throttled(&b, Some(secs(10)));
    assert!(b.open_for(secs(2)));
    assert_eq!(b.open_remaining(), Some(secs(10)), "open_for(2 s) kept the 10 s");
}

#[test]
fn a_hundred_throttled_answers_leave_the_failure_rate_at_zero_and_the_backoff_level_unchanged() {
    let clock = ManualClock::new();
    let config = base(&clock)
        .failure_threshold(1)
        .open_duration(secs(10))
        .open_backoff(Backoff::exponential(2.0, secs(600)));
    let b = breaker("throttled-hundred", config);
    let seen = transitions(&b);
    // A failure open, and one failed probe: backoff level 1.
    b.try_acquire().unwrap().record(false);
    clock.advance(secs(10));
    b.try_acquire().unwrap().record(false);
    assert_eq!(b.backoff_level(), 1);
    clock.advance(secs(20));

    for i in 0..100 {
        throttled(&b, Some(secs(1)));
        assert_eq!(
            b.open_remaining(),
            Some(secs(1)),
            "answer {i}: the hint, no backoff"
        );
        assert_eq!(b.backoff_level(), 1, "answer {i}");
        clock.advance(secs(1));
    }
    let s = b.stats();
    assert_eq!(s.throttled, 100);
    assert_eq!(s.failures, 2, "the two real failures only");
    assert_eq!(s.failures_in_window, 0);
    assert_eq!(s.failure_rate.unwrap_or(0.0), 0.0);
    assert_eq!(s.consecutive_failures, 0);
    assert_eq!(b.backoff_level(), 1);
    let throttles = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|t| t.reason == Reason::Throttled)
        .count();
    assert_eq!(throttles, 100);
    // The next failed probe backs off from level 1, as before the rate limit.
    b.try_acquire().unwrap().record(false);
    assert_eq!(b.backoff_level(), 2);
    assert_eq!(b.open_remaining(), Some(secs(40)), "10 s x 2^2");
}

#[test]
fn throttled_answers_never_trip_the_failure_triggers_while_closed() {
    let clock = ManualClock::new();
    let b = breaker(
        "throttled-window",
        base(&clock).minimum_calls(10).max_retry_after(Duration::ZERO),
    );
    // Two failures (threshold 3), then a throttle, then after it closes a
    // third failure: the streak counts 1, not 3.
    b.try_acquire().unwrap().record(false);
    b.try_acquire().unwrap().record(false);
    assert_eq!(b.stats().consecutive_failures, 2);
    throttled(&b, None);
    clock.advance(secs(5));
    b.try_acquire().unwrap().record(true); // the probe closes it
    b.try_acquire().unwrap().record(false);
    let s = b.stats();
    assert_eq!(s.state, State::Closed);
    assert_eq!(s.consecutive_failures, 1);
    assert_eq!((s.calls_in_window, s.failures_in_window), (1, 1));
}

#[test]
fn a_throttled_probe_gives_its_slot_back_and_reopens_for_the_hint() {
    let clock = ManualClock::new();
    let b = breaker(
        "throttled-probe",
        base(&clock)
            .failure_threshold(1)
            .half_open_max_calls(2)
            .success_threshold(2),
    );
    b.try_acquire().unwrap().record(false);
    clock.advance(secs(60));
    let ok = b.try_acquire().unwrap();
    let limited = b.try_acquire().unwrap();
    assert_eq!(b.stats().half_open_in_flight, 2);
    ok.record(true);
    tokio_test::block_on(limited.run_classified(async { Err::<(), _>(()) }, Throttle(Some(secs(3)))))
        .unwrap_err();
    assert_eq!(b.state(), State::Open);
    assert_eq!(b.open_remaining(), Some(secs(3)));
    assert_eq!(b.open_reason(), Some(Reason::Throttled));
    assert_eq!(b.backoff_level(), 0);
    clock.advance(secs(3));
    // A new half-open period: two fresh successes are needed.
    assert_eq!(b.stats().half_open_in_flight, 0);
    b.try_acquire().unwrap().record(true);
    assert_eq!(b.state(), State::HalfOpen);
    b.try_acquire().unwrap().record(true);
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn a_disabled_breaker_counts_throttled_calls_and_never_opens() {
    let clock = ManualClock::new();
    let b = breaker("throttled-disabled", base(&clock));
    b.disable();
    throttled(&b, Some(secs(10)));
    assert_eq!(b.state(), State::Disabled);
    assert_eq!(b.stats().throttled, 1);
}

#[test]
fn a_failure_hint_is_capped_at_max_retry_after_too() {
    let clock = ManualClock::new();
    let b = breaker("throttled-failure-hint", base(&clock).failure_threshold(10));
    let permit = b.try_acquire().unwrap();
    let hinted = |_: &Result<(), ()>| Outcome::Failure;
    struct FailureHint<F>(F);
    impl<F: FnOnce(&Result<(), ()>) -> Outcome> Classify<(), ()> for FailureHint<F> {
        fn classify(self, r: &Result<(), ()>) -> Outcome {
            (self.0)(r)
        }
        fn classify_with_retry_after(self, r: &Result<(), ()>) -> (Outcome, Option<Duration>) {
            ((self.0)(r), Some(secs(3600)))
        }
    }
    tokio_test::block_on(permit.run_classified(async { Err(()) }, FailureHint(hinted))).unwrap_err();
    assert_eq!(b.open_remaining(), Some(secs(30)));
    assert_eq!(b.open_reason(), Some(Reason::OpenedFor));
    assert!(!b.is_throttled(), "a 503's hint is an outage's");
}

#[test]
fn a_streamed_call_can_be_throttled_by_its_opening_or_an_item() {
    let clock = ManualClock::new();
    let b = breaker("throttled-stream", base(&clock));
    let classify = |e: &u16| {
        if *e == 429 {
            Outcome::Throttled
        } else {
            Outcome::Failure
        }
    };
    // The opening answers 429.
    let open = async { Err::<futures::stream::Iter<std::vec::IntoIter<Result<u8, u16>>>, u16>(429) };
    let r = tokio_test::block_on(b.call_stream_with(open, classify));
    assert_eq!(r.err().and_then(|e| e.into_inner()), Some(429));
    assert_eq!((b.stats().throttled, b.stats().failures), (1, 0));
    assert_eq!(b.open_remaining(), Some(secs(5)));
    clock.advance(secs(5));

    // The probe's stream starts, then says 429 with a hint.
    struct Hinted;
    impl cb_runtime::ClassifyError<u16> for Hinted {
        fn classify_error(&mut self, _: &u16) -> Outcome {
            Outcome::Throttled
        }
        fn classify_error_with_retry_after(&mut self, _: &u16) -> (Outcome, Option<Duration>) {
            (Outcome::Throttled, Some(secs(7)))
        }
    }
    let items = vec![Ok::<u8, u16>(1), Err(429)];
    let open = async move { Ok::<_, u16>(futures::stream::iter(items)) };
    let stream = tokio_test::block_on(b.call_stream_with(open, Hinted)).unwrap();
    let got: Vec<Result<u8, _>> = tokio_test::block_on(futures::StreamExt::collect(stream));
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].as_ref().err().and_then(|e| e.inner()), Some(&429));
    assert_eq!(b.open_remaining(), Some(secs(7)));
    assert!(b.try_acquire().unwrap_err().is_throttled());
    assert_eq!((b.stats().throttled, b.stats().failures), (2, 0));
}

// ---- What operators see -----------------------------------------------------

#[test]
fn metrics_logs_and_the_admin_api_tell_a_rate_limit_from_an_outage() {
    use tower::ServiceExt;

    let registry: &'static cb_runtime::Registry =
        Box::leak(Box::new(cb_runtime::Registry::with_env(Vec::new)));
    let clock = ManualClock::new();
    let limited = registry.get_or_insert("ops-limited", || base(&clock).build().unwrap());
    let down = registry.get_or_insert("ops-down", || base(&clock).failure_threshold(1).build().unwrap());
    let ((), logs) = support::logs_of(|| throttled(&limited, Some(secs(9))));
    down.try_acquire().unwrap().record(false);

    // The log: the reason, at INFO (a rate limit is routine), with the period.
    let line = logs
        .lines()
        .find(|l| l.contains("ops-limited"))
        .unwrap_or_default();
    assert!(
        line.contains("INFO") && line.contains("reason=\"throttled\"") && line.contains("9s"),
        "{logs}"
    );

    // Metrics: the outcome, and the gauge that tells the two opens apart.
    let prom = prometheus::Registry::new();
    prom.register(Box::new(cb_runtime::metrics::BreakerCollector::new(registry)))
        .unwrap();
    let text = cb_runtime::metrics::encode(&prom.gather());
    for line in [
        r#"circuit_breaker_calls_total{name="ops-limited",outcome="throttled"} 1"#,
        r#"circuit_breaker_calls_total{name="ops-limited",outcome="failure"} 0"#,
        r#"circuit_breaker_throttled{name="ops-limited"} 1"#,
        r#"circuit_breaker_throttled{name="ops-down"} 0"#,
        r#"circuit_breaker_state{name="ops-limited"} 1"#,
    ] {
        assert!(text.contains(line), "no `{line}` in\n{text}");
    }

    // The admin API: the reason and the flag, and the count.
    let admin = cb_runtime::admin::router(registry, cb_runtime::admin::AdminAuth::disabled());
    let get = |path: &str| {
        let request = http::Request::get(path).body(axum::body::Body::empty()).unwrap();
        let response = tokio_test::block_on(admin.clone().oneshot(request)).unwrap();
        assert_eq!(response.status(), 200);
        let body = tokio_test::block_on(axum::body::to_bytes(response.into_body(), 1 << 20)).unwrap();
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()
    };
    let view = get("/circuit-breakers/ops-limited");
    assert_eq!(view["state"], "open");
    assert_eq!(view["throttled"], true);
    assert_eq!(view["open_reason"], "throttled");
    assert_eq!(view["open_remaining_ms"], 9000);
    assert_eq!(view["stats"]["throttled"], 1);
    assert_eq!(view["stats"]["calls"], 1);
    assert_eq!(view["config"]["throttle_duration_ms"], 5000);
    assert_eq!(view["config"]["max_retry_after_ms"], 30000);
    let view = get("/circuit-breakers/ops-down");
    assert_eq!(view["throttled"], false);
    assert_eq!(view["open_reason"], "consecutive failures");
    clock.advance(secs(9));
    let view = get("/circuit-breakers/ops-limited");
    assert_eq!(
        (view["state"].as_str(), view["throttled"].as_bool()),
        (Some("half_open"), Some(true))
    );
    limited.try_acquire().unwrap().record(true);
    let view = get("/circuit-breakers/ops-limited");
    assert_eq!(view["throttled"], false);
    assert_eq!(view["open_reason"], serde_json::Value::Null);
}

// ---- Through the tower layer, against a mock provider ----------------------

mod provider {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue, StatusCode};
    use axum::routing::get;
    use axum::Router;
    use cb_runtime::tower::CircuitBreakerLayer;
    use std::net::SocketAddr;
    use support::http_client as client;
    use tower::{Layer, ServiceExt};

    /// A provider on 127.0.0.1 that answers `429` with `Retry-After: <after>`
    /// while `limited`, `200` otherwise, and counts the requests it sees.
    struct Provider {
        addr: SocketAddr,
        hits: Arc<AtomicUsize>,
        limited: Arc<std::sync::atomic::AtomicBool>,
    }

    async fn provider(after: fn() -> String) -> Provider {
        let hits = Arc::new(AtomicUsize::new(0));
        let limited = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (h, l) = (Arc::clone(&hits), Arc::clone(&limited));
        let app = Router::new().route(
            "/v1/chat/completions",
            get(move || {
                let (h, l) = (Arc::clone(&h), Arc::clone(&l));
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    let mut headers = HeaderMap::new();
                    if l.load(Ordering::SeqCst) {
                        headers.insert("retry-after", HeaderValue::from_str(&after()).unwrap());
                        (StatusCode::TOO_MANY_REQUESTS, headers, "rate limit reached")
                    } else {
                        (StatusCode::OK, headers, "hello")
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Provider { addr, hits, limited }
    }

    /// 429 with `Retry-After: 2`: refused for 2 s on the breaker's clock, not
    /// for `open_duration` (120 s with the `llm` preset), then one probe goes
    /// through and closes it.
    #[tokio::test]
    async fn a_429_with_retry_after_2_refuses_for_2_s_then_one_probe_goes_through() {
        let p = provider(|| "2".to_owned()).await;
        let clock = ManualClock::new();
        let config = cb_runtime::Preset::Llm
            .builder()
            .half_open_max_calls(1)
            .success_threshold(1)
            .clock(clock.clock())
            .build()
            .unwrap();
        assert_eq!(config.open_duration(), secs(120));
        let b = Arc::new(CircuitBreaker::new("provider-429", config));
        let service = CircuitBreakerLayer::new(Arc::clone(&b)).layer(client());
        let url = format!("http://{}/v1/chat/completions", p.addr);

        let answer = service.clone().oneshot(url.clone()).await.unwrap();
        assert_eq!(answer.status(), 429, "the 429 itself comes back");
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.open_reason(), Some(Reason::Throttled));
        let s = b.stats();
        assert_eq!((s.throttled, s.failures), (1, 0));

        // Refused, without reaching the provider, for 2 s.
        for step in [0, 500, 1000, 1999] {
            if step > 0 {
                clock.advance(Duration::from_millis(if step == 1999 { 999 } else { 500 }));
            }
            let refused = service.clone().oneshot(url.clone()).await.unwrap_err();
            let e = refused.breaker_error().expect("the breaker's refusal");
            assert!(e.is_throttled(), "at {step} ms");
            assert_eq!(
                e.retry_after(),
                Some(Duration::from_millis(2000 - step)),
                "at {step} ms"
            );
        }
        assert_eq!(p.hits.load(Ordering::SeqCst), 1);

        // At 2 s, not 120 s: one probe goes through; a second is refused
        // while it runs. The provider has recovered.
        clock.advance(Duration::from_millis(1));
        p.limited.store(false, Ordering::SeqCst);
        assert_eq!(b.state(), State::HalfOpen);
        let probe = service.clone().oneshot(url.clone());
        let second = service.clone().oneshot(url.clone());
        let (probe, second) = tokio::join!(probe, second);
        let answers = [probe, second];
        assert_eq!(answers.iter().filter(|r| r.is_ok()).count(), 1, "one probe");
        let refused = answers.iter().find_map(|r| r.as_ref().err()).unwrap();
        assert_eq!(
            refused.breaker_error().unwrap().kind(),
            BreakerErrorKind::HalfOpenFull
        );
        assert_eq!(p.hits.load(Ordering::SeqCst), 2);
        assert_eq!(b.state(), State::Closed);
    }

    /// `Retry-After` as an HTTP date, 3 s ahead of the wall clock.
    #[tokio::test]
    async fn a_retry_after_date_opens_until_that_date() {
        let p = provider(|| httpdate::fmt_http_date(std::time::SystemTime::now() + secs(3))).await;
        let clock = ManualClock::new();
        let config = Config::builder().clock(clock.clock()).build().unwrap();
        let b = Arc::new(CircuitBreaker::new("provider-429-date", config));
        let service = CircuitBreakerLayer::new(Arc::clone(&b)).layer(client());
        let url = format!("http://{}/v1/chat/completions", p.addr);
        assert_eq!(service.clone().oneshot(url).await.unwrap().status(), 429);
        // The date has whole seconds: between 2 and 3 s from the answer.
        let left = b.open_remaining().unwrap();
        assert!(left > secs(1) && left <= secs(3), "{left:?}");
        assert!(b.is_throttled());
        clock.advance(secs(3));
        assert_eq!(b.state(), State::HalfOpen);
    }

    /// The layer's own cap, when set, and the breaker's `max_retry_after`:
    /// the lower wins; `ignore_retry_after` falls back to `throttle_duration`.
    #[tokio::test]
    async fn the_breakers_max_retry_after_bounds_the_layers_hints() {
        let p = provider(|| "100".to_owned()).await;
        let url = format!("http://{}/v1/chat/completions", p.addr);
        let clock = ManualClock::new();
        let make = |cap: u64| {
            let config = Config::builder()
                .max_retry_after(secs(cap))
                .throttle_duration(secs(4))
                .clock(clock.clock())
                .build()
                .unwrap();
            Arc::new(CircuitBreaker::new("provider-cap", config))
        };
        let b = make(10);
        let s = CircuitBreakerLayer::new(Arc::clone(&b)).layer(client());
        s.oneshot(url.clone()).await.unwrap();
        assert_eq!(b.open_remaining(), Some(secs(10)), "the field's cap");

        let b = make(60);
        let s = CircuitBreakerLayer::new(Arc::clone(&b))
            .max_retry_after(secs(20))
            .layer(client());
        s.oneshot(url.clone()).await.unwrap();
        assert_eq!(b.open_remaining(), Some(secs(20)), "the layer's lower cap");

        let b = make(60);
        let s = CircuitBreakerLayer::new(Arc::clone(&b))
            .ignore_retry_after()
            .layer(client());
        s.oneshot(url).await.unwrap();
        assert_eq!(b.open_remaining(), Some(secs(4)), "no hint: throttle_duration");
        assert!(b.is_throttled());
    }
}
