//! Ramp-up after closing (`ramp_up`): a table of shares and a clock, not a
//! state of its own.
//!
//! A circuit that closes from half-open (its probes succeeded, here or in
//! the fleet) or by health checks does not let every waiting caller through
//! at once: a dependency that has just recovered is often knocked over again
//! by the herd. For `ramp_up` after the close it admits a share of calls that
//! grows linearly from 10 % to 100 %, read on the breaker's
//! clock, and refuses the rest with a [`BreakerError`] whose
//! [`is_ramping`](BreakerError::is_ramping) is `true` and whose
//! [`retry_after`](BreakerError::retry_after) is short. Refusals count as
//! rejections. The circuit is closed meanwhile: the admitted calls are judged
//! by the usual thresholds, and a failure can open it again (which ends the
//! ramp).
//!
//! Admission is deterministic, so that tests are exact: the `n`-th call of
//! the ramp is admitted when the calls admitted so far are fewer than
//! `n × share` (the share at that instant), so the first call is always
//! admitted and, at a steady share, exactly that share of calls goes through.
//!
//! # Cost
//!
//! The ramp is a mark in the state word of a closed circuit (see
//! `state::StateWord`). Admission tests the state and the mark with one test,
//! as it tested the state alone, so a closed circuit that is not ramping pays
//! nothing (`benches/overhead.rs` has the case). A ramping circuit's
//! admission takes the cold path: one load of the clock and one
//! compare-and-swap on the ramp's count. The first admission after the ramp's
//! end clears the mark.

use std::time::Duration;

use super::CircuitBreaker;
use crate::error::{BreakerError, BreakerErrorKind};
use crate::state::{Admission, StateWord, Ticket};
use crate::sync::{AtomicU64, Ordering};

/// Shares are counted in millionths.
const PPM: u64 = 1_000_000;
/// The share a ramp starts from: 10 %.
const FIRST_PPM: u64 = 100_000;

/// The longest wait a ramping refusal suggests.
const MAX_RETRY: u64 = 1_000_000_000;
/// The shortest.
const MIN_RETRY: u64 = 1_000_000;

/// One breaker's ramp: when it started, how long it lasts and what it has
/// admitted. Lives with the breaker's rare counts (allocated on first use).
#[derive(Debug)]
pub(crate) struct Ramp {
    /// The clock reading at the close.
    start: AtomicU64,
    /// `ramp_up` at the close, in nanoseconds.
    nanos: AtomicU64,
    /// Calls seen in the high 32 bits, admitted in the low 32.
    counts: AtomicU64,
}

/// What the ramp says to one call.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Within the share: let it through.
    Admit,
    /// Outside the share: refuse, suggesting to try again after this long.
    Refuse(Duration),
    /// The ramp is over.
    Over,
}

impl Ramp {
    pub(crate) fn new() -> Self {
        Ramp {
            start: AtomicU64::new(0),
            nanos: AtomicU64::new(0),
            counts: AtomicU64::new(0),
        }
    }

    /// Starts a ramp of `nanos` at the clock reading `now`.
    fn start(&self, now: u64, nanos: u64) {
        self.counts.store(0, Ordering::Relaxed);
        self.nanos.store(nanos, Ordering::Relaxed);
        self.start.store(now, Ordering::Release);
    }

    /// The share admitted at `now`, in millionths; `None` once the ramp is
    /// over.
    fn share_ppm(&self, now: u64) -> Option<u64> {
        let start = self.start.load(Ordering::Acquire);
        let nanos = self.nanos.load(Ordering::Relaxed);
        let elapsed = now.saturating_sub(start);
        if elapsed >= nanos {
            return None;
        }
        let grown = u128::from(PPM - FIRST_PPM) * u128::from(elapsed) / u128::from(nanos);
        Some(FIRST_PPM + grown as u64)
    }

    /// The verdict for one call at `now`.
    fn admit(&self, now: u64) -> Verdict {
        let Some(share) = self.share_ppm(now) else {
            return Verdict::Over;
        };
        let mut counts = self.counts.load(Ordering::Relaxed);
        loop {
            let seen = (counts >> 32) + 1;
            let admitted = counts & u64::from(u32::MAX);
            let admit = u128::from(admitted) * u128::from(PPM) < u128::from(seen) * u128::from(share);
            // Counts saturate at 2^32 - 1 calls, far beyond any ramp's.
            let next = (seen.min(u64::from(u32::MAX)) << 32)
                | (admitted + u64::from(admit)).min(u64::from(u32::MAX));
            match self
                .counts
                .compare_exchange_weak(counts, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) if admit => return Verdict::Admit,
                Ok(_) => {
                    let nanos = self.nanos.load(Ordering::Relaxed);
                    let left = nanos.saturating_sub(now.saturating_sub(self.start.load(Ordering::Relaxed)));
                    let wait = (nanos / 10).clamp(MIN_RETRY, MAX_RETRY).min(left.max(1));
                    return Verdict::Refuse(Duration::from_nanos(wait));
                }
                Err(now) => counts = now,
            }
        }
    }
}

impl CircuitBreaker {
    /// `closed`, the word of a circuit closing from half-open or by health
    /// checks, marked as ramping when `ramp_up` is set (and the ramp
    /// started). Call with the lock held, before the word is stored.
    pub(super) fn ramped(&self, closed: StateWord, ramp_up: Duration) -> StateWord {
        if ramp_up.is_zero() {
            return closed;
        }
        let nanos = crate::clock::duration_nanos(ramp_up);
        self.rare().ramp.start(self.clock.now_nanos(), nanos);
        closed.with_ramping(true)
    }

    /// Admission for a ramping closed word: a ticket, a refusal, or `None`
    /// when the ramp is over (its mark is then cleared: look again).
    #[cold]
    pub(super) fn admit_ramping(&self, w: StateWord) -> Option<Result<Ticket, BreakerError>> {
        match self.rare().ramp.admit(self.clock.now_nanos()) {
            Verdict::Admit => Some(Ok(self.ticket(w, Admission::Closed))),
            Verdict::Refuse(wait) => Some(Err(self.reject(w, BreakerErrorKind::Ramping, Some(wait)))),
            Verdict::Over => {
                // Only the ramp's end clears the mark; a lost race means the
                // word moved on, and the caller looks again either way.
                let _ = self.cas(w, w.with_ramping(false));
                None
            }
        }
    }

    /// The share of calls admitted now while ramping up after a close, in
    /// `[0.1, 1)`; `None` when the circuit is not ramping.
    pub(super) fn ramp_share_now(&self) -> Option<f64> {
        let w = self.load();
        if !w.ramping() {
            return None;
        }
        let ppm = self.rare().ramp.share_ppm(self.clock.now_nanos())?;
        Some(ppm as f64 / PPM as f64)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn the_share_grows_linearly_from_a_tenth_and_ends() {
        let r = Ramp::new();
        r.start(5 * S, 10 * S);
        assert_eq!(r.share_ppm(5 * S), Some(100_000));
        assert_eq!(r.share_ppm(10 * S), Some(550_000));
        assert_eq!(r.share_ppm(15 * S - 1), Some(999_999));
        assert_eq!(r.share_ppm(15 * S), None);
    }

    #[test]
    fn at_a_tenth_one_call_in_ten_is_admitted_the_first_included() {
        let r = Ramp::new();
        r.start(0, 100 * S);
        let admitted: Vec<usize> = (0..29).filter(|_| r.admit(0) == Verdict::Admit).collect();
        assert_eq!(admitted, [0, 10, 20]);
        // A refusal suggests a tenth of the ramp, at most a second.
        assert_eq!(r.admit(0), Verdict::Refuse(Duration::from_secs(1)));
    }

    #[test]
    fn half_way_half_of_the_calls_go_through() {
        let r = Ramp::new();
        r.start(0, 90 * S);
        // At 40 s of 90: 10 % + 90 % × 4/9 = 50 %.
        let admitted = (0..1000).filter(|_| r.admit(40 * S) == Verdict::Admit).count();
        assert_eq!(admitted, 500);
        assert_eq!(r.admit(90 * S), Verdict::Over);
    }

    #[test]
    fn a_short_ramp_suggests_a_short_wait_within_what_is_left() {
        let r = Ramp::new();
        r.start(0, 50_000_000);
        assert_eq!(r.admit(0), Verdict::Admit);
        assert_eq!(r.admit(0), Verdict::Refuse(Duration::from_millis(5)));
        // 2 ms before the end, the wait is what is left.
        for _ in 0..7 {
            assert!(matches!(r.admit(0), Verdict::Refuse(_)));
        }
        assert_eq!(r.admit(0), Verdict::Refuse(Duration::from_millis(5)));
        let late = Ramp::new();
        late.start(0, 50_000_000);
        late.counts.store(1 << 32 | 1_000, Ordering::Relaxed);
        assert_eq!(late.admit(48_000_000), Verdict::Refuse(Duration::from_millis(2)));
    }
}
