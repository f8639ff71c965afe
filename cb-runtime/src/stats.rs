//! A snapshot of one breaker's counts.

use crate::fallback::FallbackReason;
use crate::outcome::CallEnd;
use crate::state::State;

/// A breaker's state and counts at one instant.
///
/// The totals count every call since the breaker was created; they are
/// exact, and [`reset`](crate::CircuitBreaker::reset) does not clear them.
/// Every call that was admitted or refused lands in exactly one of them, so
/// they add up to [`calls`](Self::calls), and so do the series of
/// `circuit_breaker_calls_total`, one per total:
///
/// | total | counts | `outcome` label | in the sliding window | `consecutive_failures` |
/// |---|---|---|---|---|
/// | `successes` | calls that succeeded (and errors `failure_if` refused) | `success` | a success | back to 0 |
/// | `failures` | calls whose error counted against the dependency, and panics | `failure` | a failure | +1 |
/// | `timeouts` | calls abandoned at `call_timeout` (a stream's stall included) | `timeout` | a failure | +1 |
/// | `ignored` | calls whose error the classifier (`ignore_if`) said not to count | `ignored` | not in it | unchanged |
/// | `cancelled` | calls dropped before they finished | `cancelled` | not in it | unchanged |
/// | `rejected` | calls refused without being attempted | `rejected` | not in it | unchanged |
/// | `throttled` | calls the dependency throttled ([`Outcome::Throttled`](crate::Outcome::Throttled): a 429, a quota error) | `throttled` | not in it | unchanged |
/// | `saturated` | calls the bulkhead refused (`max_concurrent_calls` in flight) | `saturated` | not in it | unchanged |
///
/// So a timeout is a failure for every trigger (`failures_in_window`, the
/// failure rate, `consecutive_failures`, a failed probe), and is counted once,
/// in `timeouts` and `outcome="timeout"`, not in `failures`: the failures
/// the dependency caused are `failures + timeouts`.
///
/// Besides the outcome totals: `slow_calls` counts calls of any outcome that
/// were slow (`circuit_breaker_slow_calls_total`); `fallbacks` counts the
/// fallbacks that ran ([`fallbacks_on`](Self::fallbacks_on),
/// `circuit_breaker_fallbacks_total{on}`), which are not calls of this
/// breaker; [`probe_results`](Self::probe_results) counts the calls admitted
/// half-open by how they ended (`circuit_breaker_probes_total{result}`).
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
    /// Calls that failed with an error counted against the dependency, or
    /// panicked; timeouts are in `timeouts`, not here.
    pub failures: u64,
    /// Calls refused without being attempted.
    pub rejected: u64,
    /// Calls slower than `slow_call_duration`, whatever their outcome.
    pub slow_calls: u64,
    /// Failures and timeouts since the last success, while closed.
    pub consecutive_failures: u64,
    /// Calls abandoned at `call_timeout`; each is a failure in the window.
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
    /// Failures and timeouts in the sliding window.
    pub failures_in_window: u64,
    /// Slow calls in the sliding window.
    pub slow_calls_in_window: u64,
    /// The window's failure rate (failures and timeouts over its calls), once
    /// it holds `minimum_calls` calls.
    pub failure_rate: Option<f64>,
    /// The window's slow-call rate, once it holds `minimum_calls` calls.
    pub slow_call_rate: Option<f64>,
    /// Probes in flight (half-open only).
    pub half_open_in_flight: u64,
    /// Fallbacks that ran instead of a call or after it, whatever the reason.
    pub fallbacks: u64,
    /// `fallbacks` by reason, in the order of [`FallbackReason::ALL`].
    pub(crate) fallbacks_by: [u64; FallbackReason::ALL.len()],
    /// Probes by how they ended, in the order of `CallEnd::ALL`.
    pub(crate) probes_by: [u64; CallEnd::ALL.len()],
    // Protection modes (see `Mode`, `Trip` and `max_concurrent_calls`).
    /// Calls the bulkhead refused at once, `max_concurrent_calls` being in
    /// flight ([`BreakerError::is_saturated`](crate::BreakerError::is_saturated));
    /// an outcome total of its own (in [`calls`](Self::calls), not in
    /// `rejected`), never a failure.
    pub saturated: u64,
    /// Shadow mode: calls the breaker would have refused (open, half-open
    /// full, a full bulkhead, an adaptive refusal), let through and run as
    /// ordinary calls. Not an outcome total: each of these calls is also
    /// counted by how it ended.
    pub shadow_rejected: u64,
    /// An adaptive breaker's probability of refusing the next call, from its
    /// window now; `None` for a threshold breaker.
    pub refusal_share: Option<f64>,
    /// Calls in flight that hold a bulkhead slot (0 without a bulkhead).
    pub concurrent_calls: u64,
    /// Health checks that passed (see
    /// [`set_health_check`](crate::CircuitBreaker::set_health_check)); not
    /// calls, so not in [`calls`](Self::calls).
    pub health_checks_passed: u64,
    /// Health checks that failed, or were abandoned at `call_timeout`; not
    /// calls (and not in `timeouts`).
    pub health_checks_failed: u64,
    /// The share of calls admitted while ramping up after a close.
    pub(crate) ramp_share: Option<f64>,
}

/// Reads one total of a [`Stats`].
type Total = fn(&Stats) -> u64;

/// Every outcome total of [`Stats`], with the word of its `outcome` label:
/// the one list that [`Stats::calls`], [`Stats::outcomes`] and the metrics
/// read. A new outcome is one line here.
const OUTCOMES: &[(&str, Total)] = &[
    ("success", |s| s.successes),
    ("failure", |s| s.failures),
    ("timeout", |s| s.timeouts),
    ("ignored", |s| s.ignored),
    ("cancelled", |s| s.cancelled),
    ("rejected", |s| s.rejected),
    ("throttled", |s| s.throttled),
    ("saturated", |s| s.saturated),
];

impl Stats {
    /// Every call counted: `successes + failures + timeouts + ignored +
    /// cancelled + rejected + throttled + saturated`, the sum of
    /// [`outcomes`](Self::outcomes).
    pub fn calls(&self) -> u64 {
        self.outcomes().map(|(_, n)| n).sum()
    }

    /// Every outcome total with the word of its `outcome` label in
    /// `circuit_breaker_calls_total`: `("success", successes)`,
    /// `("failure", failures)`, `("timeout", timeouts)`, `("ignored", ignored)`,
    /// `("cancelled", cancelled)`, `("rejected", rejected)`, `("throttled", throttled)`,
    /// `("saturated", saturated)`.
    ///
    /// ```
    /// use cb_runtime::{CircuitBreaker, Config};
    ///
    /// let b = CircuitBreaker::new("outcomes-doc", Config::default());
    /// b.try_acquire().unwrap().record(true);
    /// let stats = b.stats();
    /// assert_eq!(stats.outcomes().find(|(w, _)| *w == "success"), Some(("success", 1)));
    /// assert_eq!(stats.outcomes().map(|(_, n)| n).sum::<u64>(), stats.calls());
    /// ```
    pub fn outcomes(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        OUTCOMES.iter().map(move |(word, total)| (*word, total(self)))
    }

    /// The fallbacks that ran for `reason`.
    pub fn fallbacks_on(&self, reason: FallbackReason) -> u64 {
        self.fallbacks_by[reason.index()]
    }

    /// While the circuit ramps up after closing (`ramp_up`): the share of
    /// calls it admits now, from 0.1 up to 1; `None` when it is not ramping.
    pub fn ramp_share(&self) -> Option<f64> {
        self.ramp_share
    }

    /// The probes (calls admitted while half-open) by how they ended, with
    /// the word of the `result` label of `circuit_breaker_probes_total`:
    /// `success`, `failure`, `timeout`, `ignored`, `cancelled`, `throttled`.
    pub fn probe_results(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        CallEnd::ALL
            .iter()
            .map(move |end| (end.word(), self.probes_by[end.index()]))
    }
}
