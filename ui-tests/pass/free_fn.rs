//! A free function, with every builder field overridden.

use cb_runtime::{circuit_breaker, registry, BreakerError, Window};
use std::time::Duration;

#[derive(Debug)]
pub enum ApiError {
    Breaker(BreakerError),
    Status(u16),
}

impl From<BreakerError> for ApiError {
    fn from(e: BreakerError) -> Self {
        ApiError::Breaker(e)
    }
}

/// Fetches a user; the doc comment and `#[must_use]` are kept.
#[must_use = "the user is the point"]
#[circuit_breaker(
    name = "pass-free-fn",
    preset = "http_api",
    failure_threshold = 4,
    failure_rate_threshold = 0.25,
    sliding_window = 40,
    minimum_calls = 8,
    slow_call_duration = "1.5s",
    slow_call_rate_threshold = 1,
    open_duration = "1m30s",
    half_open_max_calls = 2,
    success_threshold = 3,
    call_timeout = "250ms"
)]
pub async fn fetch_user(id: u32) -> Result<String, ApiError> {
    if id == 0 {
        return Err(ApiError::Status(404));
    }
    Ok(format!("user {id}"))
}

#[circuit_breaker(name = "pass-free-fn-time-window", sliding_window = "30s")]
async fn time_window() -> Result<(), ApiError> {
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(fetch_user(7).await.unwrap(), "user 7");
    assert!(matches!(fetch_user(0).await, Err(ApiError::Status(404))));

    let config = registry().get("pass-free-fn").unwrap().config();
    assert_eq!(config.failure_threshold(), 4);
    assert_eq!(config.failure_rate_threshold(), 0.25);
    assert_eq!(config.sliding_window(), Window::Count(40));
    assert_eq!(config.minimum_calls(), 8);
    assert_eq!(config.slow_call_duration(), Some(Duration::from_millis(1500)));
    assert_eq!(config.slow_call_rate_threshold(), 1.0);
    assert_eq!(config.open_duration(), Duration::from_secs(90));
    assert_eq!(config.half_open_max_calls(), 2);
    assert_eq!(config.success_threshold(), 3);
    assert_eq!(config.call_timeout(), Some(Duration::from_millis(250)));

    time_window().await.unwrap();
    let config = registry().get("pass-free-fn-time-window").unwrap().config();
    assert_eq!(config.sliding_window(), Window::Time(Duration::from_secs(30)));
}
