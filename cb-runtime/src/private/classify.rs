//! How the expansion classifies errors (`throttle_if` with `retry_after`,
//! `failure_if`, `ignore_if`) and decides
//! whether a fallback runs after the call (`fallback_on`).
//!
//! The expansion folds the classifier keys over [`ErrIsFailure`](crate::ErrIsFailure), the first
//! asked outermost: `ignore_if(failure_if(ErrIsFailure, f), i)` asks `i`,
//! then `f`. A new key is one more wrapper here and one more fold step there.
//! The same classifier judges a plain call (through [`errors`]) and a
//! streamed one (the error of its opening, and each `Err` item).

use std::time::Duration;

use crate::error::CallError;
use crate::{BreakerError, Classify, ClassifyError, FallbackCause, FallbackReason, Outcome};

/// `failure_if = path`: an error counts as a failure only when `path(&error)`
/// is `true`, and as a success otherwise; then `inner` judges a failure.
#[derive(Clone, Copy)]
pub struct FailureIf<C, P> {
    inner: C,
    is_failure: P,
}

/// `ignore_if = path`: an error for which `path(&error)` is `true` is not
/// counted at all; `inner` judges the others.
#[derive(Clone, Copy)]
pub struct IgnoreIf<C, P> {
    inner: C,
    is_ignored: P,
}

/// `throttle_if = path` (with `retry_after = hint`): an error for which
/// `path(&error)` is `true` is a rate limit, [`Outcome::Throttled`], with the
/// hint `hint(&error)` reads; `inner` judges the others, and a failure it
/// finds without a hint of its own takes `hint`'s (a 503's `Retry-After`).
/// Asked before `ignore_if` and `failure_if`: the expansion folds it last.
#[derive(Clone, Copy)]
pub struct ThrottleIf<C, P, R> {
    inner: C,
    is_throttled: P,
    retry_after: R,
}

/// `inner`, with `throttle_if` (and `retry_after`) asked first. A key not
/// given is a closure that says no (`|_| false`, `|_| None`).
#[inline(always)]
pub fn throttle_if<E, C, P: FnMut(&E) -> bool, R: FnMut(&E) -> Option<Duration>>(
    inner: C,
    is_throttled: P,
    retry_after: R,
) -> ThrottleIf<C, P, R> {
    ThrottleIf {
        inner,
        is_throttled,
        retry_after,
    }
}

impl<E, C, P, R> ClassifyError<E> for ThrottleIf<C, P, R>
where
    C: ClassifyError<E>,
    P: FnMut(&E) -> bool,
    R: FnMut(&E) -> Option<Duration>,
{
    #[inline(always)]
    fn classify_error(&mut self, error: &E) -> Outcome {
        if (self.is_throttled)(error) {
            Outcome::Throttled
        } else {
            self.inner.classify_error(error)
        }
    }

    #[inline(always)]
    fn classify_error_with_retry_after(&mut self, error: &E) -> (Outcome, Option<Duration>) {
        if (self.is_throttled)(error) {
            return (Outcome::Throttled, (self.retry_after)(error));
        }
        // A failure, or a rate limit `classify` found, takes the hint.
        match self.inner.classify_error_with_retry_after(error) {
            (outcome @ (Outcome::Failure | Outcome::Throttled), None) => (outcome, (self.retry_after)(error)),
            judged => judged,
        }
    }
}

/// `classify = path`: `path(&error)` is how an error counts.
#[derive(Clone, Copy)]
pub struct ClassifyWith<P>(P);

/// The classifier of `classify = path`.
#[inline(always)]
pub fn classify_with<E, P: FnMut(&E) -> Outcome>(judge: P) -> ClassifyWith<P> {
    ClassifyWith(judge)
}

impl<E, P: FnMut(&E) -> Outcome> ClassifyError<E> for ClassifyWith<P> {
    #[inline(always)]
    fn classify_error(&mut self, error: &E) -> Outcome {
        (self.0)(error)
    }
}

/// `inner`, with `failure_if` asked first.
#[inline(always)]
pub fn failure_if<E, C, P: FnMut(&E) -> bool>(inner: C, is_failure: P) -> FailureIf<C, P> {
    FailureIf { inner, is_failure }
}

/// `inner`, with `ignore_if` asked first.
#[inline(always)]
pub fn ignore_if<E, C, P: FnMut(&E) -> bool>(inner: C, is_ignored: P) -> IgnoreIf<C, P> {
    IgnoreIf { inner, is_ignored }
}

impl<E, C: ClassifyError<E>, P: FnMut(&E) -> bool> ClassifyError<E> for FailureIf<C, P> {
    #[inline(always)]
    fn classify_error(&mut self, error: &E) -> Outcome {
        if (self.is_failure)(error) {
            self.inner.classify_error(error)
        } else {
            Outcome::Success
        }
    }

    #[inline(always)]
    fn classify_error_with_retry_after(&mut self, error: &E) -> (Outcome, Option<Duration>) {
        if (self.is_failure)(error) {
            self.inner.classify_error_with_retry_after(error)
        } else {
            (Outcome::Success, None)
        }
    }
}

impl<E, C: ClassifyError<E>, P: FnMut(&E) -> bool> ClassifyError<E> for IgnoreIf<C, P> {
    #[inline(always)]
    fn classify_error(&mut self, error: &E) -> Outcome {
        if (self.is_ignored)(error) {
            Outcome::Ignored
        } else {
            self.inner.classify_error(error)
        }
    }

    #[inline(always)]
    fn classify_error_with_retry_after(&mut self, error: &E) -> (Outcome, Option<Duration>) {
        if (self.is_ignored)(error) {
            (Outcome::Ignored, None)
        } else {
            self.inner.classify_error_with_retry_after(error)
        }
    }
}

/// An error classifier as a plain call's [`Classify`]: `Ok` is a success.
#[derive(Clone, Copy)]
pub struct Errors<C>(C);

/// `classify` judging a plain call's result.
#[inline(always)]
pub fn errors<C>(classify: C) -> Errors<C> {
    Errors(classify)
}

impl<T, E, C: ClassifyError<E>> Classify<T, E> for Errors<C> {
    #[inline(always)]
    fn classify(mut self, result: &Result<T, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(error) => self.0.classify_error(error),
        }
    }

    #[inline(always)]
    fn classify_with_retry_after(mut self, result: &Result<T, E>) -> (Outcome, Option<Duration>) {
        match result {
            Ok(_) => (Outcome::Success, None),
            Err(error) => self.0.classify_error_with_retry_after(error),
        }
    }
}

/// `fallback_on`: when the fallback runs, each level including the ones
/// before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FallbackOn {
    /// `"refusal"`: the breaker refused the call.
    Refusal,
    /// `"breaker"`: also when the call timed out.
    Breaker,
    /// `"failure"`: also when the body's error counted as a failure, or was
    /// a rate limit.
    Failure,
    /// `"error"`: also for any other error of the body.
    Error,
}

/// Why a fallback runs after an admitted call, with the dependency's hint
/// for a throttled answer.
#[derive(Clone, Copy, Debug)]
pub struct Due {
    /// Why.
    pub reason: FallbackReason,
    /// A throttled answer's hint (`retry_after = path`).
    pub hint: Option<Duration>,
}

/// Whether the fallback runs after an admitted call, and why, at the level
/// `on`: for a timeout (`"breaker"`); for an error that `classify` (the
/// classifier the call was judged by, asked again) calls a failure or a rate
/// limit (`"failure"`); for any other error (`"error"`).
#[inline(always)]
pub fn fallback_due<S, E, C: ClassifyError<E>>(
    result: &Result<S, CallError<E>>,
    on: FallbackOn,
    mut classify: C,
) -> Option<Due> {
    let due = |reason| Some(Due { reason, hint: None });
    match result {
        Ok(_) => None,
        Err(CallError::Rejected(_)) => due(FallbackReason::Refusal),
        Err(CallError::Timeout(_)) if on >= FallbackOn::Breaker => due(FallbackReason::Timeout),
        Err(CallError::Timeout(_)) => None,
        Err(CallError::Inner(error)) if on >= FallbackOn::Failure => {
            match classify.classify_error_with_retry_after(error) {
                (Outcome::Failure, _) => due(FallbackReason::Failure),
                (Outcome::Throttled, hint) => Some(Due {
                    reason: FallbackReason::Throttled,
                    hint,
                }),
                _ if on == FallbackOn::Error => due(FallbackReason::Error),
                _ => None,
            }
        }
        Err(CallError::Inner(_)) => None,
    }
}

/// The chain's soonest retry for a plain `fallback` that runs for `due`
/// after `result` (it gets no cause, but the members after it do).
#[inline]
pub fn due_retry_after<S, E>(result: &Result<S, CallError<E>>, due: Due) -> Option<Duration> {
    let own = match result {
        Err(CallError::Rejected(error)) => error.retry_after(),
        _ if due.reason == FallbackReason::Throttled => due.hint,
        _ => None,
    };
    crate::fallback::chain::soonest(own)
}

/// The cause handed to a `fallback_with_cause` that runs for `due`, with
/// the call's error moved into it.
#[cold]
pub fn due_cause<E>(error: CallError<E>, due: Due, key: Option<&str>) -> FallbackCause<E> {
    match error {
        CallError::Rejected(error) | CallError::Timeout(error) => {
            FallbackCause::from_breaker_error(error, key)
        }
        CallError::Inner(error) => match due.reason {
            FallbackReason::Throttled => FallbackCause::from_throttled(error, due.hint, key),
            FallbackReason::Error => FallbackCause::from_ignored(error, key),
            _ => FallbackCause::from_failure(error, key),
        },
    }
}

/// The cause handed to a `fallback_with_cause` that runs on a refusal.
#[cold]
pub fn refused_cause<E>(error: BreakerError, key: Option<&str>) -> FallbackCause<E> {
    FallbackCause::from_breaker_error(error, key)
}

/// The chain's soonest retry for a plain `fallback` that runs on a refusal.
#[inline]
pub fn refused_retry_after(error: &BreakerError) -> Option<Duration> {
    crate::fallback::chain::soonest(error.retry_after())
}
