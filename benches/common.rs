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

/// Polls `fut` once as an executor polls a task: through a `dyn Future`
/// and a call that is not inlined, so the future's `poll` is never folded
/// into the bench loop (tokio polls a task through its vtable). Nothing is
/// allocated: the future stays on the caller's stack. This function itself
/// is always inlined, so that the future is made where it is pinned for
/// every future alike: an executor moves a task's future once, when it is
/// spawned, not on every poll, and whether LLVM inlined a copy here would
/// otherwise depend on the future's size.
#[allow(dead_code)] // not every bench measures both ways
#[inline(always)]
pub fn poll_as_task<F: Future>(fut: F) -> F::Output {
    let fut: std::pin::Pin<&mut dyn Future<Output = F::Output>> = pin!(fut);
    poll_dyn(fut)
}

#[inline(never)]
fn poll_dyn<T>(fut: std::pin::Pin<&mut dyn Future<Output = T>>) -> T {
    let mut cx = Context::from_waker(Waker::noop());
    match fut.poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => unreachable!("a ready body wrapped by a breaker must finish at once"),
    }
}
