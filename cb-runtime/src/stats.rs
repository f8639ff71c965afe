//! A snapshot of one breaker's counts.

use crate::state::State;

/// A breaker's state and counts at one instant.
///
/// The totals (`successes`, `failures`, `timeouts`, `rejected`, `ignored`,
/// `cancelled`, `throttled`) count every call since the breaker was created;
/// they are exact, and [`reset`](crate::CircuitBreaker::reset) does not clear
/// them. Every call that was admitted or refused lands in exactly one of
/// them, so `successes + failures + timeouts + ignored + cancelled +
/// rejected + throttled` is the number of calls. `slow_calls` counts calls of any outcome that were slow.
///
/// The `*_in_window` fields and rates describe the sliding window, which
/// `reset` and closing the circuit clear.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// The circuit's state.
    pub state: State,
    /// Calls that succeeded.
    pub successes: u64,
    /// Calls that failed with an error counted against the dependency, or panicked.
    pub failures: u64,
    /// Calls refused without being attempted.
    pub rejected: u64,
    /// Calls slower than `slow_call_duration`, whatever their outcome.
    pub slow_calls: u64,
    /// Failures (including timeouts) since the last success, while closed.
    pub consecutive_failures: u64,
    /// Calls abandoned at `call_timeout`.
    pub timeouts: u64,
    /// Calls whose error the classifier said not to count.
    pub ignored: u64,
    /// Calls dropped before they finished; they count neither way.
    pub cancelled: u64,
    /// Calls the dependency throttled ([`Outcome::Throttled`](crate::Outcome::Throttled):
    /// a 429, a quota error); not failures.
    pub throttled: u64,
    /// Calls in the sliding window.
    pub calls_in_window: u64,
    /// Failures (including timeouts) in the sliding window.
    pub failures_in_window: u64,
    /// Slow calls in the sliding window.
    pub slow_calls_in_window: u64,
    /// The window's failure rate, once it holds `minimum_calls` calls.
    pub failure_rate: Option<f64>,
    /// The window's slow-call rate, once it holds `minimum_calls` calls.
    pub slow_call_rate: Option<f64>,
    /// Probes in flight (half-open only).
    pub half_open_in_flight: u64,
}

impl Stats {
    /// Every call counted: `successes + failures + timeouts + ignored +
    /// cancelled + rejected + throttled`.
    pub fn calls(&self) -> u64 {
        self.successes
            + self.failures
            + self.timeouts
            + self.ignored
            + self.cancelled
            + self.rejected
            + self.throttled
    }
}
