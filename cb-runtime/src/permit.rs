//! Permits: the right to make one call, given back on drop.

use std::fmt;
use std::future::Future;
use std::mem::ManuallyDrop;

use crate::breaker::{CircuitBreaker, Finish, Outcome};
use crate::call::{Call, ErrIsFailure, FnClassifier};

/// The state a call was admitted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    Closed,
    HalfOpen,
    Disabled,
}

/// What the breaker needs to record a call's end: the generation it was
/// admitted in, how, and when it started (for slow-call detection).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket {
    pub(crate) generation: u64,
    pub(crate) admission: Admission,
    pub(crate) start: u64,
}

impl Ticket {
    /// `start` when slow-call detection is off.
    pub(crate) const NO_START: u64 = u64::MAX;
}

/// The breaker's leave to make one call.
///
/// Report the call's end with [`record`](Self::record) or
/// [`record_outcome`](Self::record_outcome), or hand the call's future to
/// [`run`](Self::run). A permit dropped unused gives its probe slot back and
/// records nothing (pitfall 3). A permit dropped while a panic unwinds counts
/// as a failure.
#[must_use = "a permit records nothing until it is used; dropping it gives it back"]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    ticket: Ticket,
}

impl<'a> Permit<'a> {
    pub(crate) fn new(breaker: &'a CircuitBreaker, ticket: Ticket) -> Self {
        Permit { breaker, ticket }
    }

    /// The breaker that issued this permit.
    pub fn breaker(&self) -> &'a CircuitBreaker {
        self.breaker
    }

    /// Records the call as a success (`true`) or a failure (`false`).
    pub fn record(self, success: bool) {
        self.record_outcome(if success {
            Outcome::Success
        } else {
            Outcome::Failure
        });
    }

    /// Records how the call counts.
    pub fn record_outcome(self, outcome: Outcome) {
        let (breaker, ticket) = self.into_parts();
        breaker.finish(ticket, Finish::from(outcome));
    }

    /// Runs `fut` under this permit: the breaker's `call_timeout` applies, an
    /// `Err` counts as a failure, a panic counts as a failure and propagates,
    /// and dropping the returned future before it finishes records nothing.
    pub fn run<F, T, E>(self, fut: F) -> Call<'a, F, ErrIsFailure>
    where
        F: Future<Output = Result<T, E>>,
    {
        let (breaker, ticket) = self.into_parts();
        Call::admitted(breaker, ticket, fut, ErrIsFailure)
    }

    /// Like [`run`](Self::run), with `classify` deciding how the result counts.
    pub fn run_with<F, T, E, C>(self, fut: F, classify: C) -> Call<'a, F, FnClassifier<C>>
    where
        F: Future<Output = Result<T, E>>,
        C: FnOnce(&Result<T, E>) -> Outcome,
    {
        let (breaker, ticket) = self.into_parts();
        Call::admitted(breaker, ticket, fut, FnClassifier(classify))
    }

    fn into_parts(self) -> (&'a CircuitBreaker, Ticket) {
        let this = ManuallyDrop::new(self);
        (this.breaker, this.ticket)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let finish = if std::thread::panicking() {
            Finish::Failure
        } else {
            Finish::Cancelled
        };
        self.breaker.finish(self.ticket, finish);
    }
}

impl fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("breaker", &self.breaker.name())
            .field("admission", &self.ticket.admission)
            .finish()
    }
}
