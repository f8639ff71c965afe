//! A circuit breaker for [reqwest](https://docs.rs/reqwest): a
//! [`reqwest_middleware`] middleware that keeps one breaker per host.
//!
//! ```no_run
//! use cb_reqwest::CircuitBreakerMiddleware;
//! use cb_runtime::Preset;
//!
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(CircuitBreakerMiddleware::new("openai").preset(Preset::Llm))
//!     .build();
//! # let _ = client;
//! ```
//!
//! Every request then goes through the breaker of its host, in the family
//! `"openai"` of the global [`registry()`](cb_runtime::registry): the family's
//! breakers show in the metrics, the admin API and the status page as any
//! keyed breaker's do, and the config file and `CB_OPENAI_*` variables
//! configure them.
//!
//! * **Keys**: `host:port` when the URL names a port other than its scheme's
//!   default, `host` otherwise ([`default_key`]); `.key_with(f)` chooses
//!   another (a model named in a header, say).
//! * **What counts** ([`default_classify`]): a 429 is
//!   [`Outcome::Throttled`](cb_runtime::Outcome::Throttled), opening the
//!   circuit for its `Retry-After` (seconds or an HTTP date) or
//!   `retry-after-ms`; 500, 502, 503, 504 and 529, connection errors and
//!   timeouts are failures (a 503's `Retry-After` is honoured as the tower
//!   layer honours it); every other 4xx is ignored (the caller's mistake);
//!   anything else is a success. `.classify_with(f)` replaces the rule.
//! * **A refusal** is [`reqwest_middleware::Error::Middleware`] holding a
//!   [`BreakerError`](cb_runtime::BreakerError): the request is never sent.
//!   `reqwest-retry`'s default strategy calls every middleware error fatal,
//!   so it does not retry a refusal: put the retry middleware before this
//!   one, and each attempt goes through the breaker, the last ones refused
//!   at once when it opens.
//!
//! ```no_run
//! use cb_reqwest::CircuitBreakerMiddleware;
//! use cb_runtime::BreakerError;
//!
//! # async fn run(client: reqwest_middleware::ClientWithMiddleware) {
//! match client.get("https://api.example.com/v1/models").send().await {
//!     Ok(response) => println!("{}", response.status()),
//!     Err(reqwest_middleware::Error::Middleware(e)) if e.downcast_ref::<BreakerError>().is_some() => {
//!         println!("not sent: {e}"); // the circuit of api.example.com is open
//!     }
//!     Err(e) => println!("failed: {e}"),
//! }
//! # }
//! ```
#![warn(missing_docs)]
#![deny(unsafe_code)]

mod classify;
mod default_classify;
mod key;
mod middleware;
mod refusal;

pub use classify::retry_after;
pub use default_classify::{default_classify, default_classify_status};
pub use key::default_key;
pub use middleware::CircuitBreakerMiddleware;
pub use refusal::refusal;
