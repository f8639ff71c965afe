//! The future of a protected call.

use std::fmt;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::breaker::CircuitBreaker;
use crate::error::{BreakerError, CallError};
use crate::handle::BreakerRef;
use crate::outcome::{CallEnd, Classify, ErrIsFailure, Outcome};
use crate::state::Ticket;

pin_project! {
    /// The future returned by [`CircuitBreaker::call`], [`CircuitBreaker::call_with`]
    /// and [`Permit::run`](crate::Permit::run).
    ///
    /// It asks for admission on its first poll (unless it already holds a
    /// permit); a refused call never polls the inner future. It finishes on
    /// its first poll when the inner future does; only a call still pending
    /// arms the `call_timeout` timer, which needs a tokio runtime. It is `Send`
    /// when the inner future is.
    #[must_use = "futures do nothing unless polled"]
    pub struct Call<'a, F, C> {
        breaker: BreakerRef<'a>,
        phase: Phase,
        classify: Option<C>,
        #[pin]
        fut: Option<F>,
        sleep: Timer,
    }

    impl<'a, F, C> PinnedDrop for Call<'a, F, C> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Phase::Running(ticket) = *this.phase {
                cancel(this.breaker.get(), ticket);
            }
        }
    }
}

/// Where a [`Call`] (or a streamed call's opening) stands.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Phase {
    /// Not polled yet: admission comes on the first poll.
    Start,
    /// Admitted, and holding this permit.
    Running(Ticket),
    /// Finished, refused or abandoned.
    Done,
}

impl Phase {
    /// The permit to poll under: the one held, or admission on the first
    /// poll (`admitted_now` then). The phase becomes `Done` either way, so
    /// that a panic while polling leaves nothing for the drop to cancel; the
    /// caller puts `Running` back while the call is pending. `Err` is the
    /// refusal. `what` names the future for a poll after completion.
    #[inline(always)]
    pub(crate) fn take(&mut self, breaker: &CircuitBreaker, what: &str) -> Result<Admitted, BreakerError> {
        let taken = match *self {
            Phase::Running(ticket) => Ok(Admitted {
                ticket,
                admitted_now: false,
            }),
            Phase::Start => breaker.admit().map(|ticket| Admitted {
                ticket,
                admitted_now: true,
            }),
            Phase::Done => panic!("`{what}` polled after completion"),
        };
        *self = Phase::Done;
        taken
    }
}

/// What [`Phase::take`] gives.
pub(crate) struct Admitted {
    pub(crate) ticket: Ticket,
    /// Admission happened on this poll.
    pub(crate) admitted_now: bool,
}

/// Polls `fut`, user code, under a guard that records a failure and gives
/// the permit back if it panics.
#[inline(always)]
pub(crate) fn poll_guarded<F: Future>(
    breaker: &CircuitBreaker,
    ticket: Ticket,
    fut: Pin<&mut F>,
    cx: &mut Context<'_>,
) -> Poll<F::Output> {
    let guard = PanicGuard {
        breaker,
        ticket,
        to_first_item: None,
    };
    let polled = fut.poll(cx);
    mem::forget(guard);
    polled
}

impl<'a, F, C> Call<'a, F, C> {
    #[inline]
    pub(crate) fn new(breaker: &'a CircuitBreaker, fut: F, classify: C) -> Self {
        Call {
            breaker: BreakerRef::Borrowed(breaker),
            phase: Phase::Start,
            classify: Some(classify),
            fut: Some(fut),
            sleep: Timer(None),
        }
    }

    #[inline]
    pub(crate) fn admitted(breaker: BreakerRef<'a>, ticket: Ticket, fut: F, classify: C) -> Self {
        Call {
            breaker,
            phase: Phase::Running(ticket),
            classify: Some(classify),
            fut: Some(fut),
            sleep: Timer(None),
        }
    }
}

/// A call dropped before it finished: no outcome (pitfall 4). Out of line,
/// so that dropping a finished call, the common case, inlines to one check.
#[cold]
#[inline(never)]
fn cancel(breaker: &CircuitBreaker, ticket: Ticket) {
    breaker.finish(ticket, CallEnd::Cancelled);
}

/// Records a failure if user code (the inner future or stream, or the
/// classifier) panics; forgotten otherwise. The failure is judged slow or
/// not as every call is: a streamed call that had an item by its time to
/// first item (`to_first_item`), any other by its whole length.
pub(crate) struct PanicGuard<'a> {
    pub(crate) breaker: &'a CircuitBreaker,
    pub(crate) ticket: Ticket,
    pub(crate) to_first_item: Option<u64>,
}

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        // Only reached while unwinding out of user code.
        self.breaker
            .finish_stream(self.ticket, CallEnd::Failure, self.to_first_item);
    }
}

impl<F, T, E, C> Future for Call<'_, F, C>
where
    F: Future<Output = Result<T, E>>,
    C: Classify<T, E>,
{
    type Output = Result<T, CallError<E>>;

    // Always inlined: out of line, its register saves and the call were most
    // of a call's cost (the guide's Internals chapter, "Performance").
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let breaker = this.breaker.get();
        let ticket = match this.phase.take(breaker, "Call") {
            Ok(admitted) => admitted.ticket,
            Err(refusal) => {
                this.fut.set(None);
                return Poll::Ready(Err(CallError::Rejected(refusal)));
            }
        };
        let Some(fut) = this.fut.as_mut().as_pin_mut() else {
            panic!("`Call` polled after completion");
        };
        match poll_guarded(breaker, ticket, fut, cx) {
            Poll::Ready(result) => {
                this.fut.set(None);
                // The classifier is user code too: a panic in it counts as a
                // failure and gives the permit back, as one in the call does.
                let guard = PanicGuard {
                    breaker,
                    ticket,
                    to_first_item: None,
                };
                let (outcome, hint) = match this.classify.take() {
                    Some(classify) => classify.classify_with_retry_after(&result),
                    None => (Outcome::Failure, None),
                };
                mem::forget(guard);
                match hint {
                    None => breaker.finish(ticket, CallEnd::from(outcome)),
                    Some(hint) => breaker.finish_with_hint(ticket, CallEnd::from(outcome), Some(hint)),
                }
                Poll::Ready(result.map_err(CallError::Inner))
            }
            Poll::Pending => {
                if let Some(timeout) = breaker.call_timeout() {
                    if this.sleep.0.is_none() {
                        this.sleep.0 = arm_timer(timeout);
                    }
                    if let Some(sleep) = this.sleep.0.as_mut() {
                        if sleep.as_mut().poll(cx).is_ready() {
                            // Abandon the call: drop it now, count a timeout.
                            this.fut.set(None);
                            breaker.finish(ticket, CallEnd::Timeout);
                            return Poll::Ready(Err(CallError::Timeout(breaker.timeout_error(timeout))));
                        }
                    }
                }
                *this.phase = Phase::Running(ticket);
                Poll::Pending
            }
        }
    }
}

/// The `call_timeout` timer, armed only for a call still pending after its
/// first poll. Its drop stays out of the hot path: most calls never arm it.
pub(crate) struct Timer(pub(crate) Option<Pin<Box<tokio::time::Sleep>>>);

impl Drop for Timer {
    #[inline(always)]
    fn drop(&mut self) {
        if self.0.is_some() {
            drop_timer(self.0.take());
        }
    }
}

#[cold]
#[inline(never)]
fn drop_timer(timer: Option<Pin<Box<tokio::time::Sleep>>>) {
    drop(timer);
}

/// A tokio timer for `timeout`, or `None` (with one warning per process)
/// outside a tokio runtime, where no timer can be armed.
fn arm_timer(timeout: std::time::Duration) -> Option<Pin<Box<tokio::time::Sleep>>> {
    arm_timer_at(None, timeout)
}

/// A tokio timer that fires at `deadline`, or `timeout` from now when there is
/// none; `None` outside a tokio runtime, like [`arm_timer`].
pub(crate) fn arm_timer_at(
    deadline: Option<tokio::time::Instant>,
    timeout: std::time::Duration,
) -> Option<Pin<Box<tokio::time::Sleep>>> {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if tokio::runtime::Handle::try_current().is_ok() {
        return Some(Box::pin(match deadline {
            Some(at) => tokio::time::sleep_until(at),
            None => tokio::time::sleep(timeout),
        }));
    }
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            target: "cb_runtime",
            "a call_timeout is configured but the call is polled outside a tokio runtime; the timeout is not enforced"
        );
    }
    None
}

impl<F, C> fmt::Debug for Call<'_, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("breaker", &self.breaker.get().name())
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl CircuitBreaker {
    /// Runs `fut` through the breaker: `Err` counts as a failure.
    ///
    /// The call is refused with [`CallError::Rejected`] (and `fut` never
    /// polled) while the circuit is open; abandoned with
    /// [`CallError::Timeout`] at `call_timeout`; and its own error comes back
    /// as [`CallError::Inner`]. A panic in `fut` counts as a failure, gives
    /// back the permit and propagates. Dropping the returned future before it
    /// finishes records nothing.
    ///
    /// No runtime is needed unless a `call_timeout` is set and the call does
    /// not finish on its first poll.
    #[inline]
    pub fn call<F, T, E>(&self, fut: F) -> Call<'_, F, ErrIsFailure>
    where
        F: Future<Output = Result<T, E>>,
    {
        Call::new(self, fut, ErrIsFailure)
    }

    /// Like [`call`](Self::call), with `classify` deciding how the result
    /// counts: an `Ok` HTTP response with status 503 can be a
    /// [`Outcome::Failure`], a 400 an [`Outcome::Ignored`].
    ///
    /// ```
    /// use cb_runtime::{CircuitBreaker, Config, Outcome};
    ///
    /// # tokio_test::block_on(async {
    /// let breaker = CircuitBreaker::new("call-with-doc", Config::default());
    /// let status = breaker
    ///     .call_with(async { Ok::<u16, ()>(503) }, |r| match r {
    ///         Ok(s) if *s >= 500 => Outcome::Failure,
    ///         Ok(_) => Outcome::Success,
    ///         Err(_) => Outcome::Failure,
    ///     })
    ///     .await;
    /// assert_eq!(status, Ok(503));
    /// assert_eq!(breaker.stats().failures, 1);
    /// # });
    /// ```
    #[inline]
    pub fn call_with<F, T, E, C>(&self, fut: F, classify: C) -> Call<'_, F, C>
    where
        F: Future<Output = Result<T, E>>,
        C: FnOnce(&Result<T, E>) -> Outcome,
    {
        Call::new(self, fut, classify)
    }
}
