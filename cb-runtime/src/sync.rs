//! The atomics and locks the core is built from, behind a `cfg(loom)` switch.
//!
//! Under `RUSTFLAGS="--cfg loom"` every type here comes from `loom`, so the
//! model checker can explore every interleaving of the state machine.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

/// Locks `m`, ignoring poisoning: no user code runs while one of our locks
/// is held, so a poisoned lock still guards consistent data.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A box made once, on first use, and read without a lock afterwards: a
/// breaker's rarely used counters.
#[cfg(not(loom))]
pub(crate) type OnceBox<T> = std::sync::OnceLock<Box<T>>;

/// A box made once, on first use (the loom build). `std::sync::OnceLock`
/// orders its initialisation before every read, but loom cannot see that
/// ordering and reports the loom atomics inside the box as read before they
/// were made; a loom `Mutex` gives loom the same order. The box is leaked:
/// this type exists only in model-checking builds.
#[cfg(loom)]
pub(crate) struct OnceBox<T: 'static> {
    slot: Mutex<Option<&'static Box<T>>>,
}

#[cfg(loom)]
impl<T: 'static> OnceBox<T> {
    pub(crate) fn new() -> Self {
        OnceBox {
            slot: Mutex::new(None),
        }
    }

    pub(crate) fn get(&self) -> Option<&Box<T>> {
        *lock(&self.slot)
    }

    pub(crate) fn set(&self, value: Box<T>) -> Result<(), Box<T>> {
        let mut slot = lock(&self.slot);
        if slot.is_some() {
            return Err(value);
        }
        *slot = Some(Box::leak(Box::new(value)));
        Ok(())
    }

    pub(crate) fn get_or_init(&self, make: impl FnOnce() -> Box<T>) -> &Box<T> {
        let mut slot = lock(&self.slot);
        *slot.get_or_insert_with(|| Box::leak(Box::new(make())))
    }
}

#[cfg(loom)]
impl<T: std::fmt::Debug + 'static> std::fmt::Debug for OnceBox<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("OnceBox").field(&self.get()).finish()
    }
}
