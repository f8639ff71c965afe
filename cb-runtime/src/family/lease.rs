//! The call path of a keyed call: a per-thread cache of key breakers, so
//! that a call on a key its thread used recently takes no lock, makes no
//! allocation and changes no shared reference count.
//!
//! A call must keep its breaker alive until it ends, even if the key is
//! evicted meanwhile. With an `Arc` clone that costs two atomic
//! read-modify-writes per call, and the map's guard one more: together more
//! than the whole unkeyed call. Instead each thread keeps, in a small
//! direct-mapped table, `Arc`s of the key breakers it used last. A call
//! *moves* its key's `Arc` out of the table (no reference count changes) into
//! a [`Lease`], and the lease moves it back when the call ends, into the
//! table of whichever thread it ends on.
//!
//! A cached breaker is used only while its family has evicted no key since
//! it was cached (one load of the family's eviction count): otherwise it is
//! checked against the map first, so a call never reaches the breaker of a
//! key that was evicted and created again. A thread's table holds at most
//! [`SLOTS`] breakers, so it keeps at most that many evicted breakers alive.

use std::cell::RefCell;
use std::hash::BuildHasher as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Family;
use crate::breaker::CircuitBreaker;

/// Breakers a thread keeps: a power of two.
pub(crate) const SLOTS: usize = 64;

struct Cached {
    /// The key's hash, compared before the key.
    hash: u64,
    family: u64,
    evictions: u64,
    breaker: Arc<CircuitBreaker>,
}

thread_local! {
    static CACHE: RefCell<[Option<Cached>; SLOTS]> = const { RefCell::new([const { None }; SLOTS]) };
}

/// The breaker of one keyed call, held until the call ends; it dereferences to
/// the [`CircuitBreaker`]. Dropping it gives the breaker back to the thread's
/// cache.
pub struct Lease {
    breaker: Option<Arc<CircuitBreaker>>,
    hash: u64,
    family: u64,
    evictions: u64,
    slot: usize,
}

impl std::ops::Deref for Lease {
    type Target = CircuitBreaker;

    #[inline(always)]
    fn deref(&self) -> &CircuitBreaker {
        match &self.breaker {
            Some(b) => b,
            // Taken only in `drop`.
            None => unreachable!("a lease holds its breaker until dropped"),
        }
    }
}

impl Drop for Lease {
    #[inline]
    fn drop(&mut self) {
        let Some(breaker) = self.breaker.take() else {
            return;
        };
        let cached = Cached {
            hash: self.hash,
            family: self.family,
            evictions: self.evictions,
            breaker,
        };
        // Whatever the slot held before is dropped after the borrow ends.
        let slot = self.slot;
        let _replaced = CACHE.try_with(|cache| {
            let mut cache = cache.try_borrow_mut().ok()?;
            cache[slot].replace(cached)
        });
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Lease").field(&self.breaker).finish()
    }
}

/// The hash of `key` of the family `id`, and its slot in a thread's table.
#[inline(always)]
fn slot(id: u64, key: &str) -> (u64, usize) {
    let hash = foldhash::fast::FixedState::with_seed(id).hash_one(key);
    (hash, (hash >> (64 - SLOTS.trailing_zeros())) as usize)
}

impl Family {
    /// The breaker of `key` for one call: what
    /// [`get_or_insert`](Self::get_or_insert) returns, from the thread's
    /// cache when it can be (see the `family::lease` module's source). On a
    /// key the thread used recently it changes no shared memory at all.
    #[inline]
    pub fn lease(&self, key: &str) -> Lease {
        let (hash, slot) = slot(self.id, key);
        let evictions = self.evictions.load(Ordering::Acquire);
        let hit = CACHE.try_with(|cache| {
            let mut cache = cache.try_borrow_mut().ok()?;
            let entry = &mut cache[slot];
            match entry {
                Some(c)
                    if c.hash == hash
                        && c.family == self.id
                        && c.evictions == evictions
                        && c.breaker.key() == Some(key) =>
                {
                    entry.take().map(|c| c.breaker)
                }
                _ => None,
            }
        });
        let breaker = match hit {
            Ok(Some(breaker)) => breaker,
            _ => self.get_or_insert(key),
        };
        Lease {
            breaker: Some(breaker),
            hash,
            family: self.id,
            evictions,
            slot,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, Registry};
    use std::sync::Arc;

    #[test]
    fn a_lease_is_the_keys_breaker_and_never_an_evicted_one() {
        let registry = Registry::with_env(Vec::new);
        let family = registry.family_or_insert("lease", || Config::builder().max_keys(1).build().unwrap());
        let a = family.get_or_insert("a");
        {
            let lease = family.lease("a");
            assert!(std::ptr::eq(&*lease, &*a));
        }
        // Cached now; evict `a` and create it again.
        family.get_or_insert("b");
        let a2 = family.get_or_insert("a");
        assert!(!Arc::ptr_eq(&a, &a2));
        let lease = family.lease("a");
        assert!(
            std::ptr::eq(&*lease, &*a2),
            "the cached, evicted breaker is not used"
        );
        drop(lease);
        let lease = family.lease("a");
        assert!(std::ptr::eq(&*lease, &*a2));
        // Two leases of one key at once: the second comes from the map.
        let second = family.lease("a");
        assert!(std::ptr::eq(&*second, &*a2));
    }

    #[test]
    fn families_of_two_registries_never_share_cached_breakers() {
        for _ in 0..3 {
            let registry = Registry::with_env(Vec::new);
            let family = registry.family_or_insert("same-name", Config::default);
            let mine = family.get_or_insert("k");
            drop(family.lease("k"));
            assert!(std::ptr::eq(&*family.lease("k"), &*mine));
        }
    }
}
