//! A failover chain's soonest retry: while a fallback runs, the causes made
//! inside it (by the `#[circuit_breaker]` functions it calls, the next
//! members of the chain) know how long the members before it asked callers
//! to wait, and take the smallest time left.
//!
//! The chain is carried by the fallback's future ([`InChain`]), which sets a
//! thread-local deadline for the length of each of its polls and restores
//! the one before it after: no allocation, no lock, nothing on a call that
//! runs no fallback.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use pin_project_lite::pin_project;

thread_local! {
    /// The soonest moment a member of the chain being polled takes calls
    /// again; `None` outside a fallback, or when no member gave a time.
    static SOONEST: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The smallest of `own` and the time left of the chain being polled (if
/// any); `None` when neither is known.
pub(crate) fn soonest(own: Option<Duration>) -> Option<Duration> {
    let chain = SOONEST
        .try_with(Cell::get)
        .ok()
        .flatten()
        .map(|deadline| deadline.saturating_duration_since(Instant::now()));
    match (own, chain) {
        (Some(own), Some(chain)) => Some(own.min(chain)),
        (own, chain) => own.or(chain),
    }
}

/// The moment `after` from now, or a century away for a wait that reaches
/// past what an `Instant` holds ("until reset").
fn deadline(after: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(after)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}

pin_project! {
    /// A fallback's future, run as a member of a failover chain whose
    /// soonest retry is `retry_after` from when it was made.
    #[must_use = "futures do nothing unless polled"]
    pub struct InChain<F> {
        soonest: Option<Instant>,
        #[pin]
        inner: F,
    }
}

/// `fallback`, run as a member of the chain whose soonest retry is
/// `retry_after` (already the smallest of the members so far).
pub fn in_chain<F: Future>(retry_after: Option<Duration>, fallback: F) -> InChain<F> {
    InChain {
        soonest: retry_after.map(deadline),
        inner: fallback,
    }
}

/// Puts the chain's deadline back as it was when dropped, even when the
/// fallback panics.
struct Restore(Option<Instant>);

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = SOONEST.try_with(|cell| cell.set(self.0));
    }
}

impl<F: Future> Future for InChain<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let before = SOONEST
            .try_with(|cell| cell.replace(*this.soonest))
            .ok()
            .flatten();
        let _restore = Restore(before);
        this.inner.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready<T>(f: impl Future<Output = T>) -> T {
        let mut f = std::pin::pin!(f);
        let waker = std::task::Waker::noop();
        match f.as_mut().poll(&mut Context::from_waker(waker)) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("pending"),
        }
    }

    #[test]
    fn a_cause_outside_a_chain_keeps_its_own_wait() {
        assert_eq!(soonest(None), None);
        assert_eq!(
            soonest(Some(Duration::from_secs(5))),
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn inside_a_chain_the_smallest_wait_wins_and_is_restored_after() {
        let hour = Duration::from_secs(3600);
        let inner = ready(in_chain(Some(Duration::from_secs(30)), async {
            let nested = ready(in_chain(soonest(Some(hour)), async { soonest(None) }));
            (soonest(Some(hour)), nested, soonest(Some(Duration::from_secs(1))))
        }));
        let (longer, nested, shorter) = inner;
        assert!(longer.unwrap() <= Duration::from_secs(30) && longer.unwrap() > Duration::from_secs(29));
        assert!(nested.unwrap() <= Duration::from_secs(30) && nested.unwrap() > Duration::from_secs(29));
        assert_eq!(shorter, Some(Duration::from_secs(1)));
        assert_eq!(soonest(None), None, "the chain ends with its fallback");
    }

    #[test]
    fn a_wait_until_reset_does_not_overflow() {
        let waited = ready(in_chain(Some(Duration::MAX), async { soonest(None) }));
        assert!(waited.unwrap() > Duration::from_secs(365 * 86_400));
    }
}
