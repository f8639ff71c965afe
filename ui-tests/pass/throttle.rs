//! `throttle_if` and `retry_after` on plain and streamed functions, methods and generic
//! functions, alone and with `ignore_if` or `failure_if`.

use std::time::Duration;

use cb_runtime::{circuit_breaker, registry, BreakerError};
use futures::Stream;

#[derive(Debug)]
pub enum ApiError {
    Breaker(BreakerError),
    Status(u16, Option<u64>),
}

impl From<BreakerError> for ApiError {
    fn from(e: BreakerError) -> Self {
        ApiError::Breaker(e)
    }
}

impl ApiError {
    fn is_rate_limited(&self) -> bool {
        matches!(self, ApiError::Status(429, _))
    }

    fn is_client_error(&self) -> bool {
        matches!(self, ApiError::Status(400..=428, _))
    }
}

fn retry_after(e: &ApiError) -> Option<Duration> {
    match e {
        ApiError::Status(_, secs) => secs.map(Duration::from_secs),
        ApiError::Breaker(_) => None,
    }
}

fn never<E>(_: &E) -> bool {
    false
}

#[circuit_breaker(
    name = "pass-throttle-plain",
    throttle_if = ApiError::is_rate_limited,
    retry_after = retry_after,
    throttle_duration = "2s",
    max_retry_after = "1m"
)]
async fn complete(status: u16, after: Option<u64>) -> Result<(), ApiError> {
    Err(ApiError::Status(status, after))
}

#[circuit_breaker(name = "pass-throttle-ignore", throttle_if = ApiError::is_rate_limited, ignore_if = ApiError::is_client_error)]
async fn embed(status: u16) -> Result<(), ApiError> {
    Err(ApiError::Status(status, None))
}

#[circuit_breaker(name = "pass-throttle-retry-only", retry_after = retry_after, failure_if = never)]
async fn moderate() -> Result<(), ApiError> {
    Ok(())
}

#[circuit_breaker(name = "pass-throttle-generic", throttle_if = never)]
async fn generic<T: Send>(value: T) -> Result<T, ApiError> {
    Ok(value)
}

#[circuit_breaker(name = "pass-throttle-stream", throttle_if = ApiError::is_rate_limited, retry_after = retry_after)]
async fn stream(status: u16) -> Result<impl Stream<Item = Result<u8, ApiError>>, ApiError> {
    Ok(futures::stream::iter(vec![Ok(1), Err(ApiError::Status(status, Some(7)))]))
}

struct Client;

impl Client {
    #[circuit_breaker(name = "pass-throttle-method", throttle_if = ApiError::is_rate_limited, max_retry_after = "0s")]
    async fn call(&self, status: u16) -> Result<u16, ApiError> {
        Err(ApiError::Status(status, Some(30)))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    use futures::StreamExt;

    assert!(matches!(complete(429, Some(8)).await, Err(ApiError::Status(429, _))));
    let b = registry().get("pass-throttle-plain").unwrap();
    assert_eq!((b.stats().throttled, b.stats().failures), (1, 0));
    assert!(b.open_remaining().unwrap() > Duration::from_secs(7));
    match complete(200, None).await {
        Err(ApiError::Breaker(e)) => assert!(e.is_throttled()),
        other => panic!("{other:?}"),
    }

    assert!(embed(404).await.is_err());
    let b = registry().get("pass-throttle-ignore").unwrap();
    assert_eq!((b.stats().ignored, b.stats().throttled), (1, 0));

    moderate().await.unwrap();
    assert_eq!(generic(5u8).await.unwrap(), 5);

    let items: Vec<_> = stream(429).await.unwrap().collect().await;
    assert!(matches!(items[1], Err(ApiError::Status(429, _))));
    let b = registry().get("pass-throttle-stream").unwrap();
    assert_eq!(b.stats().throttled, 1);
    assert!(b.is_throttled());

    assert!(Client.call(429).await.is_err());
    let b = registry().get("pass-throttle-method").unwrap();
    // max_retry_after = "0s": the 30 s hint is ignored, throttle_duration (5 s) applies.
    assert!(b.open_remaining().unwrap() <= Duration::from_secs(5));
}
