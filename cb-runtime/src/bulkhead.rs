//! The bulkhead: a cap on the calls in flight through one breaker.
//!
//! As tower's `limit::concurrency` and `load_shed`, it is a counting
//! semaphore with no queue and no lock: a call takes a slot with one
//! compare-and-swap, or is refused at once
//! ([`BreakerError::is_saturated`](crate::BreakerError::is_saturated))
//! without being polled. The slot is part of the call's ticket, so it is
//! given back however the call ends: a result, an error, a timeout, a panic,
//! or the call's future dropped. A streamed call holds its slot until the
//! stream is judged.
//!
//! A refusal is counted in [`Stats::saturated`](crate::Stats::saturated) and
//! `outcome="saturated"`, never as a failure, and never moves the state
//! machine: a dependency whose calls hang is slow, not necessarily down (the
//! `call_timeout` and slow-call triggers judge that).

use crate::sync::{AtomicU64, Ordering};

/// The slots of one breaker's bulkhead.
#[derive(Debug)]
pub(crate) struct Bulkhead {
    /// `max_concurrent_calls`; 0 when the bulkhead is off.
    limit: AtomicU64,
    /// Slots taken: calls in flight that hold one.
    in_flight: AtomicU64,
}

impl Bulkhead {
    pub(crate) fn new() -> Self {
        Bulkhead {
            limit: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
        }
    }

    /// Sets the cap (0: off). Calls in flight keep their slots; with a lower
    /// cap, new calls are refused until enough of them have ended.
    pub(crate) fn set_limit(&self, limit: u32) {
        self.limit.store(u64::from(limit), Ordering::Release);
    }

    /// Takes a slot: `false` when `max_concurrent_calls` are taken.
    #[inline]
    pub(crate) fn try_take(&self) -> bool {
        let limit = self.limit.load(Ordering::Acquire);
        let mut n = self.in_flight.load(Ordering::Relaxed);
        loop {
            if n >= limit {
                return false;
            }
            match self
                .in_flight
                .compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => n = now,
            }
        }
    }

    /// Gives a slot back.
    #[inline]
    pub(crate) fn release(&self) {
        let before = self.in_flight.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(before > 0, "a bulkhead slot given back twice");
    }

    /// Slots taken now.
    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Acquire)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn takes_up_to_the_limit_and_again_after_a_release() {
        let b = Bulkhead::new();
        assert!(!b.try_take(), "a bulkhead that is off admits nothing by itself");
        b.set_limit(2);
        assert!(b.try_take() && b.try_take());
        assert!(!b.try_take());
        assert_eq!(b.in_flight(), 2);
        b.release();
        assert!(b.try_take());
        b.set_limit(1);
        assert!(!b.try_take(), "a lower cap waits for calls in flight to end");
        b.release();
        assert!(!b.try_take());
        b.release();
        assert!(b.try_take());
        assert_eq!(b.in_flight(), 1);
    }
}
