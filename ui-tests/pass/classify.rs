//! `failure_if` and `ignore_if` with functions, methods and generic functions.

use cb_runtime::{circuit_breaker, BreakerError};

#[derive(Debug)]
pub enum HttpError {
    Breaker(BreakerError),
    Status(u16),
}

impl From<BreakerError> for HttpError {
    fn from(e: BreakerError) -> Self {
        HttpError::Breaker(e)
    }
}

impl HttpError {
    fn is_client_error(&self) -> bool {
        matches!(self, HttpError::Status(400..=499))
    }
}

fn is_server_error(e: &HttpError) -> bool {
    matches!(e, HttpError::Status(500..=599))
}

#[circuit_breaker(name = "pass-classify-failure-if", failure_if = is_server_error)]
async fn get(status: u16) -> Result<(), HttpError> {
    Err(HttpError::Status(status))
}

#[circuit_breaker(name = "pass-classify-ignore-if", ignore_if = HttpError::is_client_error)]
async fn post(status: u16) -> Result<(), HttpError> {
    Err(HttpError::Status(status))
}

fn never<E>(_: &E) -> bool {
    false
}

#[circuit_breaker(name = "pass-classify-generic", ignore_if = never)]
async fn put() -> Result<(), HttpError> {
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert!(get(404).await.is_err());
    assert!(post(404).await.is_err());
    put().await.unwrap();
    assert!(matches!(
        HttpError::from(get(500).await.unwrap_err()),
        HttpError::Status(500)
    ));
}
