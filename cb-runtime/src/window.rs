//! Sliding windows of call outcomes: the exact last-N-calls ring and the
//! bucketed time window.
//!
//! Both live behind the breaker's lock; the lock-free success path never
//! touches them (see [`CircuitBreaker`](crate::CircuitBreaker)).

use crate::config::Window;

/// What a window holds right now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

/// The sliding window: the outcomes of the last N calls, or of the calls
/// of the last period.
#[derive(Debug)]
pub(crate) enum SlidingWindow {
    Count(CountWindow),
    Time(TimeWindow),
}

impl SlidingWindow {
    pub(crate) fn new(window: Window) -> Self {
        match window {
            Window::Count(n) => SlidingWindow::Count(CountWindow::new(n)),
            Window::Time(d) => SlidingWindow::Time(TimeWindow::new(crate::clock::duration_nanos(d))),
        }
    }

    /// Records one outcome at `now` (nanoseconds; only a time window reads it).
    pub(crate) fn record(&mut self, now: u64, failure: bool, slow: bool) {
        match self {
            SlidingWindow::Count(w) => w.push(failure, slow),
            SlidingWindow::Time(w) => w.record(now, 1, u64::from(failure), u64::from(slow)),
        }
    }

    /// Records `n` fast, successful calls at `now`.
    pub(crate) fn record_successes(&mut self, now: u64, n: u64) {
        match self {
            SlidingWindow::Count(w) => w.push_successes(n),
            SlidingWindow::Time(w) => w.record(now, n, 0, 0),
        }
    }

    pub(crate) fn tally(&self, now: u64) -> Tally {
        match self {
            SlidingWindow::Count(w) => w.tally(),
            SlidingWindow::Time(w) => w.tally(now),
        }
    }

    /// Whether a success may skip the lock: only a count window with no
    /// failure and no slow call in it. A time window must see every call.
    pub(crate) fn is_clean(&self) -> bool {
        match self {
            SlidingWindow::Count(w) => w.failures == 0 && w.slow == 0,
            SlidingWindow::Time(_) => false,
        }
    }

    pub(crate) fn clear(&mut self) {
        match self {
            SlidingWindow::Count(w) => w.clear(),
            SlidingWindow::Time(w) => w.clear(),
        }
    }

    /// Heap bytes held, for the memory budget test.
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            SlidingWindow::Count(w) => w.bits.len() * 8,
            SlidingWindow::Time(w) => std::mem::size_of_val(&*w.buckets),
        }
    }
}

/// The last `size` calls, exactly: a ring of failure bits and slow bits.
#[derive(Debug)]
pub(crate) struct CountWindow {
    /// The failure bits, then as many words of slow bits: one allocation,
    /// one pointer (so that a breaker stays within 1 KiB).
    bits: Box<[u64]>,
    size: u32,
    /// The slot the next call goes in.
    head: u32,
    /// Calls in the window, up to `size`.
    len: u32,
    failures: u32,
    slow: u32,
}

impl CountWindow {
    fn new(size: u32) -> Self {
        let words = size.div_ceil(64) as usize;
        CountWindow {
            bits: vec![0; 2 * words].into_boxed_slice(),
            size,
            head: 0,
            len: 0,
            failures: 0,
            slow: 0,
        }
    }

    fn push(&mut self, failure: bool, slow: bool) {
        let (word, bit) = ((self.head / 64) as usize, 1u64 << (self.head % 64));
        let slow_word = word + self.bits.len() / 2;
        // The slot's old call leaves the window as the new one enters it.
        if self.len == self.size {
            self.failures -= u32::from(self.bits[word] & bit != 0);
            self.slow -= u32::from(self.bits[slow_word] & bit != 0);
        } else {
            self.len += 1;
        }
        set_bit(&mut self.bits[word], bit, failure);
        set_bit(&mut self.bits[slow_word], bit, slow);
        self.failures += u32::from(failure);
        self.slow += u32::from(slow);
        self.head = if self.head + 1 == self.size {
            0
        } else {
            self.head + 1
        };
    }

    fn push_successes(&mut self, n: u64) {
        if self.failures == 0 && self.slow == 0 {
            // Every bit is already clear: only the length and head move.
            let n = n.min(u64::from(self.size)) as u32;
            self.len = (self.len + n).min(self.size);
            self.head = ((u64::from(self.head) + u64::from(n)) % u64::from(self.size)) as u32;
        } else if n >= u64::from(self.size) {
            self.clear();
            self.len = self.size;
        } else {
            for _ in 0..n {
                self.push(false, false);
            }
        }
    }

    fn tally(&self) -> Tally {
        Tally {
            calls: u64::from(self.len),
            failures: u64::from(self.failures),
            slow: u64::from(self.slow),
        }
    }

    fn clear(&mut self) {
        self.bits.fill(0);
        self.head = 0;
        self.len = 0;
        self.failures = 0;
        self.slow = 0;
    }
}

fn set_bit(word: &mut u64, bit: u64, on: bool) {
    if on {
        *word |= bit;
    } else {
        *word &= !bit;
    }
}

/// The calls of the last `10 × width` nanoseconds, in ten buckets. A bucket
/// is stamped with the period it counts; a bucket found holding an older
/// period is emptied, every field, before reuse (pitfall 8).
#[derive(Debug)]
pub(crate) struct TimeWindow {
    buckets: Box<[Bucket]>,
    width: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    period: u64,
    calls: u64,
    failures: u64,
    slow: u64,
}

const BUCKETS: u64 = Window::TIME_BUCKETS as u64;

impl TimeWindow {
    fn new(span: u64) -> Self {
        TimeWindow {
            buckets: vec![Bucket::default(); BUCKETS as usize].into_boxed_slice(),
            width: (span / BUCKETS).max(1),
        }
    }

    fn record(&mut self, now: u64, calls: u64, failures: u64, slow: u64) {
        let period = now / self.width;
        let b = &mut self.buckets[(period % BUCKETS) as usize];
        if b.period != period {
            *b = Bucket {
                period,
                ..Bucket::default()
            };
        }
        b.calls += calls;
        b.failures += failures;
        b.slow += slow;
    }

    fn tally(&self, now: u64) -> Tally {
        let period = now / self.width;
        self.buckets
            .iter()
            .filter(|b| b.period <= period && period - b.period < BUCKETS)
            .fold(Tally::default(), |t, b| Tally {
                calls: t.calls + b.calls,
                failures: t.failures + b.failures,
                slow: t.slow + b.slow,
            })
    }

    fn clear(&mut self) {
        self.buckets.fill(Bucket::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn count(n: u32) -> SlidingWindow {
        SlidingWindow::new(Window::Count(n))
    }

    #[test]
    fn count_window_holds_exactly_the_last_n() {
        let mut w = count(3);
        w.record(0, true, false);
        w.record(0, true, true);
        assert_eq!(
            w.tally(0),
            Tally {
                calls: 2,
                failures: 2,
                slow: 1
            }
        );
        w.record(0, false, false);
        w.record(0, false, false); // the first failure leaves
        assert_eq!(
            w.tally(0),
            Tally {
                calls: 3,
                failures: 1,
                slow: 1
            }
        );
        w.record(0, false, false); // the slow failure leaves
        assert_eq!(
            w.tally(0),
            Tally {
                calls: 3,
                failures: 0,
                slow: 0
            }
        );
        assert!(w.is_clean());
    }

    #[test]
    fn fast_forwarded_successes_push_failures_out() {
        let mut w = count(100);
        w.record(0, true, false);
        w.record_successes(0, 98);
        assert_eq!(
            w.tally(0),
            Tally {
                calls: 99,
                failures: 1,
                slow: 0
            }
        );
        w.record_successes(0, 1);
        assert_eq!(w.tally(0).failures, 1);
        w.record_successes(0, 1);
        assert_eq!(
            w.tally(0),
            Tally {
                calls: 100,
                failures: 0,
                slow: 0
            }
        );
        w.record(0, true, false);
        w.record_successes(0, 1_000_000);
        assert_eq!(
            w.tally(0),
            Tally {
                calls: 100,
                failures: 0,
                slow: 0
            }
        );
    }

    #[test]
    fn clean_fast_forward_keeps_the_head_in_step() {
        let mut a = count(7);
        let mut b = count(7);
        a.record_successes(0, 12);
        for _ in 0..12 {
            b.record(0, false, false);
        }
        for i in 0..20 {
            a.record(0, i % 3 == 0, i % 5 == 0);
            b.record(0, i % 3 == 0, i % 5 == 0);
            assert_eq!(a.tally(0), b.tally(0));
        }
    }

    /// Pitfall 7: a fixed window that resets at fixed instants hides failures
    /// straddling the boundary; ours slides bucket by bucket.
    #[test]
    fn pitfall_7_time_window_slides() {
        let sec = 1_000_000_000u64;
        let mut w = SlidingWindow::new(Window::Time(Duration::from_secs(10)));
        // Failures in the last second of one 10 s period and the first of the next.
        w.record(9 * sec + 500_000_000, true, false);
        w.record(10 * sec + 100_000_000, true, false);
        assert_eq!(w.tally(10 * sec + 200_000_000).failures, 2);
        // 10.4 s after the first, it has slid out; the second remains.
        assert_eq!(w.tally(19 * sec + 900_000_000).failures, 1);
        assert_eq!(w.tally(21 * sec).failures, 0);
    }

    /// Pitfall 8: a bucket reused for a new period must have every field reset.
    #[test]
    fn pitfall_8_bucket_reuse_resets_every_field() {
        let sec = 1_000_000_000u64;
        let mut w = SlidingWindow::new(Window::Time(Duration::from_secs(10)));
        w.record(0, true, true);
        w.record(0, true, true);
        // 10 s later the same bucket index is reused for a new period.
        w.record(10 * sec, false, false);
        assert_eq!(
            w.tally(10 * sec),
            Tally {
                calls: 1,
                failures: 0,
                slow: 0
            }
        );
    }

    #[test]
    fn time_window_is_never_clean() {
        let w = SlidingWindow::new(Window::Time(Duration::from_secs(1)));
        assert!(!w.is_clean());
    }

    #[test]
    fn hundred_call_window_is_small() {
        assert_eq!(count(100).heap_bytes(), 32);
    }
}
