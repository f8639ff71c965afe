//! `key = <expr>` on free functions, `&self` methods, generic functions and
//! streamed functions, with `&str`, `String` and `AsRef<str>` keys.

use cb_runtime::{circuit_breaker, registry, BreakerError};

#[derive(Debug)]
pub struct ApiError;

impl From<BreakerError> for ApiError {
    fn from(_: BreakerError) -> Self {
        ApiError
    }
}

pub enum Model {
    Large,
    Small,
}

impl AsRef<str> for Model {
    fn as_ref(&self) -> &str {
        match self {
            Model::Large => "large",
            Model::Small => "small",
        }
    }
}

#[circuit_breaker(name = "pass-keyed-str", key = model)]
async fn by_str(model: &str) -> Result<usize, ApiError> {
    Ok(model.len())
}

#[circuit_breaker(name = "pass-keyed-string", key = model)]
async fn by_string(model: String) -> Result<String, ApiError> {
    Ok(model)
}

#[circuit_breaker(name = "pass-keyed-enum", key = model)]
async fn by_enum(model: Model) -> Result<u8, ApiError> {
    Ok(match model {
        Model::Large => 1,
        Model::Small => 2,
    })
}

#[circuit_breaker(name = "pass-keyed-generic", key = key)]
async fn generic<K: AsRef<str>>(key: K) -> Result<usize, ApiError> {
    Ok(key.as_ref().len())
}

pub struct Client {
    tenant: String,
}

impl Client {
    #[circuit_breaker(name = "pass-keyed-method", key = self.tenant)]
    async fn call(&self, n: u8) -> Result<u8, ApiError> {
        Ok(n)
    }

    #[circuit_breaker(name = "pass-keyed-borrowed", key = self.tenant.as_str())]
    async fn tenant(&self) -> Result<&str, ApiError> {
        Ok(&self.tenant)
    }
}

#[circuit_breaker(name = "pass-keyed-stream", key = model)]
async fn stream(model: &str) -> Result<impl futures::Stream<Item = Result<u8, ApiError>>, ApiError> {
    let _ = model;
    Ok(futures::stream::iter([Ok(1u8)]))
}

fn assert_send<T: Send>(t: T) -> T {
    t
}

fn main() {
    tokio_test::block_on(async {
        assert_eq!(assert_send(by_str("a")).await.unwrap(), 1);
        assert_eq!(by_string("bb".to_owned()).await.unwrap(), "bb");
        assert_eq!(by_enum(Model::Large).await.unwrap(), 1);
        assert_eq!(by_enum(Model::Small).await.unwrap(), 2);
        assert_eq!(generic("abc").await.unwrap() + generic(String::from("x")).await.unwrap(), 4);
        let client = Client { tenant: "acme".to_owned() };
        assert_eq!(assert_send(client.call(3)).await.unwrap(), 3);
        assert_eq!(client.tenant().await.unwrap(), "acme");
        let _ = assert_send(stream("m")).await.unwrap();
    });
    assert_eq!(registry().family("pass-keyed-enum").unwrap().keys(), ["large", "small"]);
    assert_eq!(registry().family("pass-keyed-generic").unwrap().keys(), ["abc", "x"]);
}
