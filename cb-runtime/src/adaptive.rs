//! Adaptive throttling: the client-side throttling of Google's SRE book
//! ("Handling Overload"), as go-zero's default breaker and Envoy's admission
//! control filter run it.
//!
//! With `trip = "adaptive"` the breaker never opens. Over the sliding window
//! it counts `requests` (the calls asked for that have been decided: the
//! calls that ended and the calls it refused) and `accepts` (the calls that
//! succeeded, and errors the classifier ignored: not the dependency's
//! fault), and refuses each new call with probability
//!
//! ```text
//! max(0, (requests - k * accepts) / (requests + 1))
//! ```
//!
//! with `k = adaptive_k` (> 1, default 2). While at least one call in `k`
//! succeeds it refuses nothing; past that it refuses a share that grows
//! smoothly with the failures, instead of flapping between refusing
//! everyone and no one. The calls it still lets through keep measuring the
//! dependency, so the share falls again as soon as they succeed. A refused
//! call counts as a request without an accept, as in the book.
//!
//! Failures, timeouts and throttled answers are requests without an accept;
//! a cancelled call is neither. One draw from a per-breaker random source
//! per decided call, under a lock of its own (never held across a call).

use crate::config::Window;
use crate::outcome::CallEnd;
use crate::sync::{lock, AtomicU64, Mutex, Ordering};
use crate::window::SlidingWindow;

/// The probability of refusing the next call, given the window's
/// `requests` and `accepts`: `max(0, (requests - k * accepts) / (requests + 1))`.
pub(crate) fn refusal_probability(requests: u64, accepts: u64, k: f64) -> f64 {
    let requests = requests as f64;
    ((requests - k * accepts as f64) / (requests + 1.0)).max(0.0)
}

/// One adaptive breaker's window and random source.
#[derive(Debug)]
pub(crate) struct Adaptive {
    /// `adaptive_k`, as the bits of an `f64`.
    k: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    kind: Window,
    /// Each request is a call: an accept is a success, anything else a
    /// failure (so `requests - accepts` is the window's failures).
    window: SlidingWindow,
    random: fastrand::Rng,
}

impl Adaptive {
    pub(crate) fn new(window: Window, k: f64) -> Self {
        Adaptive {
            k: AtomicU64::new(k.to_bits()),
            inner: Mutex::new(Inner {
                kind: window,
                window: SlidingWindow::new(window),
                random: fastrand::Rng::new(),
            }),
        }
    }

    /// Takes a new `k` and window (a new window starts empty).
    pub(crate) fn configure(&self, window: Window, k: f64) {
        self.k.store(k.to_bits(), Ordering::Release);
        let mut inner = lock(&self.inner);
        if inner.kind != window {
            inner.kind = window;
            inner.window = SlidingWindow::new(window);
        }
    }

    /// Empties the window (a reset of the breaker).
    pub(crate) fn clear(&self) {
        lock(&self.inner).window.clear();
    }

    /// Draws from `seed` from now on: a test's repeatable sequence.
    #[cfg(test)]
    pub(crate) fn seed(&self, seed: u64) {
        lock(&self.inner).random = fastrand::Rng::with_seed(seed);
    }

    fn k(&self) -> f64 {
        f64::from_bits(self.k.load(Ordering::Acquire))
    }

    /// Decides one call at `now` (nanoseconds, read by a time window only):
    /// `None` to let it through, or `Some(probability)` for a refusal, which
    /// is recorded as a request without an accept.
    pub(crate) fn decide(&self, now: u64) -> Option<f64> {
        let k = self.k();
        let mut inner = lock(&self.inner);
        let tally = inner.window.tally(now);
        let p = refusal_probability(tally.calls, tally.calls - tally.failures, k);
        // No draw while nothing is refused: the sequence of draws follows
        // the refusals only.
        if p > 0.0 && inner.random.f64() < p {
            inner.window.record(now, true, false);
            return Some(p);
        }
        None
    }

    /// Records how a call it let through ended.
    pub(crate) fn record(&self, now: u64, end: CallEnd) {
        let accepted = match end {
            CallEnd::Success | CallEnd::Ignored => true,
            CallEnd::Failure | CallEnd::Timeout | CallEnd::Throttled => false,
            CallEnd::Cancelled => return,
        };
        lock(&self.inner).window.record(now, !accepted, false);
    }

    /// The probability of refusing the next call, now.
    pub(crate) fn share(&self, now: u64) -> f64 {
        let k = self.k();
        let tally = lock(&self.inner).window.tally(now);
        refusal_probability(tally.calls, tally.calls - tally.failures, k)
    }

    /// The window's `(requests, accepts)` now.
    #[cfg(test)]
    pub(crate) fn counts(&self, now: u64) -> (u64, u64) {
        let tally = lock(&self.inner).window.tally(now);
        (tally.calls, tally.calls - tally.failures)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_formula() {
        assert_eq!(refusal_probability(0, 0, 2.0), 0.0);
        assert_eq!(refusal_probability(100, 100, 2.0), 0.0);
        assert_eq!(refusal_probability(100, 50, 2.0), 0.0);
        assert_eq!(refusal_probability(99, 0, 2.0), 0.99);
        assert_eq!(refusal_probability(99, 20, 2.0), 59.0 / 100.0);
        assert_eq!(refusal_probability(99, 20, 1.5), 69.0 / 100.0);
    }

    /// With no failure in the window, nothing is refused, whatever `k`.
    #[test]
    fn with_no_failures_it_refuses_nothing() {
        let a = Adaptive::new(Window::Count(100), 1.01);
        for _ in 0..10_000 {
            assert_eq!(a.decide(0), None);
            a.record(0, CallEnd::Success);
        }
        assert_eq!(a.share(0), 0.0);
    }

    /// Over a long run on a dependency failing a share `f` of calls, the
    /// refusals match the formula: their count is the sum of the
    /// probabilities each decision was made with (a martingale), within four
    /// standard deviations, and each decision's probability is the formula's
    /// value for the window's counts just before it.
    #[test]
    fn over_long_runs_the_refusal_share_follows_the_formula() {
        for (f, k) in [
            (0.1, 2.0),
            (0.3, 2.0),
            (0.3, 1.2),
            (0.55, 2.0),
            (0.7, 2.0),
            (0.9, 1.5),
            (1.0, 2.0),
        ] {
            let a = Adaptive::new(Window::Count(200), k);
            a.seed(7);
            let mut dependency = fastrand::Rng::with_seed(11);
            let (mut refused, mut expected, mut variance) = (0u64, 0.0f64, 0.0f64);
            let calls = 200_000;
            for _ in 0..calls {
                let (requests, accepts) = a.counts(0);
                let p = refusal_probability(requests, accepts, k);
                match a.decide(0) {
                    Some(q) => {
                        assert_eq!(q, p);
                        refused += 1;
                    }
                    None => a.record(
                        0,
                        if dependency.f64() < f {
                            CallEnd::Failure
                        } else {
                            CallEnd::Success
                        },
                    ),
                }
                expected += p;
                variance += p * (1.0 - p);
            }
            let gap = (refused as f64 - expected).abs();
            assert!(
                gap <= 4.0 * variance.sqrt() + 1.0,
                "f = {f}, k = {k}: {refused} refused, the formula expects {expected:.0} (sd {:.0})",
                variance.sqrt()
            );
            let share = refused as f64 / f64::from(calls);
            if k * (1.0 - f) >= 1.2 {
                // More than one call in k succeeds: next to nothing refused.
                assert!(share < 0.01, "f = {f}, k = {k}: {share}");
            }
            if k * (1.0 - f) < 1.0 {
                // Fewer than one call in k succeeds: most calls are refused.
                assert!(share > 0.5, "f = {f}, k = {k}: {share}");
            }
        }
    }

    #[test]
    fn a_new_window_starts_empty_and_a_cancelled_call_is_no_request() {
        let a = Adaptive::new(Window::Count(10), 2.0);
        for _ in 0..10 {
            a.record(0, CallEnd::Failure);
        }
        a.record(0, CallEnd::Cancelled);
        assert_eq!(a.counts(0), (10, 0));
        assert_eq!(a.share(0), 10.0 / 11.0);
        a.configure(Window::Count(10), 3.0);
        assert_eq!(a.counts(0), (10, 0), "the same window keeps its calls");
        a.configure(Window::Count(20), 3.0);
        assert_eq!(a.counts(0), (0, 0));
        a.record(0, CallEnd::Ignored);
        a.record(0, CallEnd::Throttled);
        assert_eq!(a.counts(0), (2, 1));
    }
}
