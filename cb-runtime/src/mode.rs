//! The words of the protection modes' fields: [`Mode`] (`mode`, see
//! `shadow`) and [`Trip`] (`trip`, see `adaptive`), as the configuration
//! holds them.

use std::fmt;
use std::str::FromStr;

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
        let range = cb_syntax::field(self.field)
            .map(|field| field.range())
            .unwrap_or_default();
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

/// What refuses calls: the field `trip` (`"threshold"` or `"adaptive"` in
/// the attribute, a config file and the environment).
///
/// ```
/// use cb_runtime::{CircuitBreaker, Config, State, Trip};
///
/// let config = Config::builder().trip(Trip::Adaptive).build().unwrap();
/// let breaker = CircuitBreaker::new("adaptive-doc", config);
/// for _ in 0..50 {
///     if let Ok(permit) = breaker.try_acquire() {
///         permit.record(false); // the dependency fails every call
///     }
/// }
/// assert_eq!(breaker.state(), State::Closed); // never opens...
/// let share = breaker.stats().refusal_share.unwrap();
/// assert!(share > 0.9, "{share}"); // ...but refuses nearly every call
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Trip {
    /// The classic machine: the thresholds open the circuit, probes close it
    /// (the default).
    #[default]
    Threshold,
    /// Client-side adaptive throttling: never opens; refuses each call with
    /// probability `max(0, (requests - k * accepts) / (requests + 1))` over
    /// the sliding window.
    Adaptive,
}

impl Trip {
    /// Every trip, in the order of [`cb_syntax::TRIPS`].
    pub const ALL: [Trip; 2] = [Trip::Threshold, Trip::Adaptive];

    /// The trip's word: `"threshold"` or `"adaptive"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Trip::Threshold => "threshold",
            Trip::Adaptive => "adaptive",
        }
    }
}

const _: () = assert!(cb_syntax::TRIPS.len() == Trip::ALL.len());

impl fmt::Display for Trip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Trip {
    type Err = ParseModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Trip::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| ParseModeError::new("trip", s))
    }
}

/// The default `adaptive_k`, the book's 2.0, in hundredths.
pub(crate) const DEFAULT_K_CENTS: u16 = 200;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_and_match_the_field_table() {
        for (mode, word) in Mode::ALL.into_iter().zip(cb_syntax::MODES) {
            assert_eq!(mode.as_str(), word);
            assert_eq!(word.parse::<Mode>(), Ok(mode));
            assert_eq!(mode.to_string(), word);
        }
        let err = "dry_run".parse::<Mode>().unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown `mode` `dry_run`; expected one of `enforce`, `shadow`"
        );
    }

    #[test]
    fn trips_round_trip_and_match_the_field_table() {
        for (trip, word) in Trip::ALL.into_iter().zip(cb_syntax::TRIPS) {
            assert_eq!(trip.as_str(), word);
            assert_eq!(word.parse::<Trip>(), Ok(trip));
        }
        let err = "gradual".parse::<Trip>().unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown `trip` `gradual`; expected one of `threshold`, `adaptive`"
        );
    }
}
