//! Keyed breakers allocate nothing on the call path and stay bounded:
//!
//! - a call on an existing key, in a family of 1,000 keys, through the
//!   attribute and through `Family::get_or_insert`, allocates nothing;
//! - 1,000,000 distinct keys through one family leave at most `max_keys`
//!   breakers alive, a live heap that does not grow with the keys, and no
//!   metric series of an evicted key;
//! - a keyed call's future is an unkeyed call's and two words (the key's
//!   breaker, leased for the call, and its slot in the thread's cache):
//!   neither the admission's result nor a `&str` key parameter is kept
//!   across the body's `.await`.
//!
//! This file has a counting global allocator of its own, so it is a test
//! binary of its own. It counts per thread, like `tests/memory.rs`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use cb_runtime::{circuit_breaker, BreakerError, Config, Registry};

struct Counting;

thread_local! {
    /// Bytes allocated and not yet freed by this thread.
    static LIVE_BYTES: Cell<i64> = const { Cell::new(0) };
    /// Allocations made by this thread.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count(n: i64) {
    let _ = LIVE_BYTES.try_with(|live| live.set(live.get() + n));
    if n > 0 {
        let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
    }
}

fn live_bytes() -> i64 {
    LIVE_BYTES.with(Cell::get)
}

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: every method forwards to the system allocator unchanged and only
// adds bookkeeping on thread-local counters.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as i64);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as i64));
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn ready<F: Future>(fut: F) -> F::Output {
    match pin!(fut).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the call did not finish on its first poll"),
    }
}

#[derive(Debug)]
struct Error;

impl From<BreakerError> for Error {
    fn from(_: BreakerError) -> Self {
        Error
    }
}

#[circuit_breaker(name = "keyed-alloc", key = model, max_keys = 1000)]
async fn complete(model: &str) -> Result<u32, Error> {
    Ok(model.len() as u32)
}

#[circuit_breaker(name = "keyed-alloc-unkeyed")]
async fn complete_unkeyed(model: &str) -> Result<u32, Error> {
    Ok(model.len() as u32)
}

#[test]
fn a_keyed_calls_future_is_an_unkeyed_ones_and_a_lease() {
    let keyed = std::mem::size_of_val(&complete("gpt-4o"));
    let unkeyed = std::mem::size_of_val(&complete_unkeyed("gpt-4o"));
    assert!(
        keyed <= unkeyed + 2 * std::mem::size_of::<usize>(),
        "keyed {keyed} bytes, unkeyed {unkeyed} bytes"
    );
    // The body's future with its permit, and the argument: 112 bytes with rustc 1.95. The
    // admission's `Result` kept beside them would make it 144.
    assert!(unkeyed < 144, "unkeyed {unkeyed} bytes");
}

#[test]
fn a_keyed_call_on_an_existing_key_allocates_nothing() {
    let keys: Vec<String> = (0..1000).map(|i| format!("model-{i}")).collect();
    for key in &keys {
        ready(complete(key)).unwrap();
    }
    let family = cb_runtime::registry().family("keyed-alloc").unwrap();
    assert_eq!(family.len(), 1000);
    // Warm: thread-locals of the map's guards.
    for key in keys.iter().cycle().take(10_000) {
        ready(complete(key)).unwrap();
    }
    let before = allocations();
    for key in keys.iter().cycle().take(100_000) {
        ready(complete(key)).unwrap();
    }
    for key in keys.iter().take(1000) {
        ready(family.get_or_insert(key).call(async { Ok::<_, ()>(()) })).unwrap();
    }
    assert_eq!(
        allocations() - before,
        0,
        "a keyed call on an existing key allocated"
    );
    assert_eq!(family.len(), 1000, "no key was evicted or created");
}

#[test]
fn a_million_distinct_keys_leave_memory_bounded_and_no_series_behind() {
    let registry: &'static Registry = Box::leak(Box::new(Registry::with_env(Vec::new)));
    let family = registry.family_or_insert("million", || Config::builder().max_keys(100).build().unwrap());
    let collector = cb_runtime::metrics::BreakerCollector::new(registry);
    let series = || {
        let text = cb_runtime::metrics::encode(&prometheus::core::Collector::collect(&collector));
        text.lines()
            .filter(|l| l.starts_with("circuit_breaker_state{"))
            .count()
    };
    let mut key = String::new();
    let mut run = |range: std::ops::Range<u32>| {
        for i in range {
            key.clear();
            use std::fmt::Write as _;
            let _ = write!(key, "tenant-{i}");
            ready(family.get_or_insert(&key).call(async { Ok::<_, ()>(()) })).unwrap();
        }
    };
    run(0..20_000);
    let before = live_bytes();
    run(20_000..1_000_000);
    let after = live_bytes();
    assert_eq!(family.len(), 100);
    assert_eq!(
        family.unguarded_calls().total(),
        0,
        "closed keys are always evictable"
    );
    assert_eq!(family.evictions(), 1_000_000 - 100);
    assert_eq!(series(), 100, "one state series per key held");
    let keys = family.keys();
    assert!(
        keys.iter().all(|k| k.starts_with("tenant-99")),
        "the most recent keys stay: {keys:?}"
    );
    // The map frees evicted entries in batches, so the live heap moves by a
    // batch either way; it must not grow with the 980,000 keys.
    let grown = after - before;
    assert!(
        grown < 2 * 1024 * 1024,
        "the live heap grew by {grown} bytes over 980,000 keys"
    );
}

/// A flood of junk keys that all fail: memory stays bounded, the open state
/// of a real model is never forgotten, and healthy keys are still served.
/// Once every key the family holds is open, a new key is served unguarded
/// (counted) rather than making room by forgetting an open key.
#[test]
fn a_million_failing_keys_leave_memory_bounded_and_forget_no_open_key() {
    let clock = cb_runtime::clock::ManualClock::new();
    let registry: &'static Registry = Box::leak(Box::new(Registry::with_env(Vec::new)));
    let family = registry.family_or_insert("attacked", || {
        Config::builder()
            .clock(clock.clock())
            .failure_threshold(1)
            .open_duration(std::time::Duration::from_secs(60))
            .max_keys(100)
            .build()
            .unwrap()
    });
    let fail = |key: &str| {
        let _ = ready(family.lease(key).call(async { Err::<(), _>("junk") }));
    };
    let served = |key: &str| ready(family.lease(key).call(async { Ok::<_, &str>(()) })).is_ok();
    fail("gpt-4o");
    assert!(served("gpt-4o-mini"));
    let mut key = String::new();
    let mut flood = |range: std::ops::Range<u32>| {
        for i in range {
            key.clear();
            use std::fmt::Write as _;
            let _ = write!(key, "junk-{i}");
            fail(&key);
        }
    };
    flood(0..20_000);
    let before = live_bytes();
    flood(20_000..1_000_000);
    let after = live_bytes();
    assert_eq!(family.len(), 100);
    assert!(
        family.unguarded_calls().full >= 1_000_000 - 100,
        "{:?}",
        family.unguarded_calls()
    );
    // The real model's open state survived the flood: refused until its
    // period ends.
    let refused = ready(family.lease("gpt-4o").call(async { Ok::<_, &str>(()) })).unwrap_err();
    assert!(refused.is_rejected());
    assert_eq!(refused.breaker_error().unwrap().key(), Some("gpt-4o"));
    // A healthy key is served, and so is a new healthy tenant.
    assert!(served("gpt-4o-mini"));
    assert!(served("tenant-new"));
    let grown = after - before;
    println!(
        "1,000,000 failing keys: {} keys held, {} calls unguarded, live heap {} bytes over the last 980,000 keys",
        family.len(),
        family.unguarded_calls().full,
        grown
    );
    assert!(
        grown < 2 * 1024 * 1024,
        "the live heap grew by {grown} bytes over 980,000 keys"
    );
    // After the period, the flood's keys hold nothing worth keeping: room
    // again for a new key of its own.
    clock.advance(std::time::Duration::from_secs(60));
    assert!(served("tenant-after"));
    assert!(family.get("tenant-after").is_some());
}
