//! Durations as people write them: `"250ms"`, `"30s"`, `"2m"`, `"1m30s"`,
//! `"1.5s"`. Exact: the value is counted in whole nanoseconds, never through
//! floating point.

/// What a duration looks like, for the messages of fields that take one.
pub const DURATION_FORMAT: &str =
    "a number and a unit, like \"250ms\", \"30s\", \"2m\" or \"1m30s\" (units: ns, us, ms, s, m, h)";

/// Units accepted in a duration string, with their length in nanoseconds.
const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("min", 60_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parses `text` into whole nanoseconds, or says what is wrong with it.
///
/// A duration is one or more `<number><unit>` parts, summed (`"1m30s"`). A
/// number is digits with an optional decimal part and `_` separators; a unit
/// is `ns`, `us` (or `µs`), `ms`, `s`, `m` (or `min`) or `h`. Whitespace around
/// parts is allowed. A part that is not a whole number of nanoseconds
/// (`"1.5ns"`) and a total over `u64::MAX` nanoseconds (about 584 years) are
/// refused. The message of a refusal quotes `text` and says what is expected.
///
/// ```
/// use cb_syntax::parse_nanos;
///
/// assert_eq!(parse_nanos("250ms"), Ok(250_000_000));
/// assert_eq!(parse_nanos("1.5s"), Ok(1_500_000_000));
/// assert!(parse_nanos("30").unwrap_err().contains("has no unit"));
/// ```
pub fn parse_nanos(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(expected(text, "it is empty"));
    }
    let mut rest = trimmed;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        if number.is_empty() {
            return Err(expected(text, &format!("`{rest}` does not start with a number")));
        }
        rest = rest[number_len..].trim_start();
        let unit_len = rest.find(|c: char| !c.is_alphabetic()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = rest[unit_len..].trim_start();
        let Some(&(_, unit_nanos)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(if unit.is_empty() {
                expected(text, &format!("`{number}` has no unit"))
            } else {
                expected(text, &format!("`{unit}` is not a unit"))
            });
        };
        let nanos = scale(number, unit_nanos).ok_or_else(|| {
            expected(
                text,
                &format!("`{number}{unit}` is not a whole number of nanoseconds"),
            )
        })?;
        total = total.saturating_add(nanos);
    }
    u64::try_from(total).map_err(|_| format!("duration `{text}` is too long (at most about 584 years)"))
}

/// `number` (digits with an optional decimal part) times `unit_nanos`, if it is exact.
fn scale(number: &str, unit_nanos: u128) -> Option<u128> {
    let number = number.replace('_', "");
    let (whole, fraction) = number.split_once('.').unwrap_or((&number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return None;
    }
    let parse = |digits: &str| -> Option<u128> {
        if digits.is_empty() {
            Some(0)
        } else if digits.len() > 30 {
            None
        } else {
            digits.parse().ok()
        }
    };
    let whole_nanos = parse(whole)?.checked_mul(unit_nanos)?;
    let denominator = 10u128.checked_pow(u32::try_from(fraction.len()).ok()?)?;
    let fraction_scaled = parse(fraction)?.checked_mul(unit_nanos)?;
    if fraction_scaled % denominator != 0 {
        return None;
    }
    whole_nanos.checked_add(fraction_scaled / denominator)
}

fn expected(text: &str, problem: &str) -> String {
    format!("invalid duration `{text}`: {problem}; write {DURATION_FORMAT}")
}

#[cfg(test)]
mod tests {
    use super::parse_nanos;

    #[test]
    fn accepts_the_documented_forms() {
        assert_eq!(parse_nanos("250ms"), Ok(250_000_000));
        assert_eq!(parse_nanos("30s"), Ok(30_000_000_000));
        assert_eq!(parse_nanos("2m"), Ok(120_000_000_000));
        assert_eq!(parse_nanos("2min"), Ok(120_000_000_000));
        assert_eq!(parse_nanos("1h"), Ok(3_600_000_000_000));
        assert_eq!(parse_nanos("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_nanos("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_nanos("10us"), Ok(10_000));
        assert_eq!(parse_nanos("7ns"), Ok(7));
        assert_eq!(parse_nanos("0s"), Ok(0));
    }

    #[test]
    fn refuses_nonsense() {
        for bad in ["", "30", "s", "30 seconds", "1.5ns", "1..5s", "-1s", "3x"] {
            assert!(parse_nanos(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_nanos("10000000h").unwrap_err().contains("too long"));
    }
}
