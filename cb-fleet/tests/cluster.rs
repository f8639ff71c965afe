//! The fleet on a Redis Cluster (issue 26) of 3 masters with a replica each,
//! started by the test (`--cluster-enabled yes`, `redis-cli --cluster
//! create`): an open reaches every replica, every key of a namespace is in
//! one slot, and killing the master of that slot and promoting its replica
//! loses no call, and the fleet resynchronises. Skipped, saying why, when
//! redis-server is missing, unless CB_REQUIRE_REDIS=1.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cb_fleet::testing::{redis_available, replica, wait_until, RedisCluster};
use cb_fleet::{Fleet, FleetError};
use cb_runtime::{CircuitBreaker, Config, Registry, State};

/// The guide's ACL for a cluster (docs/guide/fleet.md, "ACL", shown for
/// namespace `checkout`), word for word, for namespace `clustered`.
const CLUSTER_ACL: &str = "ACL SETUSER cb-clustered on >long-random-password resetkeys ~cb:{clustered}:* resetchannels &cb:{clustered}:* -@all +ping +eval +evalsha +script|load +subscribe +unsubscribe +xadd +xrevrange +zrem +hget +hset +hsetnx +hincrby +pttl +set +get +del +sadd +publish +time +zremrangebyscore +zrangebyscore +zrange +zcard +zadd +zscore +pexpire +cluster|slots +ssubscribe +sunsubscribe +spublish";

const SOON: Duration = Duration::from_secs(10);

fn config() -> Config {
    Config::builder()
        .failure_threshold(1)
        .open_duration(Duration::from_secs(60))
        .build()
        .unwrap()
}

async fn join(urls: &[&str], ns: &str, id: &str, reg: &'static Registry) -> Fleet {
    let fleet = Fleet::cluster_builder(urls)
        .namespace(ns)
        .replica_id(id)
        .io_timeout(Duration::from_millis(500))
        .join(reg)
        .await
        .expect("join");
    assert!(fleet.is_connected(), "{id} joined the cluster");
    fleet
}

fn trip(b: &CircuitBreaker) {
    b.try_acquire().expect("closed").record(false);
    assert_eq!(b.state(), State::Open);
}

/// The cluster ACL the guide shows operators is the one the next test runs,
/// and it is the single-server ACL plus the four commands that the guide and
/// the crate docs name.
#[test]
fn the_guide_holds_the_cluster_acl() {
    const EXTRA: &str = "+cluster|slots +ssubscribe +sunsubscribe +spublish";
    let guide = include_str!("../../docs/guide/fleet.md");
    let shown = CLUSTER_ACL.replace("clustered", "checkout");
    assert!(
        guide.lines().any(|line| line == shown),
        "docs/guide/fleet.md no longer shows the cluster ACL that this file runs: {shown}"
    );
    let single = shown
        .strip_suffix(&format!(" {EXTRA}"))
        .expect("the cluster ACL ends with the extra commands");
    assert!(
        guide.lines().any(|line| line == single),
        "docs/guide/fleet.md's single-server ACL is not the cluster ACL without {EXTRA}"
    );
    // Prose, its lines joined: the guide's, and the crate docs' `//!` lines.
    let guide_prose = guide.lines().map(str::trim).collect::<Vec<_>>().join(" ");
    let crate_docs = include_str!("../src/lib.rs")
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    for (what, text) in [
        ("docs/guide/fleet.md", guide_prose),
        ("cb-fleet's crate docs", crate_docs),
    ] {
        assert!(
            text.contains(&format!("`{EXTRA}`")),
            "{what} no longer names `{EXTRA}` as what a cluster adds"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_reaches_every_replica_and_a_namespace_lives_in_one_slot() {
    if !redis_available("an_open_reaches_every_replica_and_a_namespace_lives_in_one_slot") {
        return;
    }
    let cluster = RedisCluster::start(3, 1);
    let urls = cluster.urls();
    let ns = "clustered";
    // Each replica knows one node only: the cluster tells it the rest.
    let (ra, rb, rc) = (replica(), replica(), replica());
    let a = join(&[&urls[0]], ns, "a", ra).await;
    let b = join(&[&urls[1]], ns, "b", rb).await;
    // `builder(url).cluster(true)` is `cluster_builder(&[url])`; `c` is
    // the guide's ACL user, with what a cluster needs besides.
    for node in 0..cluster.nodes.len() {
        let args: Vec<&str> = CLUSTER_ACL.split(' ').collect();
        assert_eq!(
            cluster.cli(node, &args).trim(),
            "OK",
            "ACL SETUSER on node {node}"
        );
    }
    let port = cluster.nodes[5].port();
    let c = Fleet::builder(&format!(
        "redis://cb-clustered:long-random-password@127.0.0.1:{port}/"
    ))
    .cluster(true)
    .namespace(ns)
    .replica_id("c")
    .join(rc)
    .await
    .expect("join");
    assert!(c.is_connected());
    let names = ["llm", "db", "cache"];
    let on = |reg: &'static Registry| names.map(|n| reg.get_or_insert(n, config));
    let (on_a, on_b, on_c) = (on(ra), on(rb), on(rc));
    for breaker in &on_a {
        trip(breaker);
    }
    for breakers in [&on_b, &on_c] {
        assert!(
            wait_until(SOON, || breakers.iter().all(|b| b.state() == State::Open)).await,
            "every open reached every replica"
        );
    }
    // A fleet-wide reset reaches them too, through the sharded channel,
    // from the replica with the ACL user.
    for n in names {
        c.reset(n).await.expect("reset");
    }
    assert!(
        wait_until(SOON, || on_a
            .iter()
            .chain(&on_b)
            .all(|b| b.state() == State::Closed))
        .await,
        "the fleet-wide resets reached every replica"
    );

    // Every key of the namespace: on one master, in one slot.
    let pattern = format!("cb:{{{ns}}}:*");
    let masters: Vec<usize> = (0..3).collect();
    let held: Vec<(usize, Vec<String>)> = masters
        .iter()
        .map(|&m| (m, cluster.keys(m, &pattern)))
        .filter(|(_, keys)| !keys.is_empty())
        .collect();
    assert_eq!(held.len(), 1, "one master holds the namespace: {held:?}");
    let (_, keys) = &held[0];
    assert!(keys.len() >= 6, "the namespace's keys: {keys:?}");
    let slots: HashSet<String> = keys
        .iter()
        .map(|k| cluster.cli(0, &["cluster", "keyslot", k]).trim().to_owned())
        .collect();
    let tag_slot = cluster.cli(0, &["cluster", "keyslot", ns]).trim().to_owned();
    assert_eq!(
        slots,
        HashSet::from([tag_slot]),
        "every key in the slot of `{{{ns}}}`"
    );
    drop((a, b, c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_of_the_slots_master_loses_no_call_and_the_fleet_resyncs() {
    if !redis_available("a_failover_of_the_slots_master_loses_no_call_and_the_fleet_resyncs") {
        return;
    }
    let mut cluster = RedisCluster::start(3, 1);
    let urls = cluster.urls();
    let all: Vec<&str> = urls.iter().map(String::as_str).collect();
    let ns = "failover";
    let (ra, rb) = (replica(), replica());
    let a = join(&all, ns, "a", ra).await;
    let b = join(&all, ns, "b", rb).await;
    let on_a = ra.get_or_insert("llm", config);
    let on_b = rb.get_or_insert("llm", config);
    let steady = ra.get_or_insert("steady", Config::default);

    // Calls on replica `a` all along, each a success.
    let stop = Arc::new(AtomicBool::new(false));
    let (made, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let caller = {
        let (stop, made, failed, steady) = (
            Arc::clone(&stop),
            Arc::clone(&made),
            Arc::clone(&failed),
            Arc::clone(&steady),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let reply = steady.call(async { Ok::<u32, ()>(1) }).await;
                made.fetch_add(1, Ordering::Relaxed);
                if reply != Ok(1) {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };

    // The slot's master dies; its replica takes over.
    let master = cluster.master_of(0, ns).expect("a master serves the namespace");
    let promoted = *cluster
        .replicas_of(master)
        .first()
        .expect("the master has a replica");
    cluster.nodes[master].kill();
    // `a` opens while the slot has no master: locally at once; the fleet
    // cannot hear of it yet.
    trip(&on_a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(on_b.state(), State::Closed, "no master, no message");
    let out = cluster.cli(promoted, &["cluster", "failover", "takeover"]);
    assert!(out.contains("OK"), "CLUSTER FAILOVER TAKEOVER: {out}");
    let other = (0..cluster.nodes.len()).find(|&i| i != master).unwrap();
    assert!(
        wait_until(SOON, || cluster.master_of(other, ns) == Some(promoted)).await,
        "the replica serves the namespace's slot"
    );

    // Once the replica serves it, `a` shares its open and `b` has it.
    assert!(
        wait_until(SOON, || on_b.state() == State::Open).await,
        "the open made during the failover reached `b` after it"
    );
    assert!(
        wait_until(SOON, || a.is_connected() && b.is_connected()).await,
        "both replicas reconnected"
    );
    // And the fleet works as before: a fleet-wide reset from `b`.
    let reset = loop {
        match b.reset("llm").await {
            Err(FleetError::Disconnected | FleetError::TimedOut(_)) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => break other,
        }
    };
    reset.expect("reset after the failover");
    assert!(
        wait_until(SOON, || on_a.state() == State::Closed).await,
        "the reset reached `a`"
    );

    stop.store(true, Ordering::Relaxed);
    caller.await.unwrap();
    assert!(
        made.load(Ordering::Relaxed) > 10,
        "calls went on during the failover"
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no call was lost or refused");
    assert_eq!(
        steady.stats().successes,
        made.load(Ordering::Relaxed),
        "every call counted"
    );
    drop((a, b));
}
