//! What every bench drives its calls with.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// Polls `fut` once with a no-op waker and returns its output. Every call a
/// bench measures goes through this, so the driving cost is identical for
/// all of them.
#[inline(always)]
pub fn poll_once<F: Future>(fut: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    let fut = pin!(fut);
    match fut.poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => unreachable!("a ready body wrapped by a breaker must finish at once"),
    }
}
