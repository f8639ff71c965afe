use cb_runtime::{circuit_breaker, BreakerError};

#[derive(Debug)]
pub struct Error;

impl From<BreakerError> for Error {
    fn from(_: BreakerError) -> Self {
        Error
    }
}

#[circuit_breaker(name = "fail", fallback = cached, fallback_on = "timeout")]
async fn fetch() -> Result<u8, Error> {
    Ok(1)
}

async fn cached() -> Result<u8, Error> {
    Ok(0)
}

fn main() {}
