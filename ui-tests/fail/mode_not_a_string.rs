use cb_runtime::{circuit_breaker, BreakerError};

#[derive(Debug)]
pub struct Error;

impl From<BreakerError> for Error {
    fn from(_: BreakerError) -> Self {
        Error
    }
}

#[circuit_breaker(name = "fail", mode = shadow)]
async fn fetch() -> Result<u8, Error> {
    Ok(1)
}

fn main() {}
