//! Circuit breakers for async Rust services: exact under concurrency, a few
//! nanoseconds on the hot path, with presets per kind of dependency and an
//! attribute that needs no other code.
//!
//! ```
//! use cb_runtime::{circuit_breaker, BreakerError};
//!
//! #[derive(Debug)]
//! enum LlmError {
//!     Http(String),
//!     Unavailable(BreakerError),
//! }
//!
//! impl From<BreakerError> for LlmError {
//!     fn from(e: BreakerError) -> Self {
//!         LlmError::Unavailable(e)
//!     }
//! }
//!
//! struct Client;
//!
//! impl Client {
//!     #[circuit_breaker(name = "openai-doc", preset = "llm")]
//!     async fn complete(&self, prompt: &str) -> Result<String, LlmError> {
//!         Ok(format!("echo: {prompt}"))
//!     }
//! }
//!
//! # tokio_test::block_on(async {
//! let answer = Client.complete("hello").await.unwrap();
//! assert_eq!(answer, "echo: hello");
//! assert!(cb_runtime::registry().get("openai-doc").is_some());
//! # });
//! ```
//!
//! # The guide
//!
//! The repository's `docs/guide/` is a guide in chapters: getting started,
//! configuring, keyed breakers and failover, streams, rate limits, tower and
//! axum, operating, fleet, PostgreSQL, coming from resilience4j, Polly,
//! gobreaker and failsafe, and internals. `cargo test --workspace` compiles
//! every code block in it, and `cargo doc -p cb --open` renders it.
//!
//! # The pieces
//!
//! * [`CircuitBreaker`]: the state machine, [`call`](CircuitBreaker::call) and
//!   [`call_stream`](CircuitBreaker::call_stream) for [streamed calls](stream), and
//!   manual control ([`reset`](CircuitBreaker::reset),
//!   [`force_open`](CircuitBreaker::force_open), [`disable`](CircuitBreaker::disable)).
//! * [`Config`] and [`ConfigBuilder`]: triggers and recovery, validated.
//! * [`Preset`]: starting points for LLM, HTTP API, database, cache and
//!   notification dependencies.
//! * [`registry()`]: the process-wide [`Registry`] of named breakers.
//! * [`circuit_breaker`]: the attribute; its `fallback_with_cause` hands the
//!   fallback a [`FallbackCause`]: why it runs, and how long to wait.
//! * [`metrics`]: Prometheus metrics; `otel` (feature `otel`): OpenTelemetry
//!   instruments; [`Registry::subscribe`]: transition
//!   [`Events`]; [runtime configuration](Registry#runtime-configuration) from a
//!   TOML file and `CB_<NAME>_<FIELD>` environment variables.
//!
//! # States
//!
//! A breaker starts [`State::Closed`]. Consecutive failures, a failure rate
//! or a slow-call rate over the sliding window open it; while
//! [`State::Open`] it refuses calls at once. After the open duration it lets
//! up to `half_open_max_calls` probes through ([`State::HalfOpen`]):
//! `success_threshold` successes close it, one failure opens it again.
#![warn(missing_docs)]
#![deny(unsafe_code)]

mod breaker;
mod call;
pub mod classify;
pub mod clock;
mod config;
mod counters;
mod duration;
mod error;
pub mod events;
mod fallback;
pub mod family;
mod handle;
pub mod history;
mod home;
mod hook;
mod intern;
mod key;
mod log;
pub mod metrics;
mod name;
mod outcome;
mod overrides;
mod permit;
mod preset;
mod registry;
mod state;
mod stats;
pub mod stream;
mod sync;
mod timing;
mod transition;
mod trigger;
mod window;
// Protection modes.
mod adaptive;
mod bulkhead;
mod mode;
mod shadow;

#[cfg(feature = "admin")]
pub mod admin;
#[cfg(feature = "otel")]
pub mod otel;
#[cfg(feature = "tower")]
pub mod tower;

#[doc(hidden)]
#[path = "private/mod.rs"]
pub mod __private;

pub use breaker::coordination;
pub use breaker::health;
pub use breaker::health::HealthCheckResult;
pub(crate) use breaker::ramp;
pub use breaker::CircuitBreaker;
pub use call::Call;
pub use cb_macros::circuit_breaker;
pub use clock::Clock;
pub use config::{
    Backoff, Config, ConfigBuilder, ConfigError, Window, MAX_OPEN_DURATION, MAX_PROBES,
    MIN_SLOW_CALL_DURATION,
};
pub use duration::{parse_duration, ParseDurationError};
pub use error::{BreakerError, BreakerErrorKind, CallError};
pub use events::{Event, EventStream, Events};
pub use fallback::{FallbackCause, FallbackReason};
pub use family::{Family, OVERFLOW_KEY};
pub use mode::{Mode, ParseModeError, Trip};
pub use outcome::{Classify, ClassifyError, ErrIsFailure, Outcome, UNTIL_RESET};
pub use overrides::env_name;
pub use permit::{OwnedPermit, Permit};
pub use preset::Preset;
pub use registry::{registry, FleetStatus, Health, Registry};
pub use state::{ParseStateError, State};
pub use stats::Stats;
pub use stream::{BreakerStream, CallStream};
pub use transition::{Reason, Transition};

#[cfg(all(test, not(loom)))]
mod tests;
