//! `crate = "..."` when cb-runtime goes by another name.

extern crate cb_runtime as my_cb;

use my_cb::BreakerError;

#[derive(Debug)]
pub struct Error;

impl From<BreakerError> for Error {
    fn from(_: BreakerError) -> Self {
        Error
    }
}

#[my_cb::circuit_breaker(
    name = "pass-renamed",
    crate = "my_cb",
    preset = "database",
    call_timeout = "1s"
)]
async fn query() -> Result<u8, Error> {
    Ok(1)
}

mod nested {
    pub mod runtime {
        pub use my_cb::*;
    }
}

#[my_cb::circuit_breaker(name = "pass-renamed-path", crate = "crate::nested::runtime")]
async fn through_a_path() -> Result<u8, Error> {
    Ok(2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(query().await.unwrap(), 1);
    assert_eq!(through_a_path().await.unwrap(), 2);
    assert!(my_cb::registry().get("pass-renamed").is_some());
}
