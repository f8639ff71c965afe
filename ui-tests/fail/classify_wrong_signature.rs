use cb_runtime::{circuit_breaker, BreakerError};

#[derive(Debug)]
pub struct Error;

impl From<BreakerError> for Error {
    fn from(_: BreakerError) -> Self {
        Error
    }
}

#[circuit_breaker(name = "fail", classify = is_server_error)]
async fn fetch() -> Result<u8, Error> {
    Ok(1)
}

// `classify` takes a `fn(&E) -> Outcome`, not a predicate.
fn is_server_error(_: &Error) -> bool {
    true
}

fn main() {}
