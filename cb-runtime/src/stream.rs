//! Streamed calls: a call whose answer is a stream (LLM tokens, server-sent
//! events, a chunked body), judged by its items rather than by its opening.
//!
//! [`CircuitBreaker::call_stream`] admits the call, awaits the future that
//! opens the stream, and hands back a [`BreakerStream`] that watches the
//! items go by. The call is judged exactly once, and lands in exactly one
//! total of [`Stats`](crate::Stats):
//!
//! | what happens | the caller sees | counted as |
//! |---|---|---|
//! | refused while open | `Err(CallError::Rejected)`; `open` never polled | rejected |
//! | `open` returns `Err(e)` | `Err(CallError::Inner(e))` | failure (or as the classifier says) |
//! | `open` still pending at `call_timeout` | `Err(CallError::Timeout)` | timeout |
//! | the stream yields `Err(e)` | `Some(Err(CallError::Inner(e)))`, then the end | failure |
//! | the stream yields `Err(e)` that the classifier excuses (ignored, or a success) | `Some(Err(CallError::Inner(e)))`, and the stream goes on | ignored (or success), unless a failure or a timeout follows |
//! | the stream ends with no error | `None` | success |
//! | no first item within `call_timeout` of admission, or no next item within `call_timeout` of the previous | `Some(Err(CallError::Timeout))`, then the end | timeout |
//! | dropped before its first item | nothing | cancelled |
//! | dropped after its first item, no error so far | nothing | success |
//! | a panic in `open` or in the stream's `poll_next` | the panic | failure |
//!
//! * **Slow calls** are judged by the time to first item, from admission, on
//!   the breaker's clock: a provider that streams a long answer quickly is not
//!   slow; one that sits 40 s on its first token is. A call judged before any
//!   item (an error, a timeout, an empty stream) is judged by its whole length.
//! * **A half-open probe keeps its slot until its stream is judged**: a probe
//!   that opened its stream but has not delivered its answer is still a probe.
//!   [`CallStream::judge_at_first_item`] trades that for a faster recovery.
//! * **Timeouts need polling**: the per-item timer runs while the consumer
//!   polls. A stream that is never polled again after its first item is not
//!   timed out; it is judged when it is dropped, as a success (the consumer
//!   had what it wanted). Hold on to a stream you do not poll and its probe
//!   slot stays taken until you drop it.
//! * After an `Err` item judged a failure, or a timeout, the stream ends: the
//!   inner stream is dropped at once (closing its connection), and the call is
//!   not judged again.
//! * [`CircuitBreaker::call_stream_with`] (and the attribute's `failure_if` /
//!   `ignore_if`) classifies each error: the opening's, and every `Err` item.
//!   An error it excuses reaches the consumer and the stream goes on under
//!   watch; the first excused error is the call's verdict unless a failure or
//!   a timeout follows.
//!
//! ```
//! use cb_runtime::{CallError, CircuitBreaker, Config};
//! use futures_core::Stream;
//! use std::pin::pin;
//! use std::task::{Context, Poll, Waker};
//!
//! # fn next<S: Stream + Unpin>(s: &mut S) -> Option<S::Item> {
//! #     match pin!(s).poll_next(&mut Context::from_waker(Waker::noop())) {
//! #         Poll::Ready(item) => item,
//! #         Poll::Pending => unreachable!(),
//! #     }
//! # }
//! # tokio_test::block_on(async {
//! let breaker = CircuitBreaker::new("stream-doc", Config::default());
//! let tokens = vec![Ok::<_, String>("Hel"), Ok("lo"), Err("connection reset".to_string())];
//! let open = async move { Ok::<_, String>(tokio_stream::iter(tokens)) };
//!
//! let mut stream = breaker.call_stream(open).await.unwrap();
//! assert_eq!(next(&mut stream), Some(Ok("Hel")));
//! assert_eq!(next(&mut stream), Some(Ok("lo")));
//! let cut = next(&mut stream).unwrap().unwrap_err();
//! assert_eq!(cut.into_inner().as_deref(), Some("connection reset"));
//! assert!(next(&mut stream).is_none());
//! drop(stream);
//! assert_eq!(breaker.stats().failures, 1); // a stream cut halfway is a failure
//! # });
//! ```

use std::fmt;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use pin_project_lite::pin_project;
use tokio::time::Instant;

use crate::breaker::CircuitBreaker;
use crate::call::{arm_timer_at, poll_guarded, PanicGuard, Phase, Timer};
use crate::error::CallError;
use crate::handle::BreakerRef;
use crate::outcome::{CallEnd, ClassifyError, ErrIsFailure, Outcome};
use crate::state::Ticket;

pin_project! {
    /// The future returned by [`CircuitBreaker::call_stream`]: admission, then
    /// the future that opens the stream, under the breaker's `call_timeout`.
    ///
    /// It resolves to a [`BreakerStream`], or to the call's error. Dropping it
    /// before it resolves gives the permit back and records nothing. `C`
    /// judges the call's error, if it has one ([`ClassifyError`]).
    #[must_use = "futures do nothing unless polled"]
    pub struct CallStream<'a, F, C = ErrIsFailure> {
        breaker: BreakerRef<'a>,
        phase: Phase,
        judge_at_first_item: bool,
        classify: Option<C>,
        #[pin]
        open: Option<F>,
        timer: Timer,
        // The first item's deadline: `call_timeout` after admission.
        deadline: Option<(Instant, Duration)>,
    }

    impl<'a, F, C> PinnedDrop for CallStream<'a, F, C> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Phase::Running(ticket) = *this.phase {
                this.breaker.get().finish_stream(ticket, CallEnd::Cancelled, None);
            }
        }
    }
}

impl<'a, F, C> CallStream<'a, F, C> {
    /// Judges the call at its first item instead of at its end: the first
    /// item is a success, and whatever the stream does afterwards (an error,
    /// a stall) is passed to the consumer but not counted.
    ///
    /// The trade-off: a half-open probe gives its slot back, and counts
    /// towards closing the circuit, as soon as the dependency answers, so the
    /// circuit closes after an outage in the time to first item instead of the
    /// time of a whole answer (an LLM answer can stream for a minute). The
    /// price is blindness to failures after the first item: a provider that
    /// starts every answer and cuts it halfway never opens the circuit. Use it
    /// when time to first item is what the dependency's health means to you.
    pub fn judge_at_first_item(mut self) -> Self {
        self.judge_at_first_item = true;
        self
    }
}

impl<'a, F, S, T, E, C> Future for CallStream<'a, F, C>
where
    F: Future<Output = Result<S, E>>,
    S: Stream<Item = Result<T, E>>,
    C: ClassifyError<E>,
{
    type Output = Result<BreakerStream<'a, S, C>, CallError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let breaker = this.breaker.get();
        let ticket = match this.phase.take(breaker, "CallStream") {
            Ok(admitted) => {
                if admitted.admitted_now {
                    *this.deadline = breaker.call_timeout().map(|d| (Instant::now() + d, d));
                }
                admitted.ticket
            }
            Err(refusal) => {
                this.open.set(None);
                return Poll::Ready(Err(CallError::Rejected(refusal)));
            }
        };
        let Some(open) = this.open.as_mut().as_pin_mut() else {
            panic!("`CallStream` polled after completion");
        };
        match poll_guarded(breaker, ticket, open, cx) {
            Poll::Ready(Ok(stream)) => {
                this.open.set(None);
                Poll::Ready(Ok(BreakerStream {
                    breaker: this.breaker.clone(),
                    phase: StreamPhase::Running(ticket),
                    seen_item: false,
                    to_first_item: None,
                    judge_at_first_item: *this.judge_at_first_item,
                    classify: this.classify.take(),
                    excused: None,
                    stream: Some(stream),
                    timer: Timer(this.timer.0.take()),
                    deadline: *this.deadline,
                }))
            }
            Poll::Ready(Err(error)) => {
                this.open.set(None);
                let outcome = judge_error(breaker, ticket, None, this.classify.as_mut(), &error);
                breaker.finish_stream(ticket, CallEnd::from(outcome), None);
                Poll::Ready(Err(CallError::Inner(error)))
            }
            Poll::Pending => {
                if expired(this.timer, *this.deadline, cx) {
                    this.open.set(None);
                    breaker.finish_stream(ticket, CallEnd::Timeout, None);
                    let after = this.deadline.map(|(_, d)| d).unwrap_or_default();
                    return Poll::Ready(Err(CallError::Timeout(breaker.timeout_error(after))));
                }
                *this.phase = Phase::Running(ticket);
                Poll::Pending
            }
        }
    }
}

/// How `error` counts, by `classify` (user code, under a guard that records
/// a failure if it panics); a failure without a classifier.
fn judge_error<E, C: ClassifyError<E>>(
    breaker: &CircuitBreaker,
    ticket: Ticket,
    to_first_item: Option<u64>,
    classify: Option<&mut C>,
    error: &E,
) -> Outcome {
    let Some(classify) = classify else {
        return Outcome::Failure;
    };
    let guard = PanicGuard {
        breaker,
        ticket,
        to_first_item,
    };
    let outcome = classify.classify_error(error);
    mem::forget(guard);
    outcome
}

/// Whether the timer for `deadline` has fired, arming it (or moving it to
/// `deadline`) first; never without a deadline or outside a tokio runtime.
fn expired(timer: &mut Timer, deadline: Option<(Instant, Duration)>, cx: &mut Context<'_>) -> bool {
    let Some((at, timeout)) = deadline else {
        return false;
    };
    match timer.0.as_mut() {
        None => timer.0 = arm_timer_at(Some(at), timeout),
        Some(sleep) if sleep.deadline() != at => sleep.as_mut().reset(at),
        Some(_) => {}
    }
    timer
        .0
        .as_mut()
        .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready())
}

pin_project! {
    /// A stream under a breaker's watch, from [`CircuitBreaker::call_stream`].
    ///
    /// It yields the inner stream's items, with its errors as
    /// [`CallError::Inner`] and a stall as one [`CallError::Timeout`]; after
    /// an error it ends. See the [module documentation](crate::stream) for how
    /// the call is judged. It is `Send` when the inner stream is, and `Unpin`
    /// when the inner stream is. `C` judges each error ([`ClassifyError`]): an
    /// error it does not call a failure is passed on, and so is the rest of the
    /// stream.
    #[must_use = "streams do nothing unless polled"]
    pub struct BreakerStream<'a, S, C = ErrIsFailure> {
        breaker: BreakerRef<'a>,
        phase: StreamPhase,
        seen_item: bool,
        // Nanoseconds from admission to the first item, when the call is timed.
        to_first_item: Option<u64>,
        judge_at_first_item: bool,
        classify: Option<C>,
        // How the first error the classifier excused counts (ignored, or a
        // success): the call's verdict unless a failure or a timeout follows.
        excused: Option<CallEnd>,
        #[pin]
        stream: Option<S>,
        timer: Timer,
        // The next item's deadline and the `call_timeout` it came from.
        deadline: Option<(Instant, Duration)>,
    }

    impl<'a, S, C> PinnedDrop for BreakerStream<'a, S, C> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let StreamPhase::Running(ticket) = *this.phase {
                let finish = match *this.excused {
                    Some(excused) => excused,
                    None if *this.seen_item => CallEnd::Success,
                    None => CallEnd::Cancelled,
                };
                this.breaker.get().finish_stream(ticket, finish, *this.to_first_item);
            }
        }
    }
}

/// Where a [`BreakerStream`] stands.
#[derive(Clone, Copy, Debug)]
enum StreamPhase {
    /// Not judged yet, and holding this permit.
    Running(Ticket),
    /// Judged at its first item, still passing items through.
    Judged,
    /// Ended: its last item was yielded.
    Ended,
}

impl<S, C> BreakerStream<'_, S, C> {
    /// The breaker that judges this stream.
    pub fn breaker(&self) -> &CircuitBreaker {
        self.breaker.get()
    }

    /// Whether the call is still to be judged: no error, no end, no timeout yet.
    pub fn is_pending_judgement(&self) -> bool {
        matches!(self.phase, StreamPhase::Running(_))
    }

    /// The inner stream, until it ends.
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    pub(crate) fn inner_mut(self: Pin<&mut Self>) -> Option<Pin<&mut S>> {
        self.project().stream.as_pin_mut()
    }
}

impl<S, T, E, C> Stream for BreakerStream<'_, S, C>
where
    S: Stream<Item = Result<T, E>>,
    C: ClassifyError<E>,
{
    type Item = Result<T, CallError<E>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        let breaker = this.breaker.get();
        let phase = *this.phase;
        let Some(stream) = this.stream.as_mut().as_pin_mut() else {
            return Poll::Ready(None);
        };
        let ticket = match phase {
            StreamPhase::Running(ticket) => Some(ticket),
            StreamPhase::Judged => None,
            StreamPhase::Ended => return Poll::Ready(None),
        };
        // Until the inner stream returns, a panic records the outcome.
        *this.phase = StreamPhase::Ended;
        let polled = match ticket {
            Some(ticket) => {
                let guard = PanicGuard {
                    breaker,
                    ticket,
                    to_first_item: *this.to_first_item,
                };
                let polled = stream.poll_next(cx);
                mem::forget(guard);
                polled
            }
            None => stream.poll_next(cx),
        };
        let judge = |finish| {
            if let Some(ticket) = ticket {
                breaker.finish_stream(ticket, finish, *this.to_first_item);
            }
        };

        match polled {
            Poll::Ready(Some(Ok(item))) => {
                *this.phase = phase;
                if let (Some(ticket), false) = (ticket, *this.seen_item) {
                    *this.seen_item = true;
                    *this.to_first_item = breaker.first_item(ticket);
                    if *this.judge_at_first_item {
                        let end = this.excused.unwrap_or(CallEnd::Success);
                        breaker.finish_stream(ticket, end, *this.to_first_item);
                        *this.phase = StreamPhase::Judged;
                    }
                }
                if let Some((_, timeout)) = *this.deadline {
                    *this.deadline = Some((Instant::now() + timeout, timeout));
                }
                Poll::Ready(Some(Ok(item)))
            }
            Poll::Ready(Some(Err(error))) => {
                let outcome = match ticket {
                    Some(ticket) => judge_error(
                        breaker,
                        ticket,
                        *this.to_first_item,
                        this.classify.as_mut(),
                        &error,
                    ),
                    None => Outcome::Failure,
                };
                if outcome == Outcome::Failure {
                    judge(CallEnd::Failure);
                    this.stream.set(None);
                } else {
                    // Not the dependency's fault: passed on, and the stream goes on
                    // under watch; the first such error is the verdict if nothing
                    // worse follows.
                    this.excused.get_or_insert(CallEnd::from(outcome));
                    *this.phase = phase;
                    if let Some((_, timeout)) = *this.deadline {
                        *this.deadline = Some((Instant::now() + timeout, timeout));
                    }
                }
                Poll::Ready(Some(Err(CallError::Inner(error))))
            }
            Poll::Ready(None) => {
                judge(this.excused.unwrap_or(CallEnd::Success));
                this.stream.set(None);
                Poll::Ready(None)
            }
            Poll::Pending => {
                if expired(this.timer, *this.deadline, cx) {
                    judge(CallEnd::Timeout);
                    this.stream.set(None);
                    let after = this.deadline.map(|(_, d)| d).unwrap_or_default();
                    return Poll::Ready(Some(Err(CallError::Timeout(breaker.timeout_error(after)))));
                }
                *this.phase = phase;
                Poll::Pending
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.stream {
            // A timeout may add one item.
            Some(stream) => (0, stream.size_hint().1.and_then(|n| n.checked_add(1))),
            None => (0, Some(0)),
        }
    }
}

impl<F, C> fmt::Debug for CallStream<'_, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallStream")
            .field("breaker", &self.breaker.get().name())
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl<S, C> fmt::Debug for BreakerStream<'_, S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerStream")
            .field("breaker", &self.breaker.get().name())
            .field("phase", &self.phase)
            .field("seen_item", &self.seen_item)
            .finish_non_exhaustive()
    }
}

impl CircuitBreaker {
    /// Runs a streamed call through the breaker: `open` opens the stream (an
    /// HTTP request whose answer streams, say), and the returned
    /// [`BreakerStream`] judges the call by its items. See the
    /// [module documentation](crate::stream) for the rules.
    ///
    /// While the circuit is open the call is refused with
    /// [`CallError::Rejected`] and `open` is never polled.
    pub fn call_stream<F, S, T, E>(&self, open: F) -> CallStream<'_, F>
    where
        F: Future<Output = Result<S, E>>,
        S: Stream<Item = Result<T, E>>,
    {
        self.call_stream_with(open, ErrIsFailure)
    }

    /// Like [`call_stream`](Self::call_stream), with `classify` deciding how
    /// each error counts: the error `open` returns, and each `Err` item. One it
    /// calls a [`Outcome::Failure`] is a failure and ends the stream. One it
    /// calls [`Outcome::Ignored`] or [`Outcome::Success`] reaches the caller and
    /// the stream goes on; the call is then counted in `Stats::ignored` (or as
    /// a success), unless a failure or a timeout follows.
    pub fn call_stream_with<F, S, T, E, C>(&self, open: F, classify: C) -> CallStream<'_, F, C>
    where
        F: Future<Output = Result<S, E>>,
        S: Stream<Item = Result<T, E>>,
        C: ClassifyError<E>,
    {
        CallStream {
            breaker: BreakerRef::Borrowed(self),
            phase: Phase::Start,
            judge_at_first_item: false,
            classify: Some(classify),
            open: Some(open),
            timer: Timer(None),
            deadline: None,
        }
    }
}

impl<'a> crate::Permit<'a> {
    /// Runs a streamed call under this permit, as
    /// [`CircuitBreaker::call_stream`] does after admission: the
    /// `call_timeout` runs from now, and the call is judged by its stream.
    pub fn run_stream<F, S, T, E>(self, open: F) -> CallStream<'a, F>
    where
        F: Future<Output = Result<S, E>>,
        S: Stream<Item = Result<T, E>>,
    {
        self.run_stream_with(open, ErrIsFailure)
    }

    /// Like [`run_stream`](Self::run_stream), with `classify` deciding how
    /// the call's error counts, as in [`CircuitBreaker::call_stream_with`].
    pub fn run_stream_with<F, S, T, E, C>(self, open: F, classify: C) -> CallStream<'a, F, C>
    where
        F: Future<Output = Result<S, E>>,
        S: Stream<Item = Result<T, E>>,
        C: ClassifyError<E>,
    {
        let (breaker, ticket) = self.into_parts();
        CallStream::admitted(breaker, ticket, open, classify)
    }
}

impl<'a, F, C> CallStream<'a, F, C> {
    /// A streamed call admitted with `ticket` already.
    pub(crate) fn admitted(breaker: BreakerRef<'a>, ticket: Ticket, open: F, classify: C) -> Self {
        let deadline = breaker.get().call_timeout().map(|d| (Instant::now() + d, d));
        CallStream {
            breaker,
            phase: Phase::Running(ticket),
            judge_at_first_item: false,
            classify: Some(classify),
            open: Some(open),
            timer: Timer(None),
            deadline,
        }
    }
}
