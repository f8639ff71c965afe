//! The fleet's admin router: `?scope=fleet` and the transition log, against
//! a real redis-server (skipped, saying why, without one unless
//! CB_REQUIRE_REDIS=1).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use cb_fleet::testing::{redis_or_skip, replica};
use cb_fleet::Fleet;
use cb_runtime::admin::AdminAuth;
use cb_runtime::{Config, Registry, State};
use http::{Request, StatusCode};
use tower::ServiceExt;

async fn send(
    router: &axum::Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
) -> (StatusCode, serde_json::Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let res = router
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or(serde_json::Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, json)
}

async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_fleet_reaches_every_replica_and_the_log_reads_back() {
    let Some(server) = redis_or_skip("scope_fleet_reaches_every_replica_and_the_log_reads_back") else {
        return;
    };
    let (ra, rb) = (replica(), replica());
    let fa = Arc::new(
        Fleet::builder(&server.url())
            .namespace("admin")
            .replica_id("a")
            .join(ra)
            .await
            .unwrap(),
    );
    let _fb = Fleet::builder(&server.url())
        .namespace("admin")
        .replica_id("b")
        .join(rb)
        .await
        .unwrap();
    let a = ra.get_or_insert("pay", Config::default);
    let b = rb.get_or_insert("pay", Config::default);
    let admin = cb_fleet::admin::router(Arc::clone(&fa), ra, AdminAuth::bearer("tok"));

    // Authentication and names are cb's router's rules, unchanged.
    assert_eq!(
        send(
            &admin,
            "POST",
            "/circuit-breakers/pay/force-open?scope=fleet",
            None
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    let (s, body) = send(
        &admin,
        "POST",
        "/circuit-breakers/nope/force-open?scope=fleet",
        Some("tok"),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    let (s, body) = send(
        &admin,
        "POST",
        "/circuit-breakers/pay/force-open?scope=galaxy",
        Some("tok"),
    )
    .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_scope"))
    );
    assert_eq!(b.state(), State::Closed);

    // Local scope: this replica only.
    let (s, body) = send(&admin, "POST", "/circuit-breakers/pay/disable", Some("tok")).await;
    assert_eq!((s, body["state"].as_str()), (StatusCode::OK, Some("disabled")));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!((a.state(), b.state()), (State::Disabled, State::Closed));

    // Fleet scope: every replica.
    let (s, body) = send(
        &admin,
        "POST",
        "/circuit-breakers/pay/force-open?scope=fleet",
        Some("tok"),
    )
    .await;
    assert_eq!(
        (s, body["scope"].as_str(), body["state"].as_str()),
        (StatusCode::OK, Some("fleet"), Some("forced_open"))
    );
    assert!(eventually(|| b.state() == State::ForcedOpen).await);
    let (s, _) = send(
        &admin,
        "POST",
        "/circuit-breakers/pay/reset?scope=fleet",
        Some("tok"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(eventually(|| a.state() == State::Closed && b.state() == State::Closed).await);

    tokio::time::sleep(Duration::from_millis(100)).await;
    let (s, body) = send(&admin, "GET", "/circuit-breakers/pay/transitions?limit=10", None).await;
    assert_eq!(s, StatusCode::OK);
    let list = body["transitions"].as_array().unwrap();
    assert!(
        list.iter()
            .any(|t| t["replica"] == "b" && t["to"] == "forced_open"),
        "{body}"
    );
    assert!(
        list.iter()
            .any(|t| t["replica"] == "a" && t["from"] == "closed" && t["to"] == "disabled"),
        "{body}"
    );
    assert_eq!(
        send(&admin, "GET", "/circuit-breakers/pay/transitions?limit=0", None)
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        send(&admin, "POST", "/circuit-breakers/pay/transitions", None)
            .await
            .0,
        StatusCode::METHOD_NOT_ALLOWED
    );

    // cb's own routes still answer, and /metrics carries the fleet's gauge.
    assert_eq!(
        send(&admin, "GET", "/circuit-breakers/pay", None).await.0,
        StatusCode::OK
    );
    let (s, text) = send(&admin, "GET", "/metrics", None).await;
    assert_eq!(s, StatusCode::OK);
    let text = text.as_str().unwrap().to_owned();
    assert!(
        text.contains("circuit_breaker_fleet_connected{namespace=\"admin\"} 1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_fleet_controls_a_breaker_only_other_replicas_have() {
    let Some(server) = redis_or_skip("scope_fleet_controls_a_breaker_only_other_replicas_have") else {
        return;
    };
    let (ra, rb) = (replica(), replica());
    let join = |id: &str, r| {
        Fleet::builder(&server.url())
            .namespace("admin-elsewhere")
            .replica_id(id)
            .join(r)
    };
    let fa = Arc::new(join("a", ra).await.unwrap());
    let _fb = join("b", rb).await.unwrap();
    // Only B has created `ledger-db`; A serves the admin API.
    let b = rb.get_or_insert("ledger-db", Config::default);
    let admin = cb_fleet::admin::router(Arc::clone(&fa), ra, AdminAuth::bearer("tok"));
    let uri = "/circuit-breakers/ledger-db/force-open?scope=fleet";

    // Refused before the fleet is asked: no token, a bad name, local scope.
    assert_eq!(send(&admin, "POST", uri, None).await.0, StatusCode::UNAUTHORIZED);
    let (s, body) = send(
        &admin,
        "POST",
        "/circuit-breakers/a%0Ab/force-open?scope=fleet",
        Some("tok"),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let (s, _) = send(
        &admin,
        "POST",
        "/circuit-breakers/ledger-db/force-open",
        Some("tok"),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "local scope: this replica has no such breaker"
    );
    // A name no replica has created: 404, and nothing is stored for it.
    let (s, body) = send(
        &admin,
        "POST",
        "/circuit-breakers/nowhere/force-open?scope=fleet",
        Some("tok"),
    )
    .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found")),
        "{body}"
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains("any replica"),
        "{body}"
    );
    assert_eq!(
        ra.get_or_insert("nowhere", Config::default).state(),
        State::Closed
    );
    assert_eq!(b.state(), State::Closed);

    // B's name reaches Redis in the background: poll until the fleet knows it.
    let deadline = Instant::now() + Duration::from_secs(3);
    let body = loop {
        let (s, body) = send(&admin, "POST", uri, Some("tok")).await;
        if s == StatusCode::OK {
            break body;
        }
        assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
        assert!(Instant::now() < deadline, "the fleet never learned B's breaker");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(body["scope"], "fleet", "{body}");
    assert_eq!(body["state"], "forced_open", "{body}");
    assert!(body["previous_state"].is_null(), "{body}");
    assert!(eventually(|| b.state() == State::ForcedOpen).await);
    assert!(ra.get("ledger-db").is_none(), "A did not create it");
    // Created on A later, it adopts the fleet's state.
    assert_eq!(
        ra.get_or_insert("ledger-db", Config::default).state(),
        State::ForcedOpen
    );
    let (s, _) = send(
        &admin,
        "POST",
        "/circuit-breakers/ledger-db/reset?scope=fleet",
        Some("tok"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(eventually(|| b.state() == State::Closed).await);
}

/// A fleet and a cb-postgres store attached together: Redis holds the live
/// state, PostgreSQL the history, and the fleet's router reads the
/// transitions from PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_store_attached_the_transitions_come_from_postgres() {
    let test = "with_a_store_attached_the_transitions_come_from_postgres";
    let Some(redis) = redis_or_skip(test) else {
        return;
    };
    let Some(pg) = cb_postgres::testing::postgres_or_skip(test) else {
        return;
    };
    let (ra, rb) = (replica(), replica());
    let fa = Arc::new(
        Fleet::builder(&redis.url())
            .namespace("pg")
            .replica_id("a")
            .join(ra)
            .await
            .unwrap(),
    );
    let _fb = Fleet::builder(&redis.url())
        .namespace("pg")
        .replica_id("b")
        .join(rb)
        .await
        .unwrap();
    let store = cb_postgres::Store::builder(&pg.url())
        .service("pg")
        .replica_id("a")
        .attach(ra)
        .await
        .unwrap();
    let config = || Config::builder().failure_threshold(1).build().unwrap();
    let a = ra.get_or_insert("pay", config);
    let b = rb.get_or_insert("pay", config);
    let _ = a.call(async { Err::<(), _>("down") }).await;
    assert!(
        eventually(|| b.state() == State::Open).await,
        "the fleet shares the open"
    );
    assert!(eventually(|| store.written_events() == 1).await);
    let admin = cb_fleet::admin::router(Arc::clone(&fa), ra, AdminAuth::bearer("tok"));
    let (s, body) = send(&admin, "GET", "/circuit-breakers/pay/transitions?limit=10", None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["source"], "postgres", "{body}");
    assert_eq!(body["transitions"][0]["to"], "open");
    assert_eq!(body["transitions"][0]["replica_id"], "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_below_the_quorum_is_marked_local_in_the_admin_view() {
    let Some(server) = redis_or_skip("an_open_below_the_quorum_is_marked_local_in_the_admin_view") else {
        return;
    };
    let (ra, rb) = (replica(), replica());
    let join = |reg: &'static Registry, id: &'static str| {
        Fleet::builder(&server.url())
            .namespace("admin-quorum")
            .replica_id(id)
            .open_quorum(2)
            .join(reg)
    };
    let fa = Arc::new(join(ra, "a").await.unwrap());
    let _fb = join(rb, "b").await.unwrap();
    let cfg = || {
        Config::builder()
            .failure_threshold(1)
            .open_duration(Duration::from_secs(30))
            .build()
            .unwrap()
    };
    let a = ra.get_or_insert("pay", cfg);
    let b = rb.get_or_insert("pay", cfg);
    let _quiet = ra.get_or_insert("quiet", cfg);
    let admin = cb_fleet::admin::router(Arc::clone(&fa), ra, AdminAuth::bearer("tok"));
    a.try_acquire().unwrap().record(false);
    assert!(eventually(|| fa.local_open("pay").is_some()).await);

    let (status, one) = send(&admin, "GET", "/circuit-breakers/pay", None).await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["state"], "open");
    assert_eq!(one["fleet"]["open"], "local");
    assert_eq!(
        (one["fleet"]["opens"].as_u64(), one["fleet"]["quorum"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(one["fleet"]["note"], "local open, awaiting quorum 1/2");
    let (status, list) = send(&admin, "GET", "/circuit-breakers", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let rows = list["circuit_breakers"].as_array().unwrap();
    let row = |n: &str| rows.iter().find(|r| r["name"] == n).unwrap().clone();
    assert_eq!(row("pay")["fleet"]["note"], "local open, awaiting quorum 1/2");
    assert!(
        row("quiet").get("fleet").is_none(),
        "a closed breaker carries no mark"
    );
    assert_eq!(b.state(), State::Closed);

    // The quorum reached: the open is the fleet's, and the mark goes.
    b.try_acquire().unwrap().record(false);
    assert!(eventually(|| fa.local_open("pay").is_none()).await);
    let (_, one) = send(&admin, "GET", "/circuit-breakers/pay", None).await;
    assert!(one.get("fleet").is_none(), "{one}");
    assert_eq!(one["state"], "open");
}
