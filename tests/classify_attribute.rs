//! `classify = path` in the attribute: a `fn(&E) -> Outcome` decides how each
//! error counts, for plain and streamed calls, with `retry_after`'s hint for
//! what it calls throttled, and with `fallback_on = "failure"`.

use std::time::Duration;

use cb_runtime::{circuit_breaker, registry, BreakerError, Outcome, State};

#[derive(Debug, PartialEq)]
enum DbError {
    UniqueViolation,
    ConnectionLost,
    TooManyConnections,
    Breaker(BreakerError),
}

impl From<BreakerError> for DbError {
    fn from(e: BreakerError) -> Self {
        DbError::Breaker(e)
    }
}

fn judge(e: &DbError) -> Outcome {
    match e {
        DbError::UniqueViolation => Outcome::Ignored,
        DbError::ConnectionLost => Outcome::Failure,
        DbError::TooManyConnections => Outcome::Throttled,
        DbError::Breaker(_) => Outcome::Ignored,
    }
}

fn hint(e: &DbError) -> Option<Duration> {
    (*e == DbError::TooManyConnections).then_some(Duration::from_secs(7))
}

#[circuit_breaker(name = "classify-attr", failure_threshold = 2, streak_failure_rate = 0, classify = judge)]
async fn insert(answer: fn() -> Result<u32, DbError>) -> Result<u32, DbError> {
    answer()
}

#[circuit_breaker(name = "classify-attr-hint", classify = judge, retry_after = hint)]
async fn insert_hinted(answer: fn() -> Result<u32, DbError>) -> Result<u32, DbError> {
    answer()
}

async fn cached(_: fn() -> Result<u32, DbError>) -> Result<u32, DbError> {
    Ok(0)
}

#[circuit_breaker(name = "classify-attr-fallback", classify = judge, fallback = cached, fallback_on = "failure")]
async fn insert_or_cached(answer: fn() -> Result<u32, DbError>) -> Result<u32, DbError> {
    answer()
}

#[tokio::test]
async fn the_classify_function_decides_each_errors_outcome() {
    assert_eq!(insert(|| Ok(1)).await, Ok(1));
    assert_eq!(
        insert(|| Err(DbError::UniqueViolation)).await,
        Err(DbError::UniqueViolation)
    );
    assert_eq!(
        insert(|| Err(DbError::UniqueViolation)).await,
        Err(DbError::UniqueViolation)
    );
    let breaker = registry().get("classify-attr").unwrap();
    let stats = breaker.stats();
    assert_eq!((stats.successes, stats.ignored, stats.failures), (1, 2, 0));

    for _ in 0..2 {
        assert_eq!(
            insert(|| Err(DbError::ConnectionLost)).await,
            Err(DbError::ConnectionLost)
        );
    }
    assert_eq!(breaker.state(), State::Open);
    assert!(matches!(insert(|| Ok(1)).await, Err(DbError::Breaker(e)) if e.is_rejected()));
}

#[tokio::test]
async fn what_it_calls_throttled_opens_for_the_retry_after_hint() {
    let result = insert_hinted(|| Err(DbError::TooManyConnections)).await;
    assert_eq!(result, Err(DbError::TooManyConnections));
    let breaker = registry().get("classify-attr-hint").unwrap();
    let stats = breaker.stats();
    assert_eq!((stats.throttled, stats.failures), (1, 0));
    let refusal = breaker.try_acquire().unwrap_err();
    assert!(refusal.is_throttled());
    let left = refusal.retry_after().unwrap();
    assert!(
        left > Duration::from_secs(6) && left <= Duration::from_secs(7),
        "{left:?}"
    );
}

#[tokio::test]
async fn the_fallback_runs_for_what_it_calls_a_failure_only() {
    assert_eq!(insert_or_cached(|| Err(DbError::ConnectionLost)).await, Ok(0));
    assert_eq!(
        insert_or_cached(|| Err(DbError::UniqueViolation)).await,
        Err(DbError::UniqueViolation)
    );
}
