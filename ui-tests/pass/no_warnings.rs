//! The expansion raises no lint in user code: one-line, multi-line, streamed, method and generic
//! functions compile under `#![deny(warnings)]` (a one-line body once raised `unused_braces`,
//! whose suggestion `cargo fix` applied into code that did not compile).
#![deny(warnings)]

use cb_runtime::{circuit_breaker, BreakerError, CallError};
use futures::stream::{self, Stream, StreamExt};

#[derive(Debug)]
pub struct E;

impl From<BreakerError> for E {
    fn from(_: BreakerError) -> Self {
        E
    }
}

fn is_bad(_: &E) -> bool {
    true
}

#[circuit_breaker(name = "pass-lint-one-line")]
async fn one_line() -> Result<u8, E> { Ok(1) }

#[circuit_breaker(name = "pass-lint-one-line-foreign")]
async fn one_line_foreign() -> Result<u8, CallError<std::io::Error>> { Ok(2) }

#[circuit_breaker(name = "pass-lint-one-line-fallback", fallback = one_line, fallback_on = "failure")]
async fn one_line_fallback() -> Result<u8, E> { Ok(3) }

#[circuit_breaker(name = "pass-lint-multi-line", failure_threshold = 3, ignore_if = is_bad)]
async fn multi_line(n: u8) -> Result<u8, E> {
    let doubled = n * 2;
    Ok(doubled)
}

#[circuit_breaker(name = "pass-lint-stream", failure_if = is_bad)]
async fn streamed() -> Result<impl Stream<Item = Result<u8, E>>, E> { Ok(stream::iter(vec![Ok(1)])) }

pub struct Client;

impl Client {
    #[circuit_breaker(name = "pass-lint-method")]
    async fn method(&self) -> Result<u8, E> { Ok(4) }

    #[circuit_breaker(name = "pass-lint-method-mut", fallback = quiet, fallback_on = "breaker")]
    async fn method_mut(&mut self, n: u8) -> Result<u8, E> { Ok(n) }

    async fn quiet(&mut self, _n: u8) -> Result<u8, E> {
        Ok(0)
    }
}

#[circuit_breaker(name = "pass-lint-generic")]
async fn generic<T: std::str::FromStr>(text: &str) -> Result<T, E> { text.parse().map_err(|_| E) }

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(one_line().await.unwrap(), 1);
    assert_eq!(one_line_foreign().await.unwrap(), 2);
    assert_eq!(one_line_fallback().await.unwrap(), 3);
    assert_eq!(multi_line(2).await.unwrap(), 4);
    let items: Vec<_> = streamed().await.unwrap().collect().await;
    assert_eq!(items.len(), 1);
    assert_eq!(Client.method().await.unwrap(), 4);
    assert_eq!(Client.method_mut(5).await.unwrap(), 5);
    assert_eq!(generic::<u16>("6").await.unwrap(), 6);
}
