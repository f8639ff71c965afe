//! How [`cb-runtime`](https://docs.rs/cb-runtime) configuration is spelled:
//! the names of the fields, the rule for breaker names, durations such as `"1m30s"`, and
//! `open_backoff` text such as `"2 5m 0.1"`.
//!
//! The `#[circuit_breaker]` attribute checks its arguments with this crate at
//! compile time, and `cb-runtime` reads its config file and `CB_*`
//! environment variables with it at run time, so all three accept exactly the
//! same text and explain a refusal the same way. It has no dependencies and
//! is not meant to be used alone.
//!
//! ```
//! assert_eq!(cb_syntax::parse_nanos("1m30s"), Ok(90_000_000_000));
//! assert!(cb_syntax::FIELDS.contains(&"open_duration"));
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod backoff;
mod duration;
mod fields;
mod name;
mod suggest;

pub use backoff::{parse_backoff, BackoffText};
pub use duration::{parse_nanos, DURATION_FORMAT};
pub use fields::FIELDS;
pub use name::{check_name, NameError, MAX_NAME_LEN, NAME_RULE};
pub use suggest::{list, nearest};
