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
//! A cached breaker carries its key's tag ([`KeyTag`](crate::key::KeyTag)):
//! its family, its key (and the key's bytes packed in two words),
//! and whether the key has been evicted. A call uses a cached breaker only
//! when the tag is its family's and key's and the key is still in the family
//! (otherwise it asks the map), so a call never reaches the breaker of a key
//! that was evicted and created again. For a key of up to 16 bytes the check
//! reads only the tag (never the cached key's bytes), and the hash is one
//! multiplication. The lease is two words (the breaker and its slot), so a
//! keyed call's future is hardly bigger than an unkeyed one's. A thread's table holds at most
//! [`SLOTS`] breakers, so it keeps at most that many evicted breakers alive.

use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Family;
use crate::breaker::CircuitBreaker;
use crate::key;

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
    /// The key's slot in a thread's table, so that the breaker goes back
    /// without its tag being read.
    slot: usize,
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
        if let Some(breaker) = self.breaker.take() {
            give_back(breaker, self.slot);
        }
    }
}

/// Puts a leased breaker back in the thread's table. One call, out of line,
/// so that a keyed call's `poll` stays small enough to be inlined where it
/// is awaited, as an unkeyed call's is.
#[inline(never)]
fn give_back(breaker: Arc<CircuitBreaker>, slot: usize) {
    // Whatever the slot held before is dropped after the table is left.
    let _replaced = CACHE.try_with(|cache| cache[slot].replace(Some(breaker)));
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Lease").field(&self.breaker).finish()
    }
}

/// The slot of a key's hash in a thread's table.
#[inline(always)]
pub(crate) fn slot_of(hash: u64) -> usize {
    (hash >> (64 - SLOTS.trailing_zeros())) as usize
}

impl Family {
    /// The breaker of `key` for one call: what
    /// [`get_or_insert`](Self::get_or_insert) returns, from the thread's
    /// cache when it can be (see the `family::lease` module's source). On a
    /// key the thread used recently it changes no shared memory at all.
    ///
    /// One call, out of line, so that a keyed call's `poll` stays small
    /// enough to be inlined where it is awaited, as an unkeyed call's is.
    #[inline(never)]
    pub fn lease(&self, key: &str) -> Lease {
        // A short key's copy of the path below makes no call on its way to a
        // hit, so it has fewer registers to save; the long key's copy (four
        // words up to 32 bytes, foldhash and `memcmp` beyond) stays apart.
        if key.len() > key::SHORT {
            return self.lease_long(key);
        }
        self.lease_through_cache::<false>(key)
    }

    /// [`lease`](Self::lease) of a key longer than [`key::SHORT`].
    #[cold]
    #[inline(never)]
    fn lease_long(&self, key: &str) -> Lease {
        self.lease_through_cache::<true>(key)
    }

    /// The cache's part of [`lease`](Self::lease). `LONG` only makes the two
    /// copies two types, so that each `try_with` has one caller and is
    /// inlined into it.
    #[inline(always)]
    fn lease_through_cache<const LONG: bool>(&self, key: &str) -> Lease {
        let hit = CACHE.try_with(|cache| {
            // Computed here, where they are compared, not before the closure:
            // were `try_with` not inlined, words stored to its captures as
            // two 8-byte writes and compared as one 16-byte load would stall
            // the load (no store forwarding).
            let words = key::words(key.as_bytes());
            let slot = slot_of(key::hash(self.id, key, words));
            let cell = &cache[slot];
            let Some(cached) = cell.take() else {
                return (None, slot);
            };
            match cached.key_tag() {
                Some(tag) if tag.is(self.id, key, words) && !tag.evicted.load(Ordering::Acquire) => {
                    self.touch(tag);
                    (Some(cached), slot)
                }
                _ => {
                    // The cell is empty (its breaker was just taken): there is
                    // nothing to drop, and no drop call on the way.
                    std::mem::forget(cell.replace(Some(cached)));
                    (None, slot)
                }
            }
        });
        match hit {
            Ok((Some(breaker), slot)) => Lease {
                breaker: Some(breaker),
                slot,
            },
            Ok((None, slot)) => self.lease_from_map(key, slot),
            // The thread is exiting and its table is gone. A slot only decides
            // where the breaker waits for its next call, never which breaker a
            // call gets (a call checks the tag), so any slot will do.
            Err(_) => self.lease_from_map(key, 0),
        }
    }

    /// [`lease`](Self::lease) of a key the thread's cache does not hold, in
    /// the slot `slot`.
    #[cold]
    #[inline(never)]
    fn lease_from_map(&self, key: &str, slot: usize) -> Lease {
        Lease {
            breaker: Some(self.get_or_insert(key)),
            slot,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{key, Config, Registry};
    use std::sync::Arc;

    #[test]
    fn keys_spread_over_a_threads_cache() {
        // 1,000 model names, short and long, over the 64 slots, in a few
        // families: no slot gets more than three times its share.
        for family in [0, 1, 2, 1 << 40, u64::MAX] {
            for make in [
                |i: usize| format!("model-{i:04}"),
                |i: usize| format!("{i}"),
                |i: usize| format!("tenant-{i:06}-us-east-1-prod"),
            ] {
                let mut slots = [0u32; super::SLOTS];
                for i in 0..1000 {
                    let key = make(i);
                    let h = key::hash(family, &key, key::words(key.as_bytes()));
                    slots[super::slot_of(h)] += 1;
                }
                let max = slots.iter().max().copied().unwrap_or(0);
                assert!(
                    max <= 3 * 1000 / super::SLOTS as u32,
                    "family {family}: {slots:?}"
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
    fn long_keys_are_leased_through_the_cache_and_told_apart() {
        // Two keys over 16 bytes, of one length and with the same first and
        // last 8 bytes (so equal words), in the same slot, of each length the
        // long path treats apart (in line up to 32 bytes, by `memcmp` beyond):
        // only their bytes tell them apart.
        let registry = Registry::with_env(Vec::new);
        let family = registry.family_or_insert("lease-long", Config::default);
        let slot = |k: &str| super::slot_of(key::hash(family.id, k, key::words(k.as_bytes())));
        let shapes: [fn(char) -> String; 2] = [
            |c| format!("tenant-0{c}-eu-prod"),
            |c| format!("tenant-000000000{c}-europe-west4-01"),
        ];
        for shape in shapes {
            let keys: Vec<String> = ('a'..='z').chain('A'..='Z').chain('0'..='9').map(shape).collect();
            let (a, b) = keys
                .iter()
                .enumerate()
                .find_map(|(n, a)| keys[n + 1..].iter().find(|b| slot(a) == slot(b)).map(|b| (a, b)))
                .expect("62 keys in 64 slots: two share one");
            assert_eq!(key::words(a.as_bytes()), key::words(b.as_bytes()));
            let breaker_a = family.get_or_insert(a);
            let breaker_b = family.get_or_insert(b);
            for _ in 0..3 {
                // Each lease finds the other key's breaker in the slot.
                assert!(std::ptr::eq(&*family.lease(a), &*breaker_a), "{a}");
                assert!(std::ptr::eq(&*family.lease(b), &*breaker_b), "{b}");
            }
        }
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
