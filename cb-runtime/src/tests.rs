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
