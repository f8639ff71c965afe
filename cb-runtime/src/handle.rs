//! How a call, a permit or a stream holds its breaker: borrowed for the
//! call's lifetime, or shared through an `Arc` (an owned permit, which a
//! spawned task or a tower service can keep without a borrow).

use std::sync::Arc;

use crate::breaker::CircuitBreaker;

/// A breaker, borrowed or shared.
#[derive(Clone)]
pub(crate) enum BreakerRef<'a> {
    Borrowed(&'a CircuitBreaker),
    Shared(Arc<CircuitBreaker>),
}

impl BreakerRef<'_> {
    #[inline(always)]
    pub(crate) fn get(&self) -> &CircuitBreaker {
        match self {
            BreakerRef::Borrowed(b) => b,
            BreakerRef::Shared(b) => b,
        }
    }
}
