//! Breaker names: one rule ([`cb_syntax::check_name`]: 1 to 256 bytes, not
//! only white space, no control characters), enforced where names enter, so
//! every breaker can be addressed by the admin API and read in logs.
//!
//! [`CircuitBreaker::try_new`](crate::CircuitBreaker::try_new) refuses a bad
//! name; [`CircuitBreaker::new`](crate::CircuitBreaker::new), which cannot
//! fail, and the registry (which creates through it) repair one instead, and
//! log the repair at ERROR: control characters become `U+FFFD`, the name is
//! cut to 256 bytes at a character boundary, and an empty name becomes
//! `<unnamed>`. The attribute refuses a bad name at compile time.

use std::borrow::Cow;

use cb_syntax::{check_name, MAX_NAME_LEN};

use crate::config::ConfigError;

/// `name` if it follows the rule, or the error naming the field.
pub(crate) fn checked(name: &str) -> Result<(), ConfigError> {
    check_name(name).map_err(|e| ConfigError::new("name", format!("{name:?} ({e})"), cb_syntax::NAME_RULE))
}

/// `name`, repaired to follow the rule if it does not (logged at ERROR).
pub(crate) fn repaired(name: &str) -> Cow<'_, str> {
    let fixed = repair(name);
    if let Cow::Owned(fixed) = &fixed {
        log_repair(name, fixed);
    }
    fixed
}

/// Logs, at ERROR, that `name` broke the rule and `fixed` is used instead.
pub(crate) fn log_repair(name: &str, fixed: &str) {
    if let Err(error) = checked(name) {
        tracing::error!(
            target: "cb_runtime",
            breaker = %fixed,
            %error,
            "circuit breaker name refused ({error}); the breaker is named {fixed:?} instead"
        );
    }
}

/// `name`, repaired to follow the rule if it does not; nothing is logged.
pub(crate) fn repair(name: &str) -> Cow<'_, str> {
    if check_name(name).is_ok() {
        return Cow::Borrowed(name);
    }
    let mut fixed: String = name
        .chars()
        .map(|c| {
            if c.is_control() {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .collect();
    if fixed.len() > MAX_NAME_LEN {
        let mut end = MAX_NAME_LEN;
        while !fixed.is_char_boundary(end) {
            end -= 1;
        }
        fixed.truncate(end);
    }
    if fixed.trim().is_empty() {
        fixed = "<unnamed>".to_owned();
    }
    Cow::Owned(fixed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_names_are_kept() {
        for name in ["openai", "a b", "ünïcödé", "slash/name", "100%", &"x".repeat(256)] {
            assert!(matches!(repaired(name), Cow::Borrowed(n) if n == name));
        }
    }

    #[test]
    fn bad_names_are_repaired_into_good_ones() {
        assert_eq!(repaired("a\nb"), "a\u{FFFD}b");
        assert_eq!(repaired(""), "<unnamed>");
        assert_eq!(repaired("  "), "<unnamed>");
        let long = "é".repeat(200); // 400 bytes
        let cut = repaired(&long);
        assert!(cut.len() <= MAX_NAME_LEN && cut.chars().all(|c| c == 'é'));
        for name in ["a\nb", "", "  ", &long] {
            assert_eq!(check_name(&repaired(name)), Ok(()), "{name:?}");
        }
    }

    #[test]
    fn checked_names_the_field_and_the_rule() {
        let err = checked("tab\there").unwrap_err();
        assert_eq!(err.field(), "name");
        assert!(err.to_string().contains("control characters"), "{err}");
    }
}
