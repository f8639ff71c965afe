//! The protection modes' two hooks into the breaker: one at admission, one
//! where a call's end is recorded. The modes themselves live in their own
//! modules: [`shadow`](crate::shadow), [`bulkhead`](crate::bulkhead) and
//! [`adaptive`](crate::adaptive).
//!
//! A breaker with no mode set never comes here: its admission tests one bit
//! of a word it loads anyway, and its tickets carry no mode flag, so the
//! closed hot path is as it was. A mode's state is allocated the first time
//! a configuration sets one, and kept (with its counts) after.

use super::CircuitBreaker;
use crate::adaptive::Adaptive;
use crate::bulkhead::Bulkhead;
use crate::config::Config;
use crate::error::{BreakerError, BreakerErrorKind};
use crate::mode::{Mode, Trip};
use crate::outcome::CallEnd;
use crate::shadow;
use crate::state::{Admission, State, StateWord, Ticket};
use crate::sync::{AtomicU64, Ordering};

/// The bit of the breaker's flags word that says shadow mode is on.
pub(crate) const SHADOW: u64 = 1 << 33;
/// The bit that says a bulkhead is set.
pub(crate) const BULKHEAD: u64 = 1 << 34;
/// The bit that says the breaker trips adaptively.
pub(crate) const ADAPTIVE: u64 = 1 << 35;
/// Any mode: admission goes through [`admit`].
pub(crate) const ANY: u64 = SHADOW | BULKHEAD | ADAPTIVE;

/// One breaker's protection modes.
pub(crate) struct Modes {
    pub(crate) bulkhead: Bulkhead,
    pub(crate) adaptive: Adaptive,
    /// Calls the bulkhead refused. Plain atomics, shared by the threads
    /// that refuse (the breaker's sharded counters are the counters module's,
    /// which knows nothing of the modes).
    saturated: AtomicU64,
    /// Calls shadow mode let through.
    shadow_rejected: AtomicU64,
}

impl Modes {
    fn new(config: &Config) -> Box<Self> {
        Box::new(Modes {
            bulkhead: Bulkhead::new(),
            adaptive: Adaptive::new(config.sliding_window, config.adaptive_k()),
            saturated: AtomicU64::new(0),
            shadow_rejected: AtomicU64::new(0),
        })
    }

    /// Calls the bulkhead refused.
    pub(crate) fn saturated(&self) -> u64 {
        self.saturated.load(Ordering::Relaxed)
    }

    /// Calls let through that shadow mode would have refused.
    pub(crate) fn shadow_rejected(&self) -> u64 {
        self.shadow_rejected.load(Ordering::Relaxed)
    }

    /// Counts a call shadow mode let through.
    #[inline]
    pub(crate) fn count_shadow(&self) {
        self.shadow_rejected.fetch_add(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Modes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Modes")
            .field("bulkhead", &self.bulkhead)
            .field("saturated", &self.saturated())
            .field("shadow_rejected", &self.shadow_rejected())
            .finish_non_exhaustive()
    }
}

/// The flag bits for `config`, with the modes' state brought up to date
/// (allocated on the first mode set).
pub(crate) fn publish(breaker: &CircuitBreaker, config: &Config) -> u64 {
    let mut flags = 0;
    if config.mode() == Mode::Shadow {
        flags |= SHADOW;
    }
    if config.max_concurrent_calls != 0 {
        flags |= BULKHEAD;
    }
    if config.trip() == Trip::Adaptive {
        flags |= ADAPTIVE;
    }
    let modes = match breaker.modes() {
        Some(modes) => modes,
        None if flags == 0 => return 0,
        None => breaker.modes_or_init(|| Modes::new(config)),
    };
    modes.bulkhead.set_limit(config.max_concurrent_calls);
    modes
        .adaptive
        .configure(config.sliding_window, config.adaptive_k());
    flags
}

/// Admission with a mode set (`flags & ANY != 0`), for a call that found
/// the word `w`: the bulkhead's slot first (a full bulkhead refuses without
/// touching the state machine), then the adaptive draw while closed or the
/// state machine's own admission, then shadow mode, which turns a refusal
/// the breaker decided into a call that runs.
#[cold]
#[inline(never)]
pub(crate) fn admit(breaker: &CircuitBreaker, w: StateWord, flags: u64) -> Result<Ticket, BreakerError> {
    let Some(modes) = breaker.modes() else {
        return breaker.admit_plain(w, flags);
    };
    let shadow = flags & SHADOW != 0;
    let mut slot = false;
    if flags & BULKHEAD != 0 {
        slot = modes.bulkhead.try_take();
        if !slot {
            if shadow {
                modes.count_shadow();
                return Ok(breaker.ticket_with(w, Admission::Shadow, flags));
            }
            modes.saturated.fetch_add(1, Ordering::Relaxed);
            return Err(breaker.error(BreakerErrorKind::Saturated, None));
        }
    }
    let admitted = if flags & ADAPTIVE != 0 && w.state() == State::Closed {
        match modes.adaptive.decide(breaker.now_nanos()) {
            None => Ok(breaker.ticket_with(w, Admission::Closed, flags).adaptive()),
            // Counted as a rejection, or as a shadow one.
            Some(_) => Err(breaker.reject(w, BreakerErrorKind::AdaptiveThrottling, None)),
        }
    } else {
        breaker.admit_plain(w, flags)
    };
    let ticket = match admitted {
        Ok(ticket) => ticket,
        // `reject` counted it in `shadow_rejected`.
        Err(refusal) if shadow && shadow::lets_through(refusal.kind()) => {
            breaker.ticket_with(w, Admission::Shadow, flags)
        }
        Err(refusal) => {
            if slot {
                modes.bulkhead.release();
            }
            return Err(refusal);
        }
    };
    Ok(if slot { ticket.holding_slot() } else { ticket })
}

/// Records a mode's part of a call's end, for a ticket with a mode flag:
/// gives the bulkhead slot back, and tells the adaptive window how an
/// adaptive call ended. `false` when the state machine must not hear of the
/// call (an adaptive breaker's calls never move it).
#[cold]
#[inline(never)]
pub(crate) fn finish(breaker: &CircuitBreaker, ticket: Ticket, end: CallEnd) -> bool {
    let Some(modes) = breaker.modes() else {
        return true;
    };
    if ticket.holds_slot() {
        modes.bulkhead.release();
    }
    if ticket.is_adaptive() {
        modes.adaptive.record(breaker.now_nanos(), end);
        return false;
    }
    true
}

/// The breaker's side of the modes: where their state lives, and what they
/// add to its counts.
impl CircuitBreaker {
    /// The protection modes' state, once a configuration has set a mode.
    #[inline]
    pub(crate) fn modes(&self) -> Option<&Modes> {
        self.rare.get()?.modes.get()?.downcast_ref()
    }

    /// Whether a configuration of this breaker has set a protection mode
    /// (shadow, a bulkhead or adaptive throttling), now or before.
    pub(crate) fn has_used_modes(&self) -> bool {
        self.modes().is_some()
    }

    /// The protection modes' state, made by `make` if there is none yet.
    pub(crate) fn modes_or_init(&self, make: impl FnOnce() -> Box<Modes>) -> &Modes {
        let made = self
            .rare()
            .modes
            .get_or_init(|| Box::new(make() as Box<dyn std::any::Any + Send + Sync>));
        made.downcast_ref().expect("the modes' box holds `Modes`")
    }

    /// The breaker's clock, now, in nanoseconds.
    #[inline]
    pub(crate) fn now_nanos(&self) -> u64 {
        self.clock.now_nanos()
    }

    /// An adaptive breaker's (`trip = "adaptive"`) probability of refusing
    /// the next call, from its sliding window now; `None` for a threshold
    /// breaker.
    pub fn refusal_share(&self) -> Option<f64> {
        let adaptive = self.probes_and_timed.load(Ordering::Relaxed) & ADAPTIVE != 0;
        let modes = self.modes().filter(|_| adaptive)?;
        Some(modes.adaptive.share(self.now_nanos()))
    }

    /// The breaker's error of `kind`, counted by the caller.
    pub(crate) fn error(&self, kind: BreakerErrorKind, after: Option<std::time::Duration>) -> BreakerError {
        BreakerError::new(self.name, kind, after)
    }

    /// Refusals so far: counted, or let through by shadow mode.
    pub(crate) fn refusals(&self) -> u64 {
        self.counters.sum(crate::counters::Counter::Rejected)
            + self.modes().map_or(0, |m| m.shadow_rejected())
    }

    /// Counts a refusal: in `rejected`, or in shadow mode (which lets the
    /// call through) in `shadow_rejected`.
    #[inline(always)]
    pub(crate) fn count_refusal(&self, kind: BreakerErrorKind) {
        if self.probes_and_timed.load(Ordering::Relaxed) & SHADOW != 0 && crate::shadow::lets_through(kind) {
            if let Some(modes) = self.modes() {
                return modes.count_shadow();
            }
        }
        self.counters.add(crate::counters::Counter::Rejected);
    }
}
