// A breaker name the admin API could not address: refused at compile time.
use cb_runtime::{circuit_breaker, BreakerError};

#[derive(Debug)]
struct Error;

impl From<BreakerError> for Error {
    fn from(_: BreakerError) -> Self {
        Error
    }
}

#[circuit_breaker(name = "line\nbreak")]
async fn call() -> Result<(), Error> {
    Ok(())
}

fn main() {}
