//! `&self`, `&mut self` and `self` methods, with and without a fallback.

use cb_runtime::{circuit_breaker, BreakerError};

#[derive(Debug)]
pub struct Error(#[allow(dead_code)] Option<BreakerError>);

impl From<BreakerError> for Error {
    fn from(e: BreakerError) -> Self {
        Error(Some(e))
    }
}

pub struct Client {
    calls: u32,
    base: String,
}

impl Client {
    #[circuit_breaker(name = "pass-methods-ref", preset = "http_api", fallback = cached)]
    pub async fn get(&self, path: &str) -> Result<String, Error> {
        Ok(format!("{}{path}", self.base))
    }

    async fn cached(&self, path: &str) -> Result<String, Error> {
        Ok(format!("cached {path}"))
    }

    #[circuit_breaker(name = "pass-methods-mut", fallback = Self::count_fallback)]
    pub async fn count(&mut self, by: u32) -> Result<u32, Error> {
        self.calls += by;
        Ok(self.calls)
    }

    async fn count_fallback(&mut self, _by: u32) -> Result<u32, Error> {
        Ok(0)
    }

    #[circuit_breaker(name = "pass-methods-owned")]
    pub async fn into_base(self) -> Result<String, Error> {
        Ok(self.base)
    }

    #[circuit_breaker(name = "pass-methods-assoc", fallback = Self::answer_fallback)]
    pub async fn answer(question: String) -> Result<usize, Error> {
        Ok(question.len())
    }

    async fn answer_fallback(_question: String) -> Result<usize, Error> {
        Ok(0)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut client = Client {
        calls: 0,
        base: "https://example.invalid".into(),
    };
    assert_eq!(client.get("/a").await.unwrap(), "https://example.invalid/a");
    assert_eq!(client.count(2).await.unwrap(), 2);
    assert_eq!(client.count(3).await.unwrap(), 5);
    assert_eq!(Client::answer("why".into()).await.unwrap(), 3);
    assert_eq!(client.into_base().await.unwrap(), "https://example.invalid");
}
