//! The fleet's consistency model against real redis-server processes: one
//! test per defect of issue 22 (`defect_NN_...`), the "also check" items
//! (`also_...`), and a seeded randomized test of several replicas.
//! Interleavings are made with a TCP proxy on loopback that holds back
//! messages or replies ([`cb_fleet::testing::Proxy`]), never with sleeps.
//! Skipped, saying why, when redis-server is missing, unless CB_REQUIRE_REDIS=1.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use cb_fleet::testing::{redis_or_skip, replica, wait_until, Proxy, RedisServer, Traffic};
use cb_fleet::{Fleet, FleetError};
use cb_runtime::clock::ManualClock;
use cb_runtime::{CircuitBreaker, Config, Permit, Registry, State};
use redis::aio::MultiplexedConnection;

const SOON: Duration = Duration::from_secs(5);

fn config(open: Duration, probes: u32, successes: u32) -> Config {
    Config::builder()
        .failure_threshold(1)
        .open_duration(open)
        .half_open_max_calls(probes)
        .success_threshold(successes)
        .build()
        .unwrap()
}

fn leak(b: Arc<CircuitBreaker>) -> &'static CircuitBreaker {
    Box::leak(Box::new(b))
}

async fn join_url(url: &str, ns: &str, id: &str, reg: &'static Registry, io: Duration) -> Fleet {
    Fleet::builder(url)
        .namespace(ns)
        .replica_id(id)
        .lease_ttl(Duration::from_millis(900))
        .io_timeout(io)
        .join(reg)
        .await
        .expect("join")
}

async fn join(server: &RedisServer, ns: &str, id: &str, reg: &'static Registry) -> Fleet {
    join_url(&server.url(), ns, id, reg, Duration::from_millis(300)).await
}

/// Two replicas of namespace `ns`: A (`a`) through a proxy, B (`b`) direct.
async fn pair_via_proxy(server: &RedisServer, ns: &str) -> (Proxy, Replica, Replica) {
    let proxy = Proxy::start(server.port());
    let (ra, rb) = (replica(), replica());
    let fa = join_url(&proxy.url(), ns, "a", ra, Duration::from_millis(300)).await;
    let fb = join(server, ns, "b", rb).await;
    (proxy, (ra, fa), (rb, fb))
}

type Replica = (&'static Registry, Fleet);

/// A connection for looking at Redis directly.
async fn inspect(server: &RedisServer) -> MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// `cmd` on breaker `name`'s key `kind` (`b`, `open`, `lease`) in namespace `ns`.
async fn ask<T: redis::FromRedisValue>(
    con: &mut MultiplexedConnection,
    cmd: &str,
    (ns, kind, name): (&str, &str, &str),
    args: &[&str],
) -> T {
    redis::cmd(cmd)
        .arg(format!("cb:{{{ns}}}:{kind}:{name}"))
        .arg(args)
        .query_async(con)
        .await
        .unwrap()
}

async fn field(con: &mut MultiplexedConnection, ns: &str, name: &str, f: &str) -> Option<String> {
    ask(con, "HGET", (ns, "b", name), &[f]).await
}

async fn pttl(con: &mut MultiplexedConnection, ns: &str, name: &str) -> i64 {
    ask(con, "PTTL", (ns, "open", name), &[]).await
}

async fn leases(con: &mut MultiplexedConnection, ns: &str, name: &str) -> i64 {
    ask(con, "ZCARD", (ns, "lease", name), &[]).await
}

/// Until the fleet's open marker of `name` has expired: the fleet is half-open.
async fn until_half_open(con: &mut MultiplexedConnection, ns: &str, name: &str) {
    let deadline = Instant::now() + SOON;
    while pttl(con, ns, name).await > 0 {
        assert!(Instant::now() < deadline, "the fleet's open period never ended");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Every message `fleet` queued before this call has been handled: a
/// fleet command goes through the same queue and answers after them.
async fn barrier(fleet: &Fleet) {
    let deadline = Instant::now() + SOON;
    loop {
        match fleet.reset("barrier").await {
            Ok(()) => return,
            Err(e) => {
                assert!(Instant::now() < deadline, "no barrier: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Until `fleet` is connected again after a cut.
async fn reconnected(fleet: &Fleet) {
    assert!(wait_until(Duration::from_secs(8), || fleet.is_connected()).await);
    barrier(fleet).await;
}

/// Cuts `fleet`'s connections through `proxy` and keeps it away until
/// `fleet` noticed.
async fn disconnect(proxy: &Proxy, fleet: &Fleet) {
    proxy.refuse(true);
    proxy.cut();
    assert!(wait_until(SOON, || !fleet.is_connected()).await);
}

/// The first probe any of `breakers` is let through.
async fn probe_from<'a>(breakers: &[&'a CircuitBreaker]) -> Permit<'a> {
    let deadline = Instant::now() + SOON;
    loop {
        if let Some(p) = breakers.iter().find_map(|b| b.try_acquire().ok()) {
            return p;
        }
        assert!(Instant::now() < deadline, "no probe let through");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Every probe the replicas let through now: each asks, its fleet gets
/// the lease it can (a barrier), and it asks again.
async fn all_probes<'a>(replicas: &[(&'a CircuitBreaker, &Fleet)]) -> Vec<Permit<'a>> {
    let mut got = Vec::new();
    // A replica asks for a lease at most once per tick (200 ms): ask for
    // three ticks.
    let until = Instant::now() + Duration::from_millis(600);
    while Instant::now() < until {
        for (b, f) in replicas {
            if let Ok(p) = b.try_acquire() {
                got.push(p);
            }
            barrier(f).await;
            while let Ok(p) = b.try_acquire() {
                got.push(p);
            }
        }
    }
    got
}

fn trip(b: &CircuitBreaker) {
    b.try_acquire().expect("closed").record(false);
    assert_eq!(b.state(), State::Open);
}

/// Log lines of every test of this binary (a global subscriber: the fleet
/// task logs from runtime threads).
fn logs() -> &'static Mutex<String> {
    static LOGS: OnceLock<Mutex<String>> = OnceLock::new();
    LOGS.get_or_init(|| {
        struct Capture;
        impl std::io::Write for Capture {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                logs().lock().unwrap().push_str(&String::from_utf8_lossy(buf));
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_writer(|| Capture)
            .with_ansi(false)
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        Mutex::new(String::new())
    })
}

/// Until a log line passes `f`; fails, showing the log, if none does soon.
async fn assert_logged(f: impl Fn(&str) -> bool) {
    let found = wait_until(SOON, || logs().lock().unwrap().lines().any(&f)).await;
    assert!(found, "no such log line in:\n{}", logs().lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defect_01_a_message_older_than_a_scripts_answer_is_dropped() {
    let Some(server) = redis_or_skip("defect_01") else {
        return;
    };
    let (proxy, (ra, fa), (rb, fb)) = pair_via_proxy(&server, "d1").await;
    let cfg = || config(Duration::from_secs(30), 1, 1);
    let (a, _b) = (ra.get_or_insert("dep", cfg), rb.get_or_insert("dep", cfg));
    let (a2, b2) = (ra.get_or_insert("dep2", cfg), rb.get_or_insert("dep2", cfg));
    let mut con = inspect(&server).await;
    barrier(&fa).await;
    let moves = |b: &CircuitBreaker| {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&seen);
        b.on_transition(move |t| s.lock().unwrap().push((t.from, t.to)));
        seen
    };
    let (moves_a, moves_a2) = (moves(&a), moves(&a2));

    // B's reset is published, then A's open runs; A reads the reset after its answer.
    proxy.hold(Traffic::Messages);
    fb.reset("dep").await.unwrap();
    trip(&a);
    let fleet_version = || async {
        let mut c = inspect(&server).await;
        field(&mut c, "d1", "dep", "ver")
            .await
            .and_then(|v| v.parse::<u64>().ok())
    };
    let deadline = Instant::now() + SOON;
    while fleet_version().await.is_none_or(|v| fa.version("dep") != Some(v))
        || field(&mut con, "d1", "dep", "kind").await.as_deref() != Some("open")
    {
        assert!(Instant::now() < deadline, "A never adopted its open's answer");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // B's open of dep2 is published, then A's fleet-wide reset of dep2 runs.
    trip(&b2);
    let deadline = Instant::now() + SOON;
    while field(&mut con, "d1", "dep2", "kind").await.as_deref() != Some("open") {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    fa.reset("dep2").await.unwrap();
    assert_eq!(a2.state(), State::Closed);
    // Everything held arrives now, in order; then a sentinel shows it was read.
    proxy.release();
    fb.force_open("sentinel").await.unwrap();
    assert!(wait_until(SOON, || fa.version("sentinel").is_some()).await);
    assert_eq!(a.state(), State::Open, "the opener stays open, as the fleet is");
    assert_eq!(
        a2.state(),
        State::Closed,
        "the reset's sender stays reset, as the fleet is"
    );
    // And never moved meanwhile: the older messages were dropped, not
    // applied and then undone by the replica's own echo.
    assert_eq!(*moves_a.lock().unwrap(), [(State::Closed, State::Open)]);
    assert!(moves_a2.lock().unwrap().is_empty());
    assert_eq!(
        field(&mut con, "d1", "dep2", "kind").await.as_deref(),
        Some("reset")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defect_02_a_success_from_an_older_period_never_closes_the_fleet() {
    let Some(server) = redis_or_skip("defect_02") else {
        return;
    };
    let (ra, rb) = (replica(), replica());
    let fa = join(&server, "d2", "a", ra).await;
    let _fb = join(&server, "d2", "b", rb).await;
    let cfg = || config(Duration::from_millis(300), 2, 1);
    let (a, b) = (
        leak(ra.get_or_insert("dep", cfg)),
        leak(rb.get_or_insert("dep", cfg)),
    );
    let mut con = inspect(&server).await;
    trip(a);
    assert!(wait_until(SOON, || b.state() == State::Open).await);
    let old = probe_from(&[a]).await;
    let failing = probe_from(&[b]).await;
    let first_period = field(&mut con, "d2", "dep", "per").await;
    failing.record(false); // the fleet reopens: a new period
    assert!(wait_until(SOON, || a.state() == State::Open).await);
    until_half_open(&mut con, "d2", "dep").await;
    assert_ne!(field(&mut con, "d2", "dep", "per").await, first_period);
    // The old period's probe succeeds while the new period is half-open.
    old.record(true);
    barrier(&fa).await;
    assert_eq!(
        field(&mut con, "d2", "dep", "kind").await.as_deref(),
        Some("open")
    );
    assert_ne!(b.state(), State::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defect_03_a_probe_of_an_older_period_keeps_the_fleets_cap() {
    let Some(server) = redis_or_skip("defect_03") else {
        return;
    };
    let (ra, rb, rc) = (replica(), replica(), replica());
    let fa = join(&server, "d3", "a", ra).await;
    let fb = join(&server, "d3", "b", rb).await;
    let fc = join(&server, "d3", "c", rc).await;
    let cfg = || config(Duration::from_millis(300), 2, 3);
    let a = leak(ra.get_or_insert("dep", cfg));
    let b = leak(rb.get_or_insert("dep", cfg));
    let c = leak(rc.get_or_insert("dep", cfg));
    let mut con = inspect(&server).await;
    trip(a);
    assert!(wait_until(SOON, || b.state() == State::Open && c.state() == State::Open).await);
    let old = probe_from(&[a]).await;
    probe_from(&[b]).await.record(false); // reopens: `old` is a probe of an older period
    assert!(wait_until(SOON, || a.state() == State::Open && c.state() == State::Open).await);
    until_half_open(&mut con, "d3", "dep").await;
    let replicas = [(a, &fa), (b, &fb), (c, &fc)];
    let more = all_probes(&replicas).await;
    assert_eq!(
        more.len(),
        1,
        "with the old probe running, one more probe fits the cap of 2"
    );
    old.record(true);
    barrier(&fa).await;
    assert_eq!(
        leases(&mut con, "d3", "dep").await,
        1,
        "the old probe gave back its own slot"
    );
    let again = all_probes(&replicas).await;
    assert_eq!(more.len() + again.len(), 2, "never more than 2 probes at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defect_04_a_probe_that_outlives_a_reconnect_frees_no_newer_lease() {
    let Some(server) = redis_or_skip("defect_04") else {
        return;
    };
    let (proxy, (ra, fa), (rb, fb)) = pair_via_proxy(&server, "d4").await;
    let cfg = || config(Duration::from_millis(200), 2, 3);
    let (a, b) = (
        leak(ra.get_or_insert("dep", cfg)),
        leak(rb.get_or_insert("dep", cfg)),
    );
    let mut con = inspect(&server).await;
    trip(b);
    assert!(wait_until(SOON, || a.state() == State::Open).await);
    let outliving = probe_from(&[a]).await;
    assert_eq!(leases(&mut con, "d4", "dep").await, 1);
    // A is away until its lease expires in Redis (nobody renews it).
    disconnect(&proxy, &fa).await;
    let deadline = Instant::now() + SOON;
    loop {
        let live: i64 = redis::cmd("ZCOUNT")
            .arg("cb:{d4}:lease:dep")
            .arg(now_ms(&mut con).await)
            .arg("+inf")
            .query_async(&mut con)
            .await
            .unwrap();
        if live == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the lease never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.refuse(false);
    reconnected(&fa).await;
    // A's newer probe, on a newer lease.
    let newer = probe_from(&[a]).await;
    outliving.record(true);
    barrier(&fa).await;
    assert_eq!(
        leases(&mut con, "d4", "dep").await,
        1,
        "the newer probe keeps its lease"
    );
    let others = all_probes(&[(b, &fb)]).await;
    assert_eq!(others.len(), 1, "one slot of 2 is free, not 2");
    drop(newer);
}

async fn now_ms(con: &mut MultiplexedConnection) -> u64 {
    let (s, us): (u64, u64) = redis::cmd("TIME").query_async(con).await.unwrap();
    s * 1000 + us / 1000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defect_05_after_an_empty_restart_in_half_open_a_success_closes_everyone() {
    let Some(mut server) = redis_or_skip("defect_05") else {
        return;
    };
    let (ra, rb) = (replica(), replica());
    let fa = join(&server, "d5", "a", ra).await;
    let fb = join(&server, "d5", "b", rb).await;
    let cfg = || config(Duration::from_millis(200), 1, 1);
    let (a, b) = (ra.get_or_insert("dep", cfg), rb.get_or_insert("dep", cfg));
    trip(&a);
    assert!(wait_until(SOON, || b.state() == State::Open).await);
    let mut con = inspect(&server).await;
    until_half_open(&mut con, "d5", "dep").await;
    assert!(
        wait_until(SOON, || a.state() == State::HalfOpen
            && b.state() == State::HalfOpen)
        .await
    );
    server.restart();
    assert!(
        wait_until(Duration::from_secs(8), || !fa.is_connected()
            || !fb.is_connected())
        .await
    );
    reconnected(&fa).await;
    reconnected(&fb).await;
    probe_from(&[&a]).await.record(true);
    assert_eq!(a.state(), State::Closed);
    assert!(
        wait_until(SOON, || b.state() == State::Closed).await,
        "the success closes every replica: {}",
        b.state()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defect_06_after_an_empty_restart_the_backoff_level_is_kept() {
    let Some(mut server) = redis_or_skip("defect_06") else {
        return;
    };
    let cfg = || {
        Config::builder()
            .failure_threshold(1)
            .open_duration(Duration::from_millis(300))
            .open_backoff(cb_runtime::Backoff::exponential(2.0, Duration::from_secs(60)))
            .half_open_max_calls(1)
            .build()
            .unwrap()
    };
    let (ra, rb) = (replica(), replica());
    let fa = join(&server, "d6", "a", ra).await;
    let fb = join(&server, "d6", "b", rb).await;
    let (a, b) = (ra.get_or_insert("dep", cfg), rb.get_or_insert("dep", cfg));
    trip(&a);
    assert!(wait_until(SOON, || b.state() == State::Open).await);
    probe_from(&[&a, &b]).await.record(false);
    assert!(wait_until(SOON, || a.backoff_level() == 1 && b.backoff_level() == 1).await);
    server.restart();
    assert!(
        wait_until(Duration::from_secs(8), || !fa.is_connected()
            || !fb.is_connected())
        .await
    );
    reconnected(&fa).await;
    reconnected(&fb).await;
    let mut con = inspect(&server).await;
    assert_eq!(field(&mut con, "d6", "dep", "level").await.as_deref(), Some("1"));
    let rc = replica();
    let _fc = join(&server, "d6", "c", rc).await;
    assert_eq!(
        rc.get_or_insert("dep", cfg).backoff_level(),
        1,
        "a late joiner adopts it"
    );
    probe_from(&[&a, &b]).await.record(false);
    assert!(
        wait_until(SOON, || a.backoff_level() == 2 && b.backoff_level() == 2).await,
        "{} {}",
        a.backoff_level(),
        b.backoff_level()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defect_07_a_reconnect_keeps_local_control_made_after_a_fleet_command() {
    let Some(server) = redis_or_skip("defect_07") else {
        return;
    };
    let (proxy, (ra, fa), (_, fb)) = pair_via_proxy(&server, "d7").await;
    let cfg = || config(Duration::from_secs(30), 1, 1);
    let (forced, disabled) = (ra.get_or_insert("forced", cfg), ra.get_or_insert("disabled", cfg));
    fb.force_open("forced").await.unwrap();
    fb.disable("disabled").await.unwrap();
    assert!(
        wait_until(SOON, || forced.state() == State::ForcedOpen
            && disabled.state() == State::Disabled)
        .await
    );
    forced.reset();
    disabled.reset();
    disconnect(&proxy, &fa).await;
    proxy.refuse(false);
    reconnected(&fa).await;
    assert_eq!(
        forced.state(),
        State::Closed,
        "local control made after the fleet's command holds"
    );
    assert_eq!(disabled.state(), State::Closed);
    // A newer fleet command wins over it.
    fb.force_open("forced").await.unwrap();
    assert!(wait_until(SOON, || forced.state() == State::ForcedOpen).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defect_08_a_success_whose_reply_timed_out_is_counted_once() {
    let Some(server) = redis_or_skip("defect_08") else {
        return;
    };
    let (proxy, (ra, fa), (rb, _fb)) = pair_via_proxy(&server, "d8").await;
    let cfg = || config(Duration::from_millis(200), 2, 2);
    let (a, b) = (ra.get_or_insert("dep", cfg), rb.get_or_insert("dep", cfg));
    let mut con = inspect(&server).await;
    trip(&a);
    assert!(wait_until(SOON, || b.state() == State::Open).await);
    let probe = probe_from(&[&a]).await;
    // The report runs in Redis; its answer is held past `io_timeout`.
    proxy.hold(Traffic::Replies);
    probe.record(true);
    let deadline = Instant::now() + SOON;
    while field(&mut con, "d8", "dep", "succ").await.as_deref() != Some("1") {
        assert!(Instant::now() < deadline, "the report never ran");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(wait_until(SOON, || !fa.is_connected()).await);
    proxy.release();
    reconnected(&fa).await; // the lost report is sent again, with its id
    assert_eq!(
        field(&mut con, "d8", "dep", "succ").await.as_deref(),
        Some("1"),
        "counted once"
    );
    assert_eq!(
        field(&mut con, "d8", "dep", "kind").await.as_deref(),
        Some("open")
    );
    assert_ne!(b.state(), State::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defect_09_credentials_are_never_shown_whatever_the_url_holds() {
    for (url, secret) in [
        ("redis://user:pa/ss@127.0.0.1:1/0", "pa/ss"),
        ("redis://:only/pw@127.0.0.1:1/", "only/pw"),
        ("rediss://u:tl/s@127.0.0.1:1/", "tl/s"),
        ("redis://u:p%2Fx%40y@127.0.0.1:1/", "p%2Fx%40y"),
        ("redis://u:a/b@127.0.0.1:1/,redis://u:c/d@127.0.0.1:2/", "a/b"),
        ("http://u:ht/tp@127.0.0.1:1/", "ht/tp"),
    ] {
        let builder = Fleet::builder(url)
            .namespace("d9")
            .io_timeout(Duration::from_millis(50));
        assert!(!format!("{builder:?}").contains(secret), "{builder:?}");
        match builder.join(replica()).await {
            Ok(fleet) => assert!(!format!("{fleet:?}").contains(secret), "{fleet:?}"),
            Err(e) => {
                assert!(!e.to_string().contains(secret), "{e}");
                assert!(!format!("{e:?}").contains(secret), "{e:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defect_10_a_quiet_breakers_transitions_survive_a_noisy_one() {
    let Some(server) = redis_or_skip("defect_10") else {
        return;
    };
    let ra = replica();
    let fa = join(&server, "d10", "a", ra).await;
    let cfg = || config(Duration::from_secs(30), 1, 1);
    let (quiet, noisy) = (ra.get_or_insert("quiet", cfg), ra.get_or_insert("noisy", cfg));
    quiet.force_open();
    quiet.reset();
    for _ in 0..60 {
        noisy.force_open();
        noisy.reset();
    }
    barrier(&fa).await;
    let one = fa.transitions("quiet", 1).await.unwrap();
    assert_eq!(one.len(), 1, "{one:?}");
    assert_eq!(
        (one[0].name.as_str(), one[0].to.as_str()),
        ("quiet", "closed"),
        "newest first"
    );
    assert_eq!(fa.transitions("quiet", 5).await.unwrap().len(), 2);
    assert_eq!(fa.transitions("noisy", 1000).await.unwrap().len(), 120);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defect_11_a_rejoin_or_a_second_fleet_applies_the_probe_cap() {
    let Some(server) = redis_or_skip("defect_11") else {
        return;
    };
    let cfg = || config(Duration::from_millis(200), 1, 1);
    let rb = replica();
    let _fb = join(&server, "d11", "b", rb).await;
    // A rejoin: the first fleet dropped, a second one joined.
    let ra = replica();
    let first = join(&server, "d11", "a", ra).await;
    let a = leak(ra.get_or_insert("dep", cfg));
    drop(first);
    let fa = join(&server, "d11", "a", ra).await;
    // A second fleet while the first (of another namespace) still runs.
    let rc = replica();
    let _other = join(&server, "d11-other", "c", rc).await;
    let c = leak(rc.get_or_insert("dep", cfg));
    let fc = join(&server, "d11", "c", rc).await;
    let b = leak(rb.get_or_insert("dep", cfg));
    trip(b);
    assert!(wait_until(SOON, || a.state() == State::Open && c.state() == State::Open).await);
    let mut con = inspect(&server).await;
    until_half_open(&mut con, "d11", "dep").await;
    let held = probe_from(&[b]).await;
    let others = all_probes(&[(a, &fa), (c, &fc)]).await;
    assert!(
        others.is_empty(),
        "B holds the only lease: {} more probes ran",
        others.len()
    );
    held.record(true);
    assert!(wait_until(SOON, || a.state() == State::Closed && c.state() == State::Closed).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defect_12_a_namespace_of_250000_names_joins_and_old_names_expire() {
    let Some(server) = redis_or_skip("defect_12") else {
        return;
    };
    let mut con = inspect(&server).await;
    // 250,000 names from long ago, 250 of them forced open by the fleet.
    let _: () = redis::Script::new(
        r"
for i = 1, 250000 do redis.call('ZADD', KEYS[1], 1, 'tenant-' .. i) end
for i = 1, 250 do
  local name = 'tenant-' .. i
  redis.call('HSET', 'cb:{d12}:b:' .. name, 'kind', 'forced_open', 'ver', 5, 'per', 5, 'level', 0)
  redis.call('ZADD', KEYS[2], 0, name)
end
",
    )
    .key("cb:{d12}:names")
    .key("cb:{d12}:active")
    .invoke_async(&mut con)
    .await
    .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg(200_000)
        .query_async(&mut con)
        .await
        .unwrap();
    let _: () = redis::cmd("SLOWLOG")
        .arg("RESET")
        .query_async(&mut con)
        .await
        .unwrap();
    let ra = replica();
    let mine = ra.get_or_insert("tenant-7", || config(Duration::from_secs(30), 1, 1));
    let fa = Fleet::builder(&server.url())
        .namespace("d12")
        .replica_id("a")
        .name_ttl(Duration::from_secs(3600))
        .io_timeout(Duration::from_millis(300))
        .join(ra)
        .await
        .unwrap();
    assert!(fa.is_connected(), "joined in its first attempt");
    assert_eq!(mine.state(), State::ForcedOpen);
    // The fleet's other non-closed states were paged in: a breaker created later adopts them.
    let later = ra.get_or_insert("tenant-249", || config(Duration::from_secs(30), 1, 1));
    assert_eq!(later.state(), State::ForcedOpen);
    let slow: i64 = redis::cmd("SLOWLOG")
        .arg("LEN")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(
        slow, 0,
        "no fleet command ran 200 ms or more, as one call over every name would"
    );
    // Names nobody renewed are forgotten, a bounded batch at a time.
    let left: i64 = redis::cmd("ZCARD")
        .arg("cb:{d12}:names")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(left < 250_000, "{left}");
    assert!(left > 240_000, "a batch at a time: {left}");
    let score: Option<f64> = redis::cmd("ZSCORE")
        .arg("cb:{d12}:names")
        .arg("tenant-7")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        score.is_some_and(|s| s > 1.0),
        "the names this replica has are renewed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn also_replicas_that_disagree_on_configuration_are_warned_about() {
    let Some(server) = redis_or_skip("also_configuration") else {
        return;
    };
    logs();
    let (ra, rb) = (replica(), replica());
    let fa = join(&server, "cfg-warn", "a", ra).await;
    let _fb = join(&server, "cfg-warn", "b", rb).await;
    ra.get_or_insert("dep", || config(Duration::from_secs(30), 2, 2));
    barrier(&fa).await;
    rb.get_or_insert("dep", || config(Duration::from_secs(10), 3, 2));
    assert_logged(|l| {
        l.contains("\"dep\"")
            && l.contains("half_open_max_calls=3")
            && l.contains("open_duration=10000ms")
            && l.contains("half_open_max_calls=2")
            && l.contains("by replica a")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn also_two_processes_with_one_replica_id_are_warned_about() {
    let Some(server) = redis_or_skip("also_replica_id") else {
        return;
    };
    logs();
    let _first = join(&server, "twins", "twin", replica()).await;
    let _second = join(&server, "twins", "twin", replica()).await;
    assert_logged(|l| l.contains("two processes use replica id \"twin\" in fleet namespace \"twins\"")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn also_a_timed_out_fleet_command_says_it_may_have_run_and_a_retry_is_safe() {
    let Some(server) = redis_or_skip("also_timed_out") else {
        return;
    };
    let (proxy, (ra, fa), (rb, _fb)) = pair_via_proxy(&server, "timeout").await;
    let cfg = || config(Duration::from_secs(30), 1, 1);
    let (a, b) = (ra.get_or_insert("dep", cfg), rb.get_or_insert("dep", cfg));
    barrier(&fa).await;
    proxy.hold(Traffic::Replies);
    let e = fa.force_open("dep").await.unwrap_err();
    assert!(matches!(e, FleetError::TimedOut(_)), "{e:?}");
    assert!(
        e.to_string().contains("may have run") && e.to_string().contains("retrying it is safe"),
        "{e}"
    );
    let mut con = inspect(&server).await;
    assert_eq!(
        field(&mut con, "timeout", "dep", "kind").await.as_deref(),
        Some("forced_open"),
        "it ran"
    );
    assert!(wait_until(SOON, || b.state() == State::ForcedOpen).await);
    proxy.release();
    reconnected(&fa).await;
    fa.force_open("dep").await.expect("the retry");
    assert!(wait_until(SOON, || a.state() == State::ForcedOpen).await);
    assert_eq!(b.state(), State::ForcedOpen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn also_an_open_made_before_join_is_shared() {
    let Some(server) = redis_or_skip("also_before_join") else {
        return;
    };
    let cfg = || config(Duration::from_secs(30), 1, 1);
    let rb = replica();
    let _fb = join(&server, "early", "b", rb).await;
    let b = rb.get_or_insert("dep", cfg);
    let ra = replica();
    trip(&ra.get_or_insert("dep", cfg));
    let _fa = join(&server, "early", "a", ra).await;
    assert!(wait_until(SOON, || b.state() == State::Open).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn also_a_removed_breaker_leaves_the_fleet_cleanly() {
    let Some(server) = redis_or_skip("also_removed") else {
        return;
    };
    let cfg = || config(Duration::from_millis(200), 1, 1);
    let (ra, rb) = (replica(), replica());
    let fa = join(&server, "removed", "a", ra).await;
    let fb = join(&server, "removed", "b", rb).await;
    let (a, b) = (ra.get_or_insert("dep", cfg), rb.get_or_insert("dep", cfg));
    trip(&b);
    assert!(wait_until(SOON, || a.state() == State::Open).await);
    let mut con = inspect(&server).await;
    until_half_open(&mut con, "removed", "dep").await;
    assert!(wait_until(SOON, || a.state() == State::HalfOpen).await);
    assert!(a.try_acquire().is_err(), "no lease yet: one is taken ahead");
    barrier(&fa).await;
    assert_eq!(
        leases(&mut con, "removed", "dep").await,
        1,
        "A holds an unused lease"
    );
    let removed = ra.remove("dep").unwrap();
    let deadline = Instant::now() + SOON;
    while leases(&mut con, "removed", "dep").await != 0 {
        assert!(Instant::now() < deadline, "the removed breaker's lease was kept");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fb.force_open("dep").await.unwrap();
    assert!(wait_until(SOON, || fa.version("dep") == fb.version("dep")).await);
    assert_ne!(
        removed.state(),
        State::ForcedOpen,
        "no message applied to a removed breaker"
    );
    assert_eq!(
        ra.get_or_insert("dep", cfg).state(),
        State::ForcedOpen,
        "a new one adopts the fleet's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn also_a_delay_in_the_queue_never_stretches_the_open_period() {
    let Some(server) = redis_or_skip("also_queue_delay") else {
        return;
    };
    let proxy = Proxy::start(server.port());
    let clock = ManualClock::new();
    let cfg = Config::builder()
        .failure_threshold(1)
        .open_duration(Duration::from_secs(10))
        .clock(clock.clock())
        .build()
        .unwrap();
    let ra = replica();
    let fa = join_url(&proxy.url(), "stretch", "a", ra, Duration::from_secs(5)).await;
    let a = ra.get_or_insert("dep", || cfg.clone());
    barrier(&fa).await;
    // The task waits on a held answer; A opens meanwhile, and 6 s pass.
    proxy.hold(Traffic::Replies);
    assert!(wait_until(SOON, || proxy.waiting() > 0).await);
    trip(&a);
    clock.advance(Duration::from_secs(6));
    proxy.release();
    barrier(&fa).await;
    let mut con = inspect(&server).await;
    let left = pttl(&mut con, "stretch", "dep").await;
    assert!(
        left > 0 && left <= 4_500,
        "the fleet's open period is what A had left: {left} ms"
    );
}

// ---------------------------------------------------------------------------
// The randomized test.

/// A probe the randomized test holds.
struct Held {
    permit: Permit<'static>,
    replica: usize,
    breaker: usize,
    /// Admitted on a lease, and nothing has disturbed it since.
    bounded: bool,
    /// The fleet's period when it was admitted (`None`: it moved meanwhile).
    period: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_replicas_stay_consistent() {
    let Some(mut server) = redis_or_skip("randomized_replicas_stay_consistent") else {
        return;
    };
    let seed: u64 = std::env::var("CB_FLEET_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("randomized_replicas_stay_consistent: seed {seed} (CB_FLEET_SEED={seed} repeats it)");
    let mut rng = fastrand::Rng::with_seed(seed);
    const R: usize = 3;
    const NAMES: [&str; 2] = ["x", "y"];
    const CAP: usize = 2;
    let cfg = || config(Duration::from_millis(150), CAP as u32, 2);
    let proxies: Vec<Proxy> = (0..R).map(|_| Proxy::start(server.port())).collect();
    let mut fleets = Vec::new();
    let mut breakers: Vec<Vec<&'static CircuitBreaker>> = Vec::new();
    for (i, proxy) in proxies.iter().enumerate() {
        let reg = replica();
        fleets.push(
            join_url(
                &proxy.url(),
                "rand",
                &format!("r{i}"),
                reg,
                Duration::from_millis(300),
            )
            .await,
        );
        breakers.push(NAMES.iter().map(|n| leak(reg.get_or_insert(n, cfg))).collect());
    }
    let mut con = inspect(&server).await;
    let mut held: Vec<Held> = Vec::new();
    let mut successes: Vec<(usize, Option<String>)> = Vec::new(); // breaker, period
    let steps = 300;
    let mut stats = [0u32; 8]; // trips, probes, ends, commands, pauses, cuts, restarts, quiet periods
    let restart_at = rng.usize(steps / 3..2 * steps / 3);
    for step in 0..steps {
        // Pacing, so open periods (150 ms) end while the test runs; no
        // check depends on it.
        tokio::time::sleep(Duration::from_millis(rng.u64(0..20))).await;
        if step == restart_at {
            server.restart(); // empty
            stats[6] += 1;
            con = inspect(&server).await;
            disturb(&mut held, None);
        }
        let r = rng.usize(..R);
        let n = rng.usize(..NAMES.len());
        let b = breakers[r][n];
        match rng.u32(..100) {
            0..=19 if b.state() == State::Closed => {
                if let Ok(p) = b.try_acquire() {
                    p.record(false);
                    stats[0] += 1;
                }
            }
            20..=49 => {
                let before = field(&mut con, "rand", NAMES[n], "per").await;
                let connected = fleets[r].is_connected();
                if let Ok(permit) = b.try_acquire() {
                    let after = field(&mut con, "rand", NAMES[n], "per").await;
                    if b.state() == State::HalfOpen {
                        stats[1] += 1;
                        held.push(Held {
                            permit,
                            replica: r,
                            breaker: n,
                            bounded: connected,
                            period: (before == after).then_some(after).flatten(),
                        });
                    } else {
                        permit.record(true);
                    }
                }
            }
            50..=69 if !held.is_empty() => {
                let h = held.swap_remove(rng.usize(..held.len()));
                stats[2] += 1;
                if rng.bool() {
                    successes.push((h.breaker, h.period.clone()));
                    h.permit.record(true);
                } else {
                    h.permit.record(false);
                }
            }
            70..=72 => {
                let f = &fleets[r];
                stats[3] += 1;
                let _ = match rng.u32(..4) {
                    0 => f.force_open(NAMES[n]).await,
                    1 => f.disable(NAMES[n]).await,
                    _ => f.reset(NAMES[n]).await,
                };
            }
            76..=83 => {
                // A pause: this replica's messages wait, or its answers do (it times out).
                proxies[r].hold(if rng.bool() {
                    Traffic::Messages
                } else {
                    Traffic::Replies
                });
                stats[4] += 1;
                disturb(&mut held, Some(r));
            }
            84..=91 => {
                proxies[r].cut();
                stats[5] += 1;
                disturb(&mut held, Some(r));
            }
            _ => {}
        }
        // Never more probes at once than the cap, among those on leases.
        for (name, word) in NAMES.iter().enumerate() {
            let kind = field(&mut con, "rand", word, "kind").await;
            if kind.as_deref() != Some("open") {
                for h in held.iter_mut().filter(|h| h.breaker == name) {
                    h.bounded = false; // a close or a manual command ends every lease
                }
            }
            let running = held.iter().filter(|h| h.breaker == name && h.bounded).count();
            assert!(
                running <= CAP,
                "seed {seed}, step {step}: {running} probes of {} at once",
                word
            );
            // No success counted twice, nor in another period.
            if kind.as_deref() == Some("open") {
                let per = field(&mut con, "rand", word, "per").await;
                let counted: usize = field(&mut con, "rand", word, "succ")
                    .await
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let made = successes
                    .iter()
                    .filter(|(b, p)| *b == name && (p.is_none() || *p == per))
                    .count();
                assert!(
                    counted <= made,
                    "seed {seed}, step {step}: {counted} successes counted, {made} made"
                );
            }
        }
        if step % 30 == 29 || step == steps - 1 {
            stats[7] += 1;
            quiet(
                seed, step, &proxies, &fleets, &breakers, &mut held, &mut con, &NAMES,
            )
            .await;
        }
    }
    eprintln!("seed {seed}: trips, probes, probe ends, fleet commands, pauses, cuts, restarts, quiet periods: {stats:?}");
}

fn disturb(held: &mut [Held], replica: Option<usize>) {
    for h in held.iter_mut().filter(|h| replica.is_none_or(|r| h.replica == r)) {
        h.bounded = false;
    }
}

/// A quiet period: every pause ends, every probe ends, every replica is
/// connected; then every replica is in the fleet's state.
#[allow(clippy::too_many_arguments)]
async fn quiet(
    seed: u64,
    step: usize,
    proxies: &[Proxy],
    fleets: &[Fleet],
    breakers: &[Vec<&'static CircuitBreaker>],
    held: &mut Vec<Held>,
    con: &mut MultiplexedConnection,
    names: &[&str],
) {
    for h in held.drain(..) {
        drop(h.permit); // cancelled: says nothing, gives its lease back
    }
    for p in proxies {
        p.release();
        p.refuse(false);
    }
    for f in fleets {
        assert!(
            wait_until(Duration::from_secs(8), || f.is_connected()).await,
            "seed {seed}, step {step}: not reconnected"
        );
        barrier(f).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut wrong = Vec::new();
        for (n, name) in names.iter().enumerate() {
            let kind = field(con, "rand", name, "kind").await;
            for (r, replica) in breakers.iter().enumerate() {
                let local = replica[n].state();
                let agrees = match kind.as_deref() {
                    Some("open") => matches!(local, State::Open | State::HalfOpen),
                    Some("close") | Some("reset") | None => local == State::Closed,
                    Some("forced_open") => local == State::ForcedOpen,
                    Some("disabled") => local == State::Disabled,
                    Some(_) => false,
                };
                if !agrees {
                    wrong.push(format!("r{r} {name}: {local}, the fleet {kind:?}"));
                }
            }
        }
        if wrong.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed}, step {step}: replicas not in the fleet's state: {wrong:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
