//! Memory stays flat (pitfall 9): recloser leaks one allocation per
//! transition; a breaker here allocates nothing after it is built, however
//! many transitions it goes through.
//!
//! This file has a counting global allocator of its own, so it is a test
//! binary of its own. It counts per thread: what the test harness's own
//! threads allocate meanwhile (its "running for over 60 seconds" notice on a
//! loaded machine, say) is not the breaker's.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Waker};
use std::time::Duration;

use cb_runtime::clock::ManualClock;
use cb_runtime::{CircuitBreaker, Config, State, Window};

struct Counting;

thread_local! {
    /// Bytes allocated and not yet freed by this thread.
    static LIVE_BYTES: Cell<i64> = const { Cell::new(0) };
}

/// Adds `n` to this thread's live bytes. A `const` thread-local without a
/// destructor never allocates, so the allocator may use it; during thread
/// teardown, when it is gone, nothing is counted.
fn count(n: i64) {
    let _ = LIVE_BYTES.try_with(|live| live.set(live.get() + n));
}

fn live_bytes() -> i64 {
    LIVE_BYTES.with(Cell::get)
}

// SAFETY: every method forwards to the system allocator unchanged and only
// adds bookkeeping on a thread-local counter.
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

fn poll_once<F: Future>(fut: F) {
    let mut cx = Context::from_waker(Waker::noop());
    let _ = pin!(fut).poll(&mut cx);
}

/// Pitfall 9: memory grows with per-call records or retired states that are
/// never freed. 10^6 transitions (closed → open → half-open → closed, over
/// and over), plus 10^6 calls, leave the live heap exactly where it was.
#[test]
fn pitfall_09_memory_is_flat_over_a_million_transitions() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::new(
        "memory",
        Config::builder()
            .clock(clock.clock())
            .failure_threshold(1)
            .sliding_window(Window::Count(100))
            .open_duration(Duration::from_secs(1))
            .build()
            .unwrap(),
    );
    let cycle = || {
        poll_once(b.call(async { Err::<(), _>(()) })); // closed -> open
        clock.advance(Duration::from_secs(1));
        poll_once(b.call(async { Ok::<_, ()>(()) })); // open -> half-open -> closed
    };
    // Warm up: thread-locals, the name interner, lazily built statics.
    for _ in 0..1_000 {
        cycle();
    }
    let before = live_bytes();
    for _ in 0..333_334 {
        cycle();
    }
    let after = live_bytes();
    assert_eq!(b.state(), State::Closed);
    let s = b.stats();
    assert_eq!(s.failures, 334_334);
    assert_eq!(s.successes, 334_334);
    assert_eq!(
        after - before,
        0,
        "the live heap grew by {} bytes",
        after - before
    );
}
