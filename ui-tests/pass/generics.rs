//! Generic functions, `impl Trait` arguments and where clauses: one breaker per name, shared by
//! every instantiation.

use cb_runtime::{circuit_breaker, registry, BreakerError};
use std::fmt::Display;

#[derive(Debug)]
pub struct Error;

impl From<BreakerError> for Error {
    fn from(_: BreakerError) -> Self {
        Error
    }
}

#[circuit_breaker(name = "pass-generics", failure_threshold = 2)]
async fn show<T: Display + Send>(value: T) -> Result<String, Error> {
    Ok(value.to_string())
}

#[circuit_breaker(name = "pass-generics-impl")]
async fn join(parts: impl IntoIterator<Item = impl AsRef<str>>, sep: &str) -> Result<String, Error> {
    let parts: Vec<String> = parts.into_iter().map(|p| p.as_ref().to_string()).collect();
    Ok(parts.join(sep))
}

#[circuit_breaker(name = "pass-generics-where")]
async fn parse<T, E>(text: &str) -> Result<T, E>
where
    T: std::str::FromStr,
    E: From<BreakerError> + From<T::Err>,
{
    Ok(text.parse::<T>()?)
}

#[derive(Debug)]
pub struct ParseError;

impl From<BreakerError> for ParseError {
    fn from(_: BreakerError) -> Self {
        ParseError
    }
}

impl From<std::num::ParseIntError> for ParseError {
    fn from(_: std::num::ParseIntError) -> Self {
        ParseError
    }
}

#[circuit_breaker(name = "pass-generics-const")]
async fn first<const N: usize>(values: [u8; N]) -> Result<u8, Error> {
    values.first().copied().ok_or(Error)
}

#[circuit_breaker(name = "pass-generics-opaque")]
async fn opaque(n: u8) -> Result<impl Display, Error> {
    Ok(n)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(show(1u8).await.unwrap(), "1");
    assert_eq!(show("two").await.unwrap(), "two");
    assert_eq!(show(3.5f64).await.unwrap(), "3.5");
    let breaker = registry().get("pass-generics").unwrap();
    assert_eq!(
        breaker.stats().successes,
        3,
        "one breaker for every instantiation"
    );

    assert_eq!(join(["a", "b"], "-").await.unwrap(), "a-b");
    assert_eq!(parse::<u32, ParseError>("42").await.unwrap(), 42);
    assert!(parse::<u32, ParseError>("x").await.is_err());
    assert_eq!(first([9, 8]).await.unwrap(), 9);
    assert_eq!(opaque(4).await.unwrap().to_string(), "4");
}
