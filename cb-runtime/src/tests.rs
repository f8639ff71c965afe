//! Tests that need the crate's internals.

use crate::{CircuitBreaker, Config, Window};

/// Issue target: memory per breaker stays ≤ 1 KiB with a 100-call window.
#[test]
fn a_breaker_with_a_100_call_window_fits_in_1_kib() {
    let b = CircuitBreaker::new(
        "footprint",
        Config::builder()
            .sliding_window(Window::Count(100))
            .build()
            .unwrap(),
    );
    let bytes = b.footprint();
    assert!(bytes <= 1024, "a breaker takes {bytes} bytes");
}

#[cfg(all(test, not(loom)))]
mod timing_tests {
    //! The breaker's timing on the system clock (moved out of `breaker.rs`).
    use std::time::Duration;

    use crate::error::BreakerErrorKind;
    use crate::outcome::CallEnd;
    use crate::state::{State, Ticket};
    use crate::{CircuitBreaker, Config};

    const SEC: u64 = 1_000_000_000;

    /// Slow-call timing on the system clock (the recent time): a call that
    /// started 2 s ago counts as slow, a 1 ms call does not. The 2 s call's
    /// start is its admission reading pushed back by 2 s, so the test does
    /// not wait for it.
    #[test]
    fn on_the_system_clock_a_2_s_call_is_slow_and_a_1_ms_call_is_not() {
        let config = Config::builder()
            .slow_call_duration(Duration::from_secs(1))
            .build()
            .unwrap();
        assert!(config.clock.is_system());
        let b = CircuitBreaker::new("timing-system-clock", config);

        let mut ticket = b.admit().unwrap();
        assert_ne!(ticket.start, Ticket::NO_START, "the call is timed");
        let Some(two_seconds_ago) = ticket.start.checked_sub(2 * SEC) else {
            eprintln!("skipped: the monotonic clock is younger than 2 s");
            return;
        };
        ticket.start = two_seconds_ago;
        b.finish(ticket, CallEnd::Success);
        assert_eq!(b.stats().slow_calls, 1, "a 2 s call is slow");

        let ticket = b.admit().unwrap();
        std::thread::sleep(Duration::from_millis(1));
        b.finish(ticket, CallEnd::Success);
        let s = b.stats();
        assert_eq!((s.slow_calls, s.successes), (1, 2), "a 1 ms call is not slow");
    }

    /// A tripped breaker on the system clock refuses with the time left.
    #[test]
    fn a_tripped_breaker_on_the_system_clock_refuses_with_the_time_left() {
        let config = Config::builder()
            .failure_threshold(1)
            .open_duration(Duration::from_secs(60))
            .build()
            .unwrap();
        let b = CircuitBreaker::new("timing-open-deadline", config);
        let ticket = b.admit().unwrap();
        b.finish(ticket, CallEnd::Failure);
        for _ in 0..3 {
            let refusal = b.admit().unwrap_err();
            assert_eq!(refusal.kind(), BreakerErrorKind::Open);
            let left = refusal.retry_after().unwrap();
            assert!(
                left <= Duration::from_secs(60) && left > Duration::from_secs(50),
                "{left:?}"
            );
        }
        assert_eq!(b.stats().rejected, 3);
        assert_eq!(b.state(), State::Open);
    }
}
