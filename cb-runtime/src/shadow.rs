//! Shadow mode: the breaker decides as if it enforced, and lets every call
//! through.
//!
//! With `mode = "shadow"` the state machine, its windows, transitions,
//! metrics and events run exactly as they would when enforcing, but a call
//! the breaker would have refused (open, half-open full, a full bulkhead, an
//! adaptive refusal) runs anyway. It is counted in
//! [`Stats::shadow_rejected`](crate::Stats::shadow_rejected) (and
//! `circuit_breaker_shadow_rejections_total`), not in `rejected`, and runs as
//! an ordinary call: counted by how it ends, never a probe, and its answer
//! does not move the state machine, so the states are those an enforcing
//! breaker would have gone through. A circuit forced open by an operator
//! ([`force_open`](crate::CircuitBreaker::force_open)) still refuses: that
//! is a command, not a decision of the breaker.
//!
//! Teams adopt a breaker in shadow, watch what it would have refused for a
//! while, tune the thresholds, then switch to `"enforce"` by a
//! [`reconfigure`](crate::CircuitBreaker::reconfigure) or a config file
//! reload, without a restart.

use crate::error::BreakerErrorKind;

/// Whether a refusal of `kind` is let through in shadow mode: every refusal
/// the breaker decides, but not an operator's forced open.
#[inline]
pub(crate) fn lets_through(kind: BreakerErrorKind) -> bool {
    kind != BreakerErrorKind::ForcedOpen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forced_open_is_obeyed_in_shadow_mode() {
        assert!(!lets_through(BreakerErrorKind::ForcedOpen));
        assert!(lets_through(BreakerErrorKind::Open));
    }
}
