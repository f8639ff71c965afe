//! A dependency's own word on a call: a throttled answer (a 429, a quota
//! error) and a failure's `Retry-After`.
//!
//! A throttled call is never a failure: it opens the circuit with
//! [`Reason::Throttled`] for the dependency's hint (capped at
//! `max_retry_after`) or `throttle_duration`. A failure that carries a hint
//! is judged as any failure, then keeps the circuit open for at least the
//! hint. Either opens only for a call of the current period: a late answer
//! says nothing of the state now (pitfall 5).

use std::time::Duration;

use super::{modes, CircuitBreaker};
use crate::counters::Counter;
use crate::outcome::CallEnd;
use crate::state::{next_generation, Admission, State, Ticket};
use crate::sync::{lock, Ordering};
use crate::transition::Reason;

impl CircuitBreaker {
    /// [`finish`](Self::finish) for a call whose result said when to come
    /// back (`Retry-After`). The hint opens the circuit for that long
    /// ([`open_for`](Self::open_for): never shorter than an open period
    /// already running) only when the call counts as a failure and belongs
    /// to the current period: it was admitted in the current generation, or
    /// its own failure just moved the state. A late hint from a call admitted
    /// before the circuit last moved is ignored (pitfall 5).
    ///
    /// A throttled call ([`CallEnd::Throttled`]) opens for the hint as
    /// [`finish_throttled`](Self::finish_throttled) says. A failure's hint is
    /// capped at `max_retry_after` too (`0s` ignores it).
    pub(crate) fn finish_with_hint(&self, ticket: Ticket, finish: CallEnd, hint: Option<Duration>) {
        if finish == CallEnd::Throttled {
            let slow = ticket.start != Ticket::NO_START && self.measure(ticket, finish);
            self.finish_throttled(ticket, slow, hint);
            return;
        }
        let Some(hint) = hint.filter(|h| !h.is_zero()) else {
            return self.finish(ticket, finish);
        };
        let slow = ticket.start != Ticket::NO_START && self.measure(ticket, finish);
        let moved = self.finish_slow(ticket, finish, slow);
        self.honour_failure_hint(ticket, finish, moved, hint);
    }

    /// A failure's `Retry-After`, capped at `max_retry_after` (`0s` ignores
    /// it): opens for at least that long when the call belongs to the current
    /// period (admitted in it, or its own failure just `moved` the state).
    /// [`UNTIL_RESET`](crate::UNTIL_RESET) forces it open.
    pub(super) fn honour_failure_hint(&self, ticket: Ticket, finish: CallEnd, moved: bool, hint: Duration) {
        if ticket.is_adaptive() || ticket.admission() == Admission::Shadow {
            return; // an adaptive breaker never opens; a shadow call moves nothing
        }
        let cap = lock(&self.inner).config.max_retry_after();
        if matches!(finish, CallEnd::Failure | CallEnd::Timeout) && !cap.is_zero() && !hint.is_zero() {
            if hint == crate::UNTIL_RESET && self.load().state() != State::Disabled {
                return self.force_open();
            }
            let admitted = ticket.generation();
            let after = next_generation(admitted);
            self.open_for_if(
                |g| g == admitted || (moved && g == after),
                hint.min(cap),
                Reason::OpenedFor,
            );
        }
    }

    /// Records a throttled call ([`Outcome::Throttled`](crate::Outcome::Throttled)):
    /// counted in `Stats::throttled`, never as a failure (not in the window,
    /// not a consecutive failure, the backoff level untouched), and the
    /// circuit opens with [`Reason::Throttled`] for the capped hint or
    /// `throttle_duration`, when the call was admitted in the current period
    /// (a late answer is ignored) and the circuit is not disabled. An open
    /// period is never shortened. A half-open probe gives its slot back.
    /// `true` when the circuit opened.
    #[cold]
    #[inline(never)]
    pub(super) fn finish_throttled(&self, ticket: Ticket, slow: bool, hint: Option<Duration>) -> bool {
        if slow {
            self.counters.add(Counter::Slow);
        }
        let admission = ticket.admission();
        // Rare: counted with the fallbacks and probes, allocated on the first.
        self.rare().throttled.fetch_add(1, Ordering::Relaxed);
        let heard = !ticket.has_mode_flags() || modes::finish(self, ticket, CallEnd::Throttled);
        let period = lock(&self.inner).config.throttle_period(hint);
        if !heard || matches!(admission, Admission::Disabled | Admission::Shadow) {
            return false;
        }
        let admitted = ticket.generation();
        let probe = admission == Admission::HalfOpen;
        if probe {
            self.rare().probes[CallEnd::Throttled.index()].fetch_add(1, Ordering::Relaxed);
        }
        let opened = self.open_at_least(
            period,
            Reason::Throttled,
            |g| g == admitted,
            |_| {
                if probe {
                    // Under the lock, so no probe result moves the word
                    // between the slot given back and the open.
                    self.release_probe(admitted);
                }
            },
            |inner, from, open| {
                if from.state() == State::Closed {
                    inner.window_open_generation = open.generation();
                    inner.streak.clear();
                }
            },
        );
        if probe {
            self.probe_ended(CallEnd::Throttled);
        }
        if opened {
            self.hand_over_if_evicted();
        }
        opened
    }
}
