//! How [`cb-runtime`](https://docs.rs/cb-runtime) configuration is spelled:
//! the table of its fields ([`FIELDS`]: name, kind, range, messages, docs),
//! the presets' names, the rule for breaker names, durations such as
//! `"1m30s"`, and `open_backoff` text such as `"2 5m 0.1"`.
//!
//! The `#[circuit_breaker]` attribute checks its arguments with this crate at
//! compile time, and `cb-runtime` reads its config file and `CB_*`
//! environment variables with it at run time, so all three accept exactly the
//! same text and explain a refusal the same way. It has no dependencies and
//! is not meant to be used alone.
//!
//! ```
//! assert_eq!(cb_syntax::parse_nanos("1m30s"), Ok(90_000_000_000));
//! assert_eq!(cb_syntax::field("open_duration").unwrap().parse("2m"), Ok(cb_syntax::Value::Duration(120_000_000_000)));
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
pub use fields::{
    field, format_nanos, Field, Kind, Refusal, Value, DEFAULT_PRESET, FIELDS, FIELD_NAMES, MAX_KEYS,
    MAX_OPEN_NANOS, MAX_PROBES, MAX_RAMP_UP_NANOS, MAX_RETRY_AFTER_NANOS, MAX_WINDOW_CALLS, MAX_WINDOW_NANOS,
    MIN_SLOW_CALL_NANOS, MIN_WINDOW_NANOS, PRESETS,
};
pub use fields::{MAX_ADAPTIVE_K, MAX_CONCURRENT_CALLS, MODES, TRIPS};
pub use name::{check_name, NameError, MAX_NAME_LEN, NAME_RULE};
pub use suggest::{list, nearest};
