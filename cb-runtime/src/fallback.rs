//! Why a fallback ran: the `on` label of `circuit_breaker_fallbacks_total`
//! and [`Stats::fallbacks_on`](crate::Stats::fallbacks_on), and what the
//! attribute's `fallback_with_cause` hands the fallback ([`FallbackCause`]).

use std::fmt;
use std::time::Duration;

use crate::error::{BreakerError, CallError};

pub(crate) mod chain;

/// Why a fallback answered instead of the protected call.
///
/// The attribute's `fallback_on` picks which of these run the fallback, each
/// level including the ones before it: `"refusal"` (the default)
/// [`Refusal`](Self::Refusal) only, `"breaker"` also [`Timeout`](Self::Timeout),
/// `"failure"` also [`Failure`](Self::Failure) and [`Throttled`](Self::Throttled),
/// `"error"` also [`Error`](Self::Error).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FallbackReason {
    /// The breaker refused the call (open, forced open, half-open full).
    Refusal,
    /// The call was abandoned at `call_timeout`.
    Timeout,
    /// The call returned an error the breaker counted as a failure.
    Failure,
    /// The call's answer was judged a rate limit ([`Outcome::Throttled`](crate::Outcome::Throttled):
    /// a 429, a quota error): the dependency asked callers to wait.
    Throttled,
    /// The call returned an error the classifier did not count as a failure
    /// (`ignore_if`, or `failure_if` saying no): a caller's error, such as a
    /// prompt longer than the model's context window.
    Error,
}

impl FallbackReason {
    /// Every reason, in the order the metrics list them.
    pub const ALL: [FallbackReason; 5] = [
        FallbackReason::Refusal,
        FallbackReason::Timeout,
        FallbackReason::Failure,
        FallbackReason::Throttled,
        FallbackReason::Error,
    ];

    /// The word of the metric's `on` label: `refusal`, `timeout`, `failure`,
    /// `throttled` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            FallbackReason::Refusal => "refusal",
            FallbackReason::Timeout => "timeout",
            FallbackReason::Failure => "failure",
            FallbackReason::Throttled => "throttled",
            FallbackReason::Error => "error",
        }
    }

    /// The reason's place in [`FallbackReason::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for FallbackReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a fallback runs, handed to the fallback of
/// `#[circuit_breaker(fallback_with_cause = path)]` as its last parameter:
/// the [`reason`](Self::reason), the body's own error or the breaker's
/// refusal, the time to wait before trying the dependency again, and the key
/// of a keyed breaker.
///
/// `E` is the body's error type (for a function declared
/// `Result<T, CallError<E>>`, that `E`).
///
/// | reason | [`error`](Self::error) | [`breaker_error`](Self::breaker_error) | [`retry_after`](Self::retry_after) |
/// |---|---|---|---|
/// | [`Refusal`](FallbackReason::Refusal) | `None` | the refusal | the time left of the open period |
/// | [`Timeout`](FallbackReason::Timeout) | `None` | the timeout | `None` |
/// | [`Failure`](FallbackReason::Failure) | the body's error | `None` | `None` |
/// | [`Throttled`](FallbackReason::Throttled) | the body's error | `None` | the dependency's hint (`retry_after = path`) |
/// | [`Error`](FallbackReason::Error) | the body's error | `None` | `None` |
///
/// # A failover chain
///
/// When the fallback is itself a `#[circuit_breaker]` function of another
/// provider (`openai` → `anthropic` → a local model), each fallback runs as
/// a member of the chain: a cause made while it runs knows the hints of the
/// members before it, and its `retry_after` is the smallest time left among
/// all of them (`None` only when none of them gave one). So when every
/// provider refuses, the last fallback can answer `503` with a
/// `Retry-After` that is true: the first moment one of them takes calls again.
///
/// # Routing by error
///
/// ```
/// use std::time::Duration;
/// use cb_runtime::{circuit_breaker, BreakerError, FallbackCause, FallbackReason};
///
/// #[derive(Debug)]
/// enum LlmError {
///     /// HTTP 429, with the provider's `Retry-After`.
///     RateLimited(Duration),
///     /// HTTP 400 `context_length_exceeded`: a bigger model can answer.
///     ContextTooLong,
///     /// HTTP 5xx.
///     Server(u16),
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
///     matches!(e, LlmError::RateLimited(_))
/// }
///
/// fn hint(e: &LlmError) -> Option<Duration> {
///     match e {
///         LlmError::RateLimited(after) => Some(*after),
///         _ => None,
///     }
/// }
///
/// fn is_callers_error(e: &LlmError) -> bool {
///     matches!(e, LlmError::ContextTooLong)
/// }
///
/// #[circuit_breaker(name = "doc-cause-openai", preset = "llm", key = model,
///                   throttle_if = is_rate_limited, retry_after = hint, ignore_if = is_callers_error,
///                   fallback_with_cause = failover, fallback_on = "error")]
/// async fn complete(model: &str, prompt: &str) -> Result<String, LlmError> {
///     match prompt.len() {
///         0..=20 => Ok(format!("{model}: {prompt}")),
///         _ => Err(LlmError::ContextTooLong),
///     }
/// }
///
/// async fn failover(model: &str, prompt: &str, cause: FallbackCause<LlmError>) -> Result<String, LlmError> {
///     assert_eq!(cause.key(), Some(model));
///     match cause.reason() {
///         // A caller's error: the model with the larger context window answers.
///         FallbackReason::Error if matches!(cause.error(), Some(LlmError::ContextTooLong)) => {
///             Ok(format!("gpt-4.1 (1M tokens): {prompt}"))
///         }
///         // Any other caller's error goes back as it was.
///         FallbackReason::Error => Err(cause.into_error().expect("the body's error")),
///         // Rate limited, refused, failed or timed out: another provider.
///         _ => Ok(format!("anthropic: {prompt}")),
///     }
/// }
///
/// # tokio_test::block_on(async {
/// assert_eq!(complete("gpt-4o", "hello").await.unwrap(), "gpt-4o: hello");
/// let long = "a prompt longer than the context window";
/// assert_eq!(complete("gpt-4o", long).await.unwrap(), format!("gpt-4.1 (1M tokens): {long}"));
/// # });
/// ```
pub struct FallbackCause<E> {
    reason: FallbackReason,
    source: Source<E>,
    retry_after: Option<Duration>,
    key: Option<Box<str>>,
}

/// What the cause carries: the breaker's refusal or timeout, or the body's error.
enum Source<E> {
    Breaker(BreakerError),
    Error(E),
}

impl<E> FallbackCause<E> {
    /// The cause of a fallback that runs for the breaker's own `error` (a
    /// refusal or a timeout), for the breaker of `key` if keyed. Its
    /// [`retry_after`](Self::retry_after) is the refusal's time left, or the
    /// chain's when smaller.
    pub fn from_breaker_error(error: BreakerError, key: Option<&str>) -> Self {
        let reason = if error.is_timeout() {
            FallbackReason::Timeout
        } else {
            FallbackReason::Refusal
        };
        FallbackCause {
            reason,
            retry_after: chain::soonest(error.retry_after()),
            source: Source::Breaker(error),
            key: key.map(Box::from),
        }
    }

    /// The cause of a fallback that runs because the body's `error` counted
    /// as a failure ([`Failure`](FallbackReason::Failure)), for the breaker
    /// of `key` if keyed.
    pub fn from_failure(error: E, key: Option<&str>) -> Self {
        Self::from_error(FallbackReason::Failure, error, None, key)
    }

    /// The cause of a fallback that runs because the body's `error` was a
    /// rate limit ([`Throttled`](FallbackReason::Throttled)), with the
    /// dependency's `hint`, for the breaker of `key` if keyed.
    pub fn from_throttled(error: E, hint: Option<Duration>, key: Option<&str>) -> Self {
        Self::from_error(FallbackReason::Throttled, error, hint, key)
    }

    /// The cause of a fallback that runs for a body's `error` that the
    /// classifier did not count as a failure ([`Error`](FallbackReason::Error)),
    /// for the breaker of `key` if keyed.
    pub fn from_ignored(error: E, key: Option<&str>) -> Self {
        Self::from_error(FallbackReason::Error, error, None, key)
    }

    fn from_error(reason: FallbackReason, error: E, hint: Option<Duration>, key: Option<&str>) -> Self {
        FallbackCause {
            reason,
            retry_after: chain::soonest(hint),
            source: Source::Error(error),
            key: key.map(Box::from),
        }
    }

    /// Why the fallback runs.
    pub fn reason(&self) -> FallbackReason {
        self.reason
    }

    /// The body's error, for [`Failure`](FallbackReason::Failure),
    /// [`Throttled`](FallbackReason::Throttled) and
    /// [`Error`](FallbackReason::Error); `None` when the breaker refused or
    /// abandoned the call.
    pub fn error(&self) -> Option<&E> {
        match &self.source {
            Source::Error(error) => Some(error),
            Source::Breaker(_) => None,
        }
    }

    /// The body's error, owned: to return it as the fallback's answer when
    /// the fallback cannot help (`Err(cause.into_error().unwrap())`).
    pub fn into_error(self) -> Option<E> {
        match self.source {
            Source::Error(error) => Some(error),
            Source::Breaker(_) => None,
        }
    }

    /// The breaker's refusal or timeout, for [`Refusal`](FallbackReason::Refusal)
    /// and [`Timeout`](FallbackReason::Timeout). Its `Display` names the
    /// breaker (and its key).
    pub fn breaker_error(&self) -> Option<&BreakerError> {
        match &self.source {
            Source::Breaker(error) => Some(error),
            Source::Error(_) => None,
        }
    }

    /// How long to wait before the dependency takes calls again: a
    /// refusal's time left of the open period, a throttled answer's own hint,
    /// `None` for a timeout, a failure or an ignored error.
    ///
    /// In a failover chain it is the smallest time left among every member
    /// that refused or was throttled so far (measured when this cause was
    /// made), so the last fallback of a chain whose every member refused
    /// can answer `503` with a `Retry-After` that is true.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The key of a keyed breaker (`key = <expr>`): the key this call was
    /// made with. `None` for an unkeyed breaker.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The cause as the [`CallError`] the call ended with: for a function
    /// declared `Result<T, CallError<E>>` whose fallback gives up
    /// (`Err(cause.into_call_error())`).
    pub fn into_call_error(self) -> CallError<E> {
        match self.source {
            Source::Error(error) => CallError::Inner(error),
            Source::Breaker(error) if error.is_timeout() => CallError::Timeout(error),
            Source::Breaker(error) => CallError::Rejected(error),
        }
    }
}

impl<E: fmt::Debug> fmt::Debug for FallbackCause<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("FallbackCause");
        s.field("reason", &self.reason);
        match &self.source {
            Source::Breaker(error) => s.field("breaker_error", error),
            Source::Error(error) => s.field("error", error),
        };
        s.field("retry_after", &self.retry_after)
            .field("key", &self.key)
            .finish()
    }
}

impl<E: Clone> Clone for FallbackCause<E> {
    fn clone(&self) -> Self {
        FallbackCause {
            reason: self.reason,
            source: match &self.source {
                Source::Breaker(error) => Source::Breaker(error.clone()),
                Source::Error(error) => Source::Error(error.clone()),
            },
            retry_after: self.retry_after,
            key: self.key.clone(),
        }
    }
}

/// `fallback (<reason>)`, then the breaker's error or the body's, and the
/// key and the wait when known: `fallback (throttled): rate limited (key
/// gpt-4o, retry after 20s)`.
impl<E: fmt::Display> fmt::Display for FallbackCause<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fallback ({}): ", self.reason)?;
        match &self.source {
            Source::Breaker(error) => write!(f, "{error}")?,
            Source::Error(error) => write!(f, "{error}")?,
        }
        match (&self.key, self.retry_after) {
            (Some(key), Some(after)) => write!(f, " (key {key}, retry after {after:?})"),
            (Some(key), None) => write!(f, " (key {key})"),
            (None, Some(after)) => write!(f, " (retry after {after:?})"),
            (None, None) => Ok(()),
        }
    }
}
