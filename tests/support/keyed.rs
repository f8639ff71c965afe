//! What the keyed-breaker tests share: a call driven to its end in one
//! poll, failures to open a key, and a family's configuration on a manual
//! clock.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use cb_runtime::clock::ManualClock;
use cb_runtime::{CircuitBreaker, Config};

/// The output of `fut`, which must finish on its first poll.
pub fn ready<F: Future>(fut: F) -> F::Output {
    match pin!(fut).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the call did not finish on its first poll"),
    }
}

/// `times` failed calls through `b`.
pub fn fail<B: AsRef<CircuitBreaker>>(b: B, times: usize) {
    for _ in 0..times {
        let _ = ready(b.as_ref().call(async { Err::<(), _>("down") }));
    }
}

/// Two consecutive failures open a key for 30 s of `clock`.
pub fn config(clock: &ManualClock) -> Config {
    Config::builder()
        .clock(clock.clock())
        .failure_threshold(2)
        .open_duration(Duration::from_secs(30))
        .build()
        .unwrap()
}
