//! Shared failure counts (`share_failures`, issue 26) against a real
//! redis-server: the fleet opens on the counts of all replicas together,
//! before any one replica would; a success reported by any replica resets
//! the fleet's consecutive failures; without sharing nothing opens. Skipped,
//! saying why, when redis-server is missing, unless CB_REQUIRE_REDIS=1.

use std::time::{Duration, Instant};

use cb_fleet::testing::{redis_or_skip, replica, wait_until, RedisServer};
use cb_fleet::Fleet;
use cb_runtime::{CircuitBreaker, Config, Registry, State, Window};
use redis::aio::MultiplexedConnection;

const SOON: Duration = Duration::from_secs(5);

async fn join(server: &RedisServer, ns: &str, id: &str, reg: &'static Registry, share: bool) -> Fleet {
    let fleet = Fleet::builder(&server.url())
        .namespace(ns)
        .replica_id(id)
        .io_timeout(Duration::from_millis(300))
        .share_failures(share)
        .share_interval(Duration::from_millis(20))
        .join(reg)
        .await
        .expect("join");
    assert!(fleet.is_connected());
    fleet
}

fn calls(b: &CircuitBreaker, ok: u32, failed: u32) {
    for _ in 0..ok {
        b.try_acquire().expect("closed").record(true);
    }
    for _ in 0..failed {
        b.try_acquire().expect("closed").record(false);
    }
}

async fn inspect(server: &RedisServer) -> MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn hget(con: &mut MultiplexedConnection, key: String, field: &str) -> Option<String> {
    redis::cmd("HGET")
        .arg(key)
        .arg(field)
        .query_async(con)
        .await
        .unwrap()
}

/// Until the fleet's window of `name` holds `consec` consecutive failures.
async fn until_consec(con: &mut MultiplexedConnection, ns: &str, name: &str, consec: u64) {
    let deadline = Instant::now() + SOON;
    loop {
        let now = hget(con, format!("cb:{{{ns}}}:win:{name}"), "consec").await;
        if now.as_deref() == Some(consec.to_string().as_str()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the fleet's count stayed at {now:?}, not {consec}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn rate_config() -> Config {
    Config::builder()
        .failure_threshold(1000)
        .failure_rate_threshold(0.5)
        .minimum_calls(10)
        .sliding_window(Window::Time(Duration::from_secs(60)))
        .open_duration(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleets_failure_rate_opens_it_before_any_replica_would() {
    let Some(server) = redis_or_skip("the_fleets_failure_rate_opens_it_before_any_replica_would") else {
        return;
    };
    let ns = "shared-rate";
    let regs = [replica(), replica(), replica()];
    let mut fleets = Vec::new();
    for (i, r) in regs.iter().enumerate() {
        fleets.push(join(&server, ns, &format!("r{i}"), r, true).await);
    }
    let breakers: Vec<_> = regs.iter().map(|r| r.get_or_insert("dep", rate_config)).collect();
    // 4 calls each, half failed: 4 is below minimum_calls (10), so no
    // replica judges its rate; together, 12 calls at 50%.
    for b in &breakers[..2] {
        calls(b, 2, 2);
    }
    let mut con = inspect(&server).await;
    let deadline = Instant::now() + SOON;
    loop {
        let f: Option<String> = hget(&mut con, format!("cb:{{{ns}}}:b:dep"), "kind").await;
        assert_ne!(
            f.as_deref(),
            Some("open"),
            "8 calls are below minimum_calls fleet-wide too"
        );
        let window: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
            .arg(format!("cb:{{{ns}}}:win:dep"))
            .query_async(&mut con)
            .await
            .unwrap();
        let summed: u64 = window
            .iter()
            .filter(|(k, _)| k.starts_with('c') && k[1..].parse::<u64>().is_ok())
            .map(|(_, v)| v.parse::<u64>().unwrap())
            .sum();
        if summed == 8 {
            break;
        }
        assert!(Instant::now() < deadline, "the window holds {window:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(breakers.iter().all(|b| b.state() == State::Closed));
    calls(&breakers[2], 2, 2);
    assert_eq!(breakers[2].state(), State::Closed, "no replica opens on its own");
    assert!(wait_until(SOON, || breakers.iter().all(|b| b.state() == State::Open)).await);
    assert!(fleets.iter().all(|f| f.version("dep").is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_failures_add_up_across_replicas_and_any_success_resets_them() {
    let Some(server) =
        redis_or_skip("consecutive_failures_add_up_across_replicas_and_any_success_resets_them")
    else {
        return;
    };
    let ns = "shared-consec";
    let cfg = || {
        Config::builder()
            .failure_threshold(5)
            .failure_rate_threshold(1.0)
            .minimum_calls(100)
            .open_duration(Duration::from_secs(30))
            .build()
            .unwrap()
    };
    let (ra, rb, rc) = (replica(), replica(), replica());
    let _fa = join(&server, ns, "a", ra, true).await;
    let _fb = join(&server, ns, "b", rb, true).await;
    let _fc = join(&server, ns, "c", rc, true).await;
    let (a, b, c) = (
        ra.get_or_insert("dep", cfg),
        rb.get_or_insert("dep", cfg),
        rc.get_or_insert("dep", cfg),
    );
    let mut con = inspect(&server).await;
    calls(&a, 0, 3);
    until_consec(&mut con, ns, "dep", 3).await;
    calls(&b, 1, 1); // a success anywhere: the fleet's count restarts at 1
    until_consec(&mut con, ns, "dep", 1).await;
    calls(&c, 0, 3);
    until_consec(&mut con, ns, "dep", 4).await;
    assert!([&a, &b, &c].iter().all(|x| x.state() == State::Closed), "4 of 5");
    calls(&b, 0, 1);
    assert!(wait_until(SOON, || [&a, &b, &c].iter().all(|x| x.state() == State::Open)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_sharing_the_same_failures_open_nothing() {
    let Some(server) = redis_or_skip("without_sharing_the_same_failures_open_nothing") else {
        return;
    };
    let ns = "shared-off";
    let regs = [replica(), replica(), replica()];
    let mut fleets = Vec::new();
    for (i, r) in regs.iter().enumerate() {
        fleets.push(join(&server, ns, &format!("r{i}"), r, false).await);
    }
    let breakers: Vec<_> = regs.iter().map(|r| r.get_or_insert("dep", rate_config)).collect();
    for b in &breakers {
        calls(b, 2, 2);
    }
    // Several share intervals later, Redis holds no window and no open.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for f in &fleets {
        f.reset("barrier").await.unwrap();
    }
    let mut con = inspect(&server).await;
    let exists: u32 = redis::cmd("EXISTS")
        .arg(format!("cb:{{{ns}}}:win:dep"))
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(exists, 0);
    assert!(breakers.iter().all(|b| b.state() == State::Closed));
}
