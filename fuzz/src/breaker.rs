//! Fuzz target `breaker`: the state machine, driven one operation per byte
//! on a manual clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cb_runtime::clock::ManualClock;
use cb_runtime::{Backoff, CircuitBreaker, Config, Outcome, Permit, Reason, State, Window};

/// Permits held at once, at most.
const MAX_HELD: usize = 8;

/// The transitions each reason may make: the states it may leave, the state
/// it enters, and whether only a manual operation may cause it.
fn allowed(reason: Reason) -> (&'static [State], State, bool) {
    use State::*;
    match reason {
        Reason::ConsecutiveFailures | Reason::FailureRate | Reason::SlowCallRate => (&[Closed], Open, false),
        Reason::ProbeFailed | Reason::SlowProbes => (&[HalfOpen], Open, false),
        Reason::ProbesSucceeded => (&[HalfOpen], Closed, false),
        // No health check in these targets, but the transition it makes is one.
        Reason::HealthCheck => (&[Open], Closed, false),
        Reason::OpenDurationElapsed => (&[Open], HalfOpen, false),
        // A rate limit opens a closed or half-open breaker (late answers open nothing).
        Reason::Throttled => (&[Closed, HalfOpen], Open, false),
        // On an open breaker `open_for` extends the period with no transition.
        Reason::OpenedFor => (&[Closed, HalfOpen], Open, true),
        Reason::Reset => (&[Closed, Open, HalfOpen, ForcedOpen, Disabled], Closed, true),
        Reason::ForcedOpen => (&[Closed, Open, HalfOpen, ForcedOpen, Disabled], ForcedOpen, true),
        Reason::Disabled => (&[Closed, Open, HalfOpen, ForcedOpen, Disabled], Disabled, true),
        // No fleet in these targets: a fleet's reason is a bug here.
        other => panic!("unexpected transition reason {other:?}"),
    }
}

/// Checks one transition of a breaker last seen in `state`: its reason is
/// known, it leaves a state that reason may leave and enters the one it
/// enters, it starts where the last one ended, and it is manual only if the
/// operation that caused it (`manual`) was. Returns the state entered. The
/// `stream` target checks its transitions with it too.
pub(super) fn check_transition(state: State, from: State, to: State, reason: Reason, manual: bool) -> State {
    let (leaves, enters, only_manual) = allowed(reason);
    assert_eq!(
        from, state,
        "{reason}: the transition does not start where the last ended"
    );
    assert!(leaves.contains(&from) && to == enters, "{reason}: {from} -> {to}");
    assert!(manual || !only_manual, "{reason} without a manual operation");
    to
}

/// A configuration from the first eight bytes; `None` if `build` refuses it
/// (refusals are the `layers` and `config_file` targets' business).
fn config(b: &[u8; 8], clock: &ManualClock) -> Option<Config> {
    let window = if b[1] & 0x80 == 0 {
        Window::Count(1 + u32::from(b[1] % 16))
    } else {
        Window::Time(Duration::from_millis(100 + 100 * u64::from(b[1] % 8)))
    };
    let mut builder = Config::builder()
        .clock(clock.clock())
        .failure_threshold(1 + u32::from(b[0] % 8))
        .sliding_window(window)
        .minimum_calls(1 + u32::from(b[2] % 16))
        .failure_rate_threshold(f64::from(b[3]) / 255.0)
        .half_open_max_calls(1 + u32::from(b[4] % 4))
        .success_threshold(1 + u32::from(b[4] / 64))
        .open_duration(Duration::from_millis(1 + u64::from(b[5])));
    builder = match b[6] % 3 {
        0 => builder.no_slow_call_detection(),
        _ => builder
            .slow_call_duration(Duration::from_millis(1 + u64::from(b[6] / 3)))
            .slow_call_rate_threshold(f64::from(b[7] % 128) / 127.0),
    };
    if b[7] & 0x80 != 0 {
        builder = builder.open_backoff(Backoff::exponential(2.0, Duration::from_secs(1)));
    }
    builder.build().ok()
}

/// What the callers saw, to check the breaker's totals against.
#[derive(Debug, Default, PartialEq)]
struct Tally {
    successes: u64,
    failures: u64,
    ignored: u64,
    cancelled: u64,
    rejected: u64,
    throttled: u64,
}

/// Checks, for any configuration and any sequence of operations (acquire,
/// record success, failure, ignored or throttled, drop a permit, advance the clock,
/// reset, force open, disable, open for a while, look at the state):
///
/// - every transition has a known reason, leaves a state that reason may
///   leave, starts where the previous one ended, and is manual only when the
///   operation was;
/// - probes in flight never exceed `half_open_max_calls`, and the window
///   never holds more calls than it can;
/// - the totals equal what the callers saw, exactly, after every operation;
/// - admission follows the state: closed and disabled admit, forced open
///   refuses, half-open admits when no permit is held (never wedged);
/// - when every permit is gone, no probe slot is still taken.
pub fn breaker(data: &[u8]) {
    let Some((head, ops)) = data.split_first_chunk::<8>() else {
        return;
    };
    let clock = ManualClock::new();
    let Some(config) = config(head, &clock) else {
        return;
    };
    let max_probes = u64::from(config.half_open_max_calls());
    let window_calls = match config.sliding_window() {
        Window::Count(n) => u64::from(n),
        Window::Time(_) => u64::MAX,
    };
    let b = CircuitBreaker::new("fuzz", config);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    b.on_transition(move |t| log.lock().unwrap().push((t.from, t.to, t.reason)));

    let mut held: Vec<Permit<'_>> = Vec::new();
    let mut tally = Tally::default();
    let mut state = State::Closed;
    for &op in ops.iter().take(512) {
        let arg = usize::from(op / 10);
        let manual = matches!(op % 10, 6..=8);
        match op % 10 {
            0 | 9 if held.len() < MAX_HELD => {
                let before = b.state();
                match b.try_acquire() {
                    Ok(permit) => {
                        assert_ne!(before, State::ForcedOpen, "a forced-open breaker admitted a call");
                        held.push(permit);
                    }
                    Err(refusal) => {
                        tally.rejected += 1;
                        // Only an open breaker's refusal can be a rate limit's.
                        assert!(
                            !refusal.is_throttled() || before == State::Open,
                            "a {before} breaker refused as throttled"
                        );
                        assert!(
                            !matches!(before, State::Closed | State::Disabled),
                            "a {before} breaker refused a call"
                        );
                        assert!(
                            !(before == State::HalfOpen && held.is_empty()),
                            "half-open with no permit held, yet refusing: wedged"
                        );
                    }
                }
            }
            0 | 9 => {}
            n @ 1..=4 if !held.is_empty() => {
                let permit = held.swap_remove(arg % held.len());
                match n {
                    1 => {
                        tally.successes += 1;
                        permit.record_outcome(Outcome::Success);
                    }
                    2 => {
                        tally.failures += 1;
                        permit.record_outcome(Outcome::Failure);
                    }
                    3 if arg % 2 == 1 => {
                        tally.throttled += 1;
                        permit.record_outcome(Outcome::Throttled);
                    }
                    3 => {
                        tally.ignored += 1;
                        permit.record_outcome(Outcome::Ignored);
                    }
                    _ => {
                        tally.cancelled += 1;
                        drop(permit);
                    }
                }
            }
            1..=4 => {}
            5 => clock.advance(Duration::from_millis(1 << (arg % 11))),
            6 => match arg % 3 {
                0 => b.reset(),
                1 => b.force_open(),
                _ => b.disable(),
            },
            7 => {
                b.open_for(Duration::from_millis(arg as u64 * 10));
            }
            _ => {
                b.state();
            }
        }

        for (from, to, reason) in seen.lock().unwrap().drain(..) {
            state = check_transition(state, from, to, reason, manual);
        }
        let s = b.stats();
        assert!(
            s.half_open_in_flight <= max_probes,
            "{} probes in flight",
            s.half_open_in_flight
        );
        assert!(s.calls_in_window <= window_calls && s.failures_in_window <= s.calls_in_window);
        assert!(s.slow_calls <= s.successes + s.failures + s.ignored + s.throttled);
        let totals = Tally {
            successes: s.successes,
            failures: s.failures,
            ignored: s.ignored,
            cancelled: s.cancelled,
            rejected: s.rejected,
            throttled: s.throttled,
        };
        assert_eq!(totals, tally, "the totals are not what the callers saw");
        assert_eq!(s.timeouts, 0);
    }
    drop(held);
    assert_eq!(b.stats().half_open_in_flight, 0, "a probe slot leaked");
}
