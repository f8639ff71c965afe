//! The fleet's open quorum (issue 26) against a real redis-server: one
//! replica's open is not enough, a second distinct replica within the
//! breaker's open duration opens the fleet, the same replica twice counts
//! once, and counted opens expire on Redis's clock. Skipped, saying why,
//! when redis-server is missing, unless CB_REQUIRE_REDIS=1.

use std::time::{Duration, Instant};

use cb_fleet::testing::{redis_or_skip, replica, wait_until, RedisServer};
use cb_fleet::{Fleet, FleetError};
use cb_runtime::{CircuitBreaker, Config, Registry, State};
use redis::aio::MultiplexedConnection;

const SOON: Duration = Duration::from_secs(5);

fn config(open: Duration) -> Config {
    Config::builder()
        .failure_threshold(1)
        .open_duration(open)
        .half_open_max_calls(1)
        .success_threshold(1)
        .build()
        .unwrap()
}

async fn join(server: &RedisServer, ns: &str, id: &str, reg: &'static Registry, quorum: u32) -> Fleet {
    let fleet = Fleet::builder(&server.url())
        .namespace(ns)
        .replica_id(id)
        .io_timeout(Duration::from_millis(300))
        .open_quorum(quorum)
        .join(reg)
        .await
        .expect("join");
    assert!(fleet.is_connected());
    fleet
}

fn trip(b: &CircuitBreaker) {
    b.try_acquire().expect("closed").record(false);
    assert_eq!(b.state(), State::Open);
}

/// Every message `fleet` queued before this call has been handled: a fleet
/// command goes through the same queue and answers after them.
async fn barrier(fleet: &Fleet) {
    fleet.reset("barrier").await.expect("barrier");
}

async fn inspect(server: &RedisServer) -> MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// The replicas counted towards `name`'s quorum, with their scores (when
/// each count ends, Redis ms).
async fn counted(con: &mut MultiplexedConnection, ns: &str, name: &str) -> Vec<(String, u64)> {
    redis::cmd("ZRANGE")
        .arg(format!("cb:{{{ns}}}:quorum:{name}"))
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(con)
        .await
        .unwrap()
}

async fn fleet_kind(con: &mut MultiplexedConnection, ns: &str, name: &str) -> Option<String> {
    redis::cmd("HGET")
        .arg(format!("cb:{{{ns}}}:b:{name}"))
        .arg("kind")
        .query_async(con)
        .await
        .unwrap()
}

/// Redis's clock, in ms.
async fn redis_now(con: &mut MultiplexedConnection) -> u64 {
    let (s, us): (u64, u64) = redis::cmd("TIME").query_async(con).await.unwrap();
    s * 1000 + us / 1000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_is_not_enough_and_a_second_distinct_one_opens_the_fleet() {
    let Some(server) = redis_or_skip("one_replica_is_not_enough_and_a_second_distinct_one_opens_the_fleet")
    else {
        return;
    };
    let ns = "quorum-two";
    let (ra, rb, rc) = (replica(), replica(), replica());
    let fa = join(&server, ns, "a", ra, 2).await;
    let fb = join(&server, ns, "b", rb, 2).await;
    let fc = join(&server, ns, "c", rc, 2).await;
    assert_eq!(fa.open_quorum(), 2);
    let cfg = || config(Duration::from_secs(30));
    let (a, b, c) = (
        ra.get_or_insert("dep", cfg),
        rb.get_or_insert("dep", cfg),
        rc.get_or_insert("dep", cfg),
    );
    barrier(&fa).await;

    trip(&a);
    barrier(&fa).await;
    let mut con = inspect(&server).await;
    let open = fa.local_open("dep").expect("a's open stays local");
    assert_eq!((open.opens, open.quorum), (1, 2));
    assert_eq!(open.to_string(), "local open, awaiting quorum 1/2");
    assert_eq!(counted(&mut con, ns, "dep").await.len(), 1);
    assert_ne!(fleet_kind(&mut con, ns, "dep").await.as_deref(), Some("open"));
    assert_eq!(
        fa.version("dep"),
        None,
        "a below-quorum open is no versioned change"
    );
    barrier(&fb).await;
    barrier(&fc).await;
    assert_eq!(
        (b.state(), c.state()),
        (State::Closed, State::Closed),
        "one replica is not enough"
    );
    assert!(b.try_acquire().is_ok());
    assert!(a.try_acquire().is_err(), "a's own open holds on a");
    assert_eq!(fb.local_open("dep"), None);

    // A replica joining while below the quorum starts closed.
    let rd = replica();
    let fd = join(&server, ns, "d", rd, 2).await;
    let d = rd.get_or_insert("dep", cfg);
    barrier(&fd).await;
    assert_eq!(d.state(), State::Closed);
    assert!(d.try_acquire().is_ok());

    // A second distinct replica within the open duration opens the fleet.
    trip(&b);
    assert!(wait_until(SOON, || c.state() == State::Open && d.state() == State::Open).await);
    assert_eq!(fleet_kind(&mut con, ns, "dep").await.as_deref(), Some("open"));
    assert!(fc.version("dep").is_some());
    assert!(
        wait_until(SOON, || fa.local_open("dep").is_none()).await,
        "a is in the fleet's open now"
    );
    assert_eq!(fb.local_open("dep"), None);
    assert!(c.try_acquire().unwrap_err().is_rejected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_replica_twice_counts_once() {
    let Some(server) = redis_or_skip("the_same_replica_twice_counts_once") else {
        return;
    };
    let ns = "quorum-same";
    // Two processes with one replica id, and the same process opening again.
    let (r1, r2, rb) = (replica(), replica(), replica());
    let f1 = join(&server, ns, "a", r1, 2).await;
    let f2 = join(&server, ns, "a", r2, 2).await;
    let fb = join(&server, ns, "b", rb, 2).await;
    let cfg = || config(Duration::from_secs(30));
    let (a1, a2, b) = (
        r1.get_or_insert("dep", cfg),
        r2.get_or_insert("dep", cfg),
        rb.get_or_insert("dep", cfg),
    );
    barrier(&f1).await;
    barrier(&f2).await;
    let mut con = inspect(&server).await;

    trip(&a1);
    barrier(&f1).await;
    let first = counted(&mut con, ns, "dep").await;
    assert_eq!(first.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>(), ["a"]);
    trip(&a2);
    barrier(&f2).await;
    a1.reset();
    trip(&a1);
    barrier(&f1).await;
    let again = counted(&mut con, ns, "dep").await;
    assert_eq!(again.len(), 1, "replica a counts once: {again:?}");
    assert!(again[0].1 >= first[0].1, "its count is renewed, not added");
    assert_eq!(f2.local_open("dep").map(|o| o.opens), Some(1));
    barrier(&fb).await;
    assert_eq!(b.state(), State::Closed);
    assert_ne!(fleet_kind(&mut con, ns, "dep").await.as_deref(), Some("open"));

    // Another replica makes two.
    trip(&b);
    assert!(
        wait_until(SOON, || f1.version("dep").is_some()
            && f2.version("dep").is_some())
        .await
    );
    assert_eq!(fleet_kind(&mut con, ns, "dep").await.as_deref(), Some("open"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counted_opens_expire_after_the_open_duration_on_redis_clock() {
    let Some(server) = redis_or_skip("counted_opens_expire_after_the_open_duration_on_redis_clock") else {
        return;
    };
    let ns = "quorum-expiry";
    let (ra, rb, rc) = (replica(), replica(), replica());
    let fa = join(&server, ns, "a", ra, 2).await;
    let fb = join(&server, ns, "b", rb, 2).await;
    let fc = join(&server, ns, "c", rc, 2).await;
    // a's open counts for 150 ms; b's for 30 s.
    let a = ra.get_or_insert("dep", || config(Duration::from_millis(150)));
    let b = rb.get_or_insert("dep", || config(Duration::from_secs(30)));
    let c = rc.get_or_insert("dep", || config(Duration::from_secs(30)));
    barrier(&fa).await;
    let mut con = inspect(&server).await;

    let before = redis_now(&mut con).await;
    trip(&a);
    barrier(&fa).await;
    let after = redis_now(&mut con).await;
    let list = counted(&mut con, ns, "dep").await;
    assert_eq!(list.len(), 1);
    let ends = list[0].1;
    assert!(
        (before + 150..=after + 150).contains(&ends),
        "a's count ends 150 ms after Redis recorded it: {before} {ends} {after}"
    );
    // Until Redis's clock is past it (about 150 ms; bounded).
    let deadline = Instant::now() + SOON;
    while redis_now(&mut con).await <= ends {
        assert!(Instant::now() < deadline, "Redis's clock never passed {ends}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    trip(&b);
    barrier(&fb).await;
    let list = counted(&mut con, ns, "dep").await;
    assert_eq!(
        list.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>(),
        ["b"],
        "a's open expired"
    );
    assert_eq!(fb.local_open("dep").map(|o| o.opens), Some(1));
    barrier(&fc).await;
    assert_eq!(c.state(), State::Closed, "an expired open does not count");

    // a, half-open on its own, probes without a fleet lease; its failed
    // probe is an open of its own again, within b's window: the quorum.
    assert!(wait_until(SOON, || a.state() == State::HalfOpen).await);
    a.try_acquire().expect("a local probe").record(false);
    assert!(wait_until(SOON, || c.state() == State::Open).await);
    assert_eq!(fleet_kind(&mut con, ns, "dep").await.as_deref(), Some("open"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_force_open_ignores_the_quorum() {
    let Some(server) = redis_or_skip("a_fleet_force_open_ignores_the_quorum") else {
        return;
    };
    let (ra, rb) = (replica(), replica());
    let fa = join(&server, "quorum-force", "a", ra, 3).await;
    let _fb = join(&server, "quorum-force", "b", rb, 3).await;
    let b = rb.get_or_insert("dep", || config(Duration::from_secs(30)));
    fa.force_open("dep").await.unwrap();
    assert!(wait_until(SOON, || b.state() == State::ForcedOpen).await);
    let a = ra.get_or_insert("dep", || config(Duration::from_secs(30)));
    assert_eq!(a.state(), State::ForcedOpen, "a breaker created later adopts it");
}

#[tokio::test]
async fn an_open_quorum_of_zero_is_refused() {
    let e = Fleet::builder("redis://127.0.0.1:1/")
        .namespace("x")
        .open_quorum(0)
        .join(replica())
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            FleetError::Invalid {
                field: "open_quorum",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("1 to 10000"), "{e}");
}
