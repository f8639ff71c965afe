//! Permits: the right to make one call, given back on drop.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use crate::breaker::CircuitBreaker;
use crate::call::Call;
use crate::error::BreakerError;
use crate::handle::BreakerRef;
use crate::outcome::{CallEnd, Classify, ErrIsFailure, Outcome};
use crate::state::Ticket;

/// The breaker's leave to make one call.
///
/// Report the call's end with [`record`](Self::record) or
/// [`record_outcome`](Self::record_outcome), or hand the call's future to
/// [`run`](Self::run). A permit dropped unused gives its probe slot back and
/// records nothing (pitfall 3). A permit dropped while a panic unwinds counts
/// as a failure.
///
/// [`CircuitBreaker::try_acquire`] lends a permit that borrows the breaker;
/// [`CircuitBreaker::try_acquire_owned`] gives an [`OwnedPermit`], which
/// holds an `Arc` of it and can move into a spawned task.
#[must_use = "a permit records nothing until it is used; dropping it gives it back"]
pub struct Permit<'a> {
    /// `None` once handed on (to a [`Call`], or recorded).
    breaker: Option<BreakerRef<'a>>,
    ticket: Ticket,
}

/// A [`Permit`] that owns a share of its breaker (`'static`): it can be sent
/// to a spawned task, and the [`Call`] it runs borrows nothing.
///
/// ```
/// use std::sync::Arc;
/// use cb_runtime::{CircuitBreaker, Config};
///
/// # tokio_test::block_on(async {
/// let breaker = Arc::new(CircuitBreaker::new("owned-permit-doc", Config::default()));
/// let permit = breaker.try_acquire_owned().unwrap();
/// let task = tokio::spawn(permit.run(async { Ok::<u32, ()>(7) }));
/// assert_eq!(task.await.unwrap(), Ok(7));
/// assert_eq!(breaker.stats().successes, 1);
/// # });
/// ```
pub type OwnedPermit = Permit<'static>;

impl CircuitBreaker {
    /// Asks for admission, without running anything: `Ok` with a permit to
    /// run or report one call, or the refusal.
    ///
    /// This is the building block of [`call`](Self::call) for code that must
    /// know whether a call will be let through before it commits to it (the
    /// attribute checks this before the body takes its arguments). Dropping
    /// the permit unused gives it back and records nothing.
    ///
    /// ```
    /// use cb_runtime::{CircuitBreaker, Config};
    ///
    /// let breaker = CircuitBreaker::new("sync-client", Config::default());
    /// match breaker.try_acquire() {
    ///     Ok(permit) => {
    ///         let reply: Result<u32, ()> = Ok(1); // a blocking call
    ///         permit.record(reply.is_ok());
    ///     }
    ///     Err(refusal) => assert!(refusal.is_rejected()),
    /// }
    /// assert_eq!(breaker.stats().successes, 1);
    /// ```
    #[inline(always)]
    pub fn try_acquire(&self) -> Result<Permit<'_>, BreakerError> {
        self.admit().map(|ticket| Permit {
            breaker: Some(BreakerRef::Borrowed(self)),
            ticket,
        })
    }

    /// Like [`try_acquire`](Self::try_acquire), with a permit that holds a
    /// share of the breaker instead of a borrow: for a call that runs in a
    /// spawned task, or a future that must be `'static`.
    #[inline]
    pub fn try_acquire_owned(self: &Arc<Self>) -> Result<OwnedPermit, BreakerError> {
        self.admit().map(|ticket| Permit {
            breaker: Some(BreakerRef::Shared(Arc::clone(self))),
            ticket,
        })
    }
}

impl<'a> Permit<'a> {
    /// The breaker that issued this permit.
    #[inline]
    pub fn breaker(&self) -> &CircuitBreaker {
        match &self.breaker {
            Some(breaker) => breaker.get(),
            None => unreachable!("a permit is handed on only by value"),
        }
    }

    /// Records the call as a success (`true`) or a failure (`false`).
    #[inline]
    pub fn record(self, success: bool) {
        self.record_outcome(if success {
            Outcome::Success
        } else {
            Outcome::Failure
        });
    }

    /// Records how the call counts.
    #[inline]
    pub fn record_outcome(self, outcome: Outcome) {
        let (breaker, ticket) = self.into_parts();
        breaker.get().finish(ticket, CallEnd::from(outcome));
    }

    /// Runs `fut` under this permit: the breaker's `call_timeout` applies, an
    /// `Err` counts as a failure, a panic counts as a failure and propagates,
    /// and dropping the returned future before it finishes records nothing.
    #[inline]
    pub fn run<F, T, E>(self, fut: F) -> Call<'a, F, ErrIsFailure>
    where
        F: Future<Output = Result<T, E>>,
    {
        self.run_classified(fut, ErrIsFailure)
    }

    /// Like [`run`](Self::run), with `classify` deciding how the result counts.
    #[inline]
    pub fn run_with<F, T, E, C>(self, fut: F, classify: C) -> Call<'a, F, C>
    where
        F: Future<Output = Result<T, E>>,
        C: FnOnce(&Result<T, E>) -> Outcome,
    {
        self.run_classified(fut, classify)
    }

    /// Like [`run`](Self::run), with any [`Classify`] deciding how the result
    /// counts (one that reads a `Retry-After`, say).
    #[inline]
    pub fn run_classified<F, T, E, C>(self, fut: F, classify: C) -> Call<'a, F, C>
    where
        F: Future<Output = Result<T, E>>,
        C: Classify<T, E>,
    {
        let (breaker, ticket) = self.into_parts();
        Call::admitted(breaker, ticket, fut, classify)
    }

    /// The breaker and the ticket, without giving the permit back.
    #[inline]
    pub(crate) fn into_parts(mut self) -> (BreakerRef<'a>, Ticket) {
        match self.breaker.take() {
            Some(breaker) => (breaker, self.ticket),
            None => unreachable!("a permit is handed on only by value"),
        }
    }
}

impl Drop for Permit<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some(breaker) = &self.breaker {
            breaker.get().finish(self.ticket, CallEnd::dropped());
        }
    }
}

impl fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("breaker", &self.breaker().name())
            .field("admission", &self.ticket.admission())
            .finish()
    }
}
