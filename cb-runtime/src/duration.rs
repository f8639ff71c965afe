//! Durations as people write them in config files and environment variables:
//! `"250ms"`, `"30s"`, `"2m"`, `"1m30s"`, `"1.5s"`.

use std::time::Duration;

/// Parses `"250ms"`, `"30s"`, `"2m"`, `"1h"`, sums such as `"1m30s"`, and
/// decimals such as `"1.5s"`; the units are `ns`, `us`, `ms`, `s`, `m` and `h`.
///
/// Exactly the spelling the `#[circuit_breaker]` attribute takes (both use
/// [`cb_syntax::parse_nanos`]), counted in whole nanoseconds, never through
/// floating point. A number without a unit, a negative number, an unknown
/// unit, a fraction of a nanosecond or a value over `u64::MAX` nanoseconds is
/// an error that quotes the text and says what is expected.
///
/// ```
/// use std::time::Duration;
/// use cb_runtime::parse_duration;
///
/// assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
/// assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
/// let refusal = parse_duration("30").unwrap_err();
/// assert!(refusal.to_string().starts_with("invalid duration `30`: `30` has no unit"));
/// ```
///
/// It is public so that an application reads its own settings in the same
/// spelling as the breakers' (say, a retry delay beside `open_duration`).
pub fn parse_duration(text: &str) -> Result<Duration, ParseDurationError> {
    cb_syntax::parse_nanos(text)
        .map(Duration::from_nanos)
        .map_err(|message| ParseDurationError { message })
}

/// Why a text is not a duration: [`parse_duration`]'s error. Its message
/// quotes the text and says what is expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseDurationError {
    message: String,
}

impl std::fmt::Display for ParseDurationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParseDurationError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration(" 2m "), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0.5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("100us"), Ok(Duration::from_micros(100)));
    }

    /// The runtime reads durations exactly as the attribute does: in whole
    /// nanoseconds, never through `f64` (`"0.3s"` is exactly 300 ms), with
    /// sums and the `ns`/`us` units.
    #[test]
    fn exact_and_the_same_as_the_attribute() {
        assert_eq!(parse_duration("0.3s"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("1.001s"), Ok(Duration::from_millis(1001)));
        assert_eq!(parse_duration("0.1h"), Ok(Duration::from_secs(360)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("7ns"), Ok(Duration::from_nanos(7)));
    }

    #[test]
    fn refusals_say_what_is_expected() {
        for bad in [
            "",
            "30",
            "s",
            "-1s",
            "3 weeks",
            "1.2.3s",
            "1e400h",
            "ms5",
            "10000000h",
        ] {
            let err = parse_duration(bad).unwrap_err().to_string();
            assert!(
                err.contains(&format!("`{bad}`"))
                    && (err.contains("write a number") || err.contains("too long")),
                "{bad:?}: {err}"
            );
        }
        assert!(parse_duration("30")
            .unwrap_err()
            .to_string()
            .contains("has no unit"));
        assert!(parse_duration("5d")
            .unwrap_err()
            .to_string()
            .contains("`d` is not a unit"));
    }
}
