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
//! A cached breaker carries its key's tag ([`KeyTag`]): its family, its hash,
//! its key, and whether the key has been evicted. A call uses a cached breaker
//! only when the tag is its family's and key's and the key is still in the
//! family (otherwise it asks the map), so a call never reaches the breaker of
//! a key that was evicted and created again. The lease is one pointer, so a
//! keyed call's future is hardly bigger than an unkeyed one's. A thread's
//! table holds at most [`SLOTS`] breakers, so it keeps at most that many
//! evicted breakers alive.

use std::cell::Cell;
use std::hash::BuildHasher as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Family;
use crate::breaker::CircuitBreaker;
use crate::key::KeyTag;

/// Breakers a thread keeps: a power of two.
pub(crate) const SLOTS: usize = 64;

thread_local! {
    static CACHE: [Cell<Option<Arc<CircuitBreaker>>>; SLOTS] =
        const { [const { Cell::new(None) }; SLOTS] };
}

/// The breaker of one keyed call, held until the call ends; it dereferences to
/// the [`CircuitBreaker`]. Dropping it gives the breaker back to the thread's
/// cache.
pub struct Lease {
    /// Always a keyed breaker; taken only in `drop`. `Option<Arc>` is one
    /// pointer wide.
    breaker: Option<Arc<CircuitBreaker>>,
}

impl std::ops::Deref for Lease {
    type Target = CircuitBreaker;

    #[inline(always)]
    fn deref(&self) -> &CircuitBreaker {
        match &self.breaker {
            Some(b) => b,
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
        let Some(tag) = breaker.key_tag() else {
            return;
        };
        let slot = slot_of(tag.hash);
        // Whatever the slot held before is dropped after the table is left.
        let _replaced = CACHE.try_with(|cache| cache[slot].replace(Some(breaker)));
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Lease").field(&self.breaker).finish()
    }
}

/// The hash of `key` in the family `id`: what a [`KeyTag`] holds.
#[inline(always)]
pub(crate) fn hash(id: u64, key: &str) -> u64 {
    foldhash::fast::FixedState::with_seed(id).hash_one(key)
}

/// The slot of a key's hash in a thread's table.
#[inline(always)]
fn slot_of(hash: u64) -> usize {
    (hash >> (64 - SLOTS.trailing_zeros())) as usize
}

impl Family {
    /// The breaker of `key` for one call: what
    /// [`get_or_insert`](Self::get_or_insert) returns, from the thread's
    /// cache when it can be (see the `family::lease` module's source). On a
    /// key the thread used recently it changes no shared memory at all.
    #[inline]
    pub fn lease(&self, key: &str) -> Lease {
        let hash = hash(self.id, key);
        let hit = CACHE.try_with(|cache| {
            let cell = &cache[slot_of(hash)];
            let cached = cell.take()?;
            match cached.key_tag() {
                Some(tag) if self.owns(tag, hash, key) => {
                    self.touch(tag);
                    Some(cached)
                }
                _ => {
                    cell.set(Some(cached));
                    None
                }
            }
        });
        let breaker = match hit {
            Ok(Some(breaker)) => breaker,
            _ => self.get_or_insert(key),
        };
        Lease {
            breaker: Some(breaker),
        }
    }

    /// `tag` is this family's `key`, still in the family.
    #[inline(always)]
    fn owns(&self, tag: &KeyTag, hash: u64, key: &str) -> bool {
        tag.hash == hash
            && tag.family == self.id
            && !tag.evicted.load(Ordering::Acquire)
            && same_bytes(tag.key.as_bytes(), key.as_bytes())
    }
}

/// `a == b`, inline for the short keys models and tenants have (up to 16
/// bytes: two overlapping word loads per side, no call to `memcmp`).
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| u64::from_ne_bytes(s[at..at + 8].try_into().unwrap_or([0; 8]));
    let half = |s: &[u8], at: usize| u32::from_ne_bytes(s[at..at + 4].try_into().unwrap_or([0; 4]));
    match n {
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, Registry};
    use std::sync::Arc;

    #[test]
    fn short_keys_compare_as_bytes_do() {
        let keys: Vec<String> = (0..=24)
            .flat_map(|n| {
                let base: String = "abcdefghijklmnopqrstuvwxyz"[..n].to_owned();
                (0..n.max(1)).map(move |flip| {
                    let mut k = base.clone().into_bytes();
                    if let Some(b) = k.get_mut(flip) {
                        *b = b'_';
                    }
                    String::from_utf8(k).unwrap()
                })
            })
            .chain(["".to_owned(), "a".to_owned()])
            .collect();
        for a in &keys {
            for b in &keys {
                assert_eq!(
                    super::same_bytes(a.as_bytes(), b.as_bytes()),
                    a == b,
                    "{a:?} {b:?}"
                );
            }
        }
    }

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
    fn a_key_used_only_from_the_cache_stays_recent() {
        let registry = Registry::with_env(Vec::new);
        let family =
            registry.family_or_insert("lease-lru", || Config::builder().max_keys(2).build().unwrap());
        drop(family.lease("a"));
        drop(family.lease("b"));
        // Cache hits only: "a" must count as used after "b".
        drop(family.lease("a"));
        family.get_or_insert("c");
        let mut keys = family.keys();
        keys.sort();
        assert_eq!(keys, ["a", "c"], "the least recently used key, `b`, was evicted");
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
