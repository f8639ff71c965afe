//! Exact event counters, sharded so that threads don't contend on one cache
//! line; a read sums the shards.

use crate::sync::{AtomicU64, Ordering};

/// What a counter counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Counter {
    /// Successes that skipped the window's lock (closed, clean window). The
    /// window catches up with them the next time its lock is taken.
    FastSuccess = 0,
    /// Successes recorded under the lock (or stale, half-open, disabled).
    Success,
    /// Calls that returned an error counted as a failure, or panicked.
    Failure,
    /// Calls abandoned at `call_timeout`.
    Timeout,
    /// Calls refused without being attempted.
    Rejected,
    /// Calls slower than `slow_call_duration`, whatever their outcome.
    Slow,
    /// Errors that the classifier said not to count.
    Ignored,
    /// Calls dropped before they finished.
    Cancelled,
}

const COUNTERS: usize = 8;

#[cfg(not(loom))]
const SHARDS: usize = 4;
#[cfg(loom)]
const SHARDS: usize = 1;

/// One cache line of counters.
#[repr(align(64))]
struct Shard([AtomicU64; COUNTERS]);

/// A set of sharded counters: `SHARDS` cache lines, each thread writing to its
/// own (threads are spread over the shards round-robin).
pub(crate) struct Counters {
    shards: [Shard; SHARDS],
}

impl Counters {
    pub(crate) fn new() -> Self {
        Counters {
            shards: std::array::from_fn(|_| Shard(std::array::from_fn(|_| AtomicU64::new(0)))),
        }
    }

    /// Adds one to `c` in this thread's shard.
    #[inline]
    pub(crate) fn add(&self, c: Counter) {
        self.shards[shard_index()].0[c as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The total of `c` over all shards.
    pub(crate) fn sum(&self, c: Counter) -> u64 {
        self.shards
            .iter()
            .map(|s| s.0[c as usize].load(Ordering::Relaxed))
            .fold(0u64, u64::wrapping_add)
    }
}

#[cfg(not(loom))]
#[inline]
fn shard_index() -> usize {
    use std::cell::Cell;
    use std::sync::atomic::AtomicUsize;

    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    INDEX.with(|i| {
        let mut idx = i.get();
        if idx == usize::MAX {
            idx = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % SHARDS;
            i.set(idx);
        }
        idx
    })
}

#[cfg(loom)]
#[inline]
fn shard_index() -> usize {
    0
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn sums_are_exact_across_threads() {
        let c = Counters::new();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        c.add(Counter::Success);
                        c.add(Counter::Rejected);
                    }
                });
            }
        });
        assert_eq!(c.sum(Counter::Success), 80_000);
        assert_eq!(c.sum(Counter::Rejected), 80_000);
        assert_eq!(c.sum(Counter::Failure), 0);
    }

    #[test]
    fn a_shard_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Shard>(), 64);
    }
}
