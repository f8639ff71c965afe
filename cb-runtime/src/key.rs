//! The tag a keyed breaker carries of its key.
//!
//! A breaker made by a [`Family`](crate::Family) for one key holds a
//! [`KeyTag`]: the key itself, and what the family's call path checks before it
//! reuses a breaker from a thread's cache. It lives apart from the family so
//! that a breaker's counts can hold it without depending on the family.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

/// What a keyed breaker carries of its key: the key, and what a thread's
/// cache of key breakers checks before it reuses the breaker for a call
/// (see the family's `lease` module), and its last use, for eviction.
pub(crate) struct KeyTag {
    pub(crate) key: Arc<str>,
    /// [`Family::id`](crate::Family::id) of the family that made the breaker.
    pub(crate) family: u64,
    /// The key's hash, as the family's threads' caches compute it.
    pub(crate) hash: u64,
    /// Set when the key leaves its family: a cached breaker is then never
    /// used for a new call.
    pub(crate) evicted: AtomicBool,
    /// The family's logical time of the key's last use.
    pub(crate) last_used: AtomicU64,
}
