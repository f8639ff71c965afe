//! How a call counts: [`Outcome`], the [`Classify`] trait that decides it,
//! and the way a permit ends as the breaker records it.

use std::time::Duration;

/// How a finished call counts against the dependency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The dependency did its job.
    Success,
    /// The dependency failed: counts towards opening the circuit.
    Failure,
    /// Neither: the error was the caller's fault (say, a 400 for a prompt that
    /// is too long). Counted in `Stats::ignored`, and nowhere else.
    Ignored,
    /// The dependency answered "too many requests" or "quota exceeded" (an
    /// HTTP 429; an LLM provider's rate-limit error). It is not down, and it
    /// asked callers to wait:
    ///
    /// * counted in `Stats::throttled` (and in `Stats::calls()`), never as a
    ///   failure: it is not in the window's failure rate, not a consecutive
    ///   failure, and never raises the `open_backoff` level;
    /// * it opens the circuit ([`Reason::Throttled`](crate::Reason::Throttled))
    ///   for the dependency's hint ([`Classify::classify_with_retry_after`]),
    ///   capped at `max_retry_after`, or for `throttle_duration` without one.
    ///   It never shortens an open period already running, and an answer to a
    ///   call admitted before the circuit last moved is ignored, as a late
    ///   result is. After the period the circuit is half-open, as usual;
    /// * while that period lasts, a refusal says so:
    ///   [`BreakerError::is_throttled`](crate::BreakerError::is_throttled), with
    ///   the time left in [`retry_after`](crate::BreakerError::retry_after).
    ///
    /// ```
    /// use std::time::Duration;
    /// use cb_runtime::{clock::ManualClock, CircuitBreaker, Config, Outcome, State};
    ///
    /// let clock = ManualClock::new();
    /// let config = Config::builder().throttle_duration(Duration::from_secs(5)).clock(clock.clock());
    /// let breaker = CircuitBreaker::new("throttled-doc", config.build()?);
    /// breaker.try_acquire().unwrap().record_outcome(Outcome::Throttled);
    ///
    /// let refusal = breaker.try_acquire().unwrap_err();
    /// assert!(refusal.is_throttled());
    /// assert_eq!(refusal.retry_after(), Some(Duration::from_secs(5)));
    /// let stats = breaker.stats();
    /// assert_eq!((stats.throttled, stats.failures, stats.calls()), (1, 0, 2));
    ///
    /// clock.advance(Duration::from_secs(5));
    /// assert_eq!(breaker.state(), State::HalfOpen);
    /// # Ok::<(), cb_runtime::ConfigError>(())
    /// ```
    Throttled,
}

/// Decides how a finished call's result counts against the dependency.
///
/// Implemented by [`ErrIsFailure`] (the default: `Err` is a failure), by
/// every closure `FnOnce(&Result<T, E>) -> Outcome`, and by
/// `tower::HttpClassifier` (feature `tower`) for HTTP responses.
///
/// ```
/// use cb_runtime::{CircuitBreaker, Classify, Config, Outcome};
///
/// /// A 4xx is the caller's fault; anything else that fails is the dependency's.
/// struct ClientErrorsIgnored;
///
/// impl<T> Classify<T, u16> for ClientErrorsIgnored {
///     fn classify(self, result: &Result<T, u16>) -> Outcome {
///         match result {
///             Ok(_) => Outcome::Success,
///             Err(400..=499) => Outcome::Ignored,
///             Err(_) => Outcome::Failure,
///         }
///     }
/// }
///
/// # tokio_test::block_on(async {
/// let breaker = CircuitBreaker::new("classify-doc", Config::default());
/// let permit = breaker.try_acquire().unwrap();
/// let _ = permit.run_classified(async { Err::<(), u16>(404) }, ClientErrorsIgnored).await;
/// assert_eq!(breaker.stats().ignored, 1);
/// # });
/// ```
pub trait Classify<T, E> {
    /// How `result` counts.
    fn classify(self, result: &Result<T, E>) -> Outcome;

    /// How `result` counts, and how long the dependency asked callers to
    /// stay away if it said so (an HTTP `Retry-After`).
    ///
    /// For an [`Outcome::Throttled`] the hint, capped at the breaker's
    /// `max_retry_after`, is how long the circuit stays open (no hint:
    /// `throttle_duration`). For an [`Outcome::Failure`] the breaker honours
    /// it as [`CircuitBreaker::open_for`](crate::CircuitBreaker::open_for)
    /// would, capped the same way (an HTTP 503 with `Retry-After`). Either
    /// way it never shortens an open period already running, and counts
    /// only from a call admitted in the current period: a late answer from a
    /// call admitted before the circuit last moved says nothing about now.
    /// The default gives no hint.
    fn classify_with_retry_after(self, result: &Result<T, E>) -> (Outcome, Option<Duration>)
    where
        Self: Sized,
    {
        (self.classify(result), None)
    }
}

/// The hint of a failure that will not end by itself (an HTTP 401: the API
/// key was revoked): returned by the attribute's `retry_after = path` (or
/// [`Classify::classify_with_retry_after`]) for an error counted as a
/// failure, it forces the circuit open ([`CircuitBreaker::force_open`](crate::CircuitBreaker::force_open))
/// until someone resets it, instead of opening it for a time.
///
/// Every other hint is a time, capped at `max_retry_after`; this one is not a
/// time. A rate limit ([`Outcome::Throttled`]) with this hint opens for
/// `max_retry_after`, as any long hint does, and `max_retry_after = "0s"`
/// ignores it too. A disabled circuit stays disabled.
pub const UNTIL_RESET: Duration = Duration::MAX;

/// The default classifier: `Ok` is a success, `Err` a failure.
#[derive(Clone, Copy, Debug, Default)]
pub struct ErrIsFailure;

impl<T, E> Classify<T, E> for ErrIsFailure {
    #[inline]
    fn classify(self, result: &Result<T, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}

impl<T, E, F: FnOnce(&Result<T, E>) -> Outcome> Classify<T, E> for F {
    #[inline]
    fn classify(self, result: &Result<T, E>) -> Outcome {
        self(result)
    }
}

/// Decides how an error of a [streamed call](crate::stream) counts: the error
/// the opening returned, and each `Err` item.
///
/// Implemented by [`ErrIsFailure`] (every error is a failure) and by every
/// closure `FnMut(&E) -> Outcome`. It is asked about each error, and the call
/// is still judged once: an error it calls a [`Outcome::Failure`] judges the
/// call a failure and ends the stream; one it calls [`Outcome::Ignored`] or
/// [`Outcome::Success`] reaches the consumer, the stream goes on, and the
/// first such error is the call's verdict (counted in `Stats::ignored`, or a
/// success) unless a failure or a timeout follows. One it calls
/// [`Outcome::Throttled`] judges the call throttled at once and ends the
/// stream, opening the circuit for the hint of
/// [`classify_error_with_retry_after`](Self::classify_error_with_retry_after).
///
/// ```
/// use cb_runtime::{CircuitBreaker, Config, Outcome};
/// use futures_core::Stream;
///
/// # tokio_test::block_on(async {
/// let breaker = CircuitBreaker::new("classify-error-doc", Config::default());
/// let items = vec![Ok::<_, u16>("a"), Err(400), Ok("b")];
/// let open = async move { Ok::<_, u16>(tokio_stream::iter(items)) };
/// // A 4xx is the caller's fault: counted as ignored, and passed on.
/// let judge = |e: &u16| if *e < 500 { Outcome::Ignored } else { Outcome::Failure };
/// let stream = breaker.call_stream_with(open, judge).await.unwrap();
/// # let _ = &stream;
/// # });
/// ```
pub trait ClassifyError<E> {
    /// How `error` counts.
    fn classify_error(&mut self, error: &E) -> Outcome;

    /// How `error` counts, and the dependency's hint of when to come back,
    /// as [`Classify::classify_with_retry_after`] says for a plain call. The
    /// default gives no hint.
    fn classify_error_with_retry_after(&mut self, error: &E) -> (Outcome, Option<Duration>) {
        (self.classify_error(error), None)
    }
}

impl<E> ClassifyError<E> for ErrIsFailure {
    #[inline]
    fn classify_error(&mut self, _: &E) -> Outcome {
        Outcome::Failure
    }
}

impl<E, F: FnMut(&E) -> Outcome> ClassifyError<E> for F {
    #[inline]
    fn classify_error(&mut self, error: &E) -> Outcome {
        self(error)
    }
}

/// How an admitted call ended, as the breaker records it: an [`Outcome`],
/// or one of the two ends only the breaker sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CallEnd {
    Success,
    Failure,
    /// Abandoned at `call_timeout`: counted as a failure, and as a timeout.
    Timeout,
    Ignored,
    /// Rate limited by the dependency: opens for its hint, counts no failure.
    Throttled,
    /// Dropped before it finished: no outcome is recorded.
    Cancelled,
}

impl CallEnd {
    /// Every end, in the order of [`CallEnd::index`].
    pub(crate) const ALL: [CallEnd; 6] = [
        CallEnd::Success,
        CallEnd::Failure,
        CallEnd::Timeout,
        CallEnd::Ignored,
        CallEnd::Throttled,
        CallEnd::Cancelled,
    ];

    /// The end's place in [`CallEnd::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The word of the metrics' `outcome` and `result` labels.
    pub(crate) fn word(self) -> &'static str {
        match self {
            CallEnd::Success => "success",
            CallEnd::Failure => "failure",
            CallEnd::Timeout => "timeout",
            CallEnd::Ignored => "ignored",
            CallEnd::Throttled => "throttled",
            CallEnd::Cancelled => "cancelled",
        }
    }

    /// How a permit dropped unused ends: a failure while a panic unwinds
    /// through it, otherwise a cancellation, which records no outcome.
    pub(crate) fn dropped() -> CallEnd {
        if std::thread::panicking() {
            CallEnd::Failure
        } else {
            CallEnd::Cancelled
        }
    }
}

impl From<Outcome> for CallEnd {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Success => CallEnd::Success,
            Outcome::Failure => CallEnd::Failure,
            Outcome::Ignored => CallEnd::Ignored,
            Outcome::Throttled => CallEnd::Throttled,
        }
    }
}
