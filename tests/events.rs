//! `registry().subscribe()`: every transition of every breaker, with its stats.

use std::time::Duration;

use cb_runtime::clock::ManualClock;
use cb_runtime::{CallError, Config, Registry, State};

type Res = Result<u32, CallError<&'static str>>;

fn config(clock: &ManualClock) -> Config {
    Config::builder()
        .failure_threshold(2)
        .open_duration(Duration::from_secs(5))
        .success_threshold(1)
        .clock(clock.clock())
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_full_cycle_is_three_events_with_stats() {
    let registry = Registry::with_env(Vec::new);
    let mut events = registry.subscribe();
    let clock = ManualClock::new();
    let b = registry.get_or_insert("ledger", || config(&clock));

    for _ in 0..2 {
        let r: Res = b.call(async { Err("down") }).await;
        assert!(r.is_err());
    }
    let r: Res = b.call(async { Ok(1) }).await;
    assert!(r.unwrap_err().is_rejected());

    let opened = events.recv().await.unwrap();
    assert_eq!(
        (opened.name, opened.from, opened.to),
        ("ledger", State::Closed, State::Open)
    );
    assert_eq!(opened.stats.state, State::Open);
    assert_eq!(opened.stats.failures, 2);
    assert_eq!(opened.transition.reason, cb_runtime::Reason::ConsecutiveFailures);
    assert_eq!(opened.transition.open_for, Some(Duration::from_secs(5)));
    assert_eq!(opened.failure_rate(), Some(1.0));
    assert!(opened.time <= std::time::SystemTime::now());

    clock.advance(Duration::from_secs(5));
    let r: Res = b.call(async { Ok(1) }).await;
    assert!(r.is_ok());

    let half = events.recv().await.unwrap();
    assert_eq!((half.from, half.to), (State::Open, State::HalfOpen));
    assert_eq!(half.transition.rejected_while_open, Some(1));
    let closed = events.recv().await.unwrap();
    assert_eq!((closed.from, closed.to), (State::HalfOpen, State::Closed));
    assert_eq!(closed.stats.successes, 1);
    assert_eq!(closed.stats.rejected, 1);
    assert!(events.try_recv().is_none());
    assert_eq!(events.missed(), 0);
}

#[test]
fn every_subscriber_sees_every_breaker_and_manual_control() {
    let registry = Registry::with_env(Vec::new);
    let mut a = registry.subscribe();
    let mut b = registry.subscribe();
    registry.get_or_insert("one", Config::default).force_open();
    registry.get_or_insert("two", Config::default).disable();
    registry.reset_all();
    let seen: Vec<(&str, State, State)> = std::iter::from_fn(|| a.try_recv())
        .map(|e| (e.name, e.from, e.to))
        .collect();
    assert_eq!(
        seen,
        [
            ("one", State::Closed, State::ForcedOpen),
            ("two", State::Closed, State::Disabled),
            ("one", State::ForcedOpen, State::Closed),
            ("two", State::Disabled, State::Closed),
        ]
    );
    assert_eq!(std::iter::from_fn(|| b.try_recv()).count(), 4);
}

#[test]
fn a_subscriber_sees_only_what_follows_and_a_slow_one_skips_the_oldest() {
    let registry = Registry::with_env(Vec::new);
    let breaker = registry.get_or_insert("flappy", Config::default);
    breaker.force_open();
    let mut late = registry.subscribe();
    assert!(late.try_recv().is_none());
    let flips = cb_runtime::events::CAPACITY + 10;
    for i in 0..flips {
        if i % 2 == 0 {
            breaker.reset();
        } else {
            breaker.force_open();
        }
    }
    let received = std::iter::from_fn(|| late.try_recv()).count();
    assert_eq!(received, cb_runtime::events::CAPACITY);
    assert_eq!(late.missed(), 10);
    assert_eq!(
        registry.transitions("flappy", State::ForcedOpen, State::Closed),
        (flips as u64).div_ceil(2)
    );
}

#[tokio::test]
async fn events_as_a_stream() {
    use futures::StreamExt;

    let registry = Registry::with_env(Vec::new);
    let mut stream = registry.subscribe().into_stream();
    let breaker = registry.get_or_insert("streamed", Config::default);
    breaker.force_open();
    breaker.reset();
    let got: Vec<State> = (&mut stream).take(2).map(|e| e.to).collect().await;
    assert_eq!(got, [State::ForcedOpen, State::Closed]);
}

#[test]
fn the_registry_sends_nothing_without_subscribers() {
    // Nothing to assert but that transitions with no subscriber are cheap and
    // fine; a subscriber made afterwards starts empty.
    let registry = Registry::with_env(Vec::new);
    let breaker = registry.get_or_insert("quiet", Config::default);
    breaker.force_open();
    breaker.reset();
    assert!(registry.subscribe().try_recv().is_none());
    assert_eq!(registry.transitions("quiet", State::Closed, State::ForcedOpen), 1);
}
