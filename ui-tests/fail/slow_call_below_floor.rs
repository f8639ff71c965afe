// A slow-call threshold the system clock cannot time: refused at compile time.
use cb_runtime::{circuit_breaker, BreakerError};

#[derive(Debug)]
struct Error;

impl From<BreakerError> for Error {
    fn from(_: BreakerError) -> Self {
        Error
    }
}

#[circuit_breaker(name = "fast-cache", preset = "cache", slow_call_duration = "2ms")]
async fn get() -> Result<(), Error> {
    Ok(())
}

fn main() {}
