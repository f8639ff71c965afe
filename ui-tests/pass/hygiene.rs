//! The expansion works whatever the user's module has in scope: `mod core`, `mod std`,
//! `mod cb_runtime`, a local `Result`, locals named like the expansion's, no prelude, and
//! `#![deny(unused_qualifications)]`.

#![deny(unused_qualifications, unused_results, missing_docs)]

use ::cb_runtime::{circuit_breaker, BreakerError, CircuitBreaker, Config, Preset, Window};

#[allow(dead_code)]
mod core {}
#[allow(dead_code)]
mod cb_runtime {}
#[allow(dead_code)]
static __CB_SLOT: u8 = 0;

/// The error.
#[derive(Debug)]
pub struct Error;

impl From<BreakerError> for Error {
    fn from(_: BreakerError) -> Self {
        Error
    }
}

/// A local `Result` with one parameter.
pub type Result<T> = ::std::result::Result<T, Error>;

/// Uses a local `Result`.
#[circuit_breaker(name = "pass-hygiene-result", open_duration = "1s", sliding_window = 5)]
pub async fn local_result(__cb_breaker: u32, __cb_permit: u32) -> Result<u32> {
    let __cb_result = __cb_breaker + __cb_permit;
    Ok(__cb_result)
}

/// A module without the prelude.
#[no_implicit_prelude]
pub mod bare {
    /// The error.
    #[derive(Debug)]
    pub struct Error;

    impl ::std::convert::From<::cb_runtime::BreakerError> for Error {
        fn from(_: ::cb_runtime::BreakerError) -> Self {
            Error
        }
    }

    /// Without a prelude.
    #[::cb_runtime::circuit_breaker(name = "pass-hygiene-bare", fallback = fallback)]
    pub async fn bare(n: u32) -> ::std::result::Result<u32, Error> {
        ::std::result::Result::Ok(n)
    }

    async fn fallback(_n: u32) -> ::std::result::Result<u32, Error> {
        ::std::result::Result::Err(Error)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // The imported names stay usable next to the expansion.
    let _: Option<CircuitBreaker> = None;
    let _: Option<(Config, Preset, Window)> = None;
    assert_eq!(local_result(1, 2).await.unwrap(), 3);
    assert_eq!(bare::bare(4).await.unwrap(), 4);
}
