//! The rule for breaker names, shared by the attribute, the runtime and the
//! admin API, so that every breaker a program can make is one the admin API
//! can address.

use std::fmt;

/// The longest breaker name, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// Why a breaker name is refused; see [`check_name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameError {
    /// The name is empty, or only white space.
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    TooLong,
    /// The name holds a control character (a newline, a tab, ...).
    Control,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameError::Empty => "it is empty",
            NameError::TooLong => "it is longer than 256 bytes",
            NameError::Control => "it holds control characters",
        })
    }
}

impl std::error::Error for NameError {}

/// What a valid name is, for error messages.
pub const NAME_RULE: &str = "a name of 1 to 256 bytes, not only white space, with no control characters";

/// Checks a breaker name: 1 to [`MAX_NAME_LEN`] bytes, not only white space,
/// and no control characters. Any other Unicode is fine.
///
/// ```
/// use cb_syntax::{check_name, NameError};
///
/// assert_eq!(check_name("openai/chat ünï"), Ok(()));
/// assert_eq!(check_name(" "), Err(NameError::Empty));
/// assert_eq!(check_name("a\nb"), Err(NameError::Control));
/// assert_eq!(check_name(&"x".repeat(257)), Err(NameError::TooLong));
/// ```
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.trim().is_empty() {
        Err(NameError::Empty)
    } else if name.len() > MAX_NAME_LEN {
        Err(NameError::TooLong)
    } else if name.chars().any(char::is_control) {
        Err(NameError::Control)
    } else {
        Ok(())
    }
}
