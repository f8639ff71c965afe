//! The tower layer, around a real HTTP client (reqwest) calling a real axum
//! server on 127.0.0.1, and around an axum server's own routes.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Path, Query, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::get;
use axum::Router;
use cb_runtime::clock::ManualClock;
use cb_runtime::tower::{CircuitBreakerLayer, HttpClassifier};
use cb_runtime::{BreakerErrorKind, CallError, CircuitBreaker, Config, Outcome, Preset, Registry, State};
use support::http_client as client;
use tower::{service_fn, Layer, Service, ServiceExt};

/// How many requests reached the server.
#[derive(Clone, Default)]
struct Hits(Arc<AtomicUsize>);

impl Hits {
    fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(serde::Deserialize)]
struct StatusQuery {
    retry_after: Option<String>,
}

/// `GET /status/{code}?retry_after=..` answers `code`, with `Retry-After` if
/// asked; `GET /hang` never answers. Every request is counted.
async fn upstream() -> (SocketAddr, Hits) {
    let hits = Hits::default();
    let app =
        Router::new()
            .route(
                "/status/{code}",
                get(
                    |AxumState(hits): AxumState<Hits>,
                     Path(code): Path<u16>,
                     Query(q): Query<StatusQuery>| async move {
                        hits.0.fetch_add(1, Ordering::SeqCst);
                        let mut headers = HeaderMap::new();
                        if let Some(after) = q.retry_after {
                            headers.insert("retry-after", HeaderValue::from_str(&after).unwrap());
                        }
                        (
                            StatusCode::from_u16(code).unwrap(),
                            headers,
                            format!("status {code}"),
                        )
                    },
                ),
            )
            .route(
                "/hang",
                get(|AxumState(hits): AxumState<Hits>| async move {
                    hits.0.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<()>().await;
                    "never"
                }),
            )
            .with_state(hits.clone());
    (serve(app).await, hits)
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// One request through a clone of `service`.
async fn send<S: Service<R> + Clone, R>(service: &S, request: R) -> Result<S::Response, S::Error> {
    service.clone().oneshot(request).await
}

fn breaker(name: &str, failure_threshold: u32) -> Arc<CircuitBreaker> {
    let config = Config::builder()
        .failure_threshold(failure_threshold)
        .open_duration(Duration::from_secs(60))
        .build()
        .unwrap();
    Arc::new(CircuitBreaker::new(name, config))
}

#[tokio::test]
async fn server_errors_are_failures_429_is_throttled_other_statuses_successes() {
    let (addr, hits) = upstream().await;
    let b = breaker("tower-statuses", 100);
    let service = CircuitBreakerLayer::new(Arc::clone(&b)).layer(client());

    for code in [200, 201, 204, 301, 400, 401, 404, 409, 500, 502, 503, 504, 429] {
        let response = send(&service, format!("http://{addr}/status/{code}"))
            .await
            .unwrap();
        assert_eq!(
            response.status().as_u16(),
            code,
            "the response itself comes back unchanged"
        );
    }
    let stats = b.stats();
    assert_eq!((stats.successes, stats.failures, stats.throttled), (8, 4, 1));
    assert_eq!(hits.get(), 13);
}

#[tokio::test]
async fn an_open_circuit_refuses_without_reaching_the_server() {
    let (addr, hits) = upstream().await;
    let b = breaker("tower-refuses", 3);
    let service = CircuitBreakerLayer::new(Arc::clone(&b)).layer(client());

    for _ in 0..3 {
        let response = send(&service, format!("http://{addr}/status/503")).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(b.state(), State::Open);

    let refused = send(&service, format!("http://{addr}/status/200"))
        .await
        .unwrap_err();
    assert!(refused.is_rejected());
    let breaker_error = refused.breaker_error().unwrap();
    assert_eq!(breaker_error.name(), "tower-refuses");
    assert_eq!(breaker_error.kind(), BreakerErrorKind::Open);
    assert_eq!(hits.get(), 3, "the refused request never reached the server");
    assert_eq!(b.stats().rejected, 1);
}

#[tokio::test]
async fn the_refusal_is_complete_before_it_is_polled() {
    let b = breaker("tower-fast", 1);
    b.force_open();
    let called = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&called);
    let mut service = CircuitBreakerLayer::new(b).layer(service_fn(move |_: ()| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(http::Response::new(())) }
    }));
    let fut = service.ready().await.unwrap().call(());
    assert_eq!(
        called.load(Ordering::SeqCst),
        0,
        "the inner service was not even called"
    );
    let refused = futures::FutureExt::now_or_never(fut).expect("ready on its first poll");
    assert_eq!(
        refused.unwrap_err().breaker_error().map(|e| e.kind()),
        Some(BreakerErrorKind::ForcedOpen)
    );
}

#[tokio::test]
async fn a_custom_status_rule() {
    let (addr, _) = upstream().await;
    let b = breaker("tower-custom-rule", 100);
    let classifier = HttpClassifier::with(|status| match status.as_u16() {
        404 => Outcome::Failure,
        429 => Outcome::Ignored,
        s if s >= 500 => Outcome::Failure,
        _ => Outcome::Success,
    });
    let service = CircuitBreakerLayer::new(Arc::clone(&b))
        .classifier(classifier)
        .layer(client());
    for code in [404, 429, 200, 500] {
        send(&service, format!("http://{addr}/status/{code}"))
            .await
            .unwrap();
    }
    let stats = b.stats();
    assert_eq!((stats.successes, stats.failures, stats.ignored), (1, 2, 1));
}

#[tokio::test]
async fn a_closure_classifier() {
    let (addr, _) = upstream().await;
    let b = breaker("tower-closure", 100);
    let classify = |r: &Result<http::Response<String>, reqwest::Error>| match r {
        Ok(response) if response.body().contains("418") => Outcome::Failure,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Failure,
    };
    let service = CircuitBreakerLayer::new(Arc::clone(&b))
        .classifier(classify)
        .layer(client());
    send(&service, format!("http://{addr}/status/418")).await.unwrap();
    send(&service, format!("http://{addr}/status/500")).await.unwrap();
    let stats = b.stats();
    assert_eq!((stats.successes, stats.failures), (1, 1));
}

#[tokio::test]
async fn retry_after_in_seconds_opens_the_circuit_for_that_long() {
    let (addr, hits) = upstream().await;
    let b = breaker("tower-retry-after", 100);
    let service = CircuitBreakerLayer::new(Arc::clone(&b)).layer(client());

    let response = send(&service, format!("http://{addr}/status/429?retry_after=120"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        b.state(),
        State::Open,
        "one 429 with Retry-After opens it, whatever the threshold"
    );

    let refused = send(&service, format!("http://{addr}/status/200"))
        .await
        .unwrap_err();
    let after = refused.breaker_error().unwrap().retry_after().unwrap();
    assert!(
        after > Duration::from_secs(110) && after <= Duration::from_secs(120),
        "{after:?}"
    );
    assert_eq!(hits.get(), 1);
}

#[tokio::test]
async fn retry_after_as_an_http_date_on_a_503() {
    let (addr, _) = upstream().await;
    let b = breaker("tower-retry-date", 100);
    let service = CircuitBreakerLayer::new(Arc::clone(&b)).layer(client());
    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(90));

    send(
        &service,
        format!(
            "http://{addr}/status/503?retry_after={}",
            date.replace(' ', "%20")
        ),
    )
    .await
    .unwrap();
    assert_eq!(b.state(), State::Open);
    let refused = send(&service, format!("http://{addr}/status/200"))
        .await
        .unwrap_err();
    let after = refused.breaker_error().unwrap().retry_after().unwrap();
    // The date has a one-second resolution.
    assert!(
        after > Duration::from_secs(80) && after <= Duration::from_secs(90),
        "{after:?}"
    );
}

#[tokio::test]
async fn retry_after_is_bounded_by_the_maximum() {
    let (addr, _) = upstream().await;
    let b = breaker("tower-retry-max", 100);
    let service = CircuitBreakerLayer::new(Arc::clone(&b))
        .max_retry_after(Duration::from_secs(10))
        .layer(client());
    send(&service, format!("http://{addr}/status/429?retry_after=86400"))
        .await
        .unwrap();
    let refused = send(&service, format!("http://{addr}/status/200"))
        .await
        .unwrap_err();
    let after = refused.breaker_error().unwrap().retry_after().unwrap();
    assert!(after <= Duration::from_secs(10), "{after:?}");
}

#[tokio::test]
async fn retry_after_is_ignored_when_asked_malformed_or_on_other_statuses() {
    let (addr, _) = upstream().await;
    let cases = [
        ("tower-ignore-asked", "503?retry_after=120", true),
        ("tower-ignore-200", "200?retry_after=120", false),
        ("tower-ignore-500", "500?retry_after=120", false),
        ("tower-ignore-junk", "503?retry_after=soon", false),
        ("tower-ignore-zero", "503?retry_after=0", false),
        (
            "tower-ignore-past",
            "503?retry_after=Wed,%2021%20Oct%202015%2007:28:00%20GMT",
            false,
        ),
    ];
    for (name, path, ignore) in cases {
        let b = breaker(name, 100);
        let mut layer = CircuitBreakerLayer::new(Arc::clone(&b));
        if ignore {
            layer = layer.ignore_retry_after();
        }
        let service = layer.layer(client());
        service
            .oneshot(format!("http://{addr}/status/{path}"))
            .await
            .unwrap();
        assert_eq!(b.state(), State::Closed, "{name}");
    }
}

#[tokio::test]
async fn a_transport_error_is_a_failure() {
    // A port nothing listens on any more.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);

    let b = breaker("tower-transport", 2);
    let service = CircuitBreakerLayer::new(Arc::clone(&b)).layer(client());
    for _ in 0..2 {
        let error = send(&service, format!("http://{addr}/")).await.unwrap_err();
        assert!(
            matches!(error, CallError::Inner(ref e) if e.is_connect()),
            "{error:?}"
        );
    }
    assert_eq!(b.state(), State::Open);
}

#[tokio::test]
async fn a_hung_server_times_out_and_counts_as_a_failure() {
    let (addr, _) = upstream().await;
    let config = Config::builder()
        .failure_threshold(1)
        .call_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let b = Arc::new(CircuitBreaker::new("tower-timeout", config));
    let service = CircuitBreakerLayer::new(Arc::clone(&b)).layer(client());

    let error = send(&service, format!("http://{addr}/hang")).await.unwrap_err();
    assert!(error.is_timeout());
    assert_eq!(b.stats().timeouts, 1);
    assert_eq!(b.state(), State::Open);
}

#[tokio::test]
async fn a_response_future_dropped_unpolled_gives_its_probe_back() {
    let clock = ManualClock::new();
    let config = Config::builder()
        .failure_threshold(1)
        .half_open_max_calls(1)
        .open_duration(Duration::from_secs(5))
        .clock(clock.clock())
        .build()
        .unwrap();
    let b = Arc::new(CircuitBreaker::new("tower-dropped", config));
    b.open_for(Duration::from_secs(1));
    clock.advance(Duration::from_secs(2));
    assert_eq!(b.state(), State::HalfOpen);

    let inner = service_fn(|_: ()| async { Ok::<_, Infallible>(http::Response::new(())) });
    let mut service = CircuitBreakerLayer::new(Arc::clone(&b)).layer(inner);
    let probe = service.ready().await.unwrap().call(());
    let second = service.ready().await.unwrap().call(()).await;
    assert!(second.unwrap_err().is_rejected(), "the one probe slot is taken");
    drop(probe);

    let third = service.ready().await.unwrap().call(()).await;
    assert!(third.is_ok(), "the dropped probe gave its slot back");
    assert_eq!(b.stats().cancelled, 1);
}

#[tokio::test]
async fn errors_only_for_a_service_that_is_not_http() {
    let b = breaker("tower-not-http", 2);
    let inner = service_fn(|n: u32| async move {
        if n % 2 == 0 {
            Ok(n)
        } else {
            Err("odd")
        }
    });
    let service = CircuitBreakerLayer::new(Arc::clone(&b))
        .classifier(cb_runtime::ErrIsFailure)
        .layer(inner);
    assert_eq!(send(&service, 2).await.unwrap(), 2);
    assert_eq!(send(&service, 3).await.unwrap_err().into_inner(), Some("odd"));
    let stats = b.stats();
    assert_eq!((stats.successes, stats.failures), (1, 1));
}

#[tokio::test]
async fn a_layer_by_name_and_preset_lives_in_the_registry() {
    let registry = Registry::with_env(Vec::new);
    let a = CircuitBreakerLayer::in_registry(&registry, "tower-by-name", Preset::Llm);
    let b = CircuitBreakerLayer::in_registry(&registry, "tower-by-name", Preset::Llm);
    assert!(Arc::ptr_eq(a.breaker(), b.breaker()), "one name, one breaker");
    assert_eq!(a.breaker().config().failure_threshold(), 3);
    assert!(registry.get("tower-by-name").is_some());
}

#[tokio::test]
async fn around_an_axum_servers_own_routes() {
    use axum::error_handling::HandleErrorLayer;
    use axum::response::IntoResponse;

    // A server whose upstream is flaky, protected server-side: a refusal
    // becomes a 503 with Retry-After, at once.
    let b = breaker("tower-server-side", 2);
    let flaky = Router::new().route("/", get(|| async { StatusCode::BAD_GATEWAY }));
    let app = flaky.layer(
        tower::ServiceBuilder::new()
            .layer(HandleErrorLayer::new(|e: CallError<Infallible>| async move {
                let after = e
                    .breaker_error()
                    .and_then(|b| b.retry_after())
                    .unwrap_or_default();
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [("retry-after", after.as_secs().to_string())],
                    e.to_string(),
                )
                    .into_response()
            }))
            .layer(CircuitBreakerLayer::new(Arc::clone(&b)).ignore_retry_after()),
    );
    let addr = serve(app).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    for _ in 0..2 {
        let r = http.get(format!("http://{addr}/")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    }
    let r = http.get(format!("http://{addr}/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
    assert!(r.text().await.unwrap().contains("is open"));
}

/// The response future is the inner future plus the permit: a service whose
/// future is neither `Send` nor `'static` (it holds an `Rc` and borrows
/// nothing else) goes through the layer, and its calls are counted.
#[test]
fn an_inner_future_that_is_not_send_goes_through_the_layer() {
    use std::rc::Rc;

    let b = breaker("tower-not-send", 2);
    let shared = Rc::new(7u32);
    let inner = service_fn(move |fail: bool| {
        let shared = Rc::clone(&shared);
        async move {
            if fail {
                Err("down")
            } else {
                Ok(*shared)
            }
        }
    });
    let mut service = CircuitBreakerLayer::new(Arc::clone(&b))
        .classifier(cb_runtime::ErrIsFailure)
        .layer(inner);
    let mut call = |fail| {
        let fut = service.call(fail);
        tokio_test::block_on(fut)
    };
    assert_eq!(call(false).unwrap(), 7);
    assert_eq!(call(true).unwrap_err().into_inner(), Some("down"));
    assert_eq!(call(true).unwrap_err().into_inner(), Some("down"));
    assert!(call(false).unwrap_err().is_rejected());
    let stats = b.stats();
    assert_eq!((stats.successes, stats.failures, stats.rejected), (1, 2, 1));
}

/// A response future dropped before its first poll gives the permit back
/// and records nothing, on the owned permit the future holds.
#[test]
fn a_response_future_dropped_unpolled_gives_the_probe_back() {
    let clock = ManualClock::new();
    let b = Arc::new(CircuitBreaker::new(
        "tower-dropped-unpolled",
        Config::builder()
            .clock(clock.clock())
            .failure_threshold(1)
            .half_open_max_calls(1)
            .open_duration(Duration::from_secs(1))
            .build()
            .unwrap(),
    ));
    b.try_acquire().unwrap().record(false);
    clock.advance(Duration::from_secs(1));
    let mut service = CircuitBreakerLayer::new(Arc::clone(&b))
        .classifier(cb_runtime::ErrIsFailure)
        .layer(service_fn(|_: ()| async { Ok::<u8, Infallible>(1) }));
    let probe = service.call(());
    assert_eq!(b.stats().half_open_in_flight, 1);
    drop(probe);
    assert_eq!(b.stats().half_open_in_flight, 0);
    assert_eq!(b.stats().cancelled, 1);
    assert_eq!(tokio_test::block_on(service.call(())).unwrap(), 1);
}
