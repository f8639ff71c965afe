//! Keyed families under churn, attack and restarts: each test here is one
//! defect found by a review and a trial of an LLM gateway, and failed before
//! its fix. See the guide's keyed chapter for the design they hold.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use cb_runtime::clock::ManualClock;
use cb_runtime::{BreakerError, CircuitBreaker, Config, Registry, State};

fn ready<F: Future>(fut: F) -> F::Output {
    match pin!(fut).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the call did not finish on its first poll"),
    }
}

fn fail(b: &CircuitBreaker, times: usize) {
    for _ in 0..times {
        let _ = ready(b.call(async { Err::<(), _>("down") }));
    }
}

fn config(clock: &ManualClock) -> Config {
    Config::builder()
        .clock(clock.clock())
        .failure_threshold(2)
        .open_duration(Duration::from_secs(30))
        .build()
        .unwrap()
}

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
    let b = CircuitBreaker::new("half-open-hint", probes);
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
