//! cb-postgres against a real PostgreSQL, started by each test (skipped,
//! saying so, when PostgreSQL is not installed; `CB_REQUIRE_POSTGRES=1` makes
//! that a failure).

use std::time::Duration;

use cb_postgres::testing::{postgres_or_skip, wait_until, PostgresServer};
use cb_postgres::{Store, StoreError};
use cb_runtime::{CircuitBreaker, Config, Registry, State};
use tokio_postgres::NoTls;

fn leak(r: Registry) -> &'static Registry {
    Box::leak(Box::new(r))
}

fn registry() -> &'static Registry {
    leak(Registry::with_env(Vec::new))
}

/// A breaker that opens on one failure and stays open `open`.
fn trips(open: Duration) -> Config {
    Config::builder()
        .failure_threshold(1)
        .open_duration(open)
        .success_threshold(1)
        .half_open_max_calls(1)
        .build()
        .unwrap()
}

async fn fail(b: &CircuitBreaker) {
    let _ = b.call(async { Err::<(), _>("down") }).await;
}

/// A store on `registry` whose breaker `payments` opened for a minute, its
/// transition written.
async fn payments_opened(server: &PostgresServer, registry: &'static Registry) -> Store {
    let store = attach(server, "checkout", registry).await;
    fail(&registry.get_or_insert("payments", || trips(Duration::from_secs(60)))).await;
    assert!(wait_until(Duration::from_secs(10), || store.written_events() == 1).await);
    store
}

async fn client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.expect("connects");
    tokio::spawn(conn);
    client
}

async fn count(url: &str, sql: &str) -> i64 {
    client(url).await.query_one(sql, &[]).await.unwrap().get(0)
}

async fn attach(server: &PostgresServer, service: &str, registry: &'static Registry) -> Store {
    attach_to(&server.url(), service, 4096, 500, registry).await
}

/// A store of `service`, replica `r1`, with a queue of `queue` events and
/// statements timing out after `timeout_ms`.
async fn attach_to(
    url: &str,
    service: &str,
    queue: usize,
    timeout_ms: u64,
    registry: &'static Registry,
) -> Store {
    Store::builder(url)
        .service(service)
        .replica_id("r1")
        .queue_capacity(queue)
        .io_timeout(Duration::from_millis(timeout_ms))
        .attach(registry)
        .await
        .expect("attaches")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tables_are_created_twice_at_once() {
    let Some(server) = postgres_or_skip("the_tables_are_created_twice_at_once") else {
        return;
    };
    let (a, b) = tokio::join!(
        attach(&server, "checkout", registry()),
        attach(&server, "checkout", registry())
    );
    assert!(a.is_connected() && b.is_connected());
    let url = server.url();
    for table in [
        "circuit_breaker_state",
        "circuit_breaker_events",
        "circuit_breaker_schema",
    ] {
        let n = count(
            &url,
            &format!("SELECT count(*) FROM information_schema.tables WHERE table_name = '{table}'"),
        )
        .await;
        assert_eq!(n, 1, "{table}");
    }
    assert_eq!(
        count(&url, "SELECT count(*) FROM circuit_breaker_schema").await,
        1
    );
    let index = count(
        &url,
        "SELECT count(*) FROM pg_indexes WHERE tablename = 'circuit_breaker_events' \
         AND indexdef LIKE '%(service, name, occurred_at)%'",
    )
    .await;
    assert_eq!(index, 1);
    // A third attach later changes nothing.
    attach(&server, "checkout", registry()).await;
    assert_eq!(
        count(&url, "SELECT count(*) FROM circuit_breaker_schema").await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transition_is_written_with_its_columns() {
    let Some(server) = postgres_or_skip("every_transition_is_written_with_its_columns") else {
        return;
    };
    let registry = registry();
    let store = attach(&server, "checkout", registry).await;
    let b = registry.get_or_insert("payments", || trips(Duration::from_millis(60)));
    fail(&b).await; // closed -> open
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(b.state(), State::HalfOpen); // open -> half_open
    b.call(async { Ok::<_, ()>(()) }).await.unwrap(); // half_open -> closed
    b.force_open(); // closed -> forced_open
    b.reset(); // forced_open -> closed
    b.disable(); // closed -> disabled
    let expected = [
        (State::Closed, State::Disabled, "disabled"),
        (State::ForcedOpen, State::Closed, "reset"),
        (State::Closed, State::ForcedOpen, "forced open"),
        (State::HalfOpen, State::Closed, "probes succeeded"),
        (State::Open, State::HalfOpen, "open duration elapsed"),
        (State::Closed, State::Open, "consecutive failures"),
    ];
    assert!(wait_until(Duration::from_secs(10), || store.written_events() == 6).await);
    let got = store.transitions("payments", 100).await.unwrap();
    assert_eq!(got.len(), 6, "{got:?}");
    for (t, (from, to, reason)) in got.iter().zip(expected) {
        assert_eq!((t.from, t.to, t.reason.as_str()), (from, to, reason));
        assert_eq!(
            (t.name.as_str(), t.key.as_deref(), t.replica_id.as_str()),
            ("payments", None, "r1")
        );
    }
    assert!(
        got.windows(2).all(|w| w[0].occurred_at >= w[1].occurred_at),
        "newest first"
    );
    assert_eq!(store.transitions("payments", 2).await.unwrap(), got[..2]);
    assert!(store.transitions("nobody", 10).await.unwrap().is_empty());
    let db = client(&server.url()).await;
    // The raw columns: service, replica, key, failures in the window, and
    // occurred_at on the database's clock.
    let row = db
        .query_one(
            r#"SELECT service, replica, key, failures_in_window, "from", "to",
                      extract(epoch FROM now() - occurred_at)::float8
               FROM circuit_breaker_events WHERE name = 'payments' AND "to" = 'open'"#,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "checkout");
    assert_eq!(row.get::<_, String>(1), "r1");
    assert_eq!(row.get::<_, String>(2), "");
    assert_eq!(row.get::<_, i64>(3), 1);
    assert_eq!(
        (row.get::<_, String>(4), row.get::<_, String>(5)),
        ("closed".into(), "open".into())
    );
    let age: f64 = row.get(6);
    assert!(
        (0.0..60.0).contains(&age),
        "occurred_at is the database's recent past: {age}"
    );
    // The state row follows the last transition.
    let state = db
        .query_one(
            "SELECT state, replica, next_probe_at IS NULL FROM circuit_breaker_state \
             WHERE service = 'checkout' AND name = 'payments' AND key = ''",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(state.get::<_, String>(0), "disabled");
    assert_eq!(state.get::<_, String>(1), "r1");
    assert!(state.get::<_, bool>(2));
    // The counters: a failure and a success were seen.
    let seen = "SELECT count(*) FROM circuit_breaker_state WHERE name = 'payments' \
                AND last_failure_at IS NOT NULL AND last_success_at IS NOT NULL AND failure_count = 0";
    assert!(sql_until(&db, seen, 1).await, "the counters reach the state row");
}

/// Polls `sql` (a count) until it is `want`, for up to 10 s.
async fn sql_until(db: &tokio_postgres::Client, sql: &str, want: i64) -> bool {
    for _ in 0..200 {
        if db.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Makes `n` transitions on breaker `b` (force-open, reset, ...).
fn flip(b: &CircuitBreaker, n: usize) {
    for i in 0..n {
        if i % 2 == 0 {
            b.force_open();
        } else {
            b.reset();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_then_restarted_loses_nothing_within_the_queue_bound() {
    let Some(mut server) = postgres_or_skip("killed_then_restarted_loses_nothing_within_the_queue_bound")
    else {
        return;
    };
    let registry = registry();
    let store = attach_to(&server.url(), "checkout", 64, 500, registry).await;
    let b = registry.get_or_insert("payments", || trips(Duration::from_secs(60)));
    flip(&b, 4);
    assert!(wait_until(Duration::from_secs(10), || store.written_events() == 4).await);
    server.kill();
    // The store finds out at its next statement, or at the counter sync.
    b.call(async { Ok::<_, ()>(()) }).await.unwrap();
    assert!(wait_until(Duration::from_secs(10), || !store.is_connected()).await);
    flip(&b, 40); // within the bound of 64
    assert_eq!(b.call(async { Ok::<_, ()>(7) }).await.unwrap(), 7, "calls go on");
    server.restart();
    assert!(
        wait_until(Duration::from_secs(15), || store.written_events() == 44).await,
        "written: {}",
        store.written_events()
    );
    assert!(store.is_connected());
    assert_eq!(store.dropped_events(), 0);
    let db = client(&server.url()).await;
    assert_eq!(
        db.query_one(
            "SELECT count(*) FROM circuit_breaker_events WHERE name = 'payments'",
            &[]
        )
        .await
        .unwrap()
        .get::<_, i64>(0),
        44
    );
    let got = store.transitions("payments", 1000).await.unwrap();
    assert_eq!(got.len(), 44);
    // Newest first, in the order they happened: reset, force-open, reset, ...
    assert!(got.iter().enumerate().all(|(i, t)| t.to
        == if i % 2 == 0 {
            State::Closed
        } else {
            State::ForcedOpen
        }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_and_counts() {
    let Some(mut server) = postgres_or_skip("a_full_queue_drops_and_counts") else {
        return;
    };
    let registry = registry();
    let store = attach_to(&server.url(), "checkout", 8, 2000, registry).await;
    let b = registry.get_or_insert("payments", || trips(Duration::from_secs(60)));
    server.hang();
    b.disable();
    // The task takes that event and hangs writing it: it takes no more
    // until it has reconnected.
    assert!(wait_until(Duration::from_secs(10), || store.queued_events() == 0).await);
    tokio::time::sleep(Duration::from_millis(50)).await;
    flip(&b, 100);
    assert_eq!(store.queued_events(), 8);
    assert_eq!(store.dropped_events(), 92, "the queue holds 8");
    server.resume();
    assert!(wait_until(Duration::from_secs(15), || store.written_events() == 9).await);
    assert_eq!(
        store.dropped_events(),
        92,
        "nothing more is lost after the server is back"
    );
    assert!(store
        .metrics_text()
        .contains("circuit_breaker_store_dropped_events_total{service=\"checkout\"} 92"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_leaves_calls_unaffected() {
    let Some(mut server) = postgres_or_skip("a_hung_server_leaves_calls_unaffected") else {
        return;
    };
    let registry = registry();
    let store = attach(&server, "checkout", registry).await;
    let b = registry.get_or_insert("payments", || trips(Duration::from_secs(60)));
    server.hang();
    // Calls and transitions go on while every statement hangs.
    for i in 0..1000 {
        assert_eq!(b.call(async move { Ok::<_, ()>(i) }).await.unwrap(), i);
    }
    fail(&b).await;
    assert_eq!(b.state(), State::Open);
    assert!(b.call(async { Ok::<_, ()>(()) }).await.unwrap_err().is_rejected());
    b.reset();
    assert!(wait_until(Duration::from_secs(10), || !store.is_connected()).await);
    assert!(matches!(
        store.transitions("payments", 10).await,
        Err(StoreError::Disconnected)
    ));
    server.resume();
    assert!(wait_until(Duration::from_secs(15), || store.written_events() == 2).await);
    let got = store.transitions("payments", 10).await.unwrap();
    assert_eq!(
        got.iter().map(|t| t.to).collect::<Vec<_>>(),
        [State::Closed, State::Open]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_adopts_an_open_state() {
    let Some(server) = postgres_or_skip("a_restart_adopts_an_open_state") else {
        return;
    };
    // The first run: payments opens for a minute.
    payments_opened(&server, registry()).await;
    // The second run, a fresh registry: a breaker present at attach, and
    // one created after it, both refuse their first call.
    let second = registry();
    let present = second.get_or_insert("payments", || trips(Duration::from_secs(60)));
    let store2 = attach(&server, "checkout", second).await;
    assert_eq!(present.state(), State::Open);
    let left = present.open_remaining().unwrap();
    assert!(
        left > Duration::from_secs(50) && left <= Duration::from_secs(60),
        "{left:?}"
    );
    let third = registry();
    attach(&server, "checkout", third).await;
    let later = third.get_or_insert("payments", || trips(Duration::from_secs(60)));
    assert!(later
        .call(async { Ok::<_, ()>(()) })
        .await
        .unwrap_err()
        .is_rejected());
    // Another service does not adopt it.
    let other = registry();
    attach(&server, "billing", other).await;
    assert_eq!(
        other
            .get_or_insert("payments", || trips(Duration::from_secs(60)))
            .state(),
        State::Closed
    );
    // The adoption is itself a transition, with its own reason.
    assert!(wait_until(Duration::from_secs(10), || store2.written_events() == 1).await);
    let last = &store2.transitions("payments", 1).await.unwrap()[0];
    assert_eq!(
        (last.from, last.to, last.reason.as_str()),
        (State::Closed, State::Open, cb_postgres::RESTORED)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_probe_time_is_read_with_the_databases_clock() {
    let Some(server) = postgres_or_skip("the_next_probe_time_is_read_with_the_databases_clock") else {
        return;
    };
    let db = client(&server.url()).await;
    attach(&server, "checkout", registry()).await; // the schema
    db.batch_execute(
        "INSERT INTO circuit_breaker_state (service, name, state, next_probe_at, replica) VALUES
           ('checkout', 'soon', 'open', now() + interval '30 seconds', 'old'),
           ('checkout', 'past', 'open', now() - interval '1 second', 'old'),
           ('checkout', 'forced', 'forced_open', NULL, 'old')",
    )
    .await
    .unwrap();
    let r = registry();
    attach(&server, "checkout", r).await;
    let soon = r.get_or_insert("soon", || trips(Duration::from_secs(600)));
    let left = soon.open_remaining().expect("open");
    assert!(
        left > Duration::from_secs(25) && left <= Duration::from_secs(30),
        "{left:?}: the row's 30 s, not the config's 600 s"
    );
    assert_eq!(
        r.get_or_insert("past", || trips(Duration::from_secs(600)))
            .state(),
        State::Closed
    );
    assert_eq!(
        r.get_or_insert("forced", || trips(Duration::from_secs(600)))
            .state(),
        State::Closed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_at_attach_is_not_an_error() {
    let Some(mut server) = postgres_or_skip("an_unreachable_server_at_attach_is_not_an_error") else {
        return;
    };
    // Nothing listens on a port just freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = registry();
    let store = attach_to(
        &format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        "checkout",
        4096,
        300,
        r,
    )
    .await;
    assert!(!store.is_connected());
    assert!(matches!(
        store.transitions("x", 1).await,
        Err(StoreError::Disconnected)
    ));
    let b = r.get_or_insert("x", || trips(Duration::from_secs(60)));
    assert_eq!(b.call(async { Ok::<_, ()>(1) }).await.unwrap(), 1);
    // A hung server at attach: attach returns, and the first connection
    // later adopts the persisted open state.
    payments_opened(&server, registry()).await;
    server.hang();
    let late = registry();
    let payments = late.get_or_insert("payments", || trips(Duration::from_secs(60)));
    let s2 = attach_to(&server.url(), "checkout", 4096, 300, late).await;
    assert!(!s2.is_connected());
    assert_eq!(payments.state(), State::Closed);
    server.resume();
    assert!(wait_until(Duration::from_secs(15), || s2.is_connected()).await);
    assert_eq!(payments.state(), State::Open, "adopted at the first connection");
}

#[tokio::test]
async fn bad_settings_are_clear_errors() {
    let r = registry();
    let err = Store::builder("postgres://cb:s3cret@db:notaport/app")
        .service("checkout")
        .attach(r)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid { field: "url", .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("bad url") && !text.contains("s3cret"), "{text}");
    let err = Store::builder("mysql://db/app")
        .service("checkout")
        .attach(r)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid { field: "url", .. }), "{err}");
    let err = Store::builder("postgres://db/app?sslmode=require")
        .service("checkout")
        .attach(r)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("TLS"), "{err}");
    let err = Store::builder("postgres://db/app").attach(r).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Invalid { field: "service", .. }),
        "{err}"
    );
    let err = Store::builder("postgres://db/app")
        .service("")
        .attach(r)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Invalid { field: "service", .. }),
        "{err}"
    );
    let err = Store::builder("postgres://db/app")
        .service("checkout")
        .replica_id("a\nb")
        .attach(r)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Invalid {
                field: "replica_id",
                ..
            }
        ),
        "{err}"
    );
    let err = Store::builder("postgres://db/app")
        .service("checkout")
        .queue_capacity(0)
        .attach(r)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Invalid {
                field: "queue_capacity",
                ..
            }
        ),
        "{err}"
    ); // One store per registry.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    attach_to(&url, "checkout", 16, 100, r).await;
    let err = Store::builder(&url)
        .service("checkout")
        .attach(r)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Invalid {
                field: "registry",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_reads_transitions_from_the_store() {
    use tower::ServiceExt;
    let Some(server) = postgres_or_skip("the_admin_api_reads_transitions_from_the_store") else {
        return;
    };
    let r = registry();
    let store = payments_opened(&server, r).await;
    let admin = cb_runtime::admin::router(r, cb_runtime::admin::AdminAuth::disabled());
    let request = axum::http::Request::get("/circuit-breakers/payments/transitions?limit=5")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = admin.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["source"], "postgres");
    assert_eq!(body["transitions"][0]["to"], "open");
    assert_eq!(body["transitions"][0]["reason"], "consecutive failures");
    assert_eq!(body["transitions"][0]["replica_id"], "r1");
    // And its metrics.
    let text = store.metrics_text();
    assert!(
        text.contains("circuit_breaker_store_connected{service=\"checkout\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("circuit_breaker_store_dropped_events_total{service=\"checkout\"} 0"),
        "{text}"
    );
}

/// Issue 38, item 9: keyed breakers (one per model) are written, with their
/// key, and adopted by a restarted service: a family and key present at
/// attach at once, a family created after attach and a key created lazily
/// when the key's breaker is made, before its first call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_breakers_are_written_and_adopted_after_a_restart() {
    let Some(server) = postgres_or_skip("keyed_breakers_are_written_and_adopted_after_a_restart") else {
        return;
    };
    let first = registry();
    let store = attach(&server, "gateway", first).await;
    // The family is created after attach, its keys lazily.
    let llm = first.family_or_insert("llm", || trips(Duration::from_secs(60)));
    fail(&llm.get_or_insert("gpt-4o")).await;
    llm.get_or_insert("gpt-4o-mini")
        .call(async { Ok::<_, ()>(()) })
        .await
        .unwrap();
    assert_eq!(llm.get_or_insert("gpt-4o").state(), State::Open);
    assert!(wait_until(Duration::from_secs(10), || store.written_events() == 1).await);
    let db = client(&server.url()).await;
    let row = db
        .query_one(
            "SELECT state, next_probe_at > now() + interval '50 seconds' FROM circuit_breaker_state
             WHERE service = 'gateway' AND name = 'llm' AND key = 'gpt-4o'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, bool>(1)),
        ("open".to_owned(), true)
    );
    let got = store.transitions("llm", 10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].key.as_deref(), Some("gpt-4o"));
    assert_eq!((got[0].from, got[0].to), (State::Closed, State::Open));
    // The counters of a closed key reach its row too.
    assert!(
        sql_until(
            &db,
            "SELECT count(*) FROM circuit_breaker_state
             WHERE service = 'gateway' AND name = 'llm' AND key = 'gpt-4o-mini' AND last_success_at IS NOT NULL",
            1
        )
        .await
    );

    // A restart with the family and its open key present at attach.
    let second = registry();
    let present = second
        .family_or_insert("llm", || trips(Duration::from_secs(60)))
        .get_or_insert("gpt-4o");
    let store2 = attach(&server, "gateway", second).await;
    assert_eq!(present.state(), State::Open, "adopted at attach");
    let left = present.open_remaining().unwrap();
    assert!(
        left > Duration::from_secs(50) && left <= Duration::from_secs(60),
        "{left:?}"
    );
    assert!(wait_until(Duration::from_secs(10), || store2.written_events() == 1).await);
    let last = &store2.transitions("llm", 1).await.unwrap()[0];
    assert_eq!(last.key.as_deref(), Some("gpt-4o"));
    assert_eq!(last.reason, cb_postgres::RESTORED);

    // A restart whose family is made after attach, its key at its first call.
    let third = registry();
    attach(&server, "gateway", third).await;
    let llm = third.family_or_insert("llm", || trips(Duration::from_secs(60)));
    let err = llm
        .get_or_insert("gpt-4o")
        .call(async { Ok::<_, ()>(()) })
        .await
        .unwrap_err();
    assert!(err.is_rejected(), "the first call on the open key is refused");
    assert_eq!(llm.get_or_insert("gpt-4o-mini").state(), State::Closed);
    assert_eq!(llm.get_or_insert("claude").state(), State::Closed);

    // With `family_open_keys` on, the adoption (run while the family makes
    // the key, whose observers then ask the family for its open keys)
    // neither deadlocks nor opens another key.
    let fourth = registry();
    attach(&server, "gateway", fourth).await;
    let provider = fourth.family_or_insert("llm", || {
        Config::builder()
            .failure_threshold(1)
            .open_duration(Duration::from_secs(60))
            .family_open_keys(2)
            .build()
            .unwrap()
    });
    assert_eq!(provider.get_or_insert("gpt-4o").state(), State::Open);
    assert_eq!(provider.get_or_insert("claude").state(), State::Closed);
}

/// A key evicted from its family is no longer followed (the store keeps no
/// record of it), and a key made again after its adopted open was reset is
/// not adopted a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adopted_key_is_adopted_once() {
    let Some(server) = postgres_or_skip("an_adopted_key_is_adopted_once") else {
        return;
    };
    let first = registry();
    let store = attach(&server, "gateway", first).await;
    fail(
        &first
            .family_or_insert("llm", || trips(Duration::from_secs(60)))
            .get_or_insert("a"),
    )
    .await;
    assert!(wait_until(Duration::from_secs(10), || store.written_events() == 1).await);
    let second = registry();
    attach(&server, "gateway", second).await;
    let config = || {
        Config::builder()
            .failure_threshold(1)
            .open_duration(Duration::from_secs(60))
            .max_keys(1)
            .build()
            .unwrap()
    };
    let llm = second.family_or_insert("llm", config);
    let a = llm.get_or_insert("a");
    assert_eq!(a.state(), State::Open);
    a.reset();
    // `b` takes the one slot: `a` (closed) is evicted; made again, it is closed.
    llm.get_or_insert("b");
    assert!(llm.get("a").is_none(), "a was evicted");
    drop(a);
    assert_eq!(llm.get_or_insert("a").state(), State::Closed);
}

/// An open period extended in place (a later `open_for`, a `Retry-After`)
/// reaches `next_probe_at`, so a restart adopts the longer period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extended_open_period_is_written() {
    let Some(server) = postgres_or_skip("an_extended_open_period_is_written") else {
        return;
    };
    let first = registry();
    let store = attach(&server, "checkout", first).await;
    let b = first.get_or_insert("payments", || trips(Duration::from_secs(60)));
    fail(&b).await;
    assert!(wait_until(Duration::from_secs(10), || store.written_events() == 1).await);
    assert!(
        b.open_for(Duration::from_secs(3600)),
        "extended in place, no transition"
    );
    let db = client(&server.url()).await;
    assert!(
        sql_until(
            &db,
            "SELECT count(*) FROM circuit_breaker_state
             WHERE name = 'payments' AND next_probe_at > now() + interval '50 minutes'",
            1
        )
        .await,
        "the extension reaches next_probe_at"
    );
    let second = registry();
    attach(&server, "checkout", second).await;
    let left = second
        .get_or_insert("payments", || trips(Duration::from_secs(60)))
        .open_remaining()
        .unwrap();
    assert!(
        left > Duration::from_secs(3000),
        "{left:?}: the extended hour, not the minute"
    );
}

/// Events sent after the writer task ended (its runtime shut down) are
/// counted as dropped, as a full queue's are.
#[test]
fn events_after_the_writer_ended_are_counted() {
    let r = registry();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = runtime.block_on(attach_to(&url, "checkout", 16, 100, r));
    drop(runtime); // the writer task ends with its runtime
    let b = r.get_or_insert("payments", || trips(Duration::from_secs(60)));
    flip(&b, 3);
    assert_eq!(store.dropped_events(), 3);
    assert!(store
        .metrics_text()
        .contains("circuit_breaker_store_dropped_events_total{service=\"checkout\"} 3"));
}

/// Issue 38, item 11: no spelling of a password reaches an error or the
/// store's `Debug`, whatever characters it holds.
#[tokio::test]
async fn passwords_never_shown_whatever_their_spelling() {
    let cases = [
        ("postgres://cb:se/cret@db:notaport/app", "se/cret"),
        ("postgres://cb:se?cret@db:notaport/app", "se?cret"),
        ("postgres://cb:se#cret@db:notaport/app", "se#cret"),
        ("postgres://cb:p@ss@db:notaport/app", "p@ss"),
        ("postgres://cb:s%33cret@db:notaport/app", "s3cret"),
        (
            "postgres://cb@db:notaport/app?sslmode=disable&%70assword=s3cret",
            "s3cret",
        ),
        ("postgres://cb@db:notaport/app?password=s%33cret", "s3cret"),
        ("postgresql://db:notaport/app?PASSWORD=s3cret", "s3cret"),
        ("host=db port=notaport password=s3cret", "s3cret"),
        ("host=db port=notaport password='se cret'", "se cret"),
        ("host=db port=notaport password=se\\ cret", "cret"),
        // TLS refused: the message shows the URL, without its password.
        ("postgres://cb:se/cret@db/app?sslmode=require", "se/cret"),
        ("postgres://cb@db/app?sslmode=require&%70assword=s3cret", "s3cret"),
        ("host=db password=s3cret sslmode=require", "s3cret"),
    ];
    for (url, secret) in cases {
        let err = Store::builder(url)
            .service("checkout")
            .attach(registry())
            .await
            .unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(
            matches!(err, StoreError::Invalid { field: "url", .. }),
            "{url}: {shown}"
        );
        assert!(!shown.contains(secret), "{url} shows its password: {shown}");
        for piece in ["cret", "s3c", "ss@"] {
            assert!(
                !shown.contains(piece),
                "{url} shows a piece of its password: {shown}"
            );
        }
        if url.contains("sslmode=require") {
            // Parsed, then refused: what the parser understood is shown.
            assert!(shown.contains("db"), "{url}: the host is still shown: {shown}");
            assert!(shown.contains("TLS"), "{url}: {shown}");
        }
    }
}
