use cb_runtime::{circuit_breaker, BreakerError};

#[derive(Debug)]
pub struct Error;

impl From<BreakerError> for Error {
    fn from(_: BreakerError) -> Self {
        Error
    }
}

#[circuit_breaker(name = "fail", fallback_with_cause = cached)]
async fn fetch(id: u32) -> Result<u8, Error> {
    Ok(id as u8)
}

// A `fallback` written for `fallback_with_cause`: the cause has no parameter.
async fn cached(_id: u32) -> Result<u8, Error> {
    Ok(0)
}

fn main() {}
