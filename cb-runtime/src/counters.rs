//! Exact event counters, sharded so that threads don't contend on one cache
//! line; a read sums the shards.
//!
//! Each live thread holds a process-wide slot number (given back when the
//! thread exits). The first `EXCLUSIVE` slots each own a shard outright, so
//! their owner adds with a plain load and store: no locked instruction, which
//! on x86 would also wait for every pending store to drain. Threads beyond
//! those share the last shard and add with `fetch_add`.

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

impl From<Counter> for usize {
    #[inline(always)]
    fn from(c: Counter) -> usize {
        c as usize
    }
}

/// Shards owned by one thread each.
#[cfg(not(loom))]
const EXCLUSIVE: usize = 7;
#[cfg(loom)]
const EXCLUSIVE: usize = 0;
/// The exclusive shards plus the shared one.
const SHARDS: usize = EXCLUSIVE + 1;

/// One cache line of counters (`N` of at most 8).
#[repr(align(64))]
struct Shard<const N: usize>([AtomicU64; N]);

/// A set of sharded counters: `SHARDS` cache lines, each thread writing to its
/// own (threads are spread over the shards round-robin). `N` counters, the
/// [`Counter`]s by default; a set of other counters is indexed by number.
pub(crate) struct Counters<const N: usize = COUNTERS> {
    shards: [Shard<N>; SHARDS],
}

impl<const N: usize> Counters<N> {
    pub(crate) fn new() -> Self {
        Counters {
            shards: std::array::from_fn(|_| Shard(std::array::from_fn(|_| AtomicU64::new(0)))),
        }
    }

    /// Adds one to counter `c` in this thread's shard.
    #[inline(always)]
    pub(crate) fn add(&self, c: impl Into<usize>) {
        let c = c.into();
        // One compare on the hot path: a thread without a number yet reads
        // as `UNSET`, above every exclusive slot.
        let slot = cached_slot();
        if slot < EXCLUSIVE {
            // Only this thread writes this shard: a plain read-modify-write is
            // exact, and readers see either value.
            let a = &self.shards[slot].0[c];
            a.store(a.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        } else {
            self.add_beyond_exclusive(c, slot);
        }
    }

    /// [`add`](Self::add) for a thread without an exclusive shard, or
    /// without a slot number yet.
    #[inline(never)]
    fn add_beyond_exclusive(&self, c: usize, cached: usize) {
        let slot = if cached == UNSET { slot() } else { cached };
        if slot < EXCLUSIVE {
            let a = &self.shards[slot].0[c];
            a.store(a.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        } else {
            self.shards[EXCLUSIVE].0[c].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The total of counter `c` over all shards.
    pub(crate) fn sum(&self, c: impl Into<usize>) -> u64 {
        let c = c.into();
        self.shards
            .iter()
            .map(|s| s.0[c].load(Ordering::Relaxed))
            .fold(0u64, u64::wrapping_add)
    }
}

/// Counts most breakers never make, in a box allocated on the first one, so
/// that a breaker stays small: the fallbacks that ran, by reason (sharded,
/// as they come at the rate of refusals), and the probes by how they ended
/// (plain atomics: probes are few).
pub(crate) struct RareCounts {
    /// By `FallbackReason::index`.
    pub(crate) fallbacks: Counters<{ crate::FallbackReason::ALL.len() }>,
    /// By `CallEnd::index`.
    pub(crate) probes: [AtomicU64; crate::outcome::CallEnd::ALL.len()],
    /// Calls the dependency throttled (`Stats::throttled`).
    pub(crate) throttled: AtomicU64,
    /// A keyed breaker's key, with what its family's call path checks: set
    /// when the breaker is made, so that an unkeyed breaker pays no field for it.
    pub(crate) key: Option<crate::key::KeyTag>,
    /// Tells the breaker's observers its transitions in order (here, since
    /// a breaker that never moves needs none).
    pub(crate) published: crate::transition::Publisher,
    /// The protection modes' state (the breaker's `Modes`), made when a
    /// configuration first sets a mode; unnamed here, so that the counters
    /// do not depend on the modes.
    pub(crate) modes: crate::sync::OnceBox<Box<dyn std::any::Any + Send + Sync>>,
    /// The ramp after a close (`ramp_up`).
    pub(crate) ramp: crate::ramp::Ramp,
    /// The health check's state, once one is set or the breaker is adopted.
    pub(crate) health: std::sync::OnceLock<std::sync::Arc<crate::health::Checker>>,
}

impl RareCounts {
    /// The counts of a keyed breaker, made with it.
    pub(crate) fn keyed(tag: crate::key::KeyTag) -> Box<Self> {
        let mut rare = RareCounts::new();
        rare.key = Some(tag);
        rare
    }

    pub(crate) fn new() -> Box<Self> {
        Box::new(RareCounts {
            fallbacks: Counters::new(),
            probes: std::array::from_fn(|_| AtomicU64::new(0)),
            throttled: AtomicU64::new(0),
            key: None,
            published: crate::transition::Publisher::default(),
            modes: crate::sync::OnceBox::new(),
            ramp: crate::ramp::Ramp::new(),
            health: std::sync::OnceLock::new(),
        })
    }
}

/// This thread's slot number: unique among live threads; `usize::MAX` once
/// the thread's slot has been given back (during thread exit).
///
/// The number is cached in a constant-initialised thread-local without a
/// destructor, so reading it is one thread-relative load: no "initialised
/// yet?" or "destroyed already?" check on every add. The first read takes a
/// number (and registers the thread-local that gives it back at exit).
#[cfg(not(loom))]
#[inline(always)]
fn slot() -> usize {
    let n = cached_slot();
    if n == UNSET {
        return first_slot();
    }
    n
}

#[cfg(not(loom))]
#[cold]
#[inline(never)]
fn first_slot() -> usize {
    let n = OWNER.try_with(|owner| owner.0).unwrap_or(usize::MAX);
    SLOT.with(|s| s.set(n));
    n
}

/// The cached slot number: [`UNSET`] before the thread's first add.
#[cfg(not(loom))]
#[inline(always)]
fn cached_slot() -> usize {
    SLOT.with(std::cell::Cell::get)
}

#[cfg(loom)]
#[inline]
fn slot() -> usize {
    usize::MAX
}

#[cfg(loom)]
#[inline]
fn cached_slot() -> usize {
    usize::MAX
}

/// The cached slot number before the thread's first add.
const UNSET: usize = usize::MAX - 1;

#[cfg(not(loom))]
thread_local! {
    /// This thread's slot number, [`UNSET`] until taken, `usize::MAX` once
    /// given back.
    static SLOT: std::cell::Cell<usize> = const { std::cell::Cell::new(UNSET) };
    /// Owns the number, and gives it back when the thread exits.
    static OWNER: SlotNumber = SlotNumber::take();
}

/// Slot numbers given back by exited threads, and the next never-used one.
#[cfg(not(loom))]
static FREE_SLOTS: std::sync::Mutex<(Vec<usize>, usize)> = std::sync::Mutex::new((Vec::new(), 0));

/// A thread's slot number, given back when the thread exits.
#[cfg(not(loom))]
struct SlotNumber(usize);

#[cfg(not(loom))]
impl SlotNumber {
    fn take() -> Self {
        let mut free = FREE_SLOTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Reuse the lowest free number, so exclusive shards go to live threads.
        let n = match free.0.iter().enumerate().min_by_key(|(_, n)| **n) {
            Some((i, _)) => free.0.swap_remove(i),
            None => {
                free.1 += 1;
                free.1 - 1
            }
        };
        SlotNumber(n)
    }
}

#[cfg(not(loom))]
impl Drop for SlotNumber {
    fn drop(&mut self) {
        // The mutex orders this thread's last writes to its shard before the
        // next owner's first.
        let mut free = FREE_SLOTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        free.0.push(self.0);
        // Adds made later in this thread's exit go to the shared shard.
        let _ = SLOT.try_with(|s| s.set(usize::MAX));
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn sums_are_exact_across_threads() {
        let c = Counters::<COUNTERS>::new();
        // More threads than exclusive shards: some share the last one.
        std::thread::scope(|s| {
            for _ in 0..(EXCLUSIVE + 5) {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        c.add(Counter::Success);
                        c.add(Counter::Rejected);
                    }
                });
            }
        });
        let n = (EXCLUSIVE as u64 + 5) * 10_000;
        assert_eq!(c.sum(Counter::Success), n);
        assert_eq!(c.sum(Counter::Rejected), n);
        assert_eq!(c.sum(Counter::Failure), 0);
    }

    #[test]
    fn slots_are_unique_among_live_threads_and_reused() {
        let mine = slot();
        let barrier = std::sync::Barrier::new(4);
        let slots: Vec<usize> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let n = slot();
                        barrier.wait();
                        n
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut unique = slots.clone();
        unique.push(mine);
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 5, "{slots:?} and {mine}");
        // Those threads have exited: a new thread reuses a given-back number.
        let again = std::thread::spawn(slot).join().unwrap();
        assert!(
            slots.contains(&again) || again < *slots.iter().max().unwrap(),
            "{again}"
        );
    }

    #[test]
    fn a_shard_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Shard<COUNTERS>>(), 64);
    }
}
