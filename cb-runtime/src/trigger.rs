//! What opens a closed circuit, and how long a reopened one stays open.
//!
//! The breaker (`breaker.rs`) calls [`closed_reason`] after each outcome it
//! records while closed, and [`open_period`] each time it opens. Both are
//! pure: the breaker holds the state ([`Streak`], the window's [`Tally`],
//! when the circuit opened) under its lock.
//!
//! # Chance runs (pitfall 17)
//!
//! A provider failing a share `p` of its calls at random produces runs of
//! `k` failures about once every `1 / ((1 - p) p^k)` calls: at `p` = 0.1 a
//! run of 3 every 1,100 calls, at `p` = 0.3 a run of 5 every 600. A
//! consecutive-failure trigger alone opens on them, more often the more
//! traffic the provider carries. With
//! [`streak_failure_rate`](crate::ConfigBuilder::streak_failure_rate) set, a
//! run of errors opens only when the window agrees; a run of **timeouts**
//! still opens on its own, since a hung dependency answers nothing and each
//! of its calls holds the caller for the whole `call_timeout`.

use std::time::Duration;

use crate::config::Config;
use crate::outcome::CallEnd;
use crate::transition::Reason;
use crate::window::Tally;

/// The failures at the end of the closed state's record: how many in a row,
/// and how many of those in a row were timeouts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Streak {
    /// Consecutive failures (errors and timeouts): `Stats::consecutive_failures`.
    /// (`u32`s, saturating, so that a breaker stays within 1 KiB.)
    pub(crate) failures: u32,
    /// Consecutive timeouts, the last `timeouts` of `failures`.
    pub(crate) timeouts: u32,
}

impl Streak {
    /// Adds one recorded outcome (a success, a failure or a timeout; the
    /// breaker records no other while closed).
    pub(crate) fn record(&mut self, end: CallEnd) {
        match end {
            CallEnd::Timeout => {
                self.failures = self.failures.saturating_add(1);
                self.timeouts = self.timeouts.saturating_add(1);
            }
            CallEnd::Failure => {
                self.failures = self.failures.saturating_add(1);
                self.timeouts = 0;
            }
            _ => *self = Streak::default(),
        }
    }

    /// Starts over (a success, a close, a reset, an open).
    pub(crate) fn clear(&mut self) {
        *self = Streak::default();
    }

    /// No failure at the end of the record.
    pub(crate) fn is_clear(&self) -> bool {
        self.failures == 0
    }
}

/// Why a closed circuit must open after the outcome just recorded, if it must.
///
/// In order: a run of `failure_threshold` failures (errors need the window to
/// agree when `streak_failure_rate` is set; timeouts do not); a failure rate
/// `>=` `failure_rate_threshold` over at least `minimum_calls` calls; a
/// slow-call rate `>=` `slow_call_rate_threshold` over as many.
pub(crate) fn closed_reason(cfg: &Config, tally: Tally, streak: Streak) -> Option<Reason> {
    let judged = tally.calls >= u64::from(cfg.minimum_calls);
    let rate = |n: u64| n as f64 / tally.calls as f64;
    if streak_opens(cfg, tally, streak) {
        Some(Reason::ConsecutiveFailures)
    } else if judged && tally.failures > 0 && rate(tally.failures) >= cfg.failure_rate_threshold {
        Some(Reason::FailureRate)
    } else if judged
        && cfg.slow_call_duration.is_some()
        && tally.slow > 0
        && rate(tally.slow) >= cfg.slow_call_rate_threshold
    {
        Some(Reason::SlowCallRate)
    } else {
        None
    }
}

/// When the circuit left the closed state, for [`open_period`]: the clock's
/// reading in milliseconds, wrapping, in 4 bytes (so that a breaker stays
/// within 1 KiB; an outage is shorter than the 49 days it takes to wrap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OpenedAt(u32);

impl OpenedAt {
    /// Closed: no time.
    pub(crate) const NONE: OpenedAt = OpenedAt(u32::MAX);

    /// At the clock reading `now_nanos`.
    pub(crate) fn at(now_nanos: u64) -> OpenedAt {
        OpenedAt(((now_nanos / 1_000_000) as u32).min(u32::MAX - 1))
    }

    /// The time since, at `now_nanos`; `None` for [`NONE`](Self::NONE).
    pub(crate) fn since(self, now_nanos: u64) -> Option<Duration> {
        (self != OpenedAt::NONE)
            .then(|| Duration::from_millis(u64::from(OpenedAt::at(now_nanos).0.wrapping_sub(self.0))))
    }
}

/// The chance below which a run of errors is not chance (see [`streak_opens`]).
const NOT_CHANCE: f64 = 1e-6;

/// Whether the run of failures opens: `failure_threshold` of them, and when
/// `streak_failure_rate` is set, either that many timeouts in a row, a window
/// with no success (a fresh breaker), a run too long for chance, or a window
/// in which that share failed, a window of
/// fewer than `minimum_calls` calls counting as `minimum_calls` (the missing
/// calls as successes).
fn streak_opens(cfg: &Config, tally: Tally, streak: Streak) -> bool {
    let threshold = u64::from(cfg.failure_threshold);
    if u64::from(streak.failures) < threshold {
        return false;
    }
    let rate = cfg.streak_failure_rate();
    if rate <= 0.0 || u64::from(streak.timeouts) >= threshold {
        return true;
    }
    // No success in the window: a fresh breaker (or one just closed) whose
    // first calls all failed opens on `failure_threshold` of them, as
    // without the check.
    if tally.failures >= tally.calls {
        return true;
    }
    // A run that a dependency failing `streak_failure_rate` of its calls at
    // random makes less than once in a million calls (20 errors at 0.5) is
    // not chance: it opens without the window, however many successes the
    // window still holds from before (pitfall 12: a dependency called once a
    // second waits for 20 errors, not for half of 200 calls).
    let run = streak.failures.min(1_000) as i32;
    if rate.powi(run) <= NOT_CHANCE {
        return true;
    }
    let judged_over = tally.calls.max(u64::from(cfg.minimum_calls)).max(1);
    tally.failures as f64 / judged_over as f64 >= rate
}

/// How long the circuit opens for: `open_duration`, grown by `open_backoff`
/// after `reopens` failed probes (with the jitter draw `unit` in `[0, 1)`),
/// and after a failed probe at least `open_growth` of `since_open`, the time
/// since the circuit left the closed state (`None` when unknown: the
/// growth is skipped).
pub(crate) fn open_period(cfg: &Config, reopens: u32, since_open: Option<Duration>, unit: f64) -> Duration {
    let base = match cfg.open_backoff {
        Some(b) => b.open_duration(cfg.open_duration(), reopens, unit),
        None => cfg.open_duration(),
    };
    match since_open {
        Some(since) if reopens > 0 && cfg.open_growth() > 0.0 => base.max(since.mul_f64(cfg.open_growth())),
        _ => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Window;

    fn tally(calls: u64, failures: u64) -> Tally {
        Tally {
            calls,
            failures,
            slow: 0,
        }
    }

    fn streak(ends: &[CallEnd]) -> Streak {
        let mut s = Streak::default();
        ends.iter().for_each(|&e| s.record(e));
        s
    }

    fn agreeing() -> Config {
        Config::builder()
            .failure_threshold(3)
            .sliding_window(Window::Count(200))
            .minimum_calls(50)
            .streak_failure_rate(0.5)
            .build()
            .unwrap()
    }

    #[test]
    fn a_streak_counts_failures_and_the_timeouts_at_its_end() {
        use CallEnd::{Failure, Success, Timeout};
        assert_eq!(
            streak(&[Failure, Timeout, Timeout]),
            Streak {
                failures: 3,
                timeouts: 2
            }
        );
        assert_eq!(
            streak(&[Timeout, Failure]),
            Streak {
                failures: 2,
                timeouts: 0
            }
        );
        assert_eq!(streak(&[Timeout, Success]), Streak::default());
        assert!(streak(&[Failure, Success]).is_clear());
    }

    #[test]
    fn without_streak_failure_rate_any_run_opens() {
        let cfg = Config::builder().failure_threshold(3).build().unwrap();
        let run = streak(&[CallEnd::Failure; 3]);
        assert_eq!(
            closed_reason(&cfg, tally(100, 3), run),
            Some(Reason::ConsecutiveFailures)
        );
        assert_eq!(
            closed_reason(&cfg, tally(100, 2), streak(&[CallEnd::Failure; 2])),
            None
        );
    }

    #[test]
    fn a_run_of_errors_needs_the_window_to_agree() {
        let cfg = agreeing();
        let run = streak(&[CallEnd::Failure; 3]);
        // A chance run in a healthy window.
        assert_eq!(closed_reason(&cfg, tally(200, 20), run), None);
        // Half the window failed.
        assert_eq!(
            closed_reason(&cfg, tally(120, 60), run),
            Some(Reason::ConsecutiveFailures)
        );
        // A young window counts as `minimum_calls` calls: 24 of 50 is not half.
        let run = streak(&[CallEnd::Failure; 12]);
        assert_eq!(closed_reason(&cfg, tally(30, 24), run), None);
        assert_eq!(
            closed_reason(&cfg, tally(30, 25), run),
            Some(Reason::ConsecutiveFailures)
        );
    }

    #[test]
    fn a_run_too_long_for_chance_opens_without_the_window() {
        let cfg = agreeing();
        // 0.5^19 is about 1.9e-6, 0.5^20 about 9.5e-7.
        assert_eq!(
            closed_reason(&cfg, tally(200, 19), streak(&[CallEnd::Failure; 19])),
            None
        );
        assert_eq!(
            closed_reason(&cfg, tally(200, 20), streak(&[CallEnd::Failure; 20])),
            Some(Reason::ConsecutiveFailures)
        );
        let strict = cfg.to_builder().streak_failure_rate(1.0).build().unwrap();
        let long = Streak {
            failures: u32::MAX,
            timeouts: 0,
        };
        assert_eq!(
            closed_reason(&strict, tally(200, 20), long),
            None,
            "only the window opens it"
        );
    }

    #[test]
    fn a_window_without_a_success_agrees() {
        let cfg = agreeing();
        let run = streak(&[CallEnd::Failure; 3]);
        assert_eq!(
            closed_reason(&cfg, tally(3, 3), run),
            Some(Reason::ConsecutiveFailures),
            "a fresh breaker"
        );
        assert_eq!(closed_reason(&cfg, tally(4, 3), run), None, "one success before");
    }

    #[test]
    fn a_run_of_timeouts_opens_on_its_own() {
        let cfg = agreeing();
        let hung = streak(&[
            CallEnd::Failure,
            CallEnd::Timeout,
            CallEnd::Timeout,
            CallEnd::Timeout,
        ]);
        assert_eq!(
            closed_reason(&cfg, tally(200, 4), hung),
            Some(Reason::ConsecutiveFailures)
        );
        let mixed = streak(&[CallEnd::Timeout, CallEnd::Timeout, CallEnd::Failure]);
        assert_eq!(closed_reason(&cfg, tally(200, 3), mixed), None);
    }

    #[test]
    fn the_rate_triggers_wait_for_minimum_calls() {
        let cfg = agreeing();
        assert_eq!(closed_reason(&cfg, tally(49, 30), Streak::default()), None);
        assert_eq!(
            closed_reason(&cfg, tally(50, 25), Streak::default()),
            Some(Reason::FailureRate)
        );
    }

    #[test]
    fn the_open_period_grows_with_the_outage_after_a_failed_probe() {
        let secs = Duration::from_secs;
        let cfg = Config::builder()
            .open_duration(secs(10))
            .open_growth(0.05)
            .build()
            .unwrap();
        assert_eq!(
            open_period(&cfg, 0, Some(secs(1000)), 0.5),
            secs(10),
            "a first open"
        );
        assert_eq!(open_period(&cfg, 1, Some(secs(100)), 0.5), secs(10));
        assert_eq!(open_period(&cfg, 3, Some(secs(1000)), 0.5), secs(50));
        assert_eq!(open_period(&cfg, 3, None, 0.5), secs(10));
        let off = Config::builder().open_duration(secs(10)).build().unwrap();
        assert_eq!(open_period(&off, 3, Some(secs(1000)), 0.5), secs(10));
    }
}
