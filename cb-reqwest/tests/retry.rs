//! Composed with reqwest-retry: each attempt goes through the breaker, and a
//! refusal ends the retries at once.

mod support;

use std::time::Duration;

use cb_reqwest::CircuitBreakerMiddleware;
use cb_runtime::{Config, State};
use reqwest_middleware::ClientBuilder;
use reqwest_retry::policies::ExponentialBackoff;
use reqwest_retry::RetryTransientMiddleware;
use support::{registry, Server};

fn retrying(middleware: CircuitBreakerMiddleware, retries: u32) -> reqwest_middleware::ClientWithMiddleware {
    let policy = ExponentialBackoff::builder()
        .retry_bounds(Duration::from_millis(1), Duration::from_millis(5))
        .build_with_max_retries(retries);
    ClientBuilder::new(reqwest::Client::new())
        // The retry middleware first: every attempt passes the breaker.
        .with(RetryTransientMiddleware::new_with_policy(policy))
        .with(middleware)
        .build()
}

fn config() -> Config {
    Config::builder()
        .failure_threshold(2)
        .open_duration(Duration::from_secs(60))
        .no_slow_call_detection()
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_refusal_is_not_retried() {
    let server = Server::start().await;
    let middleware = CircuitBreakerMiddleware::new("retried")
        .config(config())
        .registry(registry());
    let family = middleware.family().clone();
    let client = retrying(middleware, 5);

    // Up to 6 attempts: the first two fail (503, retried), the breaker
    // opens, the third is refused and the retry middleware stops there.
    let result = client.get(server.url("/answer?status=503")).send().await;
    // reqwest-retry wraps the last attempt's error in its own, which names it.
    let error = result.unwrap_err();
    let refusal = cb_reqwest::refusal(&error).expect("the refusal ends the retries");
    assert!(refusal.is_rejected());
    assert_eq!(server.hits(), 2);
    let stats = family.breakers()[0].stats();
    assert_eq!((stats.failures, stats.rejected, stats.state), (2, 1, State::Open));

    // While it is open, a request is refused once and never sent.
    let again = client.get(server.url("/answer")).send().await.unwrap_err();
    // Without a retry, reqwest-retry's `RetryError` hides its cause from
    // `source()`: the feature `retry` looks through it.
    match again {
        reqwest_middleware::Error::Middleware(ref e) => {
            let retry = e
                .downcast_ref::<reqwest_retry::RetryError>()
                .expect("wrapped by reqwest-retry");
            let reqwest_retry::RetryError::Error(inner) = retry else {
                panic!("no retry: {retry:?}")
            };
            assert!(cb_reqwest::refusal(inner).unwrap().is_rejected());
        }
        other => panic!("refused: {other:?}"),
    }
    #[cfg(feature = "retry")]
    assert!(cb_reqwest::refusal(&again).unwrap().is_rejected());
    assert_eq!(server.hits(), 2);
    assert_eq!(family.breakers()[0].stats().rejected, 2);
}

#[tokio::test]
async fn transient_answers_are_retried_through_the_breaker() {
    let server = Server::start().await;
    let middleware = CircuitBreakerMiddleware::new("retried-ok")
        .config(
            Config::builder()
                .failure_threshold(10)
                .no_slow_call_detection()
                .build()
                .unwrap(),
        )
        .registry(registry());
    let family = middleware.family().clone();
    let client = retrying(middleware, 2);

    let response = client.get(server.url("/answer?status=502")).send().await.unwrap();
    assert_eq!(response.status(), 502, "the last attempt's answer");
    assert_eq!(server.hits(), 3);
    assert_eq!(family.breakers()[0].stats().failures, 3, "each attempt counted");
}
