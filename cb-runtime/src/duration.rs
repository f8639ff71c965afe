//! Durations as people write them in config files and environment variables:
//! `"250ms"`, `"30s"`, `"2m"`, `"1h"`, `"1.5s"`.

use std::time::Duration;

/// The units [`parse_duration`] accepts, for error messages.
pub(crate) const DURATION_FORMAT: &str =
    "a duration: a number and a unit (`ms`, `s`, `m` or `h`), such as \"250ms\", \"30s\" or \"2m\"";

/// Parses `"250ms"`, `"30s"`, `"2m"`, `"1h"` (and decimals such as `"1.5s"`).
///
/// The same spelling the `#[circuit_breaker]` attribute takes. A number
/// without a unit, a negative number, an unknown unit or a value too large for
/// a [`Duration`] is an error that says what is expected.
///
/// ```
/// use std::time::Duration;
/// use cb_runtime::parse_duration;
///
/// assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
/// assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
/// assert!(parse_duration("30").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale = match unit.trim() {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "" => return Err(format!("`{t}` has no unit; expected {DURATION_FORMAT}")),
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{t}`; expected {DURATION_FORMAT}"
            ))
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("expected {DURATION_FORMAT}, got `{t}`"))?;
    Duration::try_from_secs_f64(value * scale).map_err(|_| format!("`{t}` is out of range"))
}

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
    }

    #[test]
    fn refusals_say_what_is_expected() {
        for bad in ["", "30", "s", "-1s", "3 weeks", "1.2.3s", "1e400h", "ms5"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(
                err.contains("expected") || err.contains("out of range"),
                "{bad:?}: {err}"
            );
        }
        assert!(parse_duration("30").unwrap_err().contains("no unit"));
        assert!(parse_duration("5d").unwrap_err().contains("unknown unit `d`"));
    }
}
