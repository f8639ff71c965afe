//! The middleware against a real axum server on loopback: keys, the default
//! classification with its hints, refusals that send nothing, and the
//! user's key and classification rules.

mod support;

use std::time::{Duration, SystemTime};

use cb_reqwest::CircuitBreakerMiddleware;
use cb_runtime::clock::ManualClock;
use cb_runtime::{BreakerError, Config, ConfigBuilder, Outcome, Reason, State};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use support::{closed_port, registry, Server};

fn base(clock: &ManualClock) -> ConfigBuilder {
    Config::builder()
        .failure_threshold(2)
        .open_duration(Duration::from_secs(30))
        .throttle_duration(Duration::from_secs(5))
        .max_retry_after(Duration::from_secs(120))
        .no_slow_call_detection()
        .clock(clock.clock())
}

fn client(middleware: CircuitBreakerMiddleware) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build()
}

/// The refusal a request ended with, if it was refused.
fn refusal(result: &reqwest_middleware::Result<reqwest::Response>) -> Option<&BreakerError> {
    match result {
        Err(reqwest_middleware::Error::Middleware(e)) => e.downcast_ref::<BreakerError>(),
        _ => None,
    }
}

#[tokio::test]
async fn failures_open_the_hosts_breaker_and_refusals_are_never_sent() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let middleware = CircuitBreakerMiddleware::new("hosts")
        .config(base(&clock).build().unwrap())
        .registry(registry());
    let family = middleware.family().clone();
    let client = client(middleware);
    let down = server.url("/answer?status=503");

    for _ in 0..2 {
        let response = client.get(&down).send().await.unwrap();
        assert_eq!(response.status(), 503, "an admitted answer comes back unchanged");
    }
    let key = format!("127.0.0.1:{}", server.addr.port());
    assert_eq!(family.keys(), std::slice::from_ref(&key), "keyed by host:port");
    let breaker = family.get(&key).unwrap();
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(breaker.stats().failures, 2);

    let refused = client.get(&down).send().await;
    let e = refusal(&refused).expect("a refusal downcasts to BreakerError");
    assert!(e.is_rejected());
    assert_eq!(server.hits(), 2, "the refused request was never sent");
    assert_eq!(breaker.stats().rejected, 1);

    // Another host of the same server (localhost) has its own breaker.
    let other = format!("http://localhost:{}/answer", server.addr.port());
    let response = client.get(&other).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        family
            .get(&format!("localhost:{}", server.addr.port()))
            .unwrap()
            .stats()
            .successes,
        1
    );

    // After the open period, a probe closes it again.
    clock.advance(Duration::from_secs(30));
    for _ in 0..3 {
        client.get(server.url("/answer")).send().await.unwrap();
    }
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test]
async fn statuses_count_as_the_contract_says() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let middleware = CircuitBreakerMiddleware::new("statuses")
        .config(base(&clock).failure_threshold(100).build().unwrap())
        .registry(registry());
    let family = middleware.family().clone();
    let client = client(middleware);

    for status in [200, 201, 204, 301, 501] {
        client
            .get(server.url(&format!("/answer?status={status}")))
            .send()
            .await
            .unwrap();
    }
    for status in [400, 401, 403, 404, 409, 422] {
        client
            .get(server.url(&format!("/answer?status={status}")))
            .send()
            .await
            .unwrap();
    }
    for status in [500, 502, 504, 529] {
        client
            .get(server.url(&format!("/answer?status={status}")))
            .send()
            .await
            .unwrap();
    }
    let stats = family.breakers()[0].stats();
    assert_eq!((stats.successes, stats.ignored, stats.failures), (5, 6, 4));
    assert_eq!(stats.state, State::Closed);
}

#[tokio::test]
async fn a_429_is_throttled_for_its_retry_after_in_every_form() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let middleware = CircuitBreakerMiddleware::new("throttled")
        .config(base(&clock).build().unwrap())
        .registry(registry())
        // One breaker per case, named by the path's query.
        .key_with(|request| request.url().query().map(str::to_owned));
    let family = middleware.family().clone();
    let client = client(middleware);

    let in_30s = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
    let cases = [
        ("status=429&retry-after=7".to_string(), 7_000, 7_000),
        ("status=429&retry-after-ms=1500".to_string(), 1_500, 1_500),
        // Both: the milliseconds win, being the finer.
        (
            "status=429&retry-after=9&retry-after-ms=2500".to_string(),
            2_500,
            2_500,
        ),
        (
            format!(
                "status=429&retry-after={}",
                in_30s.replace(' ', "%20").replace(',', "%2C")
            ),
            28_000,
            30_000,
        ),
        // No hint, or one that cannot be read: `throttle_duration`.
        ("status=429".to_string(), 5_000, 5_000),
        ("status=429&retry-after=soon".to_string(), 5_000, 5_000),
        // Capped at `max_retry_after`.
        ("status=429&retry-after=9999".to_string(), 120_000, 120_000),
    ];
    for (query, low, high) in &cases {
        let url = server.url(&format!("/answer?{query}"));
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 429);
        let breaker = family.get(query).unwrap();
        let stats = breaker.stats();
        assert_eq!(
            (stats.throttled, stats.failures),
            (1, 0),
            "{query}: throttled, no failure"
        );
        assert_eq!(breaker.state(), State::Open, "{query}");
        assert_eq!(breaker.open_reason(), Some(Reason::Throttled), "{query}");

        let refused = client.get(&url).send().await;
        let e = refusal(&refused).unwrap_or_else(|| panic!("{query}: refused"));
        assert!(e.is_throttled(), "{query}");
        let left = e.retry_after().unwrap().as_millis() as u64;
        assert!((*low..=*high).contains(&left), "{query}: {left} ms left");
    }
    assert_eq!(server.hits(), cases.len(), "no refused request was sent");
}

#[tokio::test]
async fn a_503s_retry_after_opens_the_circuit_for_that_long() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let middleware = CircuitBreakerMiddleware::new("unavailable")
        .config(base(&clock).failure_threshold(100).build().unwrap())
        .registry(registry());
    let family = middleware.family().clone();
    let client = client(middleware);

    // A 500's Retry-After opens nothing: only a 503's is honoured.
    client
        .get(server.url("/answer?status=500&retry-after=60"))
        .send()
        .await
        .unwrap();
    assert_eq!(family.breakers()[0].state(), State::Closed);

    client
        .get(server.url("/answer?status=503&retry-after=60"))
        .send()
        .await
        .unwrap();
    let breaker = &family.breakers()[0];
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(breaker.stats().failures, 2);
    let e = breaker.try_acquire().unwrap_err();
    assert_eq!(e.retry_after(), Some(Duration::from_secs(60)));
    clock.advance(Duration::from_secs(60));
    assert_eq!(breaker.state(), State::HalfOpen);
}

#[tokio::test]
async fn connection_errors_and_timeouts_are_failures() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let middleware = CircuitBreakerMiddleware::new("transport")
        .config(base(&clock).failure_threshold(100).build().unwrap())
        .registry(registry());
    let family = middleware.family().clone();
    let client = ClientBuilder::new(
        reqwest::Client::builder()
            .timeout(Duration::from_millis(200))
            .build()
            .unwrap(),
    )
    .with(middleware)
    .build();

    let port = closed_port();
    let refused = client.get(format!("http://127.0.0.1:{port}/")).send().await;
    match refused {
        Err(reqwest_middleware::Error::Reqwest(e)) => assert!(e.is_connect(), "{e}"),
        other => panic!("a transport error comes back as Error::Reqwest: {other:?}"),
    }
    assert_eq!(
        family.get(&format!("127.0.0.1:{port}")).unwrap().stats().failures,
        1
    );

    let timed_out = client.get(server.url("/slow")).send().await;
    match timed_out {
        Err(reqwest_middleware::Error::Reqwest(e)) => assert!(e.is_timeout(), "{e}"),
        other => panic!("a timeout comes back as Error::Reqwest: {other:?}"),
    }
    let key = format!("127.0.0.1:{}", server.addr.port());
    assert_eq!(family.get(&key).unwrap().stats().failures, 1);
}

#[tokio::test]
async fn the_breakers_call_timeout_abandons_the_request() {
    let server = Server::start().await;
    let middleware = CircuitBreakerMiddleware::new("call-timeout")
        .config(
            Config::builder()
                .call_timeout(Duration::from_millis(100))
                .no_slow_call_detection()
                .build()
                .unwrap(),
        )
        .registry(registry());
    let family = middleware.family().clone();
    let client = client(middleware);

    let result = client.get(server.url("/slow")).send().await;
    let e = refusal(&result).expect("a BreakerError");
    assert!(e.is_timeout());
    // Counted as a timeout (which trips the breaker as a failure does).
    assert_eq!(family.breakers()[0].stats().timeouts, 1);
}

#[tokio::test]
async fn key_with_and_classify_with_replace_the_defaults() {
    let server = Server::start().await;
    let clock = ManualClock::new();
    let middleware = CircuitBreakerMiddleware::new("models")
        .config(base(&clock).failure_threshold(1).build().unwrap())
        .registry(registry())
        .key_with(|request| Some(request.headers().get("x-model")?.to_str().ok()?.to_owned()))
        // A 409 is this API's "overloaded"; a 404 is still ignored.
        .classify_with(|result| match result {
            Ok(response) if response.status() == 409 => Outcome::Failure,
            other => cb_reqwest::default_classify(other),
        });
    let family = middleware.family().clone();
    let client = client(middleware);

    let send = |model: Option<&str>, status: u16| {
        let mut request = client.get(server.url(&format!("/answer?status={status}")));
        if let Some(model) = model {
            request = request.header("x-model", model);
        }
        request.send()
    };
    send(Some("gpt-4o"), 404).await.unwrap();
    send(Some("gpt-4o"), 409).await.unwrap();
    assert!(
        refusal(&send(Some("gpt-4o"), 200).await).is_some(),
        "gpt-4o is open"
    );
    assert_eq!(
        send(Some("gpt-4o-mini"), 200).await.unwrap().status(),
        200,
        "its neighbour is not"
    );
    // No header: the host.
    send(None, 200).await.unwrap();
    let mut keys = family.keys();
    keys.sort();
    let host = format!("127.0.0.1:{}", server.addr.port());
    assert_eq!(keys, [host.as_str(), "gpt-4o", "gpt-4o-mini"]);
    let stats = family.get("gpt-4o").unwrap().stats();
    assert_eq!((stats.ignored, stats.failures, stats.rejected), (1, 1, 1));
}

#[tokio::test]
async fn one_name_is_one_family_and_the_first_configuration_wins() {
    let registry = registry();
    let clock = ManualClock::new();
    let first = CircuitBreakerMiddleware::new("shared")
        .config(base(&clock).failure_threshold(7).build().unwrap())
        .registry(registry);
    let second = CircuitBreakerMiddleware::new("shared").registry(registry);
    assert!(std::sync::Arc::ptr_eq(first.family(), second.family()));
    assert_eq!(second.family().config().failure_threshold(), 7);
    assert_eq!(registry.families(), ["shared"]);

    let preset = CircuitBreakerMiddleware::new("by-preset")
        .preset(cb_runtime::Preset::Llm)
        .registry(registry);
    assert_eq!(preset.family().config(), cb_runtime::Preset::Llm.config());
}
