//! The system clock's upkeep thread (`cb-clock`) starts only when a breaker
//! first needs the time: never for closed calls through a breaker without
//! slow-call timing, and on the first timed call otherwise.
//!
//! A test binary of its own, with a single test, so that no other test
//! starts the thread first.

#![cfg(all(target_os = "linux", not(loom)))]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use cb_runtime::{CircuitBreaker, Config, Preset};

fn poll_once<F: Future>(fut: F) -> F::Output {
    match pin!(fut).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("a ready body must finish at once"),
    }
}

/// Whether this process has a thread named `cb-clock`.
fn upkeep_thread_runs() -> bool {
    std::fs::read_dir("/proc/self/task")
        .expect("procfs")
        .filter_map(Result::ok)
        .any(|task| {
            std::fs::read_to_string(task.path().join("comm")).is_ok_and(|name| name.trim() == "cb-clock")
        })
}

#[test]
fn the_upkeep_thread_starts_with_the_first_timed_call_only() {
    let plain = CircuitBreaker::new("untimed", Config::default());
    for _ in 0..1_000 {
        assert_eq!(poll_once(plain.call(async { Ok::<_, ()>(1) })), Ok(1));
    }
    assert!(!upkeep_thread_runs(), "closed calls without timing need no clock");

    let timed = CircuitBreaker::new("timed", Preset::Llm.config());
    assert_eq!(poll_once(timed.call(async { Ok::<_, ()>(1) })), Ok(1));
    // The new thread names itself once it runs: give it up to 200 ms.
    let named = (0..200).any(|_| {
        upkeep_thread_runs() || {
            std::thread::sleep(std::time::Duration::from_millis(1));
            false
        }
    });
    assert!(named, "a timed call starts the upkeep thread");
    assert_eq!(timed.stats().slow_calls, 0);
}
