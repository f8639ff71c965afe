//! Functions that return data borrowed from an argument or from `self`.

use cb_runtime::{circuit_breaker, BreakerError};

#[derive(Debug)]
pub struct Error;

impl From<BreakerError> for Error {
    fn from(_: BreakerError) -> Self {
        Error
    }
}

#[circuit_breaker(name = "pass-borrowed-arg")]
async fn first_word(text: &str) -> Result<&str, Error> {
    text.split_whitespace().next().ok_or(Error)
}

#[circuit_breaker(name = "pass-borrowed-explicit")]
async fn longest<'a>(a: &'a str, b: &'a str) -> Result<&'a str, Error> {
    Ok(if a.len() >= b.len() { a } else { b })
}

pub struct Cache {
    entries: Vec<String>,
}

impl Cache {
    #[circuit_breaker(name = "pass-borrowed-self", preset = "cache", fallback = none)]
    async fn lookup(&self, index: usize) -> Result<&str, Error> {
        self.entries.get(index).map(String::as_str).ok_or(Error)
    }

    async fn none(&self, _index: usize) -> Result<&str, Error> {
        Err(Error)
    }

    #[circuit_breaker(name = "pass-borrowed-mut")]
    async fn push(&mut self, entry: String) -> Result<&mut Vec<String>, Error> {
        self.entries.push(entry);
        Ok(&mut self.entries)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let text = String::from("hello world");
    assert_eq!(first_word(&text).await.unwrap(), "hello");
    assert_eq!(longest("ab", "abc").await.unwrap(), "abc");
    let mut cache = Cache {
        entries: vec!["a".into()],
    };
    assert_eq!(cache.lookup(0).await.unwrap(), "a");
    assert_eq!(cache.push("b".into()).await.unwrap().len(), 2);
}
