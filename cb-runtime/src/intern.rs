//! Interned breaker names: a breaker's error carries its name as a
//! `&'static str`, so refusing a call allocates nothing and touches no shared
//! reference count.
//!
//! Each distinct name is stored once for the life of the process, like the
//! registry's own entries. Breakers are made per dependency, so the set is small.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock, PoisonError};

/// The one `&'static str` for `name`.
pub(crate) fn intern(name: String) -> &'static str {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(existing) = names.get(name.as_str()) {
        return existing;
    }
    let leaked: &'static str = Box::leak(name.into_boxed_str());
    names.insert(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::intern;

    #[test]
    fn same_name_same_pointer() {
        let a = intern("intern-test".to_owned());
        let b = intern(String::from("intern-test"));
        assert!(std::ptr::eq(a, b));
        assert_ne!(intern("intern-test-2".to_owned()), a);
    }
}
