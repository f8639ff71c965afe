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
    /// The breaker honours the hint, as [`CircuitBreaker::open_for`](crate::CircuitBreaker::open_for)
    /// would (never shortening an open period already running), only when the
    /// call counts as a [`Outcome::Failure`] and was admitted in the current
    /// period: a late answer from a call admitted before the circuit last
    /// moved says nothing about now. The default gives no hint.
    fn classify_with_retry_after(self, result: &Result<T, E>) -> (Outcome, Option<Duration>)
    where
        Self: Sized,
    {
        (self.classify(result), None)
    }
}

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
/// success) unless a failure or a timeout follows.
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
    /// Dropped before it finished: no outcome is recorded.
    Cancelled,
}

impl CallEnd {
    /// Every end, in the order of [`CallEnd::index`].
    pub(crate) const ALL: [CallEnd; 5] = [
        CallEnd::Success,
        CallEnd::Failure,
        CallEnd::Timeout,
        CallEnd::Ignored,
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
        }
    }
}
