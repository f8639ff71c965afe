//! Transition events, and the observers a breaker tells about them.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
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
    /// `"slow probes"`, `"reset"`, `"forced open"`, `"disabled"`,
    /// `"opened for a given duration"`.
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
    ///
    /// An observer that panics is caught and logged at ERROR with the
    /// breaker's name; the breaker has already moved and stays as it is, and
    /// the other observers still run. This holds while another panic unwinds
    /// too (a panicking call records its failure from a drop guard, and that
    /// failure may open the circuit), where a second escaping panic would
    /// abort the process.
    pub(crate) fn notify(&self, t: &Transition) {
        let list: Vec<Observer> = {
            let guard = self.0.read().unwrap_or_else(PoisonError::into_inner);
            if guard.is_empty() {
                return;
            }
            guard.clone()
        };
        for f in list {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| f(t))) {
                tracing::error!(
                    target: "cb_runtime",
                    breaker = t.name,
                    from = %t.from,
                    to = %t.to,
                    panic = panic_message(&*panic),
                    "an on_transition observer of circuit breaker `{}` panicked; the breaker is unaffected",
                    t.name
                );
            }
        }
    }
}

/// The text of a panic's payload, when it has one.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "<non-string panic payload>"
    }
}
