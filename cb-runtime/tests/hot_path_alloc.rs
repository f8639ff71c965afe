//! Nothing is allocated per call: a closed success, a rejection while open
//! (tripped and forced) and a successful call through a breaker with the
//! `llm` preset (slow-call timing on the system clock, whose upkeep thread
//! starts on the first reading) allocate nothing once warmed up.
//!
//! This file has a counting global allocator of its own, so it is a test
//! binary of its own. It counts only the allocations of the thread that makes
//! the calls, while it measures: the clock's upkeep thread, which the first
//! timed reading starts, allocates as it starts up, once, on its own thread.

#![cfg(not(loom))]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use cb_runtime::{CircuitBreaker, Config, Preset, State};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set on the measuring thread while it measures. Constant-initialised
    /// and without a destructor, so reading it never allocates.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if COUNTING.with(Cell::get) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to the system allocator unchanged and only
// counts on an atomic.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn poll_once<F: Future>(fut: F) -> F::Output {
    match pin!(fut).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("a ready body must finish at once"),
    }
}

/// Allocations made on this thread by `n` runs of `f`, after 1,000 runs to
/// warm up.
fn allocations(n: u32, f: impl Fn()) -> u64 {
    for _ in 0..1_000 {
        f();
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    for _ in 0..n {
        f();
    }
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

#[test]
fn no_call_allocates_closed_open_or_forced_with_and_without_the_llm_preset() {
    let n = 100_000;
    for config in [Config::default(), Preset::Llm.config()] {
        let timed = config.slow_call_duration().is_some();
        let b = CircuitBreaker::new("alloc", config);
        let ok = || assert_eq!(poll_once(b.call(async { Ok::<_, ()>(1) })), Ok(1));
        assert_eq!(allocations(n, ok), 0, "closed successes (timed: {timed})");

        // Trip it with real failures.
        while b.state() == State::Closed {
            let _ = poll_once(b.call(async { Err::<u32, _>(()) }));
        }
        assert_eq!(b.state(), State::Open);
        let refused = || {
            let r = poll_once(b.call(async { Ok::<_, ()>(1) }));
            assert!(r.unwrap_err().is_rejected());
        };
        assert_eq!(
            allocations(n, refused),
            0,
            "rejections while open (timed: {timed})"
        );

        b.force_open();
        assert_eq!(
            allocations(n, refused),
            0,
            "rejections while forced open (timed: {timed})"
        );
    }
}
