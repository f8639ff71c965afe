//! Recovery in a fleet, against a real redis-server: a close by health checks
//! on one replica reaches every replica before the open period ends. Skipped,
//! saying why, when redis-server is missing, unless CB_REQUIRE_REDIS=1.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cb_fleet::testing::{join_quick, redis_or_skip, replica, wait_until as eventually, RedisServer};
use cb_fleet::Fleet;
use cb_runtime::{Config, Reason, State};

const SOON: Duration = Duration::from_secs(3);

/// Two replicas joined to one fleet in namespace `ns`, each with breaker
/// `dep`: opens on one failure for 60 s, checked every 100 ms.
async fn two_replicas(
    server: &RedisServer,
    ns: &str,
) -> (
    (Fleet, Fleet),
    Arc<cb_runtime::CircuitBreaker>,
    Arc<cb_runtime::CircuitBreaker>,
) {
    let (ra, rb) = (replica(), replica());
    let fa = join_quick(server, ns, "a", ra).await;
    let fb = join_quick(server, ns, "b", rb).await;
    assert!(fa.is_connected() && fb.is_connected());
    let cfg = || {
        Config::builder()
            .failure_threshold(1)
            .success_threshold(1)
            .open_duration(Duration::from_secs(60))
            .health_check_interval(Duration::from_millis(100))
            .build()
            .unwrap()
    };
    let a = ra.get_or_insert("dep", cfg);
    let b = rb.get_or_insert("dep", cfg);
    ((fa, fb), a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_by_health_checks_reaches_every_replica_before_the_open_period_ends() {
    let Some(server) =
        redis_or_skip("a_close_by_health_checks_reaches_every_replica_before_the_open_period_ends")
    else {
        return;
    };
    let (_fleets, a, b) = two_replicas(&server, "recovery").await;
    let up = Arc::new(AtomicBool::new(false));
    let u = Arc::clone(&up);
    a.set_health_check(move || {
        let up = u.load(Ordering::Relaxed);
        async move { up }
    });
    let closed_by = Arc::new(std::sync::Mutex::new(Vec::new()));
    let c = Arc::clone(&closed_by);
    b.on_transition(move |t| {
        if t.to == State::Closed {
            c.lock().unwrap().push(t.reason);
        }
    });

    a.try_acquire().expect("closed").record(false);
    assert!(eventually(SOON, || b.state() == State::Open).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.state(), State::Open, "failing checks change nothing");
    assert!(a.stats().health_checks_failed >= 1);

    up.store(true, Ordering::Relaxed);
    assert!(eventually(SOON, || a.state() == State::Closed).await);
    assert!(
        eventually(SOON, || b.state() == State::Closed).await,
        "the close reaches the other replica, 60 s before the open period ends"
    );
    assert_eq!(*closed_by.lock().unwrap(), [Reason::ClosedByFleet]);
    assert!(b.try_acquire().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_checks_a_breaker_per_open_period() {
    let Some(server) = redis_or_skip("one_replica_checks_a_breaker_per_open_period") else {
        return;
    };
    let (_fleets, a, b) = two_replicas(&server, "recovery-lease").await;
    for breaker in [&a, &b] {
        breaker.set_health_check(|| async { false });
    }
    a.try_acquire().expect("closed").record(false);
    assert!(eventually(SOON, || b.state() == State::Open).await);
    assert!(
        eventually(SOON, || a.stats().health_checks_failed
            + b.stats().health_checks_failed
            >= 10)
        .await,
        "checks run"
    );
    let (by_a, by_b) = (a.stats().health_checks_failed, b.stats().health_checks_failed);
    assert!(
        (by_a == 0) != (by_b == 0),
        "one replica checks: a checked {by_a} times, b {by_b}"
    );
}
