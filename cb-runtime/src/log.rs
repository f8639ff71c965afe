//! What the breaker writes to `tracing`.
//!
//! * Transitions at INFO, and at WARN when the circuit opens, with the
//!   breaker's name, the states, the reason and the window's counts as fields.
//!   An open for a rate limit (reason `throttled`) is INFO: routine, not an
//!   outage.
//! * Rejections at DEBUG, rate-limited: the first rejection of each open
//!   period is logged, then one summary with the count when the period ends,
//!   so an open breaker under load does not flood the log.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::BreakerErrorKind;
use crate::transition::Transition;

pub(crate) fn transition(t: &Transition) {
    let rate = if t.calls_in_window > 0 {
        t.failures_in_window as f64 / t.calls_in_window as f64
    } else {
        0.0
    };
    if t.reason == crate::transition::Reason::Throttled {
        // A rate limit is routine for an LLM provider: INFO, not WARN.
        tracing::info!(
            target: "cb_runtime",
            breaker = t.name,
            key = t.key.as_deref(),
            from = %t.from,
            to = %t.to,
            reason = t.reason.as_str(),
            open_for = ?t.open_for,
            "circuit breaker throttled: the dependency is rate limiting; calls wait out its hint"
        );
    } else if t.to.is_open() {
        tracing::warn!(
            target: "cb_runtime",
            breaker = t.name,
            key = t.key.as_deref(),
            from = %t.from,
            to = %t.to,
            reason = t.reason.as_str(),
            failure_rate = rate,
            failures_in_window = t.failures_in_window,
            calls_in_window = t.calls_in_window,
            open_for = ?t.open_for,
            "circuit breaker opened"
        );
    } else {
        tracing::info!(
            target: "cb_runtime",
            breaker = t.name,
            key = t.key.as_deref(),
            from = %t.from,
            to = %t.to,
            reason = t.reason.as_str(),
            "circuit breaker changed state"
        );
    }
    if let Some(n) = t.rejected_while_open {
        tracing::debug!(
            target: "cb_runtime",
            breaker = t.name,
            key = t.key.as_deref(),
            rejected = n,
            "calls rejected while the circuit was open"
        );
    }
}

/// Rate-limits rejection logging to one line per open period.
#[derive(Default)]
pub(crate) struct RejectionLog {
    /// One more than the generation whose first rejection was logged.
    logged: AtomicU64,
    /// The `Rejected` total when the current open period started.
    mark: AtomicU64,
}

impl RejectionLog {
    /// Logs the first rejection of the open period `generation`. With DEBUG
    /// off for `cb_runtime`, which is the usual case, this is one load of
    /// tracing's global level filter and a compare.
    #[inline(always)]
    pub(crate) fn first_of_period(
        &self,
        name: &'static &'static str,
        key: Option<&str>,
        generation: u64,
        kind: BreakerErrorKind,
    ) {
        if tracing::level_filters::LevelFilter::current() < tracing::Level::DEBUG {
            return;
        }
        self.first_of_period_slow(name, key, generation, kind);
    }

    #[cold]
    #[inline(never)]
    fn first_of_period_slow(
        &self,
        name: &'static &'static str,
        key: Option<&str>,
        generation: u64,
        kind: BreakerErrorKind,
    ) {
        if !tracing::enabled!(target: "cb_runtime", tracing::Level::DEBUG) {
            return;
        }
        let tag = generation + 1;
        if self.logged.load(Ordering::Relaxed) != tag && self.logged.swap(tag, Ordering::Relaxed) != tag {
            tracing::debug!(
                target: "cb_runtime",
                breaker = *name,
                key,
                kind = ?kind,
                "call rejected; further rejections in this period are summarised when it ends"
            );
        }
    }

    pub(crate) fn start_period(&self, rejected_total: u64) {
        self.mark.store(rejected_total, Ordering::Relaxed);
    }

    pub(crate) fn end_period(&self, rejected_total: u64) -> u64 {
        rejected_total.saturating_sub(self.mark.swap(rejected_total, Ordering::Relaxed))
    }
}

/// A breaker with a health check opened outside any tokio runtime, and none
/// was captured before: its checks cannot run this period (WARN, once per
/// open period at most, as opens are).
pub(crate) fn no_runtime_for_health_check(name: &str, key: Option<&str>) {
    tracing::warn!(
        target: "cb_runtime",
        breaker = name,
        key,
        "circuit breaker `{name}` has a health check but no tokio runtime to run it on: set the check, or \
         use the breaker, inside a runtime; until then it recovers through its probes only"
    );
}
