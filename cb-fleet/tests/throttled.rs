//! Fleet mode and rate limits: a throttled open is shared like any open
//! (replicas usually share one API key and its limit), for the provider's
//! hint, not `open_duration` or `throttle_duration`; a throttled probe
//! reopens every replica for its hint.
//! Against real redis-server processes; skipped, saying why, when
//! redis-server is missing, unless CB_REQUIRE_REDIS=1.

use std::time::Duration;

use cb_fleet::testing::{redis_or_skip, wait_until, RedisServer};
use cb_fleet::Fleet;
use cb_runtime::{Backoff, CircuitBreaker, Classify, Config, Outcome, Reason, Registry, State};

fn replica() -> &'static Registry {
    Box::leak(Box::new(Registry::with_env(Vec::new)))
}

async fn join(server: &RedisServer, ns: &str, id: &str, reg: &'static Registry) -> Fleet {
    Fleet::builder(&server.url())
        .namespace(ns)
        .replica_id(id)
        .join(reg)
        .await
        .expect("join")
}

fn config() -> Config {
    Config::builder()
        .failure_threshold(1)
        .open_duration(Duration::from_millis(300))
        .open_backoff(Backoff::exponential(2.0, Duration::from_secs(60)))
        .half_open_max_calls(1)
        .success_threshold(1)
        .throttle_duration(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A 429 with its `Retry-After`.
struct Throttle(Duration);

impl<T, E> Classify<T, E> for Throttle {
    fn classify(self, _: &Result<T, E>) -> Outcome {
        Outcome::Throttled
    }
    fn classify_with_retry_after(self, _: &Result<T, E>) -> (Outcome, Option<Duration>) {
        (Outcome::Throttled, Some(self.0))
    }
}

async fn throttled(b: &CircuitBreaker, hint: Duration) {
    let permit = b.try_acquire().expect("admitted");
    let _ = permit
        .run_classified(async { Err::<(), _>("429") }, Throttle(hint))
        .await;
}

const SOON: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_open_is_shared_for_the_hint() {
    let Some(server) = redis_or_skip("a_throttled_open_is_shared_for_the_hint") else {
        return;
    };
    let (ra, rb) = (replica(), replica());
    let fa = join(&server, "throttled", "a", ra).await;
    let fb = join(&server, "throttled", "b", rb).await;
    assert!(wait_until(SOON, || fa.is_connected() && fb.is_connected()).await);
    let a = ra.get_or_insert("openai", config);
    let b = rb.get_or_insert("openai", config);

    // Replica a's call is throttled with `Retry-After: 1`: b opens too, for
    // what is left of that second, not for throttle_duration or open_duration.
    throttled(&a, Duration::from_secs(1)).await;
    assert_eq!(a.state(), State::Open);
    assert_eq!(a.open_reason(), Some(Reason::Throttled));
    assert!(
        wait_until(SOON, || b.state() == State::Open).await,
        "b did not follow"
    );
    let left = b.open_remaining().unwrap_or_default();
    assert!(left <= Duration::from_secs(1), "b opens for the hint: {left:?}");
    assert_eq!((b.stats().failures, a.stats().failures), (0, 0));
    // Both probe again after the second.
    assert!(
        wait_until(SOON, || a.state() == State::HalfOpen
            && b.state() == State::HalfOpen)
        .await
    );

    // A probe that is throttled again reopens everyone for its hint.
    let probe = loop {
        if let Ok(p) = a.try_acquire() {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let _ = probe
        .run_classified(
            async { Err::<(), _>("429") },
            Throttle(Duration::from_millis(700)),
        )
        .await;
    assert_eq!(a.state(), State::Open);
    assert_eq!(a.open_reason(), Some(Reason::Throttled));
    assert!(
        wait_until(SOON, || b.state() == State::Open).await,
        "b did not follow the reopen"
    );
    assert!(b.open_remaining().unwrap_or_default() <= Duration::from_millis(700));
    assert!(
        wait_until(SOON, || a.state() == State::HalfOpen
            && b.state() == State::HalfOpen)
        .await
    );
    assert_eq!(
        (a.stats().throttled, a.stats().failures, b.stats().failures),
        (2, 0, 0)
    );
    drop((fa, fb));
}
