//! Error types and `Result` aliases that take `BreakerError` through `From`.

use cb_runtime::circuit_breaker;
use std::error::Error;

type BoxError = Box<dyn Error + Send + Sync>;
type AppResult<T> = Result<T, BoxError>;

#[circuit_breaker(name = "pass-alias-box")]
async fn boxed() -> Result<u8, Box<dyn Error + Send + Sync>> {
    Ok(1)
}

#[circuit_breaker(name = "pass-alias-app")]
async fn app() -> AppResult<u8> {
    Ok(2)
}

#[circuit_breaker(name = "pass-alias-std")]
async fn std_path() -> std::result::Result<u8, BoxError> {
    Ok(3)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(boxed().await.unwrap(), 1);
    assert_eq!(app().await.unwrap(), 2);
    assert_eq!(std_path().await.unwrap(), 3);
}
