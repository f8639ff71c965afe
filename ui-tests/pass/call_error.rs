//! Foreign error types: a function declared `-> Result<T, CallError<E>>` has a body that is a
//! `Result<T, E>`, so `?` works on `E` as written; the breaker's refusal and timeout come back as
//! `CallError::Rejected` and `CallError::Timeout`. The same for streamed functions. `CallError`
//! may be imported or written with its path.

use std::io;

use cb_runtime::{circuit_breaker, CallError};
use futures::stream::{self, BoxStream, Stream, StreamExt};

fn open(fail: bool) -> io::Result<u8> {
    if fail {
        Err(io::Error::other("connection refused"))
    } else {
        Ok(7)
    }
}

fn is_not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

#[circuit_breaker(name = "pass-call-error", failure_threshold = 1, streak_failure_rate = 0)]
async fn query(fail: bool) -> Result<u8, CallError<io::Error>> {
    let value = open(fail)?;
    Ok(value)
}

#[circuit_breaker(name = "pass-call-error-path", ignore_if = is_not_found)]
async fn by_path() -> std::result::Result<u8, cb_runtime::CallError<io::Error>> {
    Err(io::Error::from(io::ErrorKind::NotFound))?;
    Ok(1)
}

#[circuit_breaker(name = "pass-call-error-stream", failure_threshold = 1, streak_failure_rate = 0)]
async fn rows(fail: bool) -> Result<impl Stream<Item = Result<u8, CallError<io::Error>>>, CallError<io::Error>> {
    let first = open(fail)?;
    Ok(stream::iter(vec![Ok(first), Err(io::Error::other("cut"))]))
}

#[circuit_breaker(name = "pass-call-error-boxed", stream = true)]
async fn boxed() -> Result<BoxStream<'static, Result<u8, CallError<io::Error>>>, CallError<io::Error>> {
    Ok(stream::iter(vec![Ok::<u8, io::Error>(1)]).boxed())
}

#[circuit_breaker(name = "pass-call-error-fallback", failure_threshold = 1, fallback = cached, fallback_on = "failure")]
async fn with_fallback(key: &str) -> Result<String, CallError<io::Error>> {
    Err(io::Error::other(key.to_owned()))?
}

async fn cached(key: &str) -> Result<String, CallError<io::Error>> {
    Ok(format!("cached {key}"))
}

pub struct Repo;

impl Repo {
    #[circuit_breaker(name = "pass-call-error-method")]
    async fn find(&self, id: u8) -> Result<u8, CallError<io::Error>> {
        Ok(open(false)? + id)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(query(false).await.unwrap(), 7);
    assert!(matches!(query(true).await, Err(CallError::Inner(e)) if e.to_string() == "connection refused"));
    assert!(matches!(query(false).await, Err(CallError::Rejected(_))));

    assert!(matches!(by_path().await, Err(CallError::Inner(_))));
    let ignored = cb_runtime::registry().get("pass-call-error-path").unwrap().stats().ignored;
    assert_eq!(ignored, 1);

    let items: Vec<_> = rows(false).await.unwrap().collect().await;
    assert!(matches!(items[..], [Ok(7), Err(CallError::Inner(_))]));
    assert!(matches!(rows(false).await.err(), Some(CallError::Rejected(_))));

    let items: Vec<_> = boxed().await.unwrap().collect().await;
    assert!(matches!(items[..], [Ok(1)]));

    assert_eq!(with_fallback("a").await.unwrap(), "cached a");
    assert_eq!(with_fallback("b").await.unwrap(), "cached b");

    assert_eq!(Repo.find(1).await.unwrap(), 8);
}
