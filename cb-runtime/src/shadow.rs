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

use std::fmt;
use std::str::FromStr;

use crate::error::BreakerErrorKind;

/// Whether a breaker enforces its decisions or only counts them: the field
/// `mode` (`"enforce"` or `"shadow"` in the attribute, a config file and the
/// environment).
///
/// ```
/// use cb_runtime::{CircuitBreaker, Config, Mode};
///
/// # tokio_test::block_on(async {
/// let config = Config::builder().failure_threshold(1).mode(Mode::Shadow).build().unwrap();
/// let breaker = CircuitBreaker::new("shadow-doc", config);
/// let _ = breaker.call(async { Err::<(), _>("down") }).await;
/// assert!(breaker.state().is_open()); // it would refuse calls now...
/// let through = breaker.call(async { Ok::<_, &str>(7) }).await;
/// assert_eq!(through, Ok(7)); // ...but lets them through, and counts them
/// assert_eq!(breaker.stats().shadow_rejected, 1);
/// assert_eq!(breaker.stats().rejected, 0);
/// # });
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Refuse the calls the breaker decides to refuse (the default).
    #[default]
    Enforce,
    /// Let every call through; count those the breaker would have refused.
    Shadow,
}

impl Mode {
    /// Every mode, in the order of [`cb_syntax::MODES`].
    pub const ALL: [Mode; 2] = [Mode::Enforce, Mode::Shadow];

    /// The mode's word: `"enforce"` or `"shadow"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Shadow => "shadow",
        }
    }
}

const _: () = {
    // The words of the field table, in this order.
    assert!(cb_syntax::MODES.len() == Mode::ALL.len());
};

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`Mode`] or a [`Trip`](crate::Trip) from an
/// unknown word.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseModeError {
    field: &'static str,
    written: String,
}

impl ParseModeError {
    pub(crate) fn new(field: &'static str, written: &str) -> Self {
        ParseModeError {
            field,
            written: written.to_owned(),
        }
    }
}

impl fmt::Display for ParseModeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let range = cb_syntax::field(self.field).map(|field| field.range()).unwrap_or_default();
        write!(f, "unknown `{}` `{}`; expected {range}", self.field, self.written)
    }
}

impl std::error::Error for ParseModeError {}

impl FromStr for Mode {
    type Err = ParseModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| ParseModeError::new("mode", s))
    }
}

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
    fn words_round_trip_and_match_the_field_table() {
        for (mode, word) in Mode::ALL.into_iter().zip(cb_syntax::MODES) {
            assert_eq!(mode.as_str(), word);
            assert_eq!(word.parse::<Mode>(), Ok(mode));
            assert_eq!(mode.to_string(), word);
        }
        let err = "dry_run".parse::<Mode>().unwrap_err().to_string();
        assert_eq!(err, "unknown `mode` `dry_run`; expected one of `enforce`, `shadow`");
        assert!(!lets_through(BreakerErrorKind::ForcedOpen));
        assert!(lets_through(BreakerErrorKind::Open));
    }
}
