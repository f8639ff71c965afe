//! Native `async fn` in trait impls, and in a trait's default method.

#![allow(async_fn_in_trait)]

use cb_runtime::{circuit_breaker, BreakerError};

#[derive(Debug)]
pub struct Error;

impl From<BreakerError> for Error {
    fn from(_: BreakerError) -> Self {
        Error
    }
}

pub trait Provider {
    async fn complete(&self, prompt: &str) -> Result<String, Error>;

    #[circuit_breaker(name = "pass-trait-default", preset = "llm")]
    async fn ping(&self) -> Result<(), Error> {
        Ok(())
    }
}

pub struct OpenAi;

impl Provider for OpenAi {
    #[circuit_breaker(name = "pass-trait-openai", preset = "llm", fallback = canned)]
    async fn complete(&self, prompt: &str) -> Result<String, Error> {
        Ok(format!("openai: {prompt}"))
    }
}

impl OpenAi {
    async fn canned(&self, _prompt: &str) -> Result<String, Error> {
        Ok("canned".into())
    }
}

async fn ask(provider: &impl Provider) -> Result<String, Error> {
    provider.ping().await?;
    provider.complete("hi").await
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(ask(&OpenAi).await.unwrap(), "openai: hi");
}
