//! A breaker's history in PostgreSQL: attaches a cb-postgres store, trips a
//! breaker, and prints its transitions as the table holds them.
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo run --example postgres_history
//! ```
//!
//! Without `DATABASE_URL` it says how to run it and exits 0.

use std::time::{Duration, Instant};

use cb_postgres::Store;
use cb_runtime::{Config, Registry, State};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        println!("postgres_history needs a PostgreSQL server; run it with");
        println!("  DATABASE_URL=postgres://user@127.0.0.1:5432/db cargo run --example postgres_history");
        return Ok(());
    };
    let registry: &'static Registry = Box::leak(Box::new(Registry::new()));
    let store = Store::builder(&url)
        .service("postgres-history-example")
        .attach(registry)
        .await?;
    if !store.is_connected() {
        return Err(format!(
            "PostgreSQL at DATABASE_URL is not reachable (the store keeps trying; {store:?})"
        )
        .into());
    }
    println!(
        "attached: service `{}`, replica `{}`",
        store.service(),
        store.replica_id()
    );

    let payments = registry.get_or_insert("payments", || {
        Config::builder()
            .failure_threshold(3)
            .open_duration(Duration::from_millis(200))
            .success_threshold(1)
            .build()
            .expect("a valid config")
    });
    for _ in 0..3 {
        let _ = payments.call(async { Err::<(), _>("connection refused") }).await;
    }
    println!("payments: {} after 3 failures", payments.state());
    tokio::time::sleep(Duration::from_millis(250)).await;
    payments.call(async { Ok::<_, std::io::Error>(()) }).await?;
    println!("payments: {} after a successful probe", payments.state());
    assert_eq!(payments.state(), State::Closed);

    // The events are written off the call path: wait for the three.
    let start = Instant::now();
    let written = store.written_events();
    while store.written_events() < 3 && start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "{} events written ({written} at first look)",
        store.written_events()
    );

    println!("\ncircuit_breaker_events for `payments`, newest first:");
    for t in store.transitions("payments", 10).await? {
        let at = t.occurred_at.duration_since(std::time::UNIX_EPOCH)?.as_secs_f64();
        println!(
            "  {at:.3}  {:<9} -> {:<9}  {:<24} replica {}",
            t.from.as_str(),
            t.to.as_str(),
            t.reason,
            t.replica_id
        );
    }
    Ok(())
}
