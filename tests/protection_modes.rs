//! Protection modes: shadow mode, the bulkhead (`max_concurrent_calls`) and
//! adaptive throttling (`trip = "adaptive"`), through the public API.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use cb_runtime::clock::ManualClock;
use cb_runtime::{BreakerErrorKind, CircuitBreaker, Config, Mode, Registry, State, Trip};

fn shadow(clock: &ManualClock) -> Config {
    Config::builder()
        .clock(clock.clock())
        .failure_threshold(2)
        .open_duration(Duration::from_secs(10))
        .half_open_max_calls(1)
        .mode(Mode::Shadow)
        .build()
        .unwrap()
}

/// Polls `fut` once, without a runtime.
fn poll_once<F: Future>(fut: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn a_shadow_breaker_opens_as_it_would_and_lets_every_call_through() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::new("shadow-opens", shadow(&clock));
    for _ in 0..2 {
        b.try_acquire().unwrap().record(false);
    }
    assert_eq!(b.state(), State::Open);
    // Would have been refused: runs, counted apart, and its answers do not
    // move the state machine (failures do not reopen, a success does not close).
    for success in [true, false, false, true] {
        let permit = b.try_acquire().expect("shadow mode lets the call through");
        permit.record(success);
    }
    let s = b.stats();
    assert_eq!((s.shadow_rejected, s.rejected), (4, 0));
    assert_eq!((s.successes, s.failures), (2, 4));
    assert_eq!(s.calls(), 6, "each shadow call counts once, by how it ended");
    assert_eq!(b.state(), State::Open);
    assert!(
        b.open_remaining().unwrap() > Duration::from_secs(9),
        "the open period is unchanged"
    );

    // Half-open: one probe, as when enforcing; the call beside it is a shadow call.
    clock.advance(Duration::from_secs(10));
    let probe = b.try_acquire().unwrap();
    let beside = b.try_acquire().unwrap();
    assert_eq!(b.stats().half_open_in_flight, 1);
    beside.record(false);
    assert_eq!(
        b.state(),
        State::HalfOpen,
        "a shadow call's failure is no probe result"
    );
    probe.record(true);
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.stats().shadow_rejected, 5);
}

/// The same outcomes through an enforcing and a shadow breaker: the same
/// states, and the shadow breaker's `shadow_rejected` is the enforcing one's
/// `rejected`.
#[test]
fn shadow_and_enforce_go_through_the_same_states() {
    let clocks = [ManualClock::new(), ManualClock::new()];
    let enforce = CircuitBreaker::new(
        "shadow-twin-enforce",
        shadow(&clocks[0])
            .to_builder()
            .mode(Mode::Enforce)
            .build()
            .unwrap(),
    );
    let shadowed = CircuitBreaker::new("shadow-twin-shadow", shadow(&clocks[1]));
    let mut rng = fastrand::Rng::with_seed(3);
    for step in 0..2_000 {
        let fails = rng.f64() < 0.4;
        match enforce.try_acquire() {
            Ok(permit) => {
                permit.record(!fails);
                shadowed.try_acquire().unwrap().record(!fails);
            }
            Err(refusal) => {
                assert!(refusal.is_rejected());
                // Let through; whatever it answers changes nothing.
                shadowed.try_acquire().unwrap().record(rng.bool());
            }
        }
        assert_eq!(enforce.state(), shadowed.state(), "step {step}");
        if step % 7 == 0 {
            for clock in &clocks {
                clock.advance(Duration::from_secs(3));
            }
        }
    }
    let (e, s) = (enforce.stats(), shadowed.stats());
    assert!(e.rejected > 100, "{e:?}");
    assert_eq!(s.shadow_rejected, e.rejected);
    assert_eq!(s.rejected, 0);
}

#[test]
fn shadow_mode_is_switched_by_reconfigure_and_forced_open_still_refuses() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::new("shadow-switch", shadow(&clock));
    for _ in 0..2 {
        b.try_acquire().unwrap().record(false);
    }
    assert!(b.try_acquire().is_ok());
    b.reconfigure(b.config().to_builder().mode(Mode::Enforce).build().unwrap())
        .unwrap();
    assert_eq!(b.config().mode(), Mode::Enforce);
    assert_eq!(b.state(), State::Open, "the state is kept");
    assert!(b.try_acquire().unwrap_err().is_rejected());
    b.reconfigure(b.config().to_builder().mode(Mode::Shadow).build().unwrap())
        .unwrap();
    assert!(b.try_acquire().is_ok());
    let s = b.stats();
    assert_eq!((s.shadow_rejected, s.rejected), (2, 1));
    b.force_open();
    let refusal = b.try_acquire().unwrap_err();
    assert_eq!(
        refusal.kind(),
        BreakerErrorKind::ForcedOpen,
        "an operator's command is obeyed"
    );
}

#[test]
fn a_full_bulkhead_refuses_at_once_without_polling_and_is_no_failure() {
    let b = CircuitBreaker::new(
        "bulkhead-full",
        Config::builder()
            .failure_threshold(1)
            .max_concurrent_calls(2)
            .build()
            .unwrap(),
    );
    assert_eq!(b.config().max_concurrent_calls(), Some(2));
    let first = b.try_acquire().unwrap();
    let second = b.try_acquire().unwrap();
    assert_eq!(b.stats().concurrent_calls, 2);
    let mut polled = false;
    let third = b.call(async {
        polled = true;
        Ok::<(), ()>(())
    });
    let Poll::Ready(Err(refusal)) = poll_once(pin!(third)) else {
        panic!("a saturated call must be refused at once");
    };
    assert!(!polled, "a saturated call is never polled");
    let refusal = refusal.breaker_error().cloned().unwrap();
    assert!(refusal.is_saturated() && refusal.is_rejected());
    let s = b.stats();
    assert_eq!((s.saturated, s.rejected, s.failures), (1, 0, 0));
    assert_eq!(s.calls(), 1, "saturated is an outcome total");
    assert_eq!(b.state(), State::Closed, "never a transition");
    drop(first);
    let again = b.try_acquire().expect("a dropped permit frees its slot");
    second.record(true);
    again.record(true);
    assert_eq!(b.stats().concurrent_calls, 0);
}

#[test]
fn a_dropped_or_panicking_call_frees_its_slot() {
    let b = CircuitBreaker::new(
        "bulkhead-drop",
        Config::builder().max_concurrent_calls(1).build().unwrap(),
    );
    {
        let mut pending = pin!(b.call(std::future::pending::<Result<(), ()>>()));
        assert!(poll_once(pending.as_mut()).is_pending());
        assert!(b.try_acquire().unwrap_err().is_saturated());
    }
    assert_eq!(b.stats().concurrent_calls, 0);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let call = b.call(async { panic!("the body panics") as Result<(), ()> });
        let _ = poll_once(pin!(call));
    }));
    assert!(panicked.is_err());
    let s = b.stats();
    assert_eq!(
        (s.failures, s.cancelled, s.saturated, s.concurrent_calls),
        (1, 1, 1, 0)
    );
    assert!(b.try_acquire().is_ok());
}

/// A model test: random interleavings of takes, records, drops and panics
/// against a counter of slots; the bulkhead never admits more than its cap,
/// and ends with every slot free.
#[test]
fn the_bulkhead_matches_a_model_of_its_slots() {
    let b = CircuitBreaker::new(
        "bulkhead-model",
        Config::builder().max_concurrent_calls(3).build().unwrap(),
    );
    // Only the bulkhead refuses: the failures and panics open nothing.
    b.disable();
    let mut rng = fastrand::Rng::with_seed(9);
    let mut held = Vec::new();
    let mut saturated = 0;
    for _ in 0..10_000 {
        if rng.bool() {
            match b.try_acquire() {
                Ok(permit) => held.push(permit),
                Err(e) => {
                    assert!(e.is_saturated());
                    assert_eq!(held.len(), 3);
                    saturated += 1;
                }
            }
        } else if !held.is_empty() {
            let permit = held.swap_remove(rng.usize(..held.len()));
            match rng.u8(..3) {
                0 => permit.record(rng.bool()),
                1 => drop(permit),
                _ if rng.u8(..20) != 0 => permit.record_outcome(cb_runtime::Outcome::Ignored),
                _ => {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                        let _permit = permit;
                        panic!("unwinds with the permit");
                    }));
                }
            }
        }
        assert!(held.len() <= 3);
        assert_eq!(b.stats().concurrent_calls, held.len() as u64);
    }
    held.clear();
    assert_eq!(b.stats().concurrent_calls, 0);
    assert_eq!(b.stats().saturated, saturated);
}

#[test]
fn in_shadow_mode_a_full_bulkhead_lets_the_call_through() {
    let b = CircuitBreaker::new(
        "bulkhead-shadow",
        Config::builder()
            .max_concurrent_calls(1)
            .mode(Mode::Shadow)
            .build()
            .unwrap(),
    );
    let first = b.try_acquire().unwrap();
    let second = b.try_acquire().expect("shadow mode");
    first.record(true);
    second.record(true);
    let s = b.stats();
    assert_eq!((s.shadow_rejected, s.saturated, s.successes), (1, 0, 2));
    assert!(b.try_acquire().is_ok());
}

#[test]
fn each_key_of_a_family_has_its_own_bulkhead_and_it_is_hot_reloaded() {
    let registry = Registry::new();
    let family = registry.family_or_insert("bulkhead-family", || {
        Config::builder().max_concurrent_calls(1).build().unwrap()
    });
    let a = family.get_or_insert("a");
    let b = family.get_or_insert("b");
    let held = a.try_acquire().unwrap();
    assert!(a.try_acquire().unwrap_err().is_saturated());
    let other = b.try_acquire().expect("another key's slots");
    a.reconfigure(a.config().to_builder().max_concurrent_calls(2).build().unwrap())
        .unwrap();
    let more = a.try_acquire().expect("a larger cap");
    a.reconfigure(a.config().to_builder().no_max_concurrent_calls().build().unwrap())
        .unwrap();
    assert_eq!(a.config().max_concurrent_calls(), None);
    for _ in 0..5 {
        a.try_acquire().unwrap().record(true);
    }
    drop((held, other, more));
    assert_eq!(a.stats().saturated, 1);
    let err = Config::builder().max_concurrent_calls(0).build().unwrap_err();
    assert_eq!(err.field(), "max_concurrent_calls");
}

fn adaptive(name: &str) -> CircuitBreaker {
    CircuitBreaker::new(
        name,
        Config::builder()
            .trip(Trip::Adaptive)
            .sliding_window(cb_runtime::Window::Count(100))
            .minimum_calls(10)
            .build()
            .unwrap(),
    )
}

#[test]
fn with_no_failures_an_adaptive_breaker_refuses_nothing() {
    let b = adaptive("adaptive-healthy");
    for _ in 0..10_000 {
        b.try_acquire().unwrap().record(true);
    }
    let s = b.stats();
    assert_eq!((s.rejected, s.successes, s.refusal_share), (0, 10_000, Some(0.0)));
}

#[test]
fn an_adaptive_breaker_never_opens_and_refuses_a_share_that_tracks_failures() {
    let b = adaptive("adaptive-down");
    let mut refused = 0;
    for _ in 0..1_000 {
        match b.try_acquire() {
            Ok(permit) => permit.record(false),
            Err(e) => {
                assert!(e.is_rejected() && !e.is_saturated());
                assert_eq!(e.kind(), BreakerErrorKind::AdaptiveThrottling);
                refused += 1;
            }
        }
        assert_eq!(b.state(), State::Closed);
    }
    let s = b.stats();
    assert_eq!(s.rejected, refused);
    assert!(refused > 900, "{refused}");
    assert!(s.refusal_share.unwrap() > 0.95, "{s:?}");
    // The dependency comes back: the calls let through succeed, and the
    // share falls to nothing.
    for _ in 0..5_000 {
        if let Ok(permit) = b.try_acquire() {
            permit.record(true);
        }
    }
    assert_eq!(b.stats().refusal_share, Some(0.0));
    assert_eq!(b.config().trip(), Trip::Adaptive);
    assert_eq!(b.config().adaptive_k(), 2.0);
}

#[test]
fn adaptive_k_is_checked_and_kept() {
    let c = Config::builder().adaptive_k(1.5).build().unwrap();
    assert_eq!(c.adaptive_k(), 1.5);
    for bad in [1.0, 0.5, f64::NAN, 101.0] {
        let err = Config::builder().adaptive_k(bad).build().unwrap_err();
        assert_eq!(err.field(), "adaptive_k");
        assert!(err.to_string().contains("greater than 1.0"), "{err}");
    }
}

#[test]
fn a_streamed_call_holds_its_slot_until_it_is_judged() {
    use futures::StreamExt;
    let b = CircuitBreaker::new(
        "bulkhead-stream",
        Config::builder().max_concurrent_calls(1).build().unwrap(),
    );
    tokio_test::block_on(async {
        let items = futures::stream::iter([Ok::<u32, ()>(1), Ok(2)]);
        let mut stream = b.call_stream(async { Ok::<_, ()>(items) }).await.unwrap();
        assert_eq!(stream.next().await, Some(Ok(1)));
        assert!(
            b.try_acquire().unwrap_err().is_saturated(),
            "the first item did not free it"
        );
        assert_eq!(stream.next().await, Some(Ok(2)));
        assert_eq!(stream.next().await, None);
        assert_eq!(b.stats().concurrent_calls, 0, "judged at its end");
        let dropped = b.call_stream(async { Ok::<_, ()>(futures::stream::pending::<Result<u32, ()>>()) });
        let stream = dropped.await.unwrap();
        assert!(b.try_acquire().unwrap_err().is_saturated());
        drop(stream);
        assert!(b.try_acquire().is_ok(), "a dropped stream frees its slot");
    });
    assert_eq!(b.stats().saturated, 2);
}

#[test]
fn metrics_and_the_admin_view_show_the_modes() {
    let registry: &'static Registry = Box::leak(Box::new(Registry::new()));
    let prom = prometheus::Registry::new();
    prom.register(Box::new(cb_runtime::metrics::BreakerCollector::new(registry)))
        .unwrap();
    let shadowed = registry.get_or_insert("modes-shadow", || {
        Config::builder()
            .failure_threshold(1)
            .mode(Mode::Shadow)
            .build()
            .unwrap()
    });
    shadowed.try_acquire().unwrap().record(false);
    shadowed.try_acquire().unwrap().record(true);
    let bulkhead = registry.get_or_insert("modes-bulkhead", || {
        Config::builder().max_concurrent_calls(1).build().unwrap()
    });
    let held = bulkhead.try_acquire().unwrap();
    assert!(bulkhead.try_acquire().unwrap_err().is_saturated());
    let adaptive = registry.get_or_insert("modes-adaptive", || {
        Config::builder().trip(Trip::Adaptive).build().unwrap()
    });
    for _ in 0..20 {
        if let Ok(permit) = adaptive.try_acquire() {
            permit.record(false);
        }
    }
    registry.get_or_insert("modes-none", Config::default);

    let text = cb_runtime::metrics::encode(&prom.gather());
    for line in [
        r#"circuit_breaker_shadow_rejections_total{name="modes-shadow"} 1"#,
        r#"circuit_breaker_shadow_mode{name="modes-shadow"} 1"#,
        r#"circuit_breaker_state{name="modes-shadow"} 1"#,
        r#"circuit_breaker_calls_total{name="modes-bulkhead",outcome="saturated"} 1"#,
        r#"circuit_breaker_concurrent_calls{name="modes-bulkhead"} 1"#,
        r#"circuit_breaker_refusal_share{name="modes-adaptive"} 0."#,
    ] {
        assert!(text.contains(line), "no `{line}` in\n{text}");
    }
    assert!(
        !text.contains(r#"circuit_breaker_shadow_mode{name="modes-none"}"#),
        "a breaker without modes has no mode series"
    );

    let view = serde_json::to_value(cb_runtime::admin::BreakerView::of(&shadowed)).unwrap();
    assert_eq!(view["mode"], "shadow");
    assert_eq!(view["state"], "open");
    assert_eq!(view["stats"]["shadow_rejected"], 1);
    assert_eq!(view["config"]["mode"], "shadow");
    let view = serde_json::to_value(cb_runtime::admin::BreakerView::of(&adaptive)).unwrap();
    assert_eq!(
        (view["trip"].as_str(), view["state"].as_str()),
        (Some("adaptive"), Some("closed"))
    );
    assert!(view["stats"]["refusal_share"].as_f64().unwrap() > 0.5, "{view}");
    let view = serde_json::to_value(cb_runtime::admin::BreakerView::of(&bulkhead)).unwrap();
    assert_eq!(view["stats"]["saturated"], 1);
    assert_eq!(view["config"]["max_concurrent_calls"], 1);
    drop(held);
}

/// Teams tune in shadow, then enforce by a config file reload.
#[test]
fn a_file_reload_switches_shadow_to_enforce_and_sets_the_other_modes() {
    let registry = Registry::with_env(Vec::new);
    registry
        .load_str(
            "[breakers.reloaded]\nmode = \"shadow\"\nfailure_threshold = 1\n",
            "modes.toml",
        )
        .unwrap();
    let b = registry.get_or_insert("reloaded", Config::default);
    assert_eq!(b.config().mode(), Mode::Shadow);
    b.try_acquire().unwrap().record(false);
    assert!(b.try_acquire().is_ok(), "shadow: let through");
    registry
        .load_str(
            "[breakers.reloaded]\nmode = \"enforce\"\nfailure_threshold = 1\nmax_concurrent_calls = 4\n\
             trip = \"adaptive\"\nadaptive_k = 1.5\n",
            "modes.toml",
        )
        .unwrap();
    let c = b.config();
    assert_eq!(
        (c.mode(), c.max_concurrent_calls(), c.trip(), c.adaptive_k()),
        (Mode::Enforce, Some(4), Trip::Adaptive, 1.5)
    );
    let err = registry
        .load_str("[breakers.reloaded]\nmode = \"dry-run\"\n", "modes.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("mode") && err.contains("`enforce`, `shadow`"),
        "{err}"
    );
    let err = registry
        .load_str("[breakers.reloaded]\nadaptive_k = 0.5\n", "modes.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("adaptive_k") && err.contains("greater than 1.0"),
        "{err}"
    );
}
