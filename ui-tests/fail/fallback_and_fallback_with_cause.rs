use cb_runtime::{circuit_breaker, BreakerError};

#[derive(Debug)]
pub struct Error;

impl From<BreakerError> for Error {
    fn from(_: BreakerError) -> Self {
        Error
    }
}

#[circuit_breaker(name = "fail", fallback = cached, fallback_with_cause = failover)]
async fn fetch(id: u32) -> Result<u8, Error> {
    Ok(id as u8)
}

async fn cached(_id: u32) -> Result<u8, Error> {
    Ok(0)
}

async fn failover(_id: u32, _cause: cb_runtime::FallbackCause<Error>) -> Result<u8, Error> {
    Ok(0)
}

fn main() {}
