//! Keyed families under churn, attack and restarts: each test here is one
//! defect found by a review and a trial of an LLM gateway, and failed before
//! its fix. See the guide's keyed chapter for the design they hold.

use std::time::Duration;

use cb_runtime::clock::ManualClock;
use cb_runtime::{BreakerError, CircuitBreaker, Config, Outcome, Registry, State};

mod support;

use support::keyed::{config, fail, ready};

fn refusal(b: &CircuitBreaker) -> BreakerError {
    match ready(b.call(async { Ok::<(), &str>(()) })) {
        Err(e) => e.breaker_error().expect("a refusal").clone(),
        Ok(()) => panic!("the call went through"),
    }
}

// ---- 7: errors name the key -------------------------------------------------

#[test]
fn a_keyed_refusal_names_its_key_and_a_full_half_open_gives_a_hint() {
    let clock = ManualClock::new();
    let registry = Registry::new();
    let family = registry.family_or_insert("named-keys", || config(&clock));
    let gpt = family.get_or_insert("gpt-4o");
    fail(&gpt, 2);
    let open = refusal(&gpt);
    assert_eq!(open.key(), Some("gpt-4o"));
    assert_eq!(open.name(), "named-keys");
    assert!(
        open.to_string()
            .starts_with("circuit breaker `named-keys` key `gpt-4o` is open"),
        "{open}"
    );

    // Half-open with its probe slot taken: a refusal with a short hint.
    let probes = Config::builder()
        .clock(clock.clock())
        .failure_threshold(1)
        .half_open_max_calls(1)
        .open_duration(Duration::from_secs(30))
        .build()
        .unwrap();
    let b = std::sync::Arc::new(CircuitBreaker::new("half-open-hint", probes));
    fail(&b, 1);
    clock.advance(Duration::from_secs(30));
    let probe = b.try_acquire().expect("the first probe");
    assert_eq!(b.state(), State::HalfOpen);
    let full = refusal(&b);
    assert!(full.is_rejected());
    let hint = full.retry_after().expect("a half-open refusal has a hint");
    assert!(
        hint > Duration::ZERO && hint <= Duration::from_secs(30),
        "{hint:?}"
    );
    assert_eq!(full.key(), None);
    drop(probe);
}

#[test]
fn a_keyed_timeout_names_its_key() {
    let registry = Registry::new();
    let family = registry.family_or_insert("timed-keys", || {
        Config::builder()
            .call_timeout(Duration::from_millis(10))
            .build()
            .unwrap()
    });
    let b = family.get_or_insert("slow-model");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let e = rt
        .block_on(b.call(async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<(), &str>(())
        }))
        .unwrap_err();
    assert!(e.is_timeout());
    let msg = e.to_string();
    assert!(msg.contains("`timed-keys` key `slow-model` timed out"), "{msg}");
}

// ---- 1 to 4: what a full family keeps ---------------------------------------

fn small_family(
    registry: &Registry,
    name: &str,
    clock: &ManualClock,
    max_keys: u32,
) -> std::sync::Arc<cb_runtime::Family> {
    registry.family_or_insert(name, || {
        config(clock).to_builder().max_keys(max_keys).build().unwrap()
    })
}

#[test]
fn idle_keys_whose_open_period_ended_are_evicted_and_the_family_never_wedges() {
    let clock = ManualClock::new();
    let registry = Registry::new();
    let family = small_family(&registry, "idle-half-open", &clock, 2);
    fail(family.get_or_insert("tenant-a"), 2);
    fail(family.get_or_insert("tenant-b"), 2);
    // Nobody calls them again; a day later they hold nothing worth keeping.
    clock.advance(Duration::from_secs(86_400));
    let c = family.get_or_insert("tenant-c");
    assert_eq!(c.key(), Some("tenant-c"));
    assert!(
        family.get("tenant-c").is_some(),
        "a breaker of its own, in the family"
    );
    assert_eq!(family.unguarded_calls().total(), 0);
    assert_eq!(family.evictions(), 1);
}

#[test]
fn a_half_open_key_with_a_probe_in_flight_is_kept() {
    let clock = ManualClock::new();
    let registry = Registry::new();
    let family = small_family(&registry, "probing-kept", &clock, 1);
    let a = family.get_or_insert("a");
    fail(&a, 2);
    clock.advance(Duration::from_secs(30));
    let probe = a.try_acquire().expect("a probe");
    assert_eq!(a.state(), State::HalfOpen);
    let b = family.get_or_insert("b");
    assert!(family.get("b").is_none(), "served unguarded: `a` is probing");
    drop(b);
    drop(probe);
    assert!(family.get_or_insert("b").key() == Some("b") && family.get("b").is_some());
    assert_eq!(family.keys(), ["b"]);
}

#[test]
fn one_failing_new_tenant_never_refuses_another_new_tenant() {
    let clock = ManualClock::new();
    let registry = Registry::new();
    let family = small_family(&registry, "no-shared-overflow", &clock, 2);
    fail(family.get_or_insert("a"), 2);
    fail(family.get_or_insert("b"), 2);
    // Every slot holds an open key: a new tenant failing again and again...
    for _ in 0..10 {
        fail(family.get_or_insert("tenant-bad"), 3);
    }
    // ...refuses no other new tenant, and no open key was forgotten.
    for tenant in ["tenant-c", "tenant-d", "tenant-bad"] {
        let b = family.get_or_insert(tenant);
        assert!(ready(b.call(async { Ok::<(), &str>(()) })).is_ok(), "{tenant}");
    }
    for key in ["a", "b"] {
        assert!(refusal(&family.get_or_insert(key)).is_rejected(), "{key}");
    }
    assert_eq!(family.unguarded_calls().full, 13);
}

#[test]
fn a_key_spelled_overflow_is_a_key_like_any_other() {
    let registry = Registry::new();
    let family = registry.family_or_insert("overflow-spelled", Config::default);
    let bad = family.get_or_insert("line\nbreak");
    let overflow = family.get_or_insert("_overflow");
    assert!(!std::sync::Arc::ptr_eq(&bad, &overflow));
    assert_eq!(overflow.key(), Some("_overflow"));
    assert_eq!(family.keys(), ["_overflow"]);
    overflow.force_open();
    assert!(ready(
        family
            .get_or_insert("line\nbreak")
            .call(async { Ok::<(), &str>(()) })
    )
    .is_ok());
}

#[test]
fn a_failure_in_flight_across_an_eviction_opens_the_key() {
    let clock = ManualClock::new();
    let registry = Registry::new();
    let family = small_family(&registry, "in-flight-open", &clock, 1);
    let a = family.get_or_insert("a");
    fail(&a, 1);
    let call = a.try_acquire().expect("closed");
    // Another key takes `a`'s place while the call runs.
    family.get_or_insert("b");
    assert_eq!(family.keys(), ["b"]);
    // The call fails: `a` had two consecutive failures, so it opens...
    call.record(false);
    // ...and the next call on `a` is refused, for the time that remained.
    let next = family.get_or_insert("a");
    assert!(!std::sync::Arc::ptr_eq(&a, &next));
    assert_eq!(next.state(), State::Open);
    let e = refusal(&next);
    assert_eq!(e.key(), Some("a"));
    assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
}

#[test]
fn a_failure_in_flight_across_an_eviction_still_counts_for_the_key() {
    let clock = ManualClock::new();
    let registry = Registry::new();
    let family = small_family(&registry, "in-flight-count", &clock, 1);
    let a = family.get_or_insert("a");
    let call = a.try_acquire().expect("closed");
    family.get_or_insert("b");
    call.record(false);
    let next = family.get_or_insert("a");
    assert_eq!(next.stats().failures, 1);
    assert_eq!(next.stats().consecutive_failures, 1);
    fail(&next, 1);
    assert_eq!(
        next.state(),
        State::Open,
        "two consecutive failures of `a` open it"
    );
}

// ---- 5: transitions reach observers in order ---------------------------------

/// Four threads fail at once on a breaker whose open period ends all the
/// time: every transition an observer is told, and every event a
/// subscriber gets, starts where the one before it ended.
#[test]
fn transitions_reach_observers_and_subscribers_in_the_order_they_happened() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let clock = ManualClock::new();
    let registry = Registry::new();
    let mut events = registry.subscribe();
    let family = registry.family_or_insert("ordered", || {
        Config::builder()
            .clock(clock.clock())
            .failure_threshold(1)
            .half_open_max_calls(4)
            .open_duration(Duration::from_millis(1))
            .build()
            .unwrap()
    });
    let breaker = family.get_or_insert("model");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    breaker.on_transition(move |t| s.lock().unwrap().push((t.from, t.to)));
    let stop = Arc::new(AtomicBool::new(false));
    let ticker = {
        let (clock, stop) = (clock.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                clock.advance(Duration::from_millis(1));
                std::thread::yield_now();
            }
        })
    };
    let subscriber = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut got = Vec::new();
            loop {
                let done = stop.load(Ordering::Acquire);
                while let Some(e) = events.try_recv() {
                    got.push((e.from, e.to));
                }
                if done {
                    return (got, events.missed());
                }
                std::thread::yield_now();
            }
        })
    };
    let workers: Vec<_> = (0..4)
        .map(|i| {
            let breaker = Arc::clone(&breaker);
            std::thread::spawn(move || {
                for n in 0..20_000 {
                    let up = (n + i) % 3 == 0;
                    let _ = ready(breaker.call(async move {
                        if up {
                            Ok(())
                        } else {
                            Err("down")
                        }
                    }));
                    if n % 8 == 0 {
                        std::thread::yield_now();
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Release);
    ticker.join().unwrap();
    let (from_events, missed) = subscriber.join().unwrap();
    let from_observer = seen.lock().unwrap().clone();
    assert!(
        from_observer.len() > 50,
        "the run made {} transitions",
        from_observer.len()
    );
    for (what, list) in [("on_transition", &from_observer), ("subscribe", &from_events)] {
        let broken: Vec<_> = list.windows(2).filter(|w| w[0].1 != w[1].0).collect();
        assert!(
            broken.is_empty(),
            "{what}: {} of {} out of order: {:?}",
            broken.len(),
            list.len(),
            &broken[..broken.len().min(5)]
        );
    }
    assert_eq!(missed, 0);
    assert_eq!(from_events.len(), from_observer.len());
}

// ---- 6: every log line of a keyed breaker names its key ---------------------

#[test]
fn a_throttled_open_and_an_eviction_are_logged_with_their_key() {
    let clock = ManualClock::new();
    let registry = Registry::new();
    let family = small_family(&registry, "logged-keys", &clock, 1);
    let ((), logs) = support::logs_of(|| {
        family
            .get_or_insert("o3-mini")
            .try_acquire()
            .unwrap()
            .record_outcome(Outcome::Throttled);
        family.get_or_insert("o3-mini").reset();
        family.get_or_insert("gpt-4o");
    });
    let throttled = logs
        .lines()
        .find(|l| l.contains("circuit breaker throttled"))
        .unwrap_or_else(|| panic!("no throttled line in {logs}"));
    assert!(throttled.contains("key=\"o3-mini\""), "{throttled}");
    let evicted = logs
        .lines()
        .find(|l| l.contains("evicted key"))
        .unwrap_or_else(|| panic!("no eviction line in {logs}"));
    assert!(
        evicted.contains("DEBUG") && evicted.contains("key=\"o3-mini\""),
        "{evicted}"
    );
}
