//! Manual control of a breaker: an operator's reset, forced open and
//! disable, and opens for a given time (a dependency's `Retry-After`, a
//! family's open, a failure handed over from an evicted key).
//!
//! Every one of them takes the breaker's lock, moves the state word with a
//! compare-and-swap, and publishes its transition once the lock is released,
//! as the state machine's own moves do.

use std::time::Duration;

use super::{CircuitBreaker, LockedState};
use crate::clock::duration_nanos;
use crate::state::{State, StateWord};
use crate::sync::{lock, Ordering};
use crate::transition::Reason;

impl CircuitBreaker {
    /// Closes the circuit and clears the window and the consecutive-failure
    /// count. The totals in [`Stats`](crate::Stats) are kept. Ends `force_open` and `disable`.
    pub fn reset(&self) {
        if let Some(modes) = self.modes() {
            modes.adaptive.clear();
        }
        self.manual(State::Closed, Reason::Reset);
    }

    /// Opens the circuit until [`reset`](Self::reset): every call is refused.
    pub fn force_open(&self) {
        self.manual(State::ForcedOpen, Reason::ForcedOpen);
    }

    /// Lets every call through and never opens, until [`reset`](Self::reset).
    /// Calls are still counted in [`Stats`](crate::Stats).
    pub fn disable(&self) {
        self.manual(State::Disabled, Reason::Disabled);
    }

    /// Opens the circuit for at least `duration`, then lets probes through as
    /// usual: for a dependency that said when to come back (an HTTP 429 or
    /// 503 with `Retry-After`).
    ///
    /// * Closed or half-open: the circuit opens for `duration` (one
    ///   transition, with the reason [`Reason::OpenedFor`](crate::Reason::OpenedFor)).
    /// * Already open: the open period is extended in place when `duration`
    ///   reaches past its deadline, and never shortened. No transition is
    ///   published, and the period's rejections keep counting as one period.
    /// * Forced open or disabled: left as it is, and `false` returned.
    ///
    /// A `duration` over [`MAX_OPEN_DURATION`](crate::MAX_OPEN_DURATION) (a
    /// day) is cut to it: the bound of every open, which the fleet carries.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cb_runtime::{clock::ManualClock, CircuitBreaker, Config, State};
    ///
    /// let clock = ManualClock::new();
    /// let breaker = CircuitBreaker::new("open-for-doc", Config::builder().clock(clock.clock()).build()?);
    /// assert!(breaker.open_for(Duration::from_secs(60)));
    /// assert!(breaker.open_for(Duration::from_secs(1))); // does not shorten the 60 s
    /// clock.advance(Duration::from_secs(2));
    /// assert_eq!(breaker.state(), State::Open);
    /// clock.advance(Duration::from_secs(58));
    /// assert_eq!(breaker.state(), State::HalfOpen);
    /// # Ok::<(), cb_runtime::ConfigError>(())
    /// ```
    pub fn open_for(&self, duration: Duration) -> bool {
        self.open_for_if(
            |_| true,
            duration.min(crate::MAX_OPEN_DURATION),
            Reason::OpenedFor,
        )
    }

    /// [`open_for`](Self::open_for) with another reason (a family's open).
    pub(crate) fn open_with_reason(&self, duration: Duration, reason: Reason) -> bool {
        self.open_for_if(|_| true, duration, reason)
    }

    /// [`open_for`](Self::open_for) with `reason`, while the state word's
    /// generation passes `current`; `false` (and nothing changed) otherwise.
    pub(super) fn open_for_if(
        &self,
        current: impl Fn(u64) -> bool,
        duration: Duration,
        reason: Reason,
    ) -> bool {
        self.open_at_least(
            duration,
            reason,
            current,
            |_| {},
            |inner, from, open| {
                if from.state() == State::Closed {
                    inner.window_open_generation = open.generation();
                    inner.streak.clear();
                }
            },
        )
    }

    /// Opens the circuit until at least `duration` from now. Under the lock,
    /// `locked` runs first; then an open period is extended in place (never
    /// shortened, and no transition), or a closed or half-open circuit opens,
    /// `opened` runs, and the transition (with `reason` and `open_for`) is
    /// published once the lock is released. `false`, with nothing changed
    /// after `locked`, for a forced-open or disabled circuit, or a generation
    /// that fails `current`.
    pub(super) fn open_at_least(
        &self,
        duration: Duration,
        reason: Reason,
        current: impl Fn(u64) -> bool,
        locked: impl FnOnce(&mut LockedState),
        opened: impl FnOnce(&mut LockedState, StateWord, StateWord),
    ) -> bool {
        let transition = {
            let mut inner = lock(&self.inner);
            locked(&mut inner);
            let mut w = self.load();
            loop {
                if !current(w.generation()) {
                    return false;
                }
                let deadline = self.clock.now_nanos().saturating_add(duration_nanos(duration));
                match w.state() {
                    State::ForcedOpen | State::Disabled => return false,
                    State::Open => {
                        self.open_until.fetch_max(deadline, Ordering::AcqRel);
                        // A caller may have read the old deadline and moved the
                        // word to half-open meanwhile: then open it again.
                        let now = self.load();
                        if now.state() == State::Open && now.generation() == w.generation() {
                            break None;
                        }
                        w = now;
                    }
                    State::Closed | State::HalfOpen => {
                        // Only this lock's holder moves a closed or half-open
                        // word to open, so the deadline stored here is the one
                        // the open word will be read with.
                        self.open_until.store(deadline, Ordering::Release);
                        let open = w.next_open(reason == Reason::Throttled);
                        match self.cas_from(w, open) {
                            Ok(()) => {
                                if w.state() == State::Closed {
                                    inner.opened_at = crate::trigger::OpenedAt::at(self.clock.now_nanos());
                                }
                                opened(&mut inner, w, open);
                                inner.open_reason = Some(reason);
                                let mut t = self.transition(w, open, reason);
                                t.open_for = Some(duration);
                                break Some(t);
                            }
                            Err(now) => w = now,
                        }
                    }
                }
            }
        };
        self.emit(transition);
        true
    }

    pub(super) fn manual(&self, to: State, reason: Reason) {
        let transition = {
            let mut inner = lock(&self.inner);
            let time = inner.config.sliding_window.is_time();
            let mut w = self.load();
            let next = loop {
                let next = w.next(to, to == State::Closed && time);
                match self.cas_from(w, next) {
                    Ok(()) => break next,
                    Err(now) => w = now,
                }
            };
            self.start_over(&mut inner);
            (w.state() != to).then(|| self.transition(w, next, reason))
        };
        self.emit(transition);
    }
}
