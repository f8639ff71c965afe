use cb_runtime::{circuit_breaker, BreakerError};

#[derive(Debug)]
pub struct Error;

impl From<BreakerError> for Error {
    fn from(_: BreakerError) -> Self {
        Error
    }
}

#[circuit_breaker(name = "fail", failure_if = is_bad, ignore_if = is_bad)]
async fn fetch() -> Result<u8, Error> {
    Ok(1)
}

fn is_bad(_: &Error) -> bool {
    true
}

fn main() {}
