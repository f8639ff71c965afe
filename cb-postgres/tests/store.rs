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

async fn client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.expect("connects");
    tokio::spawn(conn);
    client
}

async fn count(url: &str, sql: &str) -> i64 {
    client(url).await.query_one(sql, &[]).await.unwrap().get(0)
}

async fn attach(server: &PostgresServer, service: &str, registry: &'static Registry) -> Store {
    Store::builder(&server.url())
        .service(service)
        .replica_id("r1")
        .io_timeout(Duration::from_millis(500))
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
    for table in ["circuit_breaker_state", "circuit_breaker_events", "circuit_breaker_schema"] {
        let n = count(&url, &format!("SELECT count(*) FROM information_schema.tables WHERE table_name = '{table}'")).await;
        assert_eq!(n, 1, "{table}");
    }
    assert_eq!(count(&url, "SELECT count(*) FROM circuit_breaker_schema").await, 1);
    let index = count(
        &url,
        "SELECT count(*) FROM pg_indexes WHERE tablename = 'circuit_breaker_events' \
         AND indexdef LIKE '%(service, name, occurred_at)%'",
    )
    .await;
    assert_eq!(index, 1);
    // A third attach later changes nothing.
    attach(&server, "checkout", registry()).await;
    assert_eq!(count(&url, "SELECT count(*) FROM circuit_breaker_schema").await, 1);
}
