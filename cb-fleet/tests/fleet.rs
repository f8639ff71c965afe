//! Fleet mode against real redis-server processes: several replicas (each a
//! leaked `Registry`) in one process. Skipped, saying why, when redis-server
//! is missing, unless CB_REQUIRE_REDIS=1.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cb_fleet::testing::{join_quick, redis_or_skip, replica, wait_until as eventually};
use cb_fleet::{Fleet, FleetError};
use cb_runtime::{CircuitBreaker, Config, Permit, State};

fn config(open: Duration, probes: u32, successes: u32) -> Config {
    Config::builder()
        .failure_threshold(1)
        .open_duration(open)
        .half_open_max_calls(probes)
        .success_threshold(successes)
        .build()
        .unwrap()
}

async fn eventually_async<F: Future<Output = bool>>(within: Duration, mut f: impl FnMut() -> F) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// The first probe any of `breakers` is let through, polling for at most `within`.
async fn probe_from<'a>(breakers: &[&'a CircuitBreaker], within: Duration) -> Permit<'a> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(p) = breakers.iter().find_map(|b| b.try_acquire().ok()) {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "no probe let through within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn trip(b: &CircuitBreaker) {
    b.try_acquire().expect("closed").record(false);
    assert_eq!(b.state(), State::Open);
}

const SOON: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_propagates_to_every_replica_and_namespaces_are_apart() {
    let Some(server) = redis_or_skip("an_open_propagates_to_every_replica_and_namespaces_are_apart") else {
        return;
    };
    let (ra, rb, rc, other) = (replica(), replica(), replica(), replica());
    let fa = join_quick(&server, "prop", "a", ra).await;
    let fb = join_quick(&server, "prop", "b", rb).await;
    let fc = join_quick(&server, "prop", "c", rc).await;
    let fo = join_quick(&server, "prop-other", "o", other).await;
    assert!(fa.is_connected() && fb.is_connected() && fc.is_connected() && fo.is_connected());
    let cfg = || config(Duration::from_secs(30), 1, 1);
    let a = ra.get_or_insert("dep", cfg);
    let b = rb.get_or_insert("dep", cfg);
    let c = rc.get_or_insert("dep", cfg);
    let o = other.get_or_insert("dep", cfg);
    trip(&a);
    assert!(eventually(SOON, || b.state() == State::Open && c.state() == State::Open).await);
    // Open for the time that remains, not a fresh 30 s.
    assert!(b.open_remaining().unwrap() <= a.open_remaining().unwrap() + Duration::from_millis(50));
    assert!(b.try_acquire().unwrap_err().is_rejected());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(o.state(), State::Closed, "another namespace sees nothing");
    assert_eq!(fa.dropped_messages(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_refuses_its_first_call_while_the_fleet_is_open() {
    let Some(server) = redis_or_skip("a_late_joiner_refuses_its_first_call_while_the_fleet_is_open") else {
        return;
    };
    let ra = replica();
    let _fa = join_quick(&server, "late", "a", ra).await;
    let a = ra.get_or_insert("dep", || config(Duration::from_secs(30), 1, 1));
    trip(&a);
    // Wait until the fleet has it (the transition log shows it).
    let fa = _fa;
    assert!(
        eventually_async(SOON, || async {
            fa.transitions("dep", 5).await.is_ok_and(|l| !l.is_empty())
        })
        .await
    );
    // A restarted replica: one breaker made before joining, one after.
    let rb = replica();
    let early = rb.get_or_insert("dep", || config(Duration::from_secs(30), 1, 1));
    let _fb = join_quick(&server, "late", "b", rb).await;
    assert_eq!(early.state(), State::Open, "adopted in join, before it returned");
    let rc = replica();
    let _fc = join_quick(&server, "late", "c", rc).await;
    let late = rc.get_or_insert("dep", || config(Duration::from_secs(30), 1, 1));
    assert!(
        late.try_acquire().unwrap_err().is_rejected(),
        "its first call is refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_are_capped_fleet_wide_and_successes_close_everyone() {
    let Some(server) = redis_or_skip("probes_are_capped_fleet_wide_and_successes_close_everyone") else {
        return;
    };
    let cfg = || config(Duration::from_millis(300), 2, 2);
    let mut fleets = Vec::new();
    let mut breakers: Vec<Arc<CircuitBreaker>> = Vec::new();
    for i in 0..4 {
        let r = replica();
        fleets.push(join_quick(&server, "cap", &format!("r{i}"), r).await);
        breakers.push(r.get_or_insert("dep", cfg));
    }
    trip(&breakers[0]);
    assert!(eventually(SOON, || breakers.iter().all(|b| b.state() == State::Open)).await);
    // Every replica keeps asking; probes admitted are held (in flight).
    let mut held = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        for b in &breakers {
            if let Ok(p) = b.try_acquire() {
                held.push(p);
            }
        }
        assert!(
            held.len() <= 2,
            "at most half_open_max_calls probes in flight fleet-wide, got {}",
            held.len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(held.len(), 2, "the cap is reached");
    let probing: Vec<&str> = held.iter().map(|p| p.breaker().name()).collect();
    assert_eq!(probing.len(), 2);
    for p in held {
        p.record(true);
    }
    // Two successes, counted fleet-wide (maybe on two replicas), close everyone.
    assert!(eventually(SOON, || breakers.iter().all(|b| b.state() == State::Closed)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_probe_anywhere_reopens_everywhere_with_the_level_shared() {
    let Some(server) = redis_or_skip("a_failed_probe_anywhere_reopens_everywhere_with_the_level_shared")
    else {
        return;
    };
    let cfg = || {
        Config::builder()
            .failure_threshold(1)
            .open_duration(Duration::from_millis(200))
            .open_backoff(cb_runtime::Backoff::exponential(2.0, Duration::from_secs(60)))
            .half_open_max_calls(1)
            .build()
            .unwrap()
    };
    let (ra, rb) = (replica(), replica());
    let _fa = join_quick(&server, "reopen", "a", ra).await;
    let _fb = join_quick(&server, "reopen", "b", rb).await;
    let (a, b) = (ra.get_or_insert("dep", cfg), rb.get_or_insert("dep", cfg));
    trip(&a);
    assert!(eventually(SOON, || b.state() == State::Open).await);
    // Whoever gets the probe fails it.
    probe_from(&[&b, &a], SOON).await.record(false);
    assert!(eventually(SOON, || a.state() == State::Open && b.state() == State::Open).await);
    assert!(eventually(SOON, || a.backoff_level() == 1 && b.backoff_level() == 1).await);
    // The second open lasts twice as long (400 ms), on both.
    assert!(a.open_remaining().unwrap() > Duration::from_millis(250));
    assert!(b.open_remaining().unwrap() > Duration::from_millis(250));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_replicas_lease_expires_and_another_replica_probes() {
    let Some(server) = redis_or_skip("a_crashed_replicas_lease_expires_and_another_replica_probes") else {
        return;
    };
    let cfg = || config(Duration::from_millis(200), 1, 1);
    let (ra, rb) = (replica(), replica());
    let fa = join_quick(&server, "crash", "a", ra).await;
    let _fb = join_quick(&server, "crash", "b", rb).await;
    let (a, b) = (ra.get_or_insert("dep", cfg), rb.get_or_insert("dep", cfg));
    trip(&a);
    assert!(eventually(SOON, || b.state() == State::Open).await);
    let probe = probe_from(&[&a], SOON).await;
    // A holds the fleet's only lease and keeps it alive: B is refused, well past the lease's TTL.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(
        b.try_acquire().is_err(),
        "the lease is renewed while the probe runs"
    );
    // A "crashes": its task stops without giving the lease back.
    drop(fa);
    std::mem::forget(probe);
    // The crashed holder's lease expires and B probes.
    probe_from(&[&b], Duration::from_secs(5)).await.record(true);
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_scope_manual_control_reaches_every_replica_and_late_joiners() {
    let Some(server) = redis_or_skip("fleet_scope_manual_control_reaches_every_replica_and_late_joiners")
    else {
        return;
    };
    let cfg = || config(Duration::from_secs(30), 1, 1);
    let (ra, rb) = (replica(), replica());
    let fa = join_quick(&server, "manual", "a", ra).await;
    let _fb = join_quick(&server, "manual", "b", rb).await;
    let (a, b) = (ra.get_or_insert("dep", cfg), rb.get_or_insert("dep", cfg));
    fa.force_open("dep").await.unwrap();
    assert_eq!(a.state(), State::ForcedOpen, "applied locally at once");
    assert!(eventually(SOON, || b.state() == State::ForcedOpen).await);
    // Local control stays local, and wins there until the next fleet command.
    b.reset();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!((a.state(), b.state()), (State::ForcedOpen, State::Closed));
    let rc = replica();
    let _fc = join_quick(&server, "manual", "c", rc).await;
    assert_eq!(
        rc.get_or_insert("dep", cfg).state(),
        State::ForcedOpen,
        "a late joiner adopts it"
    );
    fa.disable("dep").await.unwrap();
    assert!(eventually(SOON, || b.state() == State::Disabled).await);
    fa.reset("dep").await.unwrap();
    assert!(eventually(SOON, || [&a, &b].iter().all(|x| x.state() == State::Closed)).await);
    // The log has them, with replica ids.
    let log = fa.transitions("dep", 50).await.unwrap();
    assert!(log
        .iter()
        .any(|t| t.replica == "b" && t.to == "forced_open" && t.reason == "forced open by the fleet"));
    assert!(log
        .iter()
        .any(|t| t.replica == "a" && t.from == "disabled" && t.to == "closed"));
    let bad = fa.force_open("a\nb").await.unwrap_err();
    assert!(matches!(bad, FleetError::Invalid { field: "name", .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_costs_callers_nothing_and_the_fleet_reconnects_and_resyncs() {
    let Some(mut server) =
        redis_or_skip("a_killed_server_costs_callers_nothing_and_the_fleet_reconnects_and_resyncs")
    else {
        return;
    };
    let cfg = || config(Duration::from_secs(30), 1, 1);
    let (ra, rb) = (replica(), replica());
    let fa = join_quick(&server, "kill", "a", ra).await;
    let fb = join_quick(&server, "kill", "b", rb).await;
    let (a, b) = (ra.get_or_insert("dep", cfg), rb.get_or_insert("dep", cfg));
    // An open shared before the server dies: the restarted server has forgotten it.
    let (shared_a, shared_b) = (ra.get_or_insert("shared", cfg), rb.get_or_insert("shared", cfg));
    trip(&shared_b);
    assert!(eventually(SOON, || shared_a.state() == State::Open).await);
    server.kill();
    assert!(eventually(SOON, || !fa.is_connected() && !fb.is_connected()).await);
    assert!(fa
        .metrics_text()
        .contains("circuit_breaker_fleet_connected{namespace=\"kill\"} 0"));
    for _ in 0..10_000 {
        a.try_acquire().expect("no error from the fleet").record(true);
    }
    trip(&a); // local state goes on
    assert!(matches!(
        fa.force_open("dep").await,
        Err(FleetError::Disconnected)
    ));
    server.restart();
    assert!(eventually(Duration::from_secs(6), || fa.is_connected() && fb.is_connected()).await);
    // A's open, made while disconnected, reaches B after the resync.
    assert!(eventually(SOON, || b.state() == State::Open).await);
    // An empty server is not a fleet that closed: the shared open stays, and is shared again.
    assert_eq!((shared_a.state(), shared_b.state()), (State::Open, State::Open));
    let rc = replica();
    let _fc = join_quick(&server, "kill", "c", rc).await;
    assert_eq!(rc.get_or_insert("shared", cfg).state(), State::Open);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_costs_callers_nothing() {
    let Some(mut server) = redis_or_skip("a_hung_server_costs_callers_nothing") else {
        return;
    };
    let r = replica();
    let f = join_quick(&server, "hang", "a", r).await;
    let a = r.get_or_insert("dep", || config(Duration::from_millis(100), 1, 1));
    server.hang();
    // Calls made while the server hangs: every transition queues a message
    // for the stuck task, and no caller waits on it.
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..20_000u32 {
        let t = Instant::now();
        match a.try_acquire() {
            Ok(p) => p.record(i % 1000 != 0),
            Err(e) => assert!(e.is_rejected(), "only the breaker's own refusals"),
        }
        slowest = slowest.max(t.elapsed());
    }
    eprintln!(
        "20000 calls against a hung server: {:?} in all, slowest {:?}",
        start.elapsed(),
        slowest
    );
    assert!(eventually(SOON, || !f.is_connected()).await);
    server.resume();
    assert!(eventually(Duration::from_secs(6), || f.is_connected()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_not_an_error_but_bad_settings_are() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = replica();
    let f = Fleet::builder(&format!("redis://user:hunter2@127.0.0.1:{port}/"))
        .namespace("nobody")
        .io_timeout(Duration::from_millis(100))
        .join(r)
        .await
        .expect("not an error");
    assert!(!f.is_connected());
    assert!(!format!("{f:?}").contains("hunter2"));
    let b = r.get_or_insert("dep", || config(Duration::from_secs(1), 1, 1));
    b.try_acquire().unwrap().record(true);
    for (url, ns) in [
        ("http://x/", "ns"),
        ("redis://127.0.0.1/", "bad ns"),
        ("redis://127.0.0.1/", ""),
    ] {
        let e = Fleet::builder(url)
            .namespace(ns)
            .join(replica())
            .await
            .unwrap_err();
        assert!(matches!(e, FleetError::Invalid { .. }), "{e}");
    }
    let e = Fleet::builder("redis://127.0.0.1/")
        .join(replica())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("namespace"), "{e}");
}

/// The guide's ACL (docs/guide/fleet.md, "ACL"), word for word (for namespace `checkout`).
const GUIDE_ACL: &str = "ACL SETUSER cb-checkout on >long-random-password resetkeys ~cb:{checkout}:* resetchannels &cb:{checkout}:* -@all +ping +eval +evalsha +script|load +subscribe +unsubscribe +xadd +xrevrange +zrem +hget +hset +hsetnx +hincrby +pttl +set +get +del +sadd +publish +time +zremrangebyscore +zrangebyscore +zrange +zcard +zadd +zscore +pexpire";

/// The line the guide shows operators is the one the next test runs.
#[test]
fn the_guide_holds_this_acl() {
    let guide = include_str!("../../docs/guide/fleet.md");
    assert!(
        guide.lines().any(|line| line == GUIDE_ACL),
        "docs/guide/fleet.md no longer shows the ACL that the_guides_minimal_acl_is_enough_and_keeps_the_user_in_its_namespace runs: {GUIDE_ACL}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guides_minimal_acl_is_enough_and_keeps_the_user_in_its_namespace() {
    let Some(server) = redis_or_skip("the_guides_minimal_acl_is_enough_and_keeps_the_user_in_its_namespace")
    else {
        return;
    };
    let args: Vec<&str> = GUIDE_ACL.split(' ').collect();
    assert_eq!(server.command(&args), "+OK");
    let url = format!(
        "redis://cb-checkout:long-random-password@127.0.0.1:{}/",
        server.port()
    );
    let cfg = || config(Duration::from_millis(300), 1, 1);
    let (ra, rb) = (replica(), replica());
    let fa = Fleet::builder(&url)
        .namespace("checkout")
        .replica_id("a")
        .join(ra)
        .await
        .unwrap();
    let fb = Fleet::builder(&url)
        .namespace("checkout")
        .replica_id("b")
        .join(rb)
        .await
        .unwrap();
    assert!(fa.is_connected() && fb.is_connected());
    let (a, b) = (ra.get_or_insert("dep", cfg), rb.get_or_insert("dep", cfg));
    trip(&a);
    assert!(eventually(SOON, || b.state() == State::Open).await);
    probe_from(&[&b], SOON).await.record(true);
    assert!(eventually(SOON, || a.state() == State::Closed).await);
    fb.force_open("dep").await.unwrap();
    assert!(eventually(SOON, || a.state() == State::ForcedOpen).await);
    assert!(!fa.transitions("dep", 10).await.unwrap().is_empty());
    // Another namespace is out of this user's reach: that fleet never connects.
    let rc = replica();
    let fc = Fleet::builder(&url)
        .namespace("other")
        .io_timeout(Duration::from_millis(200))
        .join(rc)
        .await
        .unwrap();
    assert!(!fc.is_connected());
}

/// Local transitions of `filler` until `fleet` drops a message: the
/// background task is stuck (its server hangs) and its queue is full.
fn fill_the_queue(fleet: &Fleet, filler: &CircuitBreaker) {
    // Until the queue stays full: both messages of a force-open and reset
    // sent after a pause are dropped, so the task took its message before the
    // pause and is stuck on the hung server (for `io_timeout`). No fixed wait
    // has to be long enough for a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "the queue never stayed full");
        filler.force_open();
        filler.reset();
        std::thread::sleep(Duration::from_millis(50));
        let before = fleet.dropped_messages();
        filler.force_open();
        filler.reset();
        if fleet.dropped_messages() >= before + 2 {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_and_probe_results_dropped_from_a_full_queue_still_reach_the_fleet() {
    let Some(mut server) =
        redis_or_skip("an_open_and_probe_results_dropped_from_a_full_queue_still_reach_the_fleet")
    else {
        return;
    };
    let cfg = || config(Duration::from_millis(1500), 2, 2);
    let (ra, rb) = (replica(), replica());
    // A's queue holds one message; a hung server keeps its task stuck on another.
    let fa = Fleet::builder(&server.url())
        .namespace("full")
        .replica_id("a")
        .queue_capacity(1)
        .io_timeout(Duration::from_secs(3))
        .join(ra)
        .await
        .unwrap();
    let fb = Fleet::builder(&server.url())
        .namespace("full")
        .replica_id("b")
        .io_timeout(Duration::from_secs(3))
        .join(rb)
        .await
        .unwrap();
    let (a, b, filler) = (
        ra.get_or_insert("dep", cfg),
        rb.get_or_insert("dep", cfg),
        ra.get_or_insert("filler", cfg),
    );

    // 1. The open is dropped: the queue is full when A trips.
    server.hang();
    fill_the_queue(&fa, &filler);
    let dropped = fa.dropped_messages();
    trip(&a);
    assert!(
        fa.dropped_messages() >= dropped + 2,
        "the open and its log entry were dropped"
    );
    server.resume();
    assert!(
        eventually(SOON, || b.state() == State::Open).await,
        "B hears of the open anyway"
    );
    assert!(fa.is_connected() && fb.is_connected());

    // 2. Both probe successes and the close are dropped.
    let first = probe_from(&[&a], Duration::from_secs(5)).await;
    let second = probe_from(&[&a], SOON).await;
    server.hang();
    fill_the_queue(&fa, &filler);
    let dropped = fa.dropped_messages();
    first.record(true);
    second.record(true);
    assert_eq!(a.state(), State::Closed, "A counted its own two successes");
    assert!(
        fa.dropped_messages() >= dropped + 3,
        "both results and the close were dropped"
    );
    assert_ne!(b.state(), State::Closed);
    server.resume();
    // Counted exactly in Redis (2 = success_threshold), so the fleet closes.
    assert!(
        eventually(SOON, || b.state() == State::Closed).await,
        "B closes: {:?}",
        b.state()
    );
    assert!(fa.is_connected() && fb.is_connected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_replica_adopts_the_closes_and_resets_it_missed() {
    let Some(server) = redis_or_skip("a_reconnecting_replica_adopts_the_closes_and_resets_it_missed") else {
        return;
    };
    for user in ["a", "b"] {
        let acl = ["ACL", "SETUSER", user, "on", ">pw", "~*", "&*", "+@all"];
        assert_eq!(server.command(&acl), "+OK");
    }
    let url = |user: &str| format!("redis://{user}:pw@127.0.0.1:{}/", server.port());
    let join_as = |user: &str, reg| {
        Fleet::builder(&url(user))
            .namespace("resync")
            .replica_id(user)
            .io_timeout(Duration::from_millis(300))
            .join(reg)
    };
    let (ra, rb) = (replica(), replica());
    let fa = join_as("a", ra).await.unwrap();
    let fb = join_as("b", rb).await.unwrap();
    let long = || config(Duration::from_secs(30), 1, 1);
    let short = || config(Duration::from_millis(300), 1, 1);
    let (forced_a, _forced_b) = (ra.get_or_insert("forced", long), rb.get_or_insert("forced", long));
    let (tripped_a, tripped_b) = (
        ra.get_or_insert("tripped", short),
        rb.get_or_insert("tripped", short),
    );
    let (local_a, _local_b) = (ra.get_or_insert("local", long), rb.get_or_insert("local", long));
    fb.force_open("forced").await.unwrap();
    trip(&tripped_b);
    assert!(
        eventually(SOON, || forced_a.state() == State::ForcedOpen
            && tripped_a.state() == State::Open)
        .await
    );
    local_a.force_open(); // local control: stays on A whatever the fleet says

    // A loses Redis (its user is switched off); B goes on.
    assert_eq!(server.command(&["ACL", "SETUSER", "a", "off"]), "+OK");
    assert!(server.command(&["CLIENT", "KILL", "USER", "a"]).starts_with(':'));
    assert!(eventually(SOON, || !fa.is_connected()).await);
    fb.reset("forced").await.unwrap();
    // B's probe succeeds: the fleet closes "tripped".
    probe_from(&[&tripped_b], SOON).await.record(true);
    assert_eq!(tripped_b.state(), State::Closed);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(forced_a.state(), State::ForcedOpen, "A missed the reset");
    assert_ne!(tripped_a.state(), State::Closed, "A missed the close");

    // A is back: the resync brings the reset and the close, and keeps local control.
    assert_eq!(server.command(&["ACL", "SETUSER", "a", "on"]), "+OK");
    assert!(eventually(Duration::from_secs(6), || fa.is_connected()).await);
    assert!(
        eventually(SOON, || forced_a.state() == State::Closed
            && tripped_a.state() == State::Closed)
        .await,
        "{:?} {:?}",
        forced_a.state(),
        tripped_a.state()
    );
    assert_eq!(local_a.state(), State::ForcedOpen);
}

/// Issue 38, item 11: no spelling of a password reaches an error, the
/// builder's `Debug` or the fleet's, whatever characters it holds; the URL
/// is shown from what the Redis client parsed of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_never_shown_whatever_their_spelling() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cases = [
        (format!("redis://cb:se/cret@127.0.0.1:{port}/"), "se/cret"),
        (format!("redis://cb:se?cret@127.0.0.1:{port}/"), "se?cret"),
        (format!("redis://cb:se#cret@127.0.0.1:{port}/"), "se#cret"),
        (format!("redis://:p@ss@127.0.0.1:{port}/"), "p@ss"),
        (format!("redis://cb:s%33cret@127.0.0.1:{port}/"), "s3cret"),
        (format!("redis://cb:se%2Fcret@127.0.0.1:{port}/"), "se%2Fcret"),
        (format!("redis://127.0.0.1:{port}/?password=s3cret"), "s3cret"),
        (
            format!("redis://127.0.0.1:{port}/0?protocol=resp2&%70assword=s3cret"),
            "s3cret",
        ),
        (format!("rediss://cb:se/cret@127.0.0.1:{port}/"), "se/cret"),
        (format!("http://cb:s3cret@127.0.0.1:{port}/"), "s3cret"),
    ];
    for (url, secret) in &cases {
        let builder = Fleet::builder(url)
            .namespace("hidden")
            .io_timeout(Duration::from_millis(100));
        let mut shown = format!("{builder:?}");
        match builder.join(replica()).await {
            Ok(fleet) => shown.push_str(&format!(" {fleet:?}")),
            Err(e) => shown.push_str(&format!(" {e} {e:?}")),
        }
        for piece in [*secret, "cret", "cb:", "ss@"] {
            assert!(!shown.contains(piece), "{url} shows {piece:?}: {shown}");
        }
    }
    // A cluster's node list, each node shown as parsed.
    let urls = [
        format!("redis://:se/cret@127.0.0.1:{port}"),
        format!("redis://:s3cret@127.0.0.1:{port}/?password=s3cret"),
    ];
    let builder = Fleet::cluster_builder(&[&urls[0], &urls[1]]).namespace("hidden");
    let mut shown = format!("{builder:?}");
    if let Err(e) = builder.join(replica()).await {
        shown.push_str(&format!(" {e} {e:?}"));
    }
    assert!(!shown.contains("cret"), "{shown}");
}

/// Issue 38, item 10: an open as long as the configuration allows (the one
/// bound, a day) reaches every replica, and a replica that joins later
/// adopts it whole; an `open_for` longer than the bound is cut to it rather
/// than refused by the peers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_of_a_day_reaches_every_replica_and_late_joiners() {
    let Some(server) = redis_or_skip("an_open_of_a_day_reaches_every_replica_and_late_joiners") else {
        return;
    };
    let (ra, rb) = (replica(), replica());
    let _fa = join_quick(&server, "long", "a", ra).await;
    let _fb = join_quick(&server, "long", "b", rb).await;
    let a = ra.get_or_insert("dep", || config(Duration::from_secs(30), 1, 1));
    let b = rb.get_or_insert("dep", || config(Duration::from_secs(30), 1, 1));
    assert!(a.open_for(Duration::from_secs(3 * 86_400)));
    assert_eq!(
        a.open_remaining().map(|r| r <= cb_runtime::MAX_OPEN_DURATION),
        Some(true)
    );
    assert!(
        eventually(SOON, || b.state() == State::Open).await,
        "the peer opens (it counted a malformed message instead)"
    );
    let hours = |b: &CircuitBreaker| b.open_remaining().map_or(0, |r| r.as_secs() / 3600);
    assert_eq!(hours(&b), 23, "{:?}", b.open_remaining());
    // A replica joining now adopts what remains, not a day's clamp of it.
    let rc = replica();
    let c = rc.get_or_insert("dep", || config(Duration::from_secs(30), 1, 1));
    let _fc = join_quick(&server, "long", "c", rc).await;
    assert_eq!(c.state(), State::Open);
    assert_eq!(hours(&c), 23, "{:?}", c.open_remaining());
}
