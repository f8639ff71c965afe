//! Recovery without sacrificing users: health checks while open, and the ramp
//! after closing. Time is a paused tokio clock or a `ManualClock`.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use cb_runtime::clock::ManualClock;
use cb_runtime::{BreakerErrorKind, CircuitBreaker, Clock, Config, Reason, Registry, State};

fn ready<F: Future>(fut: F) -> F::Output {
    match pin!(fut).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the call did not finish on its first poll"),
    }
}

fn fail(b: &CircuitBreaker) {
    let _ = ready(b.call(async { Err::<(), _>("down") }));
}

fn succeed(b: &CircuitBreaker) -> Result<(), cb_runtime::CallError<&'static str>> {
    ready(b.call(async { Ok::<(), &'static str>(()) }))
}

fn ramping(clock: &ManualClock) -> Config {
    Config::builder()
        .clock(clock.clock())
        .failure_threshold(1)
        .open_duration(Duration::from_secs(10))
        .success_threshold(1)
        .ramp_up(Duration::from_secs(90))
        .build()
        .unwrap()
}

/// Opens the breaker, waits out the open period and closes it by a probe.
fn close_by_probe(b: &CircuitBreaker, clock: &ManualClock) {
    fail(b);
    clock.advance(Duration::from_secs(10));
    succeed(b).unwrap();
    assert_eq!(b.state(), State::Closed);
}

// ---- the ramp ---------------------------------------------------------------

#[test]
fn after_a_close_from_half_open_the_admitted_share_grows_from_a_tenth_to_all() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::new("recovery-ramp", ramping(&clock));
    assert_eq!(b.stats().ramp_share(), None, "no ramp before any close");
    close_by_probe(&b, &clock);
    assert_eq!(b.stats().ramp_share(), Some(0.1));

    let before = b.stats().rejected;
    let results: Vec<_> = (0..100).map(|_| succeed(&b)).collect();
    let admitted: Vec<usize> = (0..100).filter(|&i| results[i].is_ok()).collect();
    assert_eq!(admitted, [0, 10, 20, 30, 40, 50, 60, 70, 80, 90]);
    assert_eq!(b.stats().rejected - before, 90, "ramping refusals are rejections");

    let refusal = results[1].as_ref().unwrap_err();
    let refusal = refusal.breaker_error().unwrap();
    assert!(refusal.is_ramping() && refusal.is_rejected() && !refusal.is_throttled());
    assert_eq!(refusal.kind(), BreakerErrorKind::Ramping);
    assert_eq!(refusal.retry_after(), Some(Duration::from_secs(1)));
    assert!(refusal.to_string().contains("ramping up"), "{refusal}");

    // Half way, half of the calls (10 % + 90 % × 40/90).
    clock.advance(Duration::from_secs(40));
    assert_eq!(b.stats().ramp_share(), Some(0.5));
    // At the end, every call.
    clock.advance(Duration::from_secs(50));
    assert_eq!(b.stats().ramp_share(), None);
    assert!((0..100).all(|_| succeed(&b).is_ok()));
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn a_failure_while_ramping_is_judged_by_the_usual_thresholds() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::new("recovery-ramp-fails", ramping(&clock));
    close_by_probe(&b, &clock);
    fail(&b); // the first call of the ramp is admitted, and fails
    assert_eq!(b.state(), State::Open);
    assert_eq!(b.stats().ramp_share(), None);
    let refusal = succeed(&b).unwrap_err();
    assert!(!refusal.breaker_error().unwrap().is_ramping());
}

#[test]
fn no_ramp_after_a_reset_or_without_ramp_up() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::new("recovery-ramp-reset", ramping(&clock));
    fail(&b);
    b.reset();
    assert_eq!(b.stats().ramp_share(), None);
    assert!((0..20).all(|_| succeed(&b).is_ok()));

    let plain = CircuitBreaker::new(
        "recovery-no-ramp",
        ramping(&clock)
            .to_builder()
            .ramp_up(Duration::ZERO)
            .build()
            .unwrap(),
    );
    close_by_probe(&plain, &clock);
    assert_eq!(plain.stats().ramp_share(), None);
    assert!((0..20).all(|_| succeed(&plain).is_ok()));
}

// ---- health checks ----------------------------------------------------------

fn checked(threshold: u32) -> Config {
    Config::builder()
        .failure_threshold(1)
        .open_duration(Duration::from_secs(120))
        .success_threshold(threshold)
        .health_check_interval(Duration::from_secs(10))
        .call_timeout(Duration::from_secs(5))
        .clock(Clock::tokio())
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_registry_breaker_closes_by_health_checks_within_an_interval_of_recovery() {
    let registry = Registry::new();
    let b = registry.get_or_insert("recovery-llm", || checked(2));
    let up = Arc::new(AtomicBool::new(false));
    let u = Arc::clone(&up);
    b.set_health_check(move || {
        let up = u.load(Ordering::Relaxed);
        async move { up }
    });
    let reasons = Arc::new(Mutex::new(Vec::new()));
    let r = Arc::clone(&reasons);
    b.on_transition(move |t| r.lock().unwrap().push((t.from, t.to, t.reason)));

    let _ = b.call(async { Err::<(), _>("down") }).await;
    tokio::time::sleep(Duration::from_secs(35)).await; // 3 failed checks
    up.store(true, Ordering::Relaxed); // the provider is back at 35 s
    tokio::time::sleep(Duration::from_secs(7)).await; // 40 s: pass, 41 s: pass
    assert_eq!(b.state(), State::Closed);
    let s = b.stats();
    assert_eq!((s.health_checks_passed, s.health_checks_failed), (2, 3));
    assert_eq!((s.calls(), s.rejected), (1, 0), "no user call was a probe");
    assert_eq!(
        *reasons.lock().unwrap(),
        [
            (State::Closed, State::Open, Reason::ConsecutiveFailures),
            (State::Open, State::Closed, Reason::HealthCheck)
        ],
        "one transition open → closed, no half-open step"
    );
    assert_eq!(Reason::HealthCheck.to_string(), "health checks passed");
    assert_eq!(
        Reason::from_words("health checks passed"),
        Some(Reason::HealthCheck)
    );
}

#[tokio::test(start_paused = true)]
async fn a_close_by_health_checks_ramps_up() {
    let registry = Registry::new();
    let b = registry.get_or_insert("recovery-check-ramp", || {
        checked(1)
            .to_builder()
            .ramp_up(Duration::from_secs(30))
            .build()
            .unwrap()
    });
    b.set_health_check(|| async { true });
    let _ = b.call(async { Err::<(), _>("down") }).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    tokio::task::yield_now().await;
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.stats().ramp_share(), Some(0.1));
}

#[tokio::test(start_paused = true)]
async fn a_family_checks_its_open_keys_only_given_the_key_and_stops_for_an_evicted_key() {
    let registry = Registry::new();
    let family = registry.family_or_insert("recovery-family", || {
        checked(1).to_builder().max_keys(2).build().unwrap()
    });
    let asked = Arc::new(Mutex::new(Vec::<String>::new()));
    let a = Arc::clone(&asked);
    family.set_health_check(move |key: &str| {
        a.lock().unwrap().push(key.to_owned());
        async { false }
    });
    let down = family.get_or_insert("gpt-4o");
    let up = family.get_or_insert("gpt-4o-mini");
    let _ = down.call(async { Err::<(), _>("down") }).await;
    let _ = up.call(async { Ok::<(), &str>(()) }).await;
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(*asked.lock().unwrap(), ["gpt-4o", "gpt-4o"]);
    assert_eq!(down.stats().health_checks_failed, 2);
    assert_eq!(up.stats().health_checks_failed, 0);

    // A key created later gets the check too; `down`, closed and least
    // recently used, is evicted, and its checks stop for good. A failure of
    // the evicted breaker is handed over to the key's breaker, made again:
    // that one, open, checks as any open key.
    down.reset();
    let _ = family.get_or_insert("gpt-4o-mini");
    let later = family.get_or_insert("o1");
    assert!(later.has_health_check());
    assert!(family.get("gpt-4o").is_none(), "evicted");
    let _ = down.call(async { Err::<(), _>("down") }).await;
    let _ = later.call(async { Err::<(), _>("down") }).await;
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(
        down.stats().health_checks_failed,
        2,
        "the evicted breaker checks no more"
    );
    let again = family.get("gpt-4o").expect("made again by the hand-over");
    assert!(!Arc::ptr_eq(&again, &down));
    assert_eq!(again.state(), State::Open);
    assert_eq!(again.stats().health_checks_failed, 2);
    assert_eq!(later.stats().health_checks_failed, 2);
    let mut asked = asked.lock().unwrap().clone();
    asked.sort();
    assert_eq!(
        asked,
        ["gpt-4o"; 4].into_iter().chain(["o1"; 2]).collect::<Vec<_>>()
    );
}

#[tokio::test(start_paused = true)]
async fn a_family_bounds_its_checks_in_flight() {
    let registry = Registry::new();
    let family = registry.family_or_insert("recovery-bound", || checked(1));
    let in_flight = Arc::new(AtomicU32::new(0));
    let peak = Arc::new(AtomicU32::new(0));
    let (i, p) = (Arc::clone(&in_flight), Arc::clone(&peak));
    family.set_health_check(move |_key: &str| {
        let (i, p) = (Arc::clone(&i), Arc::clone(&p));
        async move {
            let now = i.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(1)).await;
            i.fetch_sub(1, Ordering::SeqCst);
            false
        }
    });
    for n in 0..20 {
        let b = family.get_or_insert(&format!("model-{n}"));
        let _ = b.call(async { Err::<(), _>("down") }).await;
    }
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(
        peak.load(Ordering::SeqCst) as usize,
        cb_runtime::family::MAX_CHECKS_IN_FLIGHT
    );
    let checked: u64 = family
        .breakers()
        .iter()
        .map(|b| b.stats().health_checks_failed)
        .sum();
    assert_eq!(checked, 20, "every open key was checked once by 15 s");
}

// ---- the attribute ----------------------------------------------------------

#[derive(Debug)]
enum LlmError {
    Down,
    Breaker,
}

impl From<cb_runtime::BreakerError> for LlmError {
    fn from(_: cb_runtime::BreakerError) -> Self {
        LlmError::Breaker
    }
}

static PROVIDER_UP: AtomicBool = AtomicBool::new(false);

async fn ping() -> Result<u16, std::io::Error> {
    if PROVIDER_UP.load(Ordering::Relaxed) {
        Ok(200)
    } else {
        Err(std::io::Error::other("connection refused"))
    }
}

#[cb_runtime::circuit_breaker(
    name = "recovery-attribute",
    failure_threshold = 1,
    success_threshold = 1,
    open_duration = "10m",
    health_check_interval = "2s",
    health_check = ping
)]
async fn complete(up: bool) -> Result<&'static str, LlmError> {
    if up {
        Ok("ok")
    } else {
        Err(LlmError::Down)
    }
}

static MODELS_UP: Mutex<Vec<String>> = Mutex::new(Vec::new());

async fn model_ready(model: &str) -> Result<(), String> {
    if MODELS_UP.lock().unwrap().iter().any(|m| m == model) {
        Ok(())
    } else {
        Err(format!("{model} is down"))
    }
}

#[cb_runtime::circuit_breaker(
    name = "recovery-attribute-keyed",
    key = model,
    failure_threshold = 1,
    success_threshold = 1,
    open_duration = "10m",
    health_check_interval = "2s",
    health_check = model_ready
)]
async fn complete_with(model: &str, up: bool) -> Result<&'static str, LlmError> {
    if up {
        Ok("ok")
    } else {
        Err(LlmError::Down)
    }
}

#[tokio::test(start_paused = true)]
async fn the_attribute_installs_the_health_check_with_the_breaker() {
    assert!(matches!(complete(false).await, Err(LlmError::Down)));
    assert!(matches!(complete(true).await, Err(LlmError::Breaker)));
    let breaker = cb_runtime::registry().get("recovery-attribute").unwrap();
    assert!(breaker.has_health_check());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        breaker.state(),
        State::Open,
        "the check fails while the provider is down"
    );
    PROVIDER_UP.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(breaker.state(), State::Closed);
    assert!(matches!(complete(true).await, Ok("ok")));
    let s = breaker.stats();
    assert_eq!((s.health_checks_passed, s.health_checks_failed), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn a_keyed_attribute_checks_each_open_key_with_its_key() {
    MODELS_UP.lock().unwrap().push("gpt-4o-mini".to_owned());
    assert!(complete_with("gpt-4o", false).await.is_err());
    assert!(complete_with("gpt-4o-mini", false).await.is_err());
    let family = cb_runtime::registry().family("recovery-attribute-keyed").unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(family.get("gpt-4o-mini").unwrap().state(), State::Closed);
    assert_eq!(family.get("gpt-4o").unwrap().state(), State::Open);
    assert!(matches!(complete_with("gpt-4o-mini", true).await, Ok("ok")));
}

/// `GET /circuit-breakers/{name}` of the admin API.
async fn admin_view(registry: &'static Registry, name: &str) -> serde_json::Value {
    use tower::ServiceExt;
    let router = cb_runtime::admin::router(registry, cb_runtime::admin::AdminAuth::bearer("operator-token"));
    let request = axum::http::Request::builder()
        .uri(format!("/circuit-breakers/{name}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let response = router.oneshot(request).await.unwrap();
    assert_eq!(response.status(), axum::http::StatusCode::OK);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_admin_api_shows_the_last_check_its_counts_and_the_ramp_share() {
    let registry: &'static Registry = Box::leak(Box::new(Registry::new()));
    let b = registry.get_or_insert("recovery-admin", || {
        checked(1)
            .to_builder()
            .ramp_up(Duration::from_secs(30))
            .build()
            .unwrap()
    });
    let up = Arc::new(AtomicBool::new(false));
    let u = Arc::clone(&up);
    b.set_health_check(move || {
        let up = u.load(Ordering::Relaxed);
        async move { up }
    });
    let before = admin_view(registry, "recovery-admin").await;
    assert!(before["last_health_check"].is_null(), "{before}");
    assert!(before["ramp_share"].is_null(), "{before}");

    let _ = b.call(async { Err::<(), _>("down") }).await;
    tokio::time::sleep(Duration::from_secs(25)).await; // checks at 10 s and 20 s fail
    let open = admin_view(registry, "recovery-admin").await;
    assert_eq!(open["state"], "open", "{open}");
    assert_eq!(open["last_health_check"]["passed"], false, "{open}");
    assert!(open["last_health_check"]["at_ms"].as_u64().unwrap() > 1_600_000_000_000);
    assert_eq!(open["stats"]["health_checks_failed"], 2, "{open}");
    assert_eq!(open["stats"]["health_checks_passed"], 0, "{open}");

    up.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(6)).await; // the check at 30 s passes
    let closed = admin_view(registry, "recovery-admin").await;
    assert_eq!(closed["state"], "closed", "{closed}");
    assert_eq!(closed["last_health_check"]["passed"], true, "{closed}");
    assert_eq!(closed["stats"]["health_checks_passed"], 1, "{closed}");
    let share = closed["ramp_share"].as_f64().expect("ramping after the close");
    assert!((0.1..0.5).contains(&share), "{closed}");
}

/// One step of a ramp's property test.
#[derive(Clone, Debug)]
enum Step {
    Advance(u64),
    Call(bool),
}

fn steps() -> impl proptest::strategy::Strategy<Value = Vec<Step>> {
    use proptest::prelude::*;
    proptest::collection::vec(
        prop_oneof![
            1 => (0u64..4_000).prop_map(Step::Advance),
            4 => any::<bool>().prop_map(Step::Call),
        ],
        1..300,
    )
}

proptest::proptest! {
    /// Against a model of the ramp: the share grows linearly from 10 % to
    /// 100 % over `ramp_up` on the breaker's clock, the `n`-th call of the
    /// ramp is admitted exactly when fewer than `n × share` calls were, every
    /// refusal says it is ramping with a short wait, and the counts add up.
    /// Failures never open this breaker (its thresholds are out of reach), so
    /// only the ramp decides.
    #[test]
    fn the_ramp_admits_what_its_model_admits(steps in steps()) {
        const PPM: u128 = 1_000_000;
        let ramp = Duration::from_secs(30);
        let clock = ManualClock::new();
        let b = CircuitBreaker::new(
            "ramp-model",
            Config::builder()
                .failure_threshold(u32::MAX)
                .failure_rate_threshold(1.0)
                .success_threshold(1)
                .ramp_up(ramp)
                .clock(clock.clock())
                .build()
                .unwrap(),
        );
        b.open_for(Duration::from_secs(10));
        clock.advance(Duration::from_secs(10));
        succeed(&b).unwrap(); // the probe closes it: the ramp starts now
        let (mut elapsed, mut seen, mut admitted, mut refused) = (0u128, 0u128, 0u128, 0u64);
        let ramp_nanos = ramp.as_nanos();
        for step in steps {
            match step {
                Step::Advance(ms) => {
                    clock.advance(Duration::from_millis(ms));
                    elapsed += u128::from(ms) * 1_000_000;
                }
                Step::Call(ok) => {
                    let share = (elapsed < ramp_nanos)
                        .then(|| 100_000 + (PPM - 100_000) * elapsed / ramp_nanos);
                    let expected = match share {
                        None => true,
                        Some(share) => {
                            seen += 1;
                            admitted * PPM < seen * share
                        }
                    };
                    let got = ready(b.call(async move { if ok { Ok(()) } else { Err("no") } }));
                    match got {
                        Err(cb_runtime::CallError::Rejected(e)) => {
                            proptest::prop_assert!(!expected, "refused where the model admits");
                            proptest::prop_assert!(e.is_ramping(), "{e}");
                            let wait = e.retry_after().unwrap();
                            proptest::prop_assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
                            refused += 1;
                        }
                        _ => {
                            proptest::prop_assert!(expected, "admitted where the model refuses");
                            if share.is_some() {
                                admitted += 1;
                            }
                        }
                    }
                    proptest::prop_assert_eq!(b.state(), State::Closed);
                }
            }
            let share = b.stats().ramp_share();
            if elapsed < ramp_nanos {
                let model = (100_000 + (PPM - 100_000) * elapsed / ramp_nanos) as f64 / PPM as f64;
                proptest::prop_assert_eq!(share, Some(model));
            } else {
                proptest::prop_assert_eq!(share, None);
            }
        }
        proptest::prop_assert_eq!(b.stats().rejected, refused);
    }
}
