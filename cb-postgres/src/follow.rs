//! The registry's coordinator: follows every breaker, keyed ones included,
//! turns each transition into an [`Event`], and adopts a persisted open state
//! when a breaker is made (restart adoption).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use cb_runtime::coordination::Coordinator;
use cb_runtime::{CircuitBreaker, State, Transition};

use crate::{Event, Member, Shared, RESTORED};

/// Follows each breaker of the registry it is coordinating.
pub(crate) struct Follow(pub(crate) Arc<Shared>);

impl Coordinator for Follow {
    fn attach(&self, breaker: &Arc<CircuitBreaker>) {
        let shared = &self.0;
        let name: Arc<str> = Arc::from(breaker.name());
        let key: Arc<str> = Arc::from(key_of(breaker));
        let restoring = Arc::new(AtomicBool::new(false));
        let probe_at = Arc::new(AtomicU64::new(0));
        {
            let weak_shared = Arc::downgrade(shared);
            let (name, key) = (Arc::clone(&name), Arc::clone(&key));
            let (restoring, probe_at) = (Arc::clone(&restoring), Arc::clone(&probe_at));
            let weak = Arc::downgrade(breaker);
            breaker.on_transition(move |t| {
                if let Some(shared) = weak_shared.upgrade() {
                    let event = event(&name, &key, &weak, &restoring, t);
                    // What the state row says of the next probe, for the
                    // counter sync to see an open period extended in place.
                    let until = event.probe_in.map_or(0, |d| since_base(event.at + d));
                    probe_at.store(until, Ordering::Release);
                    shared.send(event);
                }
            });
        }
        // A persisted open is adopted once, by the first breaker made for
        // its name and key after attach: a key evicted and made again later
        // (its open period reset meanwhile) is not reopened.
        let until = shared
            .persisted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
            .and_then(|p| p.remove(&(name.to_string(), key.to_string())));
        if let Some(until) = until {
            shared.adopt(breaker, &restoring, until);
        }
        let stats = breaker.stats();
        shared.members().insert(
            id_of(breaker),
            Member {
                breaker: Arc::downgrade(breaker),
                name,
                key,
                restoring,
                synced: (stats.successes, stats.failures + stats.timeouts),
                probe_at,
            },
        );
    }

    /// Keyed breakers are followed too: each under its name and key.
    fn coordinates_keys(&self) -> bool {
        true
    }

    /// An evicted key is no longer followed: its counters are not synced.
    /// Its observer stays, so a transition it still makes (a call in flight
    /// when it was evicted) is written.
    fn detach_key(&self, breaker: &Arc<CircuitBreaker>) {
        self.0.members().remove(&id_of(breaker));
    }
}

/// The members' index: the breaker's address, unique among live breakers
/// (a dead breaker's entry is replaced by a new one at its address).
pub(crate) fn id_of(breaker: &Arc<CircuitBreaker>) -> usize {
    Arc::as_ptr(breaker) as usize
}

/// The `key` column's value for `breaker`: its key in its family, or `''` for
/// an unkeyed breaker. The one place the store learns a breaker's key.
fn key_of(breaker: &CircuitBreaker) -> String {
    breaker.key().unwrap_or_default().to_owned()
}

/// The instant the store's deadlines are counted from.
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// `at` in nanoseconds since [`base`] (at least 1: 0 means none).
pub(crate) fn since_base(at: Instant) -> u64 {
    let nanos = at.saturating_duration_since(base()).as_nanos();
    u64::try_from(nanos).unwrap_or(u64::MAX).max(1)
}

/// The instant [`since_base`] gave `nanos` for.
pub(crate) fn from_base(nanos: u64) -> Instant {
    base() + Duration::from_nanos(nanos)
}

/// The event of transition `t`.
fn event(
    name: &Arc<str>,
    key: &Arc<str>,
    breaker: &Weak<CircuitBreaker>,
    restoring: &AtomicBool,
    t: &Transition,
) -> Event {
    let probe_in = (t.to == State::Open).then(|| {
        breaker
            .upgrade()
            .and_then(|b| b.open_remaining())
            .or(t.open_for)
            .unwrap_or_default()
    });
    Event {
        id: fastrand::i64(..),
        name: Arc::clone(name),
        key: Arc::clone(key),
        from: t.from,
        to: t.to,
        reason: if restoring.load(Ordering::Acquire) {
            RESTORED
        } else {
            t.reason.as_str()
        },
        failures_in_window: t.failures_in_window,
        probe_in,
        at: Instant::now(),
    }
}
