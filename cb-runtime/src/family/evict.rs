//! What a full family does: which key it evicts for a new one, and how it
//! serves a new key when it may evict none.
//!
//! A key may be evicted when its breaker holds nothing worth keeping: it is
//! closed, or half-open (its open period is over) with no probe in flight.
//! The least recently used such key goes. An open key is never evicted: a
//! flood of new keys cannot erase the open state of a real model, and its
//! callers are refused until its period ends.
//!
//! When every key is worth keeping, a new key is served *unguarded*: its call
//! gets a breaker of its own made for that call alone, outside the family's
//! map, so the family's memory stays bounded by `max_keys` and no key shares
//! a breaker with another. Such calls are counted ([`UnguardedCalls`]).
//!
//! Finding a key to evict reads every key's state, so a family full of open
//! keys remembers that it found none: it looks again only once a key has
//! closed or half-opened since, once the earliest open period has ended, or
//! a second later, whichever comes first. A flood of new keys into a full
//! family then costs one lock and one count per call, not a pass over the
//! keys.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use super::Family;
use crate::breaker::CircuitBreaker;
use crate::key::KeyTag;

/// The longest a family trusts that it has no key to evict, in nanoseconds
/// of its clock: a half-open key whose probe ended without moving the state
/// says nothing.
const RESCAN_NANOS: u64 = 1_000_000_000;

/// The last search for a key to evict that found none.
#[derive(Debug, Default)]
pub(super) struct Scan {
    /// The family's `settled` count then.
    settled: u64,
    /// The clock reading before which the search is not made again.
    not_before: u64,
}

/// Why a call was served unguarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Why {
    /// The family holds `max_keys` keys and none may be evicted.
    Full = 0,
    /// The key breaks the name rule.
    BadKey = 1,
}

/// Calls a family served unguarded, each with a breaker made for that call
/// alone ([`Family::unguarded_calls`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnguardedCalls {
    /// The family held `max_keys` keys, none of which could be evicted (each
    /// open, forced open, disabled or probing).
    pub full: u64,
    /// The key broke the name rule ([`cb_syntax::check_name`]).
    pub bad_key: u64,
}

impl UnguardedCalls {
    /// Both counts together.
    pub fn total(&self) -> u64 {
        self.full + self.bad_key
    }
}

impl Family {
    /// Keys evicted from the family, in all.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Calls served unguarded, by why; see the [module documentation](super).
    pub fn unguarded_calls(&self) -> UnguardedCalls {
        UnguardedCalls {
            full: self.unguarded[Why::Full as usize].load(Ordering::Relaxed),
            bad_key: self.unguarded[Why::BadKey as usize].load(Ordering::Relaxed),
        }
    }

    /// A breaker for one call of `key`, outside the family's map, counted.
    pub(super) fn unguarded(&self, key: &str, why: Why) -> Arc<CircuitBreaker> {
        let n = self.unguarded[why as usize].fetch_add(1, Ordering::Relaxed) + 1;
        // A key that breaks the name rule is shown repaired: it may hold
        // control characters.
        let shown = crate::name::repaired(key);
        if why == Why::Full && n == 1 {
            tracing::warn!(
                target: "cb_runtime",
                breaker = self.name,
                key = &*shown,
                max_keys = self.config().max_keys(),
                "circuit breaker family `{}` is full of keys it may not forget (open or probing); \
                 new keys are served unguarded until one can be evicted (warned once per family; \
                 the count is in the admin API and `circuit_breaker_family_unguarded_calls_total`)",
                self.name
            );
        }
        tracing::debug!(
            target: "cb_runtime",
            breaker = self.name,
            key = &*shown,
            why = ?why,
            "circuit breaker family `{}`: key `{shown}` served unguarded",
            self.name
        );
        let config = self.config();
        let tag = KeyTag::new(Arc::from(&*shown), self.id, 0).detached();
        let breaker = Arc::new(CircuitBreaker::keyed(self.name, tag, config));
        self.impose(&breaker);
        breaker
    }

    /// Evicts keys, least recently used first, until the family holds at
    /// most `max_keys`: a lowered `max_keys` applies at once, not only as
    /// new keys arrive. Keys worth keeping stay until they are not.
    pub(super) fn trim(&self) {
        let max = self.config().max_keys() as usize;
        let mut evicted = Vec::new();
        {
            let mut scan = self.create.lock().unwrap_or_else(PoisonError::into_inner);
            while self.len() > max {
                match self.evict_one(&mut scan) {
                    Some(gone) => evicted.push(gone),
                    None => break,
                }
            }
        }
        self.detach(&evicted);
    }

    /// Removes the least recently used key that holds nothing worth keeping;
    /// `None` when there is none. Call with `create` held (`scan` is its).
    pub(super) fn evict_one(&self, scan: &mut Scan) -> Option<Arc<CircuitBreaker>> {
        let settled = self.settled.load(Ordering::Acquire);
        let now = self.clock_now();
        if scan.settled == settled && now < scan.not_before {
            return None;
        }
        let keys = self.keys.pin();
        let mut victim: Option<(&Arc<str>, &KeyTag, u64)> = None;
        let mut soonest = now.saturating_add(RESCAN_NANOS);
        for (key, entry) in keys.iter() {
            match entry.breaker.eviction_check() {
                Ok(()) => {
                    let tag = entry.tag();
                    let used = tag.last_used.load(Ordering::Relaxed);
                    if victim.is_none_or(|(_, _, best)| used < best) {
                        victim = Some((key, tag, used));
                    }
                }
                Err(Some(open_until)) => soonest = soonest.min(open_until),
                Err(None) => {}
            }
        }
        let Some((victim, tag, _)) = victim else {
            *scan = Scan {
                settled,
                not_before: soonest,
            };
            return None;
        };
        let victim = Arc::clone(victim);
        // Before the key leaves the map: no thread uses its cached breaker
        // for a call that starts after the key is gone.
        tag.evicted.store(true, Ordering::Release);
        let removed = keys.remove(&victim).map(|e| Arc::clone(&e.breaker));
        if let Some(breaker) = &removed {
            self.len.fetch_sub(1, Ordering::AcqRel);
            self.evictions.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                target: "cb_runtime",
                breaker = self.name,
                key = &*victim,
                state = %breaker.state(),
                "circuit breaker family `{}` evicted key `{victim}` (least recently used; max_keys reached)",
                self.name
            );
        }
        removed
    }
}
