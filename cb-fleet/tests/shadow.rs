//! Fleet mode and shadow mode: a shadow breaker's state is shared as any
//! other's (its opens reach every replica), and each replica, refusing
//! nothing, counts what it would have refused. Against a real redis-server
//! process; skipped, saying why, when redis-server is missing, unless
//! CB_REQUIRE_REDIS=1.

use std::time::Duration;

use cb_fleet::testing::{join, redis_or_skip, replica, wait_until};
use cb_runtime::{Config, Mode, State};

fn shadow() -> Config {
    Config::builder()
        .failure_threshold(1)
        .open_duration(Duration::from_secs(30))
        .mode(Mode::Shadow)
        .build()
        .unwrap()
}

const SOON: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_breakers_open_is_shared_and_each_replica_lets_calls_through() {
    let Some(server) = redis_or_skip("a_shadow_breakers_open_is_shared_and_each_replica_lets_calls_through")
    else {
        return;
    };
    let (ra, rb) = (replica(), replica());
    let fa = join(&server, "shadow", "a", ra).await;
    let fb = join(&server, "shadow", "b", rb).await;
    assert!(wait_until(SOON, || fa.is_connected() && fb.is_connected()).await);
    let a = ra.get_or_insert("payments", shadow);
    let b = rb.get_or_insert("payments", shadow);

    a.try_acquire().unwrap().record(false);
    assert_eq!(a.state(), State::Open);
    assert!(
        wait_until(SOON, || b.state() == State::Open).await,
        "b did not follow a shadow breaker's open"
    );
    // Open on both, and neither refuses: each counts what it would have.
    for breaker in [&a, &b] {
        breaker
            .try_acquire()
            .expect("shadow mode lets the call through")
            .record(true);
        let s = breaker.stats();
        assert_eq!((s.shadow_rejected, s.rejected), (1, 0));
        assert_eq!(breaker.state(), State::Open, "a shadow call moves nothing");
    }
    drop((fa, fb));
}
