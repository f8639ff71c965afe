//! Hooks for sharing breaker state between processes: what the `cb-fleet`
//! crate needs from a breaker and a registry, and nothing about how it is
//! shared. cb-runtime itself never touches the network.
//!
//! * [`Coordinator`]: told of every breaker of a registry, present and created
//!   later, before anyone can call through it
//!   ([`Registry::coordinate`](crate::Registry::coordinate)).
//! * [`ProbeGate`]: consulted on the half-open admission path only. A probe
//!   is let through only if the gate grants it, so probes can be capped
//!   across processes. The gate must answer at once, from local state.
//! * `follow_*` methods on [`CircuitBreaker`]: apply a state that another
//!   process decided. Their transitions carry a reason for which
//!   [`is_from_peer`] is `true`, so a coordinator can tell its own echoes
//!   from local decisions and never sends them back.
//!
//! Nothing here costs a call anything while the breaker is closed.

use std::sync::Arc;
use std::time::Duration;

use super::CircuitBreaker;
use crate::outcome::CallEnd;
use crate::state::State;
use crate::sync::{lock, Ordering};
use crate::transition::{Reason, Transition};

/// `true` for a transition that a peer decided ([`Reason::is_from_fleet`]).
pub fn is_from_peer(t: &Transition) -> bool {
    t.reason.is_from_fleet()
}

/// `true` for a transition made by local manual control (`reset`,
/// `force_open`, `disable`): local control has a local scope.
pub fn is_manual(t: &Transition) -> bool {
    t.reason.is_manual()
}

/// How a probe that held a gate's grant ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeEnd {
    /// The probe succeeded.
    Success,
    /// The probe failed, timed out or was throttled.
    Failure,
    /// The probe was cancelled or its result ignored: it said nothing about
    /// the dependency, and the grant may be used again.
    Unused,
}

/// Grants half-open probes; see the [module documentation](self).
///
/// Both methods are called on the breaker's admission and recording paths,
/// with no lock held: they must not block, wait or call back into the breaker.
pub trait ProbeGate: Send + Sync + 'static {
    /// `true` grants one probe (taking a grant held locally); `false` refuses
    /// it, and the call is refused as if half-open were full.
    fn try_take(&self) -> bool;
    /// Gives back a grant that `try_take` gave and that no probe used.
    fn give_back(&self);
    /// A probe admitted with a grant ended.
    fn finished(&self, end: ProbeEnd);
    /// The gate as [`Any`](std::any::Any), for a coordinator to find its own
    /// gate on a breaker again (a second coordinator of the same registry
    /// takes it over): `None` by default.
    fn as_any(&self) -> Option<&(dyn std::any::Any + Send + Sync)> {
        None
    }
    /// `true` lets this process run the breaker's next health check (see
    /// [`CircuitBreaker::set_health_check`]); `false` skips it, uncounted,
    /// until the next interval. Answered at once, from local state, like
    /// [`try_take`](Self::try_take): a fleet lets one replica check per open
    /// period. `true` by default.
    fn may_health_check(&self) -> bool {
        true
    }
}

/// Told of every breaker of a registry; see
/// [`Registry::coordinate`](crate::Registry::coordinate).
pub trait Coordinator: Send + Sync + 'static {
    /// Called once per breaker. A breaker the registry creates is attached
    /// before it is handed to any caller, with the registry's configuration
    /// lock held (it has no observers of its user's yet, so no user code
    /// runs): `attach` may install a gate, add an observer and apply state,
    /// but must not create breakers in the same registry. A breaker added
    /// with [`Registry::register`](crate::Registry::register) is attached
    /// just after it joins, with no lock held, since its observers may use
    /// the registry.
    fn attach(&self, breaker: &Arc<CircuitBreaker>);

    /// `true` when this coordinator shares keyed breakers (the keys of a
    /// [`Family`](crate::Family)) too. It must then keep each breaker's
    /// state under [`CircuitBreaker::id`], which tells the keys of one family
    /// apart, and not under [`CircuitBreaker::name`], which they share. The
    /// default, `false`, attaches unkeyed breakers only.
    fn coordinates_keys(&self) -> bool {
        false
    }

    /// A keyed breaker left its family (evicted as least recently used; see
    /// [`Family`](crate::Family)): the coordinator may drop what it keeps
    /// for it. Called only when [`coordinates_keys`](Self::coordinates_keys)
    /// is `true`, with no lock held.
    fn detach_key(&self, breaker: &Arc<CircuitBreaker>) {
        let _ = breaker;
    }
}

impl CircuitBreaker {
    /// Installs the probe gate. Only the first is kept; `false` when one was
    /// set already.
    pub fn set_probe_gate(&self, gate: Arc<dyn ProbeGate>) -> bool {
        self.gate.set(Box::new(gate)).is_ok()
    }

    /// The probe gate installed with [`set_probe_gate`](Self::set_probe_gate), if any.
    pub fn probe_gate(&self) -> Option<&Arc<dyn ProbeGate>> {
        self.gate.get().map(|g| &**g)
    }

    /// Reopens since the circuit last closed: the open-duration backoff's level.
    pub fn backoff_level(&self) -> u32 {
        lock(&self.inner).reopens
    }

    /// Opens the circuit for `remaining`, as a peer decided, with the backoff
    /// level `level`. An open circuit is kept open for the later of its own
    /// deadline and `remaining` (never shortened, and no open-to-open
    /// transition). A forced-open or disabled breaker is left as it is, and
    /// `false` returned.
    pub fn follow_open(&self, remaining: Duration, level: u32) -> bool {
        self.open_at_least(
            remaining,
            Reason::OpenedByFleet,
            |_| true,
            |inner| inner.reopens = level,
            |inner, _, _| {
                inner.window.clear();
                inner.streak.clear();
            },
        )
    }

    /// Closes an open or half-open circuit, as a peer decided (its probes
    /// succeeded). Other states are left as they are, and `false` returned.
    pub fn follow_close(&self) -> bool {
        let transition = {
            let mut inner = lock(&self.inner);
            let time = inner.config.sliding_window.is_time();
            let mut w = self.load();
            loop {
                if !matches!(w.state(), State::Open | State::HalfOpen) {
                    return false;
                }
                let closed = self.ramped(w.next(State::Closed, time), inner.config.ramp_up());
                match self.cas_from(w, closed) {
                    Ok(()) => {
                        self.start_over(&mut inner);
                        break self.transition(w, closed, Reason::ClosedByFleet);
                    }
                    Err(now) => w = now,
                }
            }
        };
        self.emit(Some(transition));
        true
    }

    /// Applies a fleet-wide manual command: `Closed` (reset), `ForcedOpen`
    /// or `Disabled`. Other states are ignored.
    pub fn follow_manual(&self, to: State) {
        match to {
            State::Closed => self.manual(State::Closed, Reason::ResetByFleet),
            State::ForcedOpen => self.manual(State::ForcedOpen, Reason::ForcedOpenByFleet),
            State::Disabled => self.manual(State::Disabled, Reason::DisabledByFleet),
            State::Open | State::HalfOpen => {}
        }
    }

    /// Takes a probe grant from the gate, if there is one, once the open
    /// duration has elapsed (before that no probe can go through anyway).
    #[inline]
    pub(super) fn take_lease_when_due(&self) -> bool {
        match self.gate.get() {
            None => true,
            Some(gate) => {
                self.clock.now_nanos() >= self.open_until.load(Ordering::Acquire) && gate.try_take()
            }
        }
    }

    /// Takes a probe grant from the gate, if there is one.
    #[inline]
    pub(super) fn take_lease(&self) -> bool {
        self.gate.get().is_none_or(|gate| gate.try_take())
    }

    /// Gives back a grant taken for a probe that was not admitted.
    #[inline]
    pub(super) fn return_lease(&self, taken: bool) {
        if taken {
            if let Some(gate) = self.gate.get() {
                gate.give_back();
            }
        }
    }

    /// Tells the gate how a probe ended.
    pub(super) fn probe_ended(&self, finish: CallEnd) {
        if let Some(gate) = self.gate.get() {
            gate.finished(match finish {
                CallEnd::Success => ProbeEnd::Success,
                CallEnd::Failure | CallEnd::Timeout | CallEnd::Throttled => ProbeEnd::Failure,
                CallEnd::Ignored | CallEnd::Cancelled => ProbeEnd::Unused,
            });
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::atomic::{AtomicU32, AtomicUsize};
    use std::sync::Mutex;

    use super::*;
    use crate::clock::ManualClock;
    use crate::{Config, Registry};

    fn breaker(clock: &ManualClock, probes: u32) -> CircuitBreaker {
        let config = Config::builder()
            .failure_threshold(1)
            .open_duration(Duration::from_secs(10))
            .half_open_max_calls(probes)
            .success_threshold(1)
            .clock(clock.clock())
            .build()
            .unwrap();
        CircuitBreaker::new("coordinated", config)
    }

    #[derive(Default)]
    struct Gate {
        grants: AtomicU32,
        ends: Mutex<Vec<ProbeEnd>>,
    }

    impl ProbeGate for Gate {
        fn try_take(&self) -> bool {
            self.grants
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |g| g.checked_sub(1))
                .is_ok()
        }
        fn give_back(&self) {
            self.grants.fetch_add(1, Ordering::AcqRel);
        }
        fn finished(&self, end: ProbeEnd) {
            self.ends.lock().unwrap().push(end);
        }
    }

    #[test]
    fn follow_open_opens_for_the_remaining_time_and_never_shortens() {
        let clock = ManualClock::new();
        let b = breaker(&clock, 1);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&seen);
        b.on_transition(move |t| s.lock().unwrap().push((t.to, is_from_peer(t))));
        assert!(b.follow_open(Duration::from_secs(3), 2));
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.backoff_level(), 2);
        assert!(b.follow_open(Duration::from_secs(1), 2)); // does not shorten
        assert_eq!(b.open_remaining(), Some(Duration::from_secs(3)));
        assert!(b.follow_open(Duration::from_secs(5), 2)); // extends in place
        assert_eq!(b.open_remaining(), Some(Duration::from_secs(5)));
        assert_eq!(*seen.lock().unwrap(), [(State::Open, true)]);
        clock.advance(Duration::from_secs(5));
        assert_eq!(b.state(), State::HalfOpen);
        assert!(b.follow_close());
        assert_eq!(b.state(), State::Closed);
        assert!(!b.follow_close());
        b.force_open();
        assert!(!b.follow_open(Duration::from_secs(1), 0));
        assert_eq!(b.state(), State::ForcedOpen);
        b.follow_manual(State::Closed);
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn a_gate_caps_probes_and_hears_how_they_end() {
        let clock = ManualClock::new();
        let b = breaker(&clock, 3);
        let gate = Arc::new(Gate::default());
        assert!(b.set_probe_gate(gate.clone()));
        assert!(!b.set_probe_gate(Arc::new(Gate::default())));
        assert!(b.probe_gate().is_some_and(|g| g.as_any().is_none()));
        b.try_acquire().unwrap().record(false);
        clock.advance(Duration::from_secs(10));
        // No grant: refused, although half-open has room.
        assert!(b.try_acquire().unwrap_err().is_rejected());
        assert_eq!(b.state(), State::HalfOpen);
        gate.grants.store(1, Ordering::Release);
        let probe = b.try_acquire().unwrap();
        assert!(b.try_acquire().is_err()); // the one grant is in use
        drop(probe); // cancelled: the grant is unused
        assert_eq!(*gate.ends.lock().unwrap(), [ProbeEnd::Unused]);
        gate.grants.store(1, Ordering::Release);
        b.try_acquire().unwrap().record(true);
        assert_eq!(b.state(), State::Closed);
        assert_eq!(*gate.ends.lock().unwrap(), [ProbeEnd::Unused, ProbeEnd::Success]);
        // Closed calls never consult the gate.
        b.try_acquire().unwrap().record(true);
        assert_eq!(gate.ends.lock().unwrap().len(), 2);
    }

    #[test]
    fn a_coordinator_hears_of_present_and_later_breakers_before_they_are_used() {
        struct Count(AtomicUsize);
        impl Coordinator for Count {
            fn attach(&self, breaker: &Arc<CircuitBreaker>) {
                self.0.fetch_add(1, Ordering::SeqCst);
                breaker.follow_open(Duration::from_secs(60), 0);
            }
        }
        let registry = Registry::with_env(Vec::new);
        registry.get_or_insert("before", Config::default);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        registry.coordinate(count.clone());
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        let later = registry.get_or_insert("after", Config::default);
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        assert!(
            later.try_acquire().is_err(),
            "the first call already meets the fleet's state"
        );
        assert_eq!(registry.get("before").unwrap().state(), State::Open);
    }
}
