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
/// admitted in and how (packed in one word), and when it started (for
/// slow-call detection and call timing). Sixteen bytes, so it moves in
/// registers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket {
    /// `generation << 2 | admission`.
    packed: u64,
    pub(crate) start: u64,
}

impl Ticket {
    /// `start` when the call is not timed.
    pub(crate) const NO_START: u64 = u64::MAX;

    #[inline]
    pub(crate) const fn new(generation: u64, admission: Admission, start: u64) -> Self {
        let a = match admission {
            Admission::Closed => 0,
            Admission::HalfOpen => 1,
            Admission::Disabled => 2,
        };
        Ticket {
            packed: generation << 2 | a,
            start,
        }
    }

    #[inline]
    pub(crate) const fn generation(self) -> u64 {
        self.packed >> 2
    }

    #[inline]
    pub(crate) const fn admission(self) -> Admission {
        match self.packed & 3 {
            0 => Admission::Closed,
            1 => Admission::HalfOpen,
            _ => Admission::Disabled,
        }
    }
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
    #[inline]
    pub(crate) fn new(breaker: &'a CircuitBreaker, ticket: Ticket) -> Self {
        Permit { breaker, ticket }
    }

    /// The breaker that issued this permit.
    #[inline]
    pub fn breaker(&self) -> &'a CircuitBreaker {
        self.breaker
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
        breaker.finish(ticket, Finish::from(outcome));
    }

    /// Runs `fut` under this permit: the breaker's `call_timeout` applies, an
    /// `Err` counts as a failure, a panic counts as a failure and propagates,
    /// and dropping the returned future before it finishes records nothing.
    #[inline]
    pub fn run<F, T, E>(self, fut: F) -> Call<'a, F, ErrIsFailure>
    where
        F: Future<Output = Result<T, E>>,
    {
        let (breaker, ticket) = self.into_parts();
        Call::admitted(breaker, ticket, fut, ErrIsFailure)
    }

    /// Like [`run`](Self::run), with `classify` deciding how the result counts.
    #[inline]
    pub fn run_with<F, T, E, C>(self, fut: F, classify: C) -> Call<'a, F, FnClassifier<C>>
    where
        F: Future<Output = Result<T, E>>,
        C: FnOnce(&Result<T, E>) -> Outcome,
    {
        let (breaker, ticket) = self.into_parts();
        Call::admitted(breaker, ticket, fut, FnClassifier(classify))
    }

    #[inline]
    pub(crate) fn into_parts(self) -> (&'a CircuitBreaker, Ticket) {
        let this = ManuallyDrop::new(self);
        (this.breaker, this.ticket)
    }
}

impl Drop for Permit<'_> {
    #[inline]
    fn drop(&mut self) {
        self.breaker.finish(self.ticket, Finish::dropped());
    }
}

impl fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("breaker", &self.breaker.name())
            .field("admission", &self.ticket.admission())
            .finish()
    }
}
