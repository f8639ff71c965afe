//! Fuzz target `duration`: the duration grammar shared by the attribute, the
//! config file and the environment (`cb_syntax::parse_nanos`, and
//! `cb_runtime::parse_duration` over it).

use std::time::Duration;

/// Checks, for any text:
///
/// - parsing never panics, and the runtime's `parse_duration` gives exactly
///   `parse_nanos`'s answer;
/// - a refusal quotes the text;
/// - an accepted duration reads back the same written as `<n>ns`, and with
///   whitespace around it;
/// - two accepted halves read as their sum when written one after the other
///   (`"1m"` then `"30s"`), or are refused as too long when the sum
///   overflows.
pub fn duration(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let nanos = cb_syntax::parse_nanos(text);
    assert_eq!(
        cb_runtime::parse_duration(text).map_err(|e| e.to_string()),
        nanos.clone().map(Duration::from_nanos),
        "{text:?}"
    );
    match &nanos {
        Err(message) => assert!(message.contains(&format!("`{text}`")), "{text:?}: {message}"),
        Ok(n) => {
            assert_eq!(
                cb_syntax::parse_nanos(&format!("{n}ns")).as_ref(),
                Ok(n),
                "{text:?}"
            );
            assert_eq!(
                cb_syntax::parse_nanos(&format!(" \t{text}\n")).as_ref(),
                Ok(n),
                "{text:?}"
            );
        }
    }
    let middle = (0..=text.len() / 2)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    let (a, b) = text.split_at(middle);
    if let (Ok(x), Ok(y)) = (cb_syntax::parse_nanos(a), cb_syntax::parse_nanos(b)) {
        let joined = cb_syntax::parse_nanos(&format!("{a}{b}"));
        match x.checked_add(y) {
            Some(sum) => assert_eq!(joined, Ok(sum), "{a:?} then {b:?}"),
            None => assert!(joined.is_err_and(|e| e.contains("too long")), "{a:?} then {b:?}"),
        }
    }
}
