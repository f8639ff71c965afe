//! Streamed functions: `Result<impl Stream<Item = Result<T, E>>, E>` is detected, and
//! `stream = true` covers boxed streams. A fallback, methods and `E::from(BreakerError)` work as
//! for plain functions.

use std::pin::Pin;

use cb_runtime::{circuit_breaker, BreakerError};
use futures::stream::{self, BoxStream, Stream, StreamExt};

#[derive(Debug, PartialEq)]
pub enum LlmError {
    Provider(String),
    Breaker(bool),
}

impl From<BreakerError> for LlmError {
    fn from(e: BreakerError) -> Self {
        LlmError::Breaker(e.is_rejected())
    }
}

type Tokens = BoxStream<'static, Result<String, LlmError>>;
type LocalTokens = Pin<Box<dyn Stream<Item = Result<String, LlmError>>>>;

#[circuit_breaker(name = "pass-stream-impl", failure_threshold = 1)]
async fn tokens(words: &'static [&'static str]) -> Result<impl Stream<Item = Result<String, LlmError>>, LlmError> {
    Ok(stream::iter(words.iter().map(|w| Ok(w.to_string()))))
}

#[circuit_breaker(name = "pass-stream-send", failure_threshold = 1)]
async fn sendable() -> Result<impl Stream<Item = Result<u32, LlmError>> + Send + Unpin + 'static, LlmError> {
    Ok(stream::iter(vec![Ok(1), Err(LlmError::Provider("cut".into()))]))
}

#[circuit_breaker(name = "pass-stream-fallback", fallback = cached)]
async fn with_fallback(prompt: String) -> Result<impl Stream<Item = Result<String, LlmError>>, LlmError> {
    Ok(stream::iter(vec![Ok(prompt)]))
}

async fn cached(_prompt: String) -> Result<impl Stream<Item = Result<String, LlmError>>, LlmError> {
    Ok(stream::iter(vec![Ok("cached".to_string()), Ok("answer".to_string())]))
}

#[circuit_breaker(name = "pass-stream-boxed", stream = true, failure_threshold = 1)]
async fn boxed() -> Result<Tokens, LlmError> {
    Ok(stream::iter(vec![Err(LlmError::Provider("cut".into()))]).boxed())
}

#[circuit_breaker(name = "pass-stream-local", stream = true)]
async fn local() -> Result<LocalTokens, LlmError> {
    Ok(Box::pin(stream::iter(vec![Ok("local".to_string())])))
}

#[circuit_breaker(name = "pass-stream-opt-out", stream = false)]
async fn judged_at_opening() -> Result<impl Stream<Item = u8>, LlmError> {
    Ok(stream::iter(vec![1u8, 2]))
}

pub struct Client {
    prefix: String,
}

impl Client {
    #[circuit_breaker(name = "pass-stream-method", fallback = quiet)]
    async fn complete(&self, prompt: &str) -> Result<impl Stream<Item = Result<String, LlmError>> + '_, LlmError> {
        let prompt = prompt.to_string();
        Ok(stream::iter(vec![Ok(format!("{}{prompt}", self.prefix))]))
    }

    async fn quiet(&self, _prompt: &str) -> Result<impl Stream<Item = Result<String, LlmError>> + '_, LlmError> {
        Ok(stream::iter(vec![Ok(self.prefix.clone())]))
    }
}

fn assert_send<T: Send>(_: &T) {}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let words: Vec<_> = tokens(&["a", "b"]).await.unwrap().collect().await;
    assert_eq!(words, vec![Ok("a".to_string()), Ok("b".to_string())]);
    let breaker = cb_runtime::registry().get("pass-stream-impl").unwrap();
    assert_eq!(breaker.stats().successes, 1);

    // A mid-stream error is the body's own error, and opens the circuit.
    let fut = sendable();
    assert_send(&fut);
    let items: Vec<_> = fut.await.unwrap().collect().await;
    assert_eq!(items, vec![Ok(1), Err(LlmError::Provider("cut".into()))]);
    let refused = sendable().await.err().unwrap();
    assert_eq!(refused, LlmError::Breaker(true));

    // The fallback answers while the circuit is open.
    let answer: Vec<_> = with_fallback("hi".into()).await.unwrap().collect().await;
    assert_eq!(answer, vec![Ok("hi".to_string())]);
    cb_runtime::registry().get("pass-stream-fallback").unwrap().force_open();
    let answer: Vec<_> = with_fallback("hi".into()).await.unwrap().collect().await;
    assert_eq!(answer, vec![Ok("cached".to_string()), Ok("answer".to_string())]);

    // Boxed streams with `stream = true`.
    let items: Vec<_> = boxed().await.unwrap().collect().await;
    assert_eq!(items, vec![Err(LlmError::Provider("cut".into()))]);
    assert_eq!(boxed().await.err(), Some(LlmError::Breaker(true)));
    let items: Vec<_> = local().await.unwrap().collect().await;
    assert_eq!(items, vec![Ok("local".to_string())]);

    // `stream = false`: judged when the stream is opened.
    let items: Vec<_> = judged_at_opening().await.unwrap().collect().await;
    assert_eq!(items, vec![1, 2]);
    let opt_out = cb_runtime::registry().get("pass-stream-opt-out").unwrap();
    assert_eq!(opt_out.stats().successes, 1);

    let client = Client { prefix: "> ".into() };
    let items: Vec<_> = client.complete("x").await.unwrap().collect().await;
    assert_eq!(items, vec![Ok("> x".to_string())]);
    cb_runtime::registry().get("pass-stream-method").unwrap().force_open();
    let items: Vec<_> = client.complete("x").await.unwrap().collect().await;
    assert_eq!(items, vec![Ok("> ".to_string())]);
}
