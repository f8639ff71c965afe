//! Interned breaker names: a breaker's error carries its name as a thin
//! `&'static &'static str`, so refusing a call allocates nothing, touches no
//! shared reference count, and the error stays two words.
//!
//! Each distinct name is stored once for the life of the process, like the
//! registry's own entries. Breakers are made per dependency, so the set is small.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};

/// The one `&'static &'static str` for `name`.
pub(crate) fn intern(name: String) -> &'static &'static str {
    type Names = HashMap<&'static str, &'static &'static str>;
    static NAMES: OnceLock<Mutex<Names>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(existing) = names.get(name.as_str()) {
        return existing;
    }
    let text: &'static str = Box::leak(name.into_boxed_str());
    let thin: &'static &'static str = Box::leak(Box::new(text));
    names.insert(text, thin);
    thin
}

#[cfg(test)]
mod tests {
    use super::intern;

    #[test]
    fn same_name_same_pointer() {
        let a = intern("intern-test".to_owned());
        let b = intern(String::from("intern-test"));
        assert!(std::ptr::eq(a, b));
        assert_eq!(*a, "intern-test");
        assert_ne!(intern("intern-test-2".to_owned()), a);
    }
}
