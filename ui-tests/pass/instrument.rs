//! Stacking with `#[tracing::instrument]`, in either order.

use cb_runtime::{circuit_breaker, BreakerError};

#[derive(Debug)]
pub struct Error;

impl From<BreakerError> for Error {
    fn from(_: BreakerError) -> Self {
        Error
    }
}

#[circuit_breaker(name = "pass-instrument-outer")]
#[tracing::instrument(err(Debug))]
async fn breaker_outside(n: u32) -> Result<u32, Error> {
    Ok(n + 1)
}

#[tracing::instrument(skip(_tag))]
#[circuit_breaker(name = "pass-instrument-inner")]
async fn breaker_inside(_tag: &str, n: u32) -> Result<u32, Error> {
    Ok(n * 2)
}

pub struct Service;

impl Service {
    #[tracing::instrument(skip(self))]
    #[circuit_breaker(name = "pass-instrument-method", fallback = zero)]
    async fn call(&self, n: u32) -> Result<u32, Error> {
        Ok(n)
    }

    async fn zero(&self, _n: u32) -> Result<u32, Error> {
        Ok(0)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(breaker_outside(1).await.unwrap(), 2);
    assert_eq!(breaker_inside("x", 2).await.unwrap(), 4);
    assert_eq!(Service.call(5).await.unwrap(), 5);
}
