//! Fleet mode and rate limits: a throttled open is shared like any open
//! (replicas usually share one API key and its limit), for the provider's
//! hint, not `open_duration` or `throttle_duration`; a throttled probe
//! reopens every replica for its hint, and keeps the shared backoff level.
//! Against real redis-server processes; skipped, saying why, when
//! redis-server is missing, unless CB_REQUIRE_REDIS=1.

use std::time::Duration;

use cb_fleet::testing::{join, redis_or_skip, replica, wait_until, RedisServer};
use cb_runtime::{Backoff, CircuitBreaker, Classify, Config, Outcome, Reason, State};

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

/// The fleet's shared backoff level of breaker `name` in namespace `ns`.
async fn shared_level(server: &RedisServer, ns: &str, name: &str) -> u32 {
    let mut con = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let level: Option<String> = redis::cmd("HGET")
        .arg(format!("cb:{{{ns}}}:b:{name}"))
        .arg("level")
        .query_async(&mut con)
        .await
        .unwrap();
    level.map_or(0, |l| l.parse().unwrap())
}

/// A probe of `b` once it is half-open.
async fn probe(b: &CircuitBreaker) -> cb_runtime::Permit<'_> {
    assert!(
        wait_until(SOON, || b.state() == State::HalfOpen).await,
        "never half-open"
    );
    loop {
        if let Ok(p) = b.try_acquire() {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_probe_keeps_the_shared_backoff_level() {
    let Some(server) = redis_or_skip("a_throttled_probe_keeps_the_shared_backoff_level") else {
        return;
    };
    let ns = "throttled-level";
    let (ra, rb) = (replica(), replica());
    let fa = join(&server, ns, "a", ra).await;
    let fb = join(&server, ns, "b", rb).await;
    assert!(wait_until(SOON, || fa.is_connected() && fb.is_connected()).await);
    let config = || {
        Config::builder()
            .failure_threshold(1)
            .open_duration(Duration::from_millis(100))
            .open_backoff(Backoff::exponential(2.0, Duration::from_secs(60)))
            .half_open_max_calls(1)
            .success_threshold(1)
            .build()
            .unwrap()
    };
    let a = ra.get_or_insert("llm", config);
    let b = rb.get_or_insert("llm", config);

    // An outage opens the fleet at level 0; a failed probe raises it to 1.
    let permit = a.try_acquire().expect("admitted");
    let _ = permit.run(async { Err::<(), _>("down") }).await;
    assert!(
        wait_until(SOON, || b.state() == State::Open).await,
        "b did not follow"
    );
    assert_eq!(shared_level(&server, ns, "llm").await, 0);
    let _ = probe(&a).await.run(async { Err::<(), _>("down") }).await;
    assert_eq!(a.state(), State::Open);
    assert!(
        wait_until(SOON, || b.state() == State::Open).await,
        "b did not follow the reopen"
    );
    fa.reset("barrier").await.unwrap();
    assert_eq!(
        shared_level(&server, ns, "llm").await,
        1,
        "a failed probe raises the level"
    );
    assert_eq!(a.backoff_level(), 1);

    // A throttled probe reopens every replica, and the level stays at 1.
    let _ = probe(&a)
        .await
        .run_classified(
            async { Err::<(), _>("429") },
            Throttle(Duration::from_millis(300)),
        )
        .await;
    assert_eq!(a.state(), State::Open);
    assert_eq!(a.open_reason(), Some(Reason::Throttled));
    assert_eq!(a.backoff_level(), 1);
    assert!(
        wait_until(SOON, || b.state() == State::Open).await,
        "b did not follow the throttled reopen"
    );
    fa.reset("barrier").await.unwrap();
    assert_eq!(
        shared_level(&server, ns, "llm").await,
        1,
        "a throttled probe keeps the level"
    );
    assert_eq!(b.backoff_level(), 1);

    // A failed probe after it still raises it.
    let _ = probe(&a).await.run(async { Err::<(), _>("down") }).await;
    assert!(wait_until(SOON, || b.state() == State::Open).await);
    fa.reset("barrier").await.unwrap();
    assert_eq!(
        shared_level(&server, ns, "llm").await,
        2,
        "a failed probe raises the level"
    );
    drop((fa, fb));
}
