use cb_runtime::{circuit_breaker, BreakerError};

#[derive(Debug)]
pub struct Error;

impl From<BreakerError> for Error {
    fn from(_: BreakerError) -> Self {
        Error
    }
}

#[circuit_breaker(name = "fail", fallback_with_cause = failover)]
async fn fetch(id: u32) -> Result<u8, cb_runtime::CallError<std::io::Error>> {
    Ok(id as u8)
}

// The cause carries the body's error type, `std::io::Error`, not the declared `CallError`.
async fn failover(
    _id: u32,
    _cause: cb_runtime::FallbackCause<cb_runtime::CallError<std::io::Error>>,
) -> Result<u8, cb_runtime::CallError<std::io::Error>> {
    Ok(0)
}

fn main() {}
