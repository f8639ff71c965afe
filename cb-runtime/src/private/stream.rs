//! What the `#[circuit_breaker]` expansion of a streamed function names (through
//! `__private`): the adapter that turns the breaker's errors into the function's
//! error type, and the checks that make a misused attribute a clear compile error.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use pin_project_lite::pin_project;

use super::{finish, FromBreakerError};
use crate::error::CallError;

/// The item type of a streamed function's stream: `Result<T, E>`, with the function's `E`.
#[diagnostic::on_unimplemented(
    message = "the items of a streamed #[circuit_breaker] function must be `Result<T, {E}>`, not `{Self}`",
    label = "expected `Result<_, {E}>` here",
    note = "the breaker tells a stream cut halfway (an `Err` item) from one that ended, and yields a stall as `Err(E::from(BreakerError))`, so the items must be `Result`s carrying the function's error type"
)]
pub trait StreamItem<E> {}

impl<T, E> StreamItem<E> for Result<T, E> {}

/// Checks, at compile time, that `I` is `Result<_, E>`.
#[inline(always)]
pub fn stream_items<I: StreamItem<E>, E>() {}

/// What the fallback of a streamed function returns in `Ok`.
#[diagnostic::on_unimplemented(
    message = "the fallback of a streamed #[circuit_breaker] function must return `Result<impl Stream<Item = Result<T, E>>, E>`; `{Self}` is not a stream",
    label = "this fallback does not return a stream",
    note = "the fallback is awaited instead of the body when the breaker refuses the call, and its stream is returned in the body's place"
)]
pub trait FallbackStream {}

impl<S: Stream> FallbackStream for S {}

/// A fallback's answer, as the function's stream.
#[inline(always)]
pub fn fallback_stream<A, B: FallbackStream, E>(result: Result<B, E>) -> Result<StreamOr<A, B>, E> {
    result.map(|fallback| StreamOr::Fallback { stream: fallback })
}

/// The body's stream under the breaker, as the function's stream (no fallback).
#[inline(always)]
pub fn finish_stream<S, E: FromBreakerError>(result: Result<S, CallError<E>>) -> Result<Guarded<S>, E> {
    finish(result).map(|inner| Guarded { inner })
}

/// The body's stream under the breaker, as the function's stream (with a fallback).
#[inline(always)]
pub fn finish_stream_or<S, B, E: FromBreakerError>(
    result: Result<S, CallError<E>>,
) -> Result<StreamOr<Guarded<S>, B>, E> {
    finish_stream(result).map(|guarded| StreamOr::Guarded { stream: guarded })
}

/// The body's stream under the breaker, boxed as the declared type (`stream = true`).
#[inline(always)]
pub fn finish_boxed_stream<S, D: FromGuarded<Guarded<S>>, E: FromBreakerError>(
    result: Result<S, CallError<E>>,
) -> Result<D, E> {
    finish_stream(result).map(D::from_guarded)
}

/// The body's stream under the breaker, for a function declared with `CallError<E>`: the
/// breaker's stream as it is (its items carry `CallError<E>`).
#[inline(always)]
pub fn finish_stream_passed<S, E>(result: Result<S, CallError<E>>) -> Result<S, CallError<E>> {
    result
}

/// [`finish_stream_passed`] with a fallback.
#[inline(always)]
pub fn finish_stream_or_passed<S, B, E>(
    result: Result<S, CallError<E>>,
) -> Result<StreamOr<S, B>, CallError<E>> {
    result.map(|stream| StreamOr::Guarded { stream })
}

/// [`finish_stream_passed`], boxed as the declared type (`stream = true`).
#[inline(always)]
pub fn finish_boxed_stream_passed<S, D: FromGuarded<S>, E>(
    result: Result<S, CallError<E>>,
) -> Result<D, CallError<E>> {
    result.map(D::from_guarded)
}

/// A declared stream type the guarded stream can be turned into: a boxed `dyn Stream`.
#[diagnostic::on_unimplemented(
    message = "`stream = true` needs the function to return `Result<S, E>` with `S` a boxed stream (`Pin<Box<dyn Stream<Item = Result<T, E>> + Send + 'a>>`, such as futures' `BoxStream`), not `{Self}`",
    label = "the guarded stream cannot be returned as this type",
    note = "for `impl Stream<Item = Result<T, E>>` the attribute detects the stream by itself; `stream = true` is for aliases and boxed streams"
)]
pub trait FromGuarded<G>: Sized {
    /// `guarded`, as `Self`.
    fn from_guarded(guarded: G) -> Self;
}

impl<'a, G: Stream<Item = I> + Send + 'a, I> FromGuarded<G> for Pin<Box<dyn Stream<Item = I> + Send + 'a>> {
    fn from_guarded(guarded: G) -> Self {
        Box::pin(guarded)
    }
}

impl<'a, G: Stream<Item = I> + Send + Sync + 'a, I> FromGuarded<G>
    for Pin<Box<dyn Stream<Item = I> + Send + Sync + 'a>>
{
    fn from_guarded(guarded: G) -> Self {
        Box::pin(guarded)
    }
}

impl<'a, G: Stream<Item = I> + 'a, I> FromGuarded<G> for Pin<Box<dyn Stream<Item = I> + 'a>> {
    fn from_guarded(guarded: G) -> Self {
        Box::pin(guarded)
    }
}

pin_project! {
    /// A streamed function's stream: the breaker's errors become `E::from(BreakerError)`.
    #[derive(Debug)]
    #[must_use = "streams do nothing unless polled"]
    pub struct Guarded<S> {
        #[pin]
        inner: S,
    }
}

impl<S, T, E> Stream for Guarded<S>
where
    S: Stream<Item = Result<T, CallError<E>>>,
    E: FromBreakerError,
{
    type Item = Result<T, E>;

    #[inline]
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.project().inner.poll_next(cx).map(|item| item.map(finish))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

pin_project! {
    /// A streamed function's stream when it has a fallback: the body's, or the fallback's.
    #[derive(Debug)]
    #[must_use = "streams do nothing unless polled"]
    #[project = StreamOrProj]
    // pin-project-lite takes no doc comment on a variant's field: each holds its variant's stream.
    #[allow(missing_docs)]
    pub enum StreamOr<A, B> {
        /// The body's stream, under the breaker.
        Guarded { #[pin] stream: A },
        /// The fallback's stream.
        Fallback { #[pin] stream: B },
    }
}

impl<A, B> Stream for StreamOr<A, B>
where
    A: Stream,
    B: Stream<Item = A::Item>,
{
    type Item = A::Item;

    #[inline]
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.project() {
            StreamOrProj::Guarded { stream } => stream.poll_next(cx),
            StreamOrProj::Fallback { stream } => stream.poll_next(cx),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            StreamOr::Guarded { stream } => stream.size_hint(),
            StreamOr::Fallback { stream } => stream.size_hint(),
        }
    }
}
