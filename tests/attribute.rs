//! Annotated functions at run time: tripping, fallback, classification, timeouts, laziness and
//! shared names. Every test uses its own breaker names: the registry is process-wide.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cb_runtime::{circuit_breaker, registry, BreakerError, Preset, State};

mod support;

#[derive(Debug)]
enum ApiError {
    Breaker(BreakerError),
    Status(u16),
}

impl From<BreakerError> for ApiError {
    fn from(e: BreakerError) -> Self {
        ApiError::Breaker(e)
    }
}

impl ApiError {
    fn is_rejected(&self) -> bool {
        matches!(self, ApiError::Breaker(e) if e.is_rejected())
    }

    fn is_timeout(&self) -> bool {
        matches!(self, ApiError::Breaker(e) if e.is_timeout())
    }
}

fn is_server_error(e: &ApiError) -> bool {
    matches!(e, ApiError::Status(500..=599))
}

fn is_client_error(e: &ApiError) -> bool {
    matches!(e, ApiError::Status(400..=499))
}

static LLM_BODY_RUNS: AtomicU32 = AtomicU32::new(0);

#[circuit_breaker(name = "attr-trip-llm", preset = "llm")]
async fn flaky_llm() -> Result<String, ApiError> {
    LLM_BODY_RUNS.fetch_add(1, Ordering::SeqCst);
    Err(ApiError::Status(503))
}

#[tokio::test]
async fn trips_after_the_presets_threshold_and_then_skips_the_body() {
    let threshold = Preset::Llm.config().failure_threshold();
    for _ in 0..threshold {
        assert!(matches!(flaky_llm().await, Err(ApiError::Status(503))));
    }
    let breaker = registry().get("attr-trip-llm").unwrap();
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(LLM_BODY_RUNS.load(Ordering::SeqCst), threshold);

    let refused = flaky_llm().await.unwrap_err();
    assert!(refused.is_rejected(), "{refused:?}");
    assert_eq!(
        LLM_BODY_RUNS.load(Ordering::SeqCst),
        threshold,
        "an open breaker must not run the body"
    );
    assert_eq!(breaker.stats().rejected, 1);
}

static OVERRIDE_BODY_RUNS: AtomicU32 = AtomicU32::new(0);

#[circuit_breaker(name = "attr-trip-override", preset = "database", failure_threshold = 2)]
async fn flaky_database() -> Result<(), ApiError> {
    OVERRIDE_BODY_RUNS.fetch_add(1, Ordering::SeqCst);
    Err(ApiError::Status(500))
}

#[tokio::test]
async fn an_override_replaces_the_presets_number() {
    assert!(flaky_database().await.is_err());
    assert!(flaky_database().await.is_err());
    assert!(flaky_database().await.unwrap_err().is_rejected());
    assert_eq!(OVERRIDE_BODY_RUNS.load(Ordering::SeqCst), 2);
}

#[circuit_breaker(name = "attr-backoff", preset = "cache", open_backoff = "2 5m 0.1")]
async fn backed_off() -> Result<(), ApiError> {
    Ok(())
}

#[tokio::test]
async fn open_backoff_is_an_override_too() {
    backed_off().await.unwrap();
    let b = registry()
        .get("attr-backoff")
        .unwrap()
        .config()
        .open_backoff()
        .unwrap();
    assert_eq!(b.multiplier(), 2.0);
    assert_eq!(b.max(), std::time::Duration::from_secs(300));
    assert_eq!(b.jitter_fraction(), 0.1);
}

struct Provider {
    body_runs: AtomicU32,
    fallback_runs: AtomicU32,
}

impl Provider {
    #[circuit_breaker(
        name = "attr-fallback",
        preset = "llm",
        failure_threshold = 2,
        // After a success, any 2 errors in a row open it, as before issue 39
        // (the presets ask the window to agree with a run of errors).
        streak_failure_rate = 0,
        fallback = cached
    )]
    async fn complete(&self, prompt: String, fail: bool) -> Result<String, ApiError> {
        self.body_runs.fetch_add(1, Ordering::SeqCst);
        if fail {
            return Err(ApiError::Status(502));
        }
        Ok(format!("fresh answer to {prompt}"))
    }

    async fn cached(&self, prompt: String, _fail: bool) -> Result<String, ApiError> {
        self.fallback_runs.fetch_add(1, Ordering::SeqCst);
        Ok(format!("cached answer to {prompt}"))
    }
}

#[tokio::test]
async fn the_fallback_runs_only_when_the_breaker_refuses() {
    let provider = Provider {
        body_runs: AtomicU32::new(0),
        fallback_runs: AtomicU32::new(0),
    };
    assert_eq!(
        provider.complete("a".into(), false).await.unwrap(),
        "fresh answer to a"
    );
    // The body's own errors come back unchanged; the fallback is not a retry.
    assert!(matches!(
        provider.complete("b".into(), true).await,
        Err(ApiError::Status(502))
    ));
    assert!(matches!(
        provider.complete("c".into(), true).await,
        Err(ApiError::Status(502))
    ));
    assert_eq!(provider.fallback_runs.load(Ordering::SeqCst), 0);

    // Open: the fallback gets the very arguments the body would have taken.
    assert_eq!(
        provider.complete("d".into(), false).await.unwrap(),
        "cached answer to d"
    );
    assert_eq!(provider.body_runs.load(Ordering::SeqCst), 3);
    assert_eq!(provider.fallback_runs.load(Ordering::SeqCst), 1);
}

// `streak_failure_rate = 0`: 2 errors in a row open it after 20 successes (a
// preset alone would ask the window to agree, issue 39).
#[circuit_breaker(
    name = "attr-failure-if",
    failure_threshold = 2,
    streak_failure_rate = 0,
    failure_if = is_server_error
)]
async fn get(status: u16) -> Result<(), ApiError> {
    Err(ApiError::Status(status))
}

#[tokio::test]
async fn failure_if_false_counts_as_a_success() {
    for _ in 0..20 {
        assert!(matches!(get(404).await, Err(ApiError::Status(404))));
    }
    let breaker = registry().get("attr-failure-if").unwrap();
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.stats().successes, 20);
    assert_eq!(breaker.stats().failures, 0);

    assert!(get(500).await.is_err());
    assert!(get(503).await.is_err());
    assert_eq!(breaker.state(), State::Open);
    assert!(get(404).await.unwrap_err().is_rejected());
}

#[circuit_breaker(
    name = "attr-ignore-if",
    failure_threshold = 2,
    streak_failure_rate = 0,
    ignore_if = is_client_error
)]
async fn post(status: u16) -> Result<(), ApiError> {
    if status == 200 {
        return Ok(());
    }
    Err(ApiError::Status(status))
}

#[tokio::test]
async fn ignore_if_true_is_not_counted() {
    for _ in 0..20 {
        assert!(matches!(post(400).await, Err(ApiError::Status(400))));
    }
    post(200).await.unwrap();
    let breaker = registry().get("attr-ignore-if").unwrap();
    let stats = breaker.stats();
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!((stats.successes, stats.failures, stats.ignored), (1, 0, 20));

    assert!(post(500).await.is_err());
    assert!(post(500).await.is_err());
    assert_eq!(breaker.state(), State::Open);
}

#[circuit_breaker(name = "attr-timeout", call_timeout = "100ms", failure_threshold = 2)]
async fn slow(delay_ms: u64) -> Result<u64, ApiError> {
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    Ok(delay_ms)
}

#[tokio::test(start_paused = true)]
async fn call_timeout_abandons_the_call_and_counts_a_failure() {
    assert_eq!(slow(50).await.unwrap(), 50);
    let started = tokio::time::Instant::now();
    let error = slow(10_000).await.unwrap_err();
    assert!(error.is_timeout(), "{error:?}");
    assert_eq!(started.elapsed(), Duration::from_millis(100));

    let breaker = registry().get("attr-timeout").unwrap();
    let stats = breaker.stats();
    assert_eq!((stats.timeouts, stats.consecutive_failures), (1, 1));
    assert!(slow(10_000).await.unwrap_err().is_timeout());
    assert_eq!(breaker.state(), State::Open);
    assert!(slow(1).await.unwrap_err().is_rejected());
}

#[circuit_breaker(name = "attr-lazy")]
async fn lazy() -> Result<(), ApiError> {
    Ok(())
}

#[tokio::test]
async fn the_breaker_is_created_on_the_first_call() {
    assert!(registry().get("attr-lazy").is_none());
    // Making the future is not calling it.
    let pending = lazy();
    assert!(registry().get("attr-lazy").is_none());
    pending.await.unwrap();
    let breaker = registry().get("attr-lazy").unwrap();
    assert_eq!(breaker.name(), "attr-lazy");
    assert_eq!(breaker.config(), Preset::HttpApi.config());
    lazy().await.unwrap();
    assert_eq!(breaker.stats().successes, 2);
}

#[circuit_breaker(name = "attr-generic", failure_threshold = 3)]
async fn parse<T: std::str::FromStr>(text: &str) -> Result<T, ApiError> {
    text.parse().map_err(|_| ApiError::Status(500))
}

#[tokio::test]
async fn every_instantiation_shares_one_breaker() {
    assert!(parse::<u8>("x").await.is_err());
    assert!(parse::<f64>("y").await.is_err());
    assert!(parse::<i64>("z").await.is_err());
    assert!(parse::<u8>("1").await.unwrap_err().is_rejected());
}

#[circuit_breaker(name = "attr-panics", failure_threshold = 1)]
async fn panics(yes: bool) -> Result<(), ApiError> {
    assert!(!yes, "the body panicked");
    Ok(())
}

#[tokio::test]
async fn a_panicking_body_counts_as_a_failure_and_propagates() {
    let spawned = tokio::spawn(panics(true)).await;
    assert!(spawned.unwrap_err().is_panic());
    assert!(panics(false).await.unwrap_err().is_rejected());
}

#[circuit_breaker(name = "attr-shared-name", preset = "cache")]
async fn first_site() -> Result<u8, ApiError> {
    Ok(1)
}

#[circuit_breaker(name = "attr-shared-name", preset = "database")]
async fn second_site() -> Result<u8, ApiError> {
    Ok(2)
}

#[test]
fn two_sites_with_one_name_share_the_first_config_and_warn() {
    let ((), logs) = support::logs_of(|| {
        futures::executor::block_on(async {
            assert_eq!(first_site().await.unwrap(), 1);
            assert_eq!(second_site().await.unwrap(), 2);
        })
    });
    let breaker = registry().get("attr-shared-name").unwrap();
    assert_eq!(breaker.config(), Preset::Cache.config(), "the first config wins");
    assert_eq!(breaker.stats().successes, 2, "both sites use one breaker");

    assert!(logs.contains("WARN"), "{logs}");
    assert!(logs.contains("attribute::first_site"), "{logs}");
    assert!(logs.contains("attribute::second_site"), "{logs}");
}

#[circuit_breaker(name = "attr-same-config")]
async fn same_config_a() -> Result<(), ApiError> {
    Ok(())
}

#[circuit_breaker(name = "attr-same-config")]
async fn same_config_b() -> Result<(), ApiError> {
    Ok(())
}

#[test]
fn two_sites_with_the_same_config_do_not_warn() {
    let ((), logs) = support::logs_of(|| {
        futures::executor::block_on(async {
            same_config_a().await.unwrap();
            same_config_b().await.unwrap();
        })
    });
    assert!(!logs.contains("WARN"), "{logs}");
}

#[circuit_breaker(name = "attr-no-runtime")]
async fn plain() -> Result<u8, ApiError> {
    Ok(7)
}

#[test]
fn an_annotated_call_finishes_on_its_first_poll_without_a_runtime() {
    let mut future = std::pin::pin!(plain());
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut context) {
        std::task::Poll::Ready(result) => assert_eq!(result.unwrap(), 7),
        std::task::Poll::Pending => panic!("a ready body must finish on the first poll"),
    }
}

use std::future::Future as _;
