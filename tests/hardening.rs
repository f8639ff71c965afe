//! User code that panics, late `Retry-After` hints, the lazy `CB_CONFIG`
//! load, locks held around observers, and names: the hardening of the
//! runtime. Each test failed before its fix.

mod support;

use std::convert::Infallible;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::task::Poll;
use std::time::Duration;

use cb_runtime::admin::{router, AdminAuth};
use cb_runtime::clock::ManualClock;
use cb_runtime::metrics::BreakerCollector;
use cb_runtime::tower::{CircuitBreakerLayer, HttpClassifier};
use cb_runtime::{CallError, CircuitBreaker, Config, Outcome, Preset, Registry, State};
use http::{Request, Response, StatusCode};
use prometheus::core::Collector;
use support::{logs_of, poll_once, secs, silence_deliberate_panics, DELIBERATE_PANIC};
use tower::{service_fn, Layer, ServiceExt};

/// A breaker on a manual clock that opens after one failure, for 10 s.
fn tripped(name: &str) -> (CircuitBreaker, ManualClock) {
    let clock = ManualClock::new();
    let config = Config::builder()
        .failure_threshold(1)
        .open_duration(secs(10))
        .half_open_max_calls(1)
        .success_threshold(1)
        .clock(clock.clock())
        .build()
        .unwrap();
    let breaker = CircuitBreaker::new(name, config);
    let _ = poll_once(breaker.call(async { Err::<(), _>("down") }));
    assert_eq!(breaker.state(), State::Open);
    (breaker, clock)
}

fn panics<R>(f: impl FnOnce() -> R) -> bool {
    silence_deliberate_panics();
    catch_unwind(AssertUnwindSafe(f)).is_err()
}

// ---- 1. A classifier that panics -------------------------------------------

#[test]
fn panicking_classifier_in_call_with_counts_a_failure_and_frees_the_probe() {
    let (breaker, clock) = tripped("hardening-classifier-call-with");
    clock.advance(secs(10));
    assert!(panics(|| poll_once(
        breaker.call_with(async { Ok::<u8, ()>(1) }, |_| { panic!("{}", DELIBERATE_PANIC) })
    )));
    let stats = breaker.stats();
    assert_eq!(stats.half_open_in_flight, 0, "the probe's slot came back");
    assert_eq!(stats.failures, 2, "the panicking probe counts as a failure");
    assert_eq!(breaker.state(), State::Open, "a failed probe reopens");
    clock.advance(secs(10));
    assert_eq!(
        poll_once(breaker.call(async { Ok::<u8, ()>(2) })),
        Poll::Ready(Ok(2))
    );
    assert_eq!(
        breaker.state(),
        State::Closed,
        "the next probe is let through and closes it"
    );
}

#[test]
fn panicking_classifier_in_permit_run_with_gives_the_permit_back() {
    let (breaker, clock) = tripped("hardening-classifier-run-with");
    clock.advance(secs(10));
    let permit = breaker.try_acquire().unwrap();
    assert!(panics(|| poll_once(
        permit.run_with(async { Err::<u8, ()>(()) }, |_| {
            panic!("{}", DELIBERATE_PANIC)
        })
    )));
    assert_eq!(breaker.stats().half_open_in_flight, 0);
    assert_eq!(
        breaker.stats().calls(),
        breaker.stats().failures + breaker.stats().rejected
    );
}

#[tokio::test]
async fn panicking_tower_classifier_gives_the_permit_back() {
    silence_deliberate_panics();
    let (breaker, clock) = tripped("hardening-classifier-tower");
    let breaker = Arc::new(breaker);
    clock.advance(secs(10));
    let layer = CircuitBreakerLayer::new(Arc::clone(&breaker))
        .classifier(|_: &Result<u8, Infallible>| -> Outcome { panic!("{}", DELIBERATE_PANIC) });
    let service = layer.layer(service_fn(|_: ()| async { Ok::<u8, Infallible>(1) }));
    let probe = tokio::spawn(service.oneshot(()));
    assert!(probe.await.unwrap_err().is_panic());
    assert_eq!(breaker.stats().half_open_in_flight, 0);
    assert_eq!(breaker.state(), State::Open);
}

// ---- 2. An observer that panics --------------------------------------------

#[test]
fn panicking_observer_does_not_leak_the_first_probe() {
    let (breaker, clock) = tripped("hardening-observer-probe");
    breaker.on_transition(|t| {
        if t.to == State::HalfOpen {
            panic!("{}", DELIBERATE_PANIC);
        }
    });
    silence_deliberate_panics();
    clock.advance(secs(10));
    let (answer, logs) = logs_of(|| poll_once(breaker.call(async { Ok::<u8, ()>(1) })));
    assert_eq!(
        answer,
        Poll::Ready(Ok(1)),
        "the caller that made the move got its probe"
    );
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.stats().half_open_in_flight, 0);
    assert!(
        logs.contains("ERROR") && logs.contains("hardening-observer-probe") && logs.contains("panicked"),
        "{logs}"
    );
}

#[test]
fn observer_panicking_while_a_call_panics_does_not_abort() {
    // The call's panic unwinds through its guard, whose failure opens the
    // circuit, whose observer panics: a second escaping panic would abort.
    let clock = ManualClock::new();
    let config = Config::builder()
        .failure_threshold(1)
        .clock(clock.clock())
        .build()
        .unwrap();
    let breaker = CircuitBreaker::new("hardening-observer-unwinding", config);
    let told = Arc::new(AtomicUsize::new(0));
    let t = Arc::clone(&told);
    breaker.on_transition(move |_| {
        t.fetch_add(1, Ordering::SeqCst);
        panic!("{}", DELIBERATE_PANIC);
    });
    let later = Arc::clone(&told);
    breaker.on_transition(move |_| {
        later.fetch_add(1, Ordering::SeqCst);
    });
    assert!(panics(|| poll_once(breaker.call(async {
        panic!("{}", DELIBERATE_PANIC);
        #[allow(unreachable_code)]
        Ok::<(), ()>(())
    }))));
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(
        told.load(Ordering::SeqCst),
        2,
        "the observer after the panicking one still ran"
    );
}

// ---- 3. Late and unwanted `Retry-After` hints ------------------------------

fn status(code: u16, retry_after: Option<&str>) -> Response<()> {
    let mut response = Response::builder().status(code);
    if let Some(after) = retry_after {
        response = response.header("retry-after", after);
    }
    response.body(()).unwrap()
}

#[tokio::test]
async fn late_retry_after_does_not_shorten_a_newer_open_period() {
    let clock = ManualClock::new();
    let config = Config::builder()
        .failure_threshold(1)
        .open_duration(secs(60))
        .clock(clock.clock())
        .build()
        .unwrap();
    let breaker = Arc::new(CircuitBreaker::new("hardening-late-hint", config));
    let (release_a, a_answer) = tokio::sync::oneshot::channel::<Response<()>>();
    let a_answer = Arc::new(tokio::sync::Mutex::new(Some(a_answer)));
    let service = CircuitBreakerLayer::new(Arc::clone(&breaker)).layer(service_fn(
        move |req: Request<&'static str>| {
            let a_answer = Arc::clone(&a_answer);
            let which = *req.body();
            async move {
                Ok::<_, Infallible>(match which {
                    "a" => a_answer.lock().await.take().unwrap().await.unwrap(),
                    _ => status(500, None),
                })
            }
        },
    ));
    // A is admitted while closed, and held.
    let a = tokio::spawn(service.clone().oneshot(Request::new("a")));
    tokio::task::yield_now().await;
    // B fails: the circuit opens for 60 s.
    let b = service.clone().oneshot(Request::new("b")).await.unwrap();
    assert_eq!(b.status(), 500);
    assert_eq!(breaker.state(), State::Open);
    // A comes back late with a 429 and `Retry-After: 1`.
    release_a.send(status(429, Some("1"))).unwrap();
    assert_eq!(a.await.unwrap().unwrap().status(), 429);
    clock.advance(secs(2));
    assert_eq!(
        breaker.state(),
        State::Open,
        "the late hint did not shorten the 60 s"
    );
    clock.advance(secs(58));
    assert_eq!(breaker.state(), State::HalfOpen);
}

#[tokio::test]
async fn retry_after_of_the_call_that_trips_the_circuit_applies() {
    let clock = ManualClock::new();
    let config = Config::builder()
        .failure_threshold(1)
        .open_duration(secs(10))
        .clock(clock.clock())
        .build()
        .unwrap();
    let breaker = Arc::new(CircuitBreaker::new("hardening-tripping-hint", config));
    let service = CircuitBreakerLayer::new(Arc::clone(&breaker)).layer(service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(status(503, Some("120")))
    }));
    let _ = service.oneshot(Request::new(())).await;
    let opened = breaker.stats();
    assert_eq!(opened.state, State::Open);
    clock.advance(secs(60));
    assert_eq!(
        breaker.state(),
        State::Open,
        "open for the 120 s asked, not the 10 s configured"
    );
    clock.advance(secs(60));
    assert_eq!(breaker.state(), State::HalfOpen);
}

#[tokio::test]
async fn max_retry_after_zero_ignores_hints() {
    let registry = Registry::with_env(Vec::new);
    let layer = CircuitBreakerLayer::in_registry(&registry, "hardening-zero-max", Preset::Llm)
        .max_retry_after(Duration::ZERO);
    let breaker = Arc::clone(layer.breaker());
    let service = layer.layer(service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(status(429, Some("30")))
    }));
    let _ = service.oneshot(Request::new(())).await;
    // A 429 is throttled: open, but for the llm preset's throttle_duration
    // (10 s), not the 30 s hint the layer was told to ignore.
    assert_eq!(breaker.state(), State::Open);
    let left = breaker.open_remaining().unwrap();
    assert!(left <= secs(10) && left > secs(5), "{left:?}");
    assert_eq!(breaker.stats().failures, 0);
    assert_eq!(
        registry.transitions("hardening-zero-max", State::Closed, State::Open),
        1
    );
}

#[tokio::test]
async fn ignored_response_opens_nothing_through_its_hint() {
    let registry = Registry::with_env(Vec::new);
    let layer = CircuitBreakerLayer::in_registry(&registry, "hardening-ignored-hint", Preset::Llm)
        .classifier(HttpClassifier::with(|s| match s {
            StatusCode::TOO_MANY_REQUESTS => Outcome::Ignored,
            s if s.is_server_error() => Outcome::Failure,
            _ => Outcome::Success,
        }));
    let breaker = Arc::clone(layer.breaker());
    let service = layer.layer(service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(status(429, Some("30")))
    }));
    let _ = service.oneshot(Request::new(())).await;
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.stats().ignored, 1);
}

// ---- 4. `CB_CONFIG`, loaded exactly once ------------------------------------

fn config_file(text: &str) -> std::path::PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "cb-hardening-{}-{}.toml",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::write(&path, text).unwrap();
    path
}

/// A registry whose `CB_CONFIG` is `path`; its first look at the environment
/// is slow, so that concurrent creators race with the lazy load.
fn slow_env_registry(path: &std::path::Path) -> &'static Registry {
    let path = path.display().to_string();
    let first = AtomicBool::new(true);
    Box::leak(Box::new(Registry::with_env(move || {
        if first.swap(false, Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
        }
        vec![("CB_CONFIG".to_owned(), path.clone())]
    })))
}

#[test]
fn concurrent_creators_all_get_the_cb_config_file() {
    let path = config_file("[defaults]\nfailure_threshold = 7\n");
    let registry = slow_env_registry(&path);
    let start = Arc::new(Barrier::new(4));
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                registry
                    .get_or_insert(&format!("race-{i}"), Config::default)
                    .config()
                    .failure_threshold()
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 7, "every breaker resolved with the file");
    }
    std::fs::remove_file(path).unwrap();
}

#[test]
fn explicit_load_wins_over_a_concurrent_lazy_cb_config_load() {
    let path = config_file("[defaults]\nfailure_threshold = 7\n");
    let registry = slow_env_registry(&path);
    let creator = std::thread::spawn(move || registry.get_or_insert("lazy", Config::default));
    std::thread::sleep(Duration::from_millis(20)); // the lazy load is under way
    registry
        .load_str("[defaults]\nfailure_threshold = 9\n", "explicit.toml")
        .unwrap();
    let lazy = creator.join().unwrap();
    assert_eq!(lazy.config().failure_threshold(), 9);
    assert_eq!(
        registry
            .get_or_insert("later", Config::default)
            .config()
            .failure_threshold(),
        9
    );
    std::fs::remove_file(path).unwrap();
}

// ---- 5. No lock held while observers run ------------------------------------

/// Runs `f` on another thread, failing if it does not finish in 10 s (a
/// deadlock).
fn within_10s(f: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        f();
        let _ = done.send(());
    });
    finished
        .recv_timeout(Duration::from_secs(10))
        .expect("deadlock: the registry held a lock while an observer ran");
}

#[test]
fn observer_may_use_the_registry_during_reconfigure_and_load() {
    within_10s(|| {
        let registry: &'static Registry = Box::leak(Box::new(Registry::with_env(Vec::new)));
        let threshold = |n| Config::builder().failure_threshold(n).build().unwrap();
        let breaker = registry.get_or_insert("observed", || threshold(5));
        breaker.on_transition(move |t| {
            // Creating a breaker takes the registry's configuration lock.
            registry.get_or_insert(&format!("made-on-{}", t.to), Config::default);
        });
        for _ in 0..3 {
            let _ = poll_once(breaker.call(async { Err::<(), _>("down") }));
        }
        registry.reconfigure("observed", threshold(2)).unwrap(); // opens it
        assert_eq!(breaker.state(), State::Open);
        assert!(registry.get("made-on-open").is_some());

        breaker.reset();
        for _ in 0..2 {
            let _ = poll_once(breaker.call(async { Err::<(), _>("down") }));
        }
        registry.reconfigure("observed", threshold(5)).unwrap();
        registry
            .load_str("[breakers.observed]\nfailure_threshold = 1\n", "x.toml")
            .unwrap(); // opens it
        assert_eq!(breaker.state(), State::Open);
    });
}

// ---- 6. A second configuration for one name ---------------------------------

#[test]
fn second_configuration_for_a_name_warns_naming_both_call_sites() {
    let registry = Registry::with_env(Vec::new);
    let ((), logs) = logs_of(|| {
        let llm = CircuitBreakerLayer::in_registry(&registry, "shared-x", Preset::Llm);
        let cache = CircuitBreakerLayer::in_registry(&registry, "shared-x", Preset::Cache);
        assert!(
            Arc::ptr_eq(llm.breaker(), cache.breaker()),
            "one name, one breaker"
        );
    });
    let warnings: Vec<&str> = logs.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{logs}");
    assert!(warnings[0].contains("shared-x"), "{logs}");
    let sites: std::collections::BTreeSet<&str> = warnings[0]
        .split("tests/hardening.rs:")
        .skip(1)
        .map(|rest| rest.split(':').next().unwrap())
        .collect();
    assert_eq!(sites.len(), 2, "both call sites are named: {logs}");
    assert!(
        warnings[0].contains("llm") && warnings[0].contains("cache"),
        "{logs}"
    );
}

#[test]
fn plain_get_or_insert_with_another_config_warns_once() {
    let registry = Registry::with_env(Vec::new);
    let ((), logs) = logs_of(|| {
        registry.get_or_insert("twice", Config::default);
        registry.get_or_insert("twice", Config::default); // the same: no warning
        for _ in 0..3 {
            registry.get_or_insert("twice", || Preset::Database.config());
        }
    });
    assert_eq!(logs.lines().filter(|l| l.contains("WARN")).count(), 1, "{logs}");
}

// ---- 7. Environment names -------------------------------------------------------

#[test]
fn names_sharing_environment_variables_warn_and_fail_validate_env() {
    let registry = Registry::with_env(|| vec![("CB_A_B_FAILURE_THRESHOLD".into(), "3".into())]);
    let ((), logs) = logs_of(|| {
        registry.get_or_insert("a-b", Config::default);
        registry.get_or_insert("A.B", Config::default);
    });
    assert!(logs.contains("WARN") && logs.contains("CB_A_B_"), "{logs}");
    let err = registry.validate_env().unwrap_err();
    assert!(err.to_string().contains("CB_A_B_FAILURE_THRESHOLD"), "{err}");
    assert!(
        err.to_string().contains("`A.B`") && err.to_string().contains("`a-b`"),
        "{err}"
    );
    assert!(registry.validate_config().is_err());
}

#[test]
fn non_ascii_names_read_distinct_variables() {
    assert_eq!(cb_runtime::env_name("ünï"), "U00FCNU00EF");
    assert_ne!(cb_runtime::env_name("ünï"), cb_runtime::env_name("ïnü"));
    let registry = Registry::with_env(|| vec![("CB_CAFU00E9_FAILURE_THRESHOLD".into(), "4".into())]);
    assert_eq!(
        registry
            .get_or_insert("café", Config::default)
            .config()
            .failure_threshold(),
        4
    );
    assert_eq!(
        registry
            .get_or_insert("cafè", Config::default)
            .config()
            .failure_threshold(),
        5
    );
}

// ---- 8 and 9. The admin token, and names the admin API can address ----------

async fn post(app: &axum::Router, path: &str, authorization: &str) -> StatusCode {
    let request = Request::post(path)
        .header("authorization", authorization)
        .body(axum::body::Body::empty())
        .unwrap();
    app.clone().oneshot(request).await.unwrap().status()
}

#[tokio::test]
async fn admin_token_is_trimmed_and_its_scheme_case_insensitive() {
    let registry: &'static Registry = Box::leak(Box::new(Registry::with_env(Vec::new)));
    registry.get_or_insert("svc", Config::default);
    let app = router(registry, AdminAuth::bearer("s3cret\n"));
    for authorization in [
        "Bearer s3cret",
        "BEARER s3cret",
        "bearer  s3cret ",
        "BeArEr s3cret",
    ] {
        assert_eq!(
            post(&app, "/circuit-breakers/svc/reset", authorization).await,
            200,
            "{authorization}"
        );
    }
    for authorization in ["Bearer s3cretX", "Basic s3cret", "Bearer", "s3cret"] {
        assert_eq!(
            post(&app, "/circuit-breakers/svc/reset", authorization).await,
            401,
            "{authorization}"
        );
    }
}

#[test]
fn unusable_admin_token_is_refused_when_built() {
    let err = AdminAuth::try_bearer("pässword").unwrap_err();
    assert!(
        err.to_string().contains("'ä'") && err.to_string().contains("visible ASCII"),
        "{err}"
    );
    assert!(AdminAuth::try_bearer("tab\there").is_err());
    assert!(AdminAuth::try_bearer("correct horse battery staple")
        .unwrap()
        .mutations_enabled());
    let (auth, logs) = logs_of(|| AdminAuth::bearer("pässword"));
    assert!(!auth.mutations_enabled(), "fails closed");
    assert!(logs.contains("ERROR"), "{logs}");
}

#[tokio::test]
async fn every_breaker_name_is_addressable_by_the_admin_api() {
    let registry: &'static Registry = Box::leak(Box::new(Registry::with_env(Vec::new)));
    let long = "n".repeat(300);
    for name in ["line\nbreak", "", &long, "ünï cödé/100%"] {
        registry.get_or_insert(name, Config::default);
    }
    let app = router(registry, AdminAuth::disabled());
    for name in registry.names() {
        assert!(cb_syntax::check_name(&name).is_ok(), "{name:?}");
        let encoded: String = name
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let request = Request::get(format!("/circuit-breakers/{encoded}"))
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(
            app.clone().oneshot(request).await.unwrap().status(),
            200,
            "{name:?}"
        );
    }
    assert!(CircuitBreaker::try_new("line\nbreak", Config::default()).is_err());
    assert_eq!(
        CircuitBreaker::new("line\nbreak", Config::default()).name(),
        "line\u{FFFD}break"
    );
}

// ---- 10. A removed breaker leaves `/metrics` ----------------------------------

#[test]
fn removed_breaker_leaves_the_metrics_exposition() {
    let registry: &'static Registry = Box::leak(Box::new(Registry::with_env(Vec::new)));
    registry.record_call_durations();
    let gone = registry.get_or_insert("to-be-removed", Config::default);
    let _ = poll_once(gone.call(async { Ok::<(), ()>(()) }));
    registry.get_or_insert("kept", Config::default);
    let collector = BreakerCollector::new(registry);
    let text = || cb_runtime::metrics::encode(&collector.collect());
    assert!(text().contains("to-be-removed"));
    registry.remove("to-be-removed");
    let after = text();
    assert!(!after.contains("to-be-removed"), "{after}");
    assert!(after.contains("kept"));
}

// ---- 11. Slow-call durations the clock cannot time ------------------------------

#[test]
fn slow_call_duration_below_the_system_clocks_floor_is_refused() {
    let err = Config::builder()
        .slow_call_duration(Duration::from_millis(1))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "slow_call_duration");
    assert!(err.to_string().contains("at least 10ms"), "{err}");
    assert!(Config::builder()
        .slow_call_duration(cb_runtime::MIN_SLOW_CALL_DURATION)
        .build()
        .is_ok());
    // A manual clock is exact: any duration can be timed.
    let exact = Config::builder()
        .slow_call_duration(Duration::from_micros(1))
        .clock(ManualClock::new().clock())
        .build();
    assert!(exact.is_ok());
}

#[test]
fn fast_calls_are_never_slow_at_the_floor() {
    let config = Config::builder()
        .slow_call_duration(cb_runtime::MIN_SLOW_CALL_DURATION)
        .slow_call_rate_threshold(1.0)
        .build()
        .unwrap();
    let breaker = CircuitBreaker::new("hardening-fast-calls", config);
    for _ in 0..2_000 {
        let _ = poll_once(breaker.call(async { Ok::<(), CallError<()>>(()) }));
    }
    assert_eq!(breaker.stats().slow_calls, 0);
}
