use cb_runtime::{circuit_breaker, BreakerError, Outcome};

#[derive(Debug)]
pub enum Error {
    Unavailable,
    Breaker(BreakerError),
}

impl From<BreakerError> for Error {
    fn from(e: BreakerError) -> Self {
        Error::Breaker(e)
    }
}

fn judge(e: &Error) -> Outcome {
    match e {
        Error::Unavailable => Outcome::Failure,
        Error::Breaker(_) => Outcome::Ignored,
    }
}

fn is_unavailable(e: &Error) -> bool {
    matches!(e, Error::Unavailable)
}

#[circuit_breaker(name = "fail", classify = judge, failure_if = is_unavailable, throttle_if = is_unavailable)]
async fn fetch() -> Result<u8, Error> {
    Ok(1)
}

fn main() {}
