//! Transition events, and the observers a breaker tells about them.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use crate::state::State;

/// One change of a breaker's state.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Transition {
    /// The breaker's name.
    pub name: &'static str,
    /// The state it left.
    pub from: State,
    /// The state it entered.
    pub to: State,
    /// Why: `"consecutive failures"`, `"failure rate"`, `"slow-call rate"`,
    /// `"a probe failed"`, `"probes succeeded"`, `"open duration elapsed"`,
    /// `"reset"`, `"forced open"`, `"disabled"`, `"opened for a given duration"`.
    pub reason: &'static str,
    /// When, on the breaker's monotonic clock.
    pub at: Duration,
    /// When, on the wall clock (for logs and stored event tables only).
    pub wall_time: SystemTime,
    /// On opening: how long the circuit stays open.
    pub open_for: Option<Duration>,
    /// On opening from closed: failures in the window that tripped it.
    pub failures_in_window: u64,
    /// On opening from closed: calls in the window that tripped it.
    pub calls_in_window: u64,
    /// On leaving open or forced open: calls rejected during that period.
    pub rejected_while_open: Option<u64>,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "circuit breaker `{}`: {} -> {} ({})",
            self.name, self.from, self.to, self.reason
        )
    }
}

type Observer = Arc<dyn Fn(&Transition) + Send + Sync>;

/// The functions to call on each transition.
#[derive(Default)]
pub(crate) struct Observers(RwLock<Vec<Observer>>);

impl Observers {
    pub(crate) fn add(&self, f: Box<dyn Fn(&Transition) + Send + Sync>) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::from(f));
    }

    /// Calls every observer, holding no lock while they run.
    pub(crate) fn notify(&self, t: &Transition) {
        let list: Vec<Observer> = {
            let guard = self.0.read().unwrap_or_else(PoisonError::into_inner);
            if guard.is_empty() {
                return;
            }
            guard.clone()
        };
        for f in list {
            f(t);
        }
    }
}
