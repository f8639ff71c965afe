use cb_runtime::{circuit_breaker, BreakerError};

#[derive(Debug)]
pub struct Error;

impl From<BreakerError> for Error {
    fn from(_: BreakerError) -> Self {
        Error
    }
}

pub trait Provider {
    #[circuit_breaker(name = "fail")]
    async fn complete(&self) -> Result<String, Error>;
}

fn main() {}
