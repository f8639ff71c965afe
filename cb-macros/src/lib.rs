//! The `#[circuit_breaker]` attribute for [`cb-runtime`](https://docs.rs/cb-runtime).
//!
//! Depend on `cb-runtime`, which re-exports the attribute as `cb_runtime::circuit_breaker`;
//! the expansion names paths under `::cb_runtime::__private`, so this crate is not meant to be
//! used alone.
//!
//! The crate is laid out like `tokio-macros` and `tracing-attributes`: this file only hands the
//! attribute to `expand`, arguments are parsed in `args`. Durations, backoff text, field
//! names and key suggestions come from `cb-syntax`, which the runtime's config
//! file and environment layers share, so all accept the same text.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

extern crate proc_macro;

mod args;
mod expand;

use proc_macro::TokenStream;

/// Protects an `async fn` returning `Result<T, E>` with a circuit breaker from the global
/// registry.
///
/// ```
/// use cb_runtime::{circuit_breaker, BreakerError};
///
/// #[derive(Debug)]
/// enum LlmError {
///     Breaker(BreakerError),
///     Provider(String),
/// }
///
/// impl From<BreakerError> for LlmError {
///     fn from(e: BreakerError) -> Self {
///         LlmError::Breaker(e)
///     }
/// }
///
/// struct Provider;
///
/// impl Provider {
///     #[circuit_breaker(name = "doc-openai", preset = "llm", call_timeout = "20s", fallback = cached)]
///     async fn complete(&self, prompt: &str) -> Result<String, LlmError> {
///         Ok(format!("answer to {prompt}"))
///     }
///
///     async fn cached(&self, _prompt: &str) -> Result<String, LlmError> {
///         Ok("cached answer".to_string())
///     }
/// }
/// ```
///
/// The signature does not change: only the body is wrapped. The breaker is created on the
/// first call, in [`cb_runtime::registry()`](https://docs.rs/cb-runtime) under `name`; one
/// breaker serves the function whatever its generic parameters. A refused or timed-out call
/// returns `Err(E::from(BreakerError))`, so `E` must implement `From<BreakerError>`.
///
/// # Foreign error types
///
/// For an error type of another crate, which cannot implement `From<BreakerError>`, declare
/// `Result<T, CallError<E>>` (`cb_runtime::CallError`, imported or by its path): the body is then
/// a `Result<T, E>`, so `?` works on `E` as written, and the breaker's refusal and timeout come
/// back as `CallError::Rejected` and `CallError::Timeout`.
///
/// ```
/// use cb_runtime::{circuit_breaker, CallError};
///
/// #[circuit_breaker(name = "doc-foreign", preset = "database")]
/// async fn read_config(path: &str) -> Result<String, CallError<std::io::Error>> {
///     let text = std::fs::read_to_string(path)?;
///     Ok(text.trim().to_owned())
/// }
/// ```
///
/// # Fallbacks
///
/// `fallback_on = "refusal"` (the default) runs the fallback when the breaker refuses the call;
/// `"breaker"` also when it timed out; `"failure"` also when the body's error counted as a
/// failure or was a rate limit (`throttle_if`), so a fallback that is itself a protected
/// function of another provider makes a failover chain; `"error"` also for any other error of
/// the body (one `ignore_if` ignored: a prompt too long for the model). Each run is counted in
/// `Stats::fallbacks_on(reason)`. Beyond `"refusal"` the body borrows its arguments, which the
/// fallback gets after it ran.
///
/// `fallback_with_cause = path` names a fallback that is also told why it runs: it takes the
/// function's parameters, then a `cb_runtime::FallbackCause<E>` (`E` the body's error type) with
/// the reason, the body's error or the breaker's refusal, the time to wait (in a failover chain,
/// the smallest time left of its members) and the key of a keyed breaker:
///
/// ```
/// use cb_runtime::{circuit_breaker, BreakerError, FallbackCause, FallbackReason};
///
/// #[derive(Debug)]
/// enum LlmError {
///     RateLimited,
///     Breaker(BreakerError),
/// }
///
/// impl From<BreakerError> for LlmError {
///     fn from(e: BreakerError) -> Self {
///         LlmError::Breaker(e)
///     }
/// }
///
/// fn is_rate_limited(e: &LlmError) -> bool {
///     matches!(e, LlmError::RateLimited)
/// }
///
/// #[circuit_breaker(name = "doc-cause", preset = "llm", key = model, throttle_if = is_rate_limited,
///                   fallback_with_cause = failover, fallback_on = "failure")]
/// async fn complete(model: &str, prompt: &str) -> Result<String, LlmError> {
///     let _ = (model, prompt);
///     Err(LlmError::RateLimited)
/// }
///
/// async fn failover(model: &str, prompt: &str, cause: FallbackCause<LlmError>) -> Result<String, LlmError> {
///     assert_eq!((cause.reason(), cause.key()), (FallbackReason::Throttled, Some(model)));
///     Ok(format!("another provider: {prompt}"))
/// }
/// ```
///
/// # Keys
///
/// | key | value | meaning |
/// |---|---|---|
/// | `name` | string, required | the breaker's name in the registry |
/// | `preset` | `"llm"`, `"http_api"` (default), `"database"`, `"cache"`, `"notification"` | starting configuration |
/// | `failure_threshold`, `minimum_calls`, `half_open_max_calls`, `success_threshold` | integer | builder overrides |
/// | `failure_rate_threshold`, `slow_call_rate_threshold` | number in `[0, 1]` | builder overrides |
/// | `open_duration`, `slow_call_duration`, `call_timeout` | duration string: `"250ms"`, `"30s"`, `"2m"`, `"1m30s"`; `"none"` turns `slow_call_duration` or `call_timeout` off | builder overrides |
/// | `sliding_window` | integer (last N calls) or duration string (calls of the last duration) | builder override |
/// | `open_backoff` | string `"<multiplier> <cap> [<jitter>]"`, e.g. `"2 5m 0.1"`, or `"none"` | builder override: the open duration grows on each reopen |
/// | `throttle_duration`, `max_retry_after` | duration string; `max_retry_after = "0s"` ignores hints | builder overrides: how long a throttled error opens the circuit without a hint, and the longest hint honoured |
/// | `max_keys`, `family_open_keys` | integer | builder overrides for keyed functions: the most keys of the family (default 100), and how many open keys open the whole family (default 0: off) |
/// | `streak_failure_rate`, `open_growth` | number in `[0, 1]` | builder overrides: the share of the window that must have failed for a run of `failure_threshold` errors to open (timeouts open alone), and the share of an outage a reopened circuit waits (0: off for both) |
/// | `mode` | `"enforce"` (default) or `"shadow"` | builder override: shadow mode lets every call through and counts those the breaker would have refused |
/// | `max_concurrent_calls` | integer, or `"none"` (default) | builder override: a bulkhead, at most this many calls in flight at once (per key) |
/// | `trip`, `adaptive_k` | `"threshold"` (default) or `"adaptive"`; a number greater than 1 (default 2.0) | builder overrides: adaptive throttling instead of the open circuit, and its multiplier |
/// | `health_check_interval`, `ramp_up` | duration string; `ramp_up = "0s"` or `"none"` turns the ramp off | builder overrides: how often the health check runs while open, and how long the admitted share takes to grow back to 100 % after closing |
/// | `key` | an expression over the arguments and `self` whose value is `AsRef<str>` (`key = model`, `key = self.tenant`) | one breaker per distinct key, in the family `name` (`cb_runtime::Family`); evaluated on every call, before the body |
/// | `fallback` | path to an `async fn` with the same parameters and return type | awaited, with the same arguments, instead of the body's answer when `fallback_on` says |
/// | `fallback_on` | `"refusal"` (default), `"breaker"`, `"failure"` or `"error"` | the fallback runs on a refusal; also on a timeout; also on an error counted as a failure or a rate limit; also on any other error |
/// | `failure_if` | path to a `fn(&E) -> bool` | errors for which it returns `false` count as successes |
/// | `ignore_if` | path to a `fn(&E) -> bool` | errors for which it returns `true` are not counted (asked before `failure_if`) |
/// | `throttle_if` | path to a `fn(&E) -> bool` | errors for which it returns `true` are rate limits (`Outcome::Throttled`): no failure is counted, and the circuit opens for the hint or `throttle_duration`; asked before `ignore_if` and `failure_if` |
/// | `retry_after` | path to a `fn(&E) -> Option<Duration>` | the provider's hint carried by the error (a `Retry-After` header, a "try again in 20s" in its body), capped at `max_retry_after` |
/// | `stream` | `true` or `false` | force a streamed call on (boxed streams, aliases) or off; detected from `Result<impl Stream<...>, E>` otherwise |
/// | `crate` | string, e.g. `"my_cb"` | path of `cb-runtime` when the dependency is renamed |
/// | `classify` | path to a `fn(&E) -> Outcome` | decides how each error counts (`Failure`, `Ignored`, `Throttled` with `retry_after`'s hint, or `Success`), such as `cb_runtime::classify::postgres`; not with `failure_if`, `ignore_if` or `throttle_if` |
/// | `fallback_with_cause` | path to an `async fn` with the same parameters, then a `FallbackCause<E>`, and the same return type | like `fallback`, and told why it runs (`cb_runtime::FallbackCause`); not with `fallback` |
///
/// The configuration keys, their kinds and ranges are those of the field table
/// `cb_syntax::FIELDS`, which the runtime's config file, environment variables, validation and
/// admin view read too: a key the file takes, the attribute takes, with the same range.
///
/// Durations take the units `ns`, `us`, `ms`, `s`, `m` (or `min`) and `h`, with an optional
/// decimal part (`"1.5s"`), and may be chained (`"1m30s"`).
///
/// On a method, a one-word `fallback` names a sibling method (`fallback = cached` calls
/// `Self::cached(self, ...)`); a longer path is called as written, with the receiver first.
///
/// # Where it works
///
/// Free functions; `&self`, `&mut self` and `self` methods; generic functions (one breaker for
/// every instantiation); functions returning data borrowed from an argument or `self`;
/// `impl Trait` arguments; native `async fn` in traits and trait impls; recursion through
/// `Box::pin`; stacked with `#[tracing::instrument]` in either order. The future stays `Send`
/// when the body's is. Under `#[async_trait]` the method is no longer an `async fn` when this
/// attribute sees it, and compilation fails saying so: use a native `async fn` in the trait.
///
/// The function looks its breaker up in the registry once, on its first call, and keeps it:
/// removing the name from the registry later does not detach the function from that breaker.
///
/// # Keyed functions
///
/// With `key = <expr>`, calls with key `"gpt-4o"` never open the breaker of `"gpt-4o-mini"`:
///
/// ```
/// # use cb_runtime::{circuit_breaker, BreakerError};
/// # #[derive(Debug)] struct LlmError;
/// # impl From<BreakerError> for LlmError { fn from(_: BreakerError) -> Self { LlmError } }
/// #[circuit_breaker(name = "doc-gateway", preset = "llm", key = model)]
/// async fn complete(model: &str, prompt: &str) -> Result<String, LlmError> {
///     Ok(format!("{model}: {prompt}"))
/// }
/// ```
///
/// The family is looked up once, on the first call, and kept; each call then finds its key's
/// breaker without a lock or an allocation. A key that is not `AsRef<str>` is a compile error
/// at the expression.
///
/// # Streamed functions
///
/// A function returning `Result<impl Stream<Item = Result<T, E>>, E>` is a streamed call
/// (`cb_runtime::stream`): the breaker judges its stream, item by item, not its opening. Time to
/// first item is the slow-call signal, `call_timeout` bounds the wait for each item, an `Err`
/// item is a failure, and a stall ends the stream with an `Err(E::from(BreakerError))` item.
/// `stream = true` does the same for a boxed stream (`Pin<Box<dyn Stream<...> + Send + 'a>>`,
/// futures' `BoxStream`); `stream = false` judges the call when the stream is opened. A
/// `fallback` returns a stream too, and runs only when the stream could not be opened.
/// `failure_if` and `ignore_if` judge the opening's error and each `Err` item: an error they
/// excuse still reaches the consumer and the stream goes on; the call is then ignored (or a
/// success) unless a failure or a timeout follows. `throttle_if` (with `retry_after`) judges
/// them too: a rate limit ends the stream, counts as throttled, and opens the circuit for its
/// hint.
///
/// Every argument is checked at compile time, and a mistake is reported at the offending
/// token.
#[proc_macro_attribute]
pub fn circuit_breaker(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::circuit_breaker(args.into(), item.into()).into()
}
