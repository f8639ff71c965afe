use cb_runtime::{circuit_breaker, BreakerError};

#[derive(Debug)]
pub struct Error;

impl From<BreakerError> for Error {
    fn from(_: BreakerError) -> Self {
        Error
    }
}

// An unkeyed breaker's check takes no argument.
async fn model_ready(_model: &str) -> Result<(), Error> {
    Ok(())
}

#[circuit_breaker(name = "ui-health-unkeyed", health_check = model_ready)]
async fn complete() -> Result<(), Error> {
    Ok(())
}

// A keyed breaker's check is given the key.
async fn ping() -> Result<(), Error> {
    Ok(())
}

#[circuit_breaker(name = "ui-health-keyed", key = model, health_check = ping)]
async fn complete_with(model: &str) -> Result<(), Error> {
    let _ = model;
    Ok(())
}

fn main() {}
