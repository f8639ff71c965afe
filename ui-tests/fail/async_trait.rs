use cb_runtime::{circuit_breaker, BreakerError};

#[derive(Debug)]
pub struct Error;

impl From<BreakerError> for Error {
    fn from(_: BreakerError) -> Self {
        Error
    }
}

#[async_trait::async_trait]
pub trait Provider {
    async fn complete(&self) -> Result<String, Error>;
}

pub struct OpenAi;

#[async_trait::async_trait]
impl Provider for OpenAi {
    #[circuit_breaker(name = "fail")]
    async fn complete(&self) -> Result<String, Error> {
        Ok(String::new())
    }
}

fn main() {}
