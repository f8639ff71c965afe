//! Recursion through `Box::pin`.

use cb_runtime::{circuit_breaker, registry, BreakerError};

#[derive(Debug)]
pub struct Error;

impl From<BreakerError> for Error {
    fn from(_: BreakerError) -> Self {
        Error
    }
}

#[circuit_breaker(name = "pass-recursion")]
async fn countdown(n: u32) -> Result<u32, Error> {
    if n == 0 {
        return Ok(0);
    }
    Ok(1 + Box::pin(countdown(n - 1)).await?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(countdown(3).await.unwrap(), 3);
    assert_eq!(registry().get("pass-recursion").unwrap().stats().successes, 4);
}
