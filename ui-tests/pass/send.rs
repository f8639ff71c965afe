//! The futures stay `Send`: they can be handed to `tokio::spawn`.

use cb_runtime::{circuit_breaker, BreakerError};
use std::sync::Arc;

#[derive(Debug)]
pub struct Error;

impl From<BreakerError> for Error {
    fn from(_: BreakerError) -> Self {
        Error
    }
}

pub struct Client {
    base: String,
}

impl Client {
    #[circuit_breaker(name = "pass-send-method", call_timeout = "5s", fallback = offline)]
    async fn get(&self, path: String) -> Result<String, Error> {
        tokio::task::yield_now().await;
        Ok(format!("{}{path}", self.base))
    }

    async fn offline(&self, _path: String) -> Result<String, Error> {
        Ok(String::new())
    }
}

#[circuit_breaker(name = "pass-send-free", ignore_if = is_minor)]
async fn work(n: u64) -> Result<u64, Error> {
    tokio::task::yield_now().await;
    Ok(n)
}

fn is_minor(_: &Error) -> bool {
    false
}

fn assert_send<F: std::future::Future + Send + 'static>(f: F) -> F {
    f
}

#[tokio::main]
async fn main() {
    let client = Arc::new(Client { base: "b".into() });
    let c = Arc::clone(&client);
    let got = tokio::spawn(assert_send(async move { c.get("/x".into()).await }))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, "b/x");
    assert_eq!(tokio::spawn(assert_send(work(7))).await.unwrap().unwrap(), 7);
}
