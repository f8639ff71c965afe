//! `open_backoff` text: `"<multiplier> <cap> [<jitter>]"`, such as `"2 5m 0.1"`.

use crate::duration::parse_nanos;

/// The parts of an `open_backoff` value, each within its own range. (That
/// the cap is at least the open duration is judged with the whole
/// configuration.)
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BackoffText {
    /// Each reopening multiplies the open duration by this: finite, at least 1.
    pub multiplier: f64,
    /// The open duration never grows past this, in nanoseconds: above zero.
    pub cap_nanos: u64,
    /// A random fraction of the duration, added or taken away: in `[0, 1]`.
    pub jitter: f64,
}

/// Parses `"<multiplier> <cap> [<jitter>]"`: two or three parts separated by
/// whitespace, the cap written as a duration ([`parse_nanos`]).
///
/// A refusal says which part is wrong and why, in words that follow
/// "`open_backoff` ".
///
/// ```
/// use cb_syntax::{parse_backoff, BackoffText};
///
/// assert_eq!(
///     parse_backoff("2 5m 0.1"),
///     Ok(BackoffText { multiplier: 2.0, cap_nanos: 300_000_000_000, jitter: 0.1 })
/// );
/// assert!(parse_backoff("0.5 5m").unwrap_err().contains("at least 1"));
/// ```
pub fn parse_backoff(text: &str) -> Result<BackoffText, String> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    if !(2..=3).contains(&parts.len()) {
        return Err("needs a multiplier and a cap, then optionally a jitter".to_owned());
    }
    let multiplier = parts[0]
        .parse::<f64>()
        .ok()
        .filter(|m| m.is_finite() && *m >= 1.0)
        .ok_or("needs a multiplier of at least 1")?;
    let cap_nanos = match parse_nanos(parts[1]) {
        Ok(0) => return Err("needs a cap longer than zero".to_owned()),
        Ok(n) => n,
        Err(message) => return Err(format!("has a bad cap: {message}")),
    };
    let jitter = match parts.get(2) {
        Some(j) => j
            .parse::<f64>()
            .ok()
            .filter(|j| (0.0..=1.0).contains(j))
            .ok_or("needs a jitter fraction between 0 and 1")?,
        None => 0.0,
    };
    Ok(BackoffText {
        multiplier,
        cap_nanos,
        jitter,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_and_ranges() {
        let b = parse_backoff(" 1.5  90s ").unwrap();
        assert_eq!((b.multiplier, b.cap_nanos, b.jitter), (1.5, 90_000_000_000, 0.0));
        for (bad, why) in [
            ("2", "needs a multiplier and a cap"),
            ("2 5m 0.1 x", "needs a multiplier and a cap"),
            ("inf 5m", "at least 1"),
            ("NaN 5m", "at least 1"),
            ("2 0s", "longer than zero"),
            ("2 5", "bad cap"),
            ("2 5m 1.5", "between 0 and 1"),
            ("2 5m -0.1", "between 0 and 1"),
        ] {
            let err = parse_backoff(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }
}
