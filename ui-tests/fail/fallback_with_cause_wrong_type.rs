use cb_runtime::{circuit_breaker, BreakerError};

#[derive(Debug)]
pub struct Error;

impl From<BreakerError> for Error {
    fn from(_: BreakerError) -> Self {
        Error
    }
}

#[circuit_breaker(name = "fail", fallback_with_cause = failover, fallback_on = "failure")]
async fn fetch(id: u32) -> Result<u8, Error> {
    Ok(id as u8)
}

// The last parameter must be the cause, `FallbackCause<Error>`.
async fn failover(_id: u32, _cause: Error) -> Result<u8, Error> {
    Ok(0)
}

fn main() {}
