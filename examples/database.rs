//! A database behind the `database` preset, during a primary failover.
//!
//! Run with `cargo run --example database`. It finishes by itself in about
//! three seconds.
//!
//! There is no real Postgres here: `Database` is an in-process stand-in with a
//! pool of 5 connections and a query latency of 2 ms. During the failover
//! (0.6 s to 1.4 s) half the queries are refused at once ("connection
//! refused") and the other half hang, holding their connection, until the
//! breaker's `call_timeout` abandons them. Eight workers query it in a loop.
//! A duplicate-key error is the caller's fault and is not counted against the
//! database (`ignore_if`).
//!
//! Every 200 ms a line shows the breaker's state, what the calls did in that
//! interval and how many pool connections were in use: once the circuit is
//! open, refused calls take no connection at all.
//!
//! Then, when PostgreSQL is installed, the same on a real one started on
//! loopback, with `classify = cb_runtime::classify::postgres`: a duplicate
//! key (SQLSTATE 23505) is ignored, the server's death is a failure.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cb_runtime::{circuit_breaker, registry, BreakerError, CallError, State};
use tokio::sync::Semaphore;

const BREAKER: &str = "orders-db";
const RUN_FOR: Duration = Duration::from_millis(2600);

#[derive(Debug)]
enum DbError {
    /// The server refused the connection (failover in progress).
    ConnectionRefused,
    /// `INSERT` hit a unique constraint: the caller's fault.
    UniqueViolation,
    /// The breaker refused the query, or abandoned it at `call_timeout`.
    Breaker(BreakerError),
}

impl From<BreakerError> for DbError {
    fn from(e: BreakerError) -> Self {
        DbError::Breaker(e)
    }
}

fn is_callers_fault(e: &DbError) -> bool {
    matches!(e, DbError::UniqueViolation)
}

struct Database {
    started: Instant,
    pool: Semaphore,
    in_use: AtomicUsize,
    max_in_use: AtomicUsize,
}

impl Database {
    fn failing_over(&self) -> bool {
        let t = self.started.elapsed();
        t >= Duration::from_millis(600) && t < Duration::from_millis(1400)
    }

    /// Runs one query on a pooled connection.
    #[circuit_breaker(
        name = "orders-db",
        preset = "database",
        call_timeout = "150ms",
        open_duration = "300ms",
        ignore_if = is_callers_fault
    )]
    async fn query(&self, n: u64) -> Result<u64, DbError> {
        let _connection = self.pool.acquire().await.expect("the pool is never closed");
        // Back in the pool when the query ends, or is abandoned at the timeout.
        let _counted = InUse::new(&self.in_use);
        self.max_in_use
            .fetch_max(self.in_use.load(Ordering::SeqCst), Ordering::SeqCst);
        self.run(n).await
    }

    async fn run(&self, n: u64) -> Result<u64, DbError> {
        if self.failing_over() {
            if n % 2 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
                return Err(DbError::ConnectionRefused);
            }
            // Hangs on a half-open TCP connection to the old primary.
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        if n % 25 == 0 {
            return Err(DbError::UniqueViolation);
        }
        Ok(n)
    }
}

/// Counts a connection as in use while it lives.
struct InUse<'a>(&'a AtomicUsize);

impl<'a> InUse<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        InUse(count)
    }
}

impl Drop for InUse<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Every call's fate, counted by the workers.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    refused_by_db: AtomicU64,
    timed_out: AtomicU64,
    rejected: AtomicU64,
    callers_fault: AtomicU64,
    slowest_rejection_ns: AtomicU64,
}

#[tokio::main]
async fn main() {
    let db = Arc::new(Database {
        started: Instant::now(),
        pool: Semaphore::new(5),
        in_use: AtomicUsize::new(0),
        max_in_use: AtomicUsize::new(0),
    });
    let tally = Arc::new(Tally::default());
    let counter = Arc::new(AtomicU64::new(0));
    println!("simulated database: pool of 5 connections, 2 ms per query; failover from 0.6 s to 1.4 s");
    println!("breaker `{BREAKER}`: preset database, call_timeout 150ms, open_duration 300ms\n");

    let mut workers = Vec::new();
    for _ in 0..8 {
        let (db, tally, counter) = (Arc::clone(&db), Arc::clone(&tally), Arc::clone(&counter));
        workers.push(tokio::spawn(async move {
            while db.started.elapsed() < RUN_FOR {
                let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
                let started = Instant::now();
                let slot = match db.query(n).await {
                    Ok(_) => &tally.ok,
                    Err(DbError::ConnectionRefused) => &tally.refused_by_db,
                    Err(DbError::UniqueViolation) => &tally.callers_fault,
                    Err(DbError::Breaker(e)) if e.is_timeout() => &tally.timed_out,
                    Err(DbError::Breaker(_)) => {
                        let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                        tally.slowest_rejection_ns.fetch_max(ns, Ordering::Relaxed);
                        &tally.rejected
                    }
                };
                slot.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }

    println!("  time   state       ok  refused  timed out  rejected  caller's fault  connections in use");
    let mut last = [0u64; 5];
    while db.started.elapsed() < RUN_FOR {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = [
            tally.ok.load(Ordering::Relaxed),
            tally.refused_by_db.load(Ordering::Relaxed),
            tally.timed_out.load(Ordering::Relaxed),
            tally.rejected.load(Ordering::Relaxed),
            tally.callers_fault.load(Ordering::Relaxed),
        ];
        let d: Vec<u64> = now.iter().zip(last).map(|(n, l)| n - l).collect();
        last = now;
        let state = registry().get(BREAKER).map_or(State::Closed, |b| b.state());
        let phase = if db.failing_over() { "  <- failover" } else { "" };
        println!(
            "  {:>4.1}s  {:<11} {:>3}  {:>7}  {:>9}  {:>8}  {:>14}  {:>18}{phase}",
            db.started.elapsed().as_secs_f64(),
            state.as_str(),
            d[0],
            d[1],
            d[2],
            d[3],
            d[4],
            db.in_use.load(Ordering::SeqCst),
        );
    }
    for w in workers {
        w.await.expect("worker");
    }

    let stats = registry()
        .get(BREAKER)
        .expect("created by the first query")
        .stats();
    println!("\n== summary");
    println!(
        "  {} queries: {} ok, {} refused by the database, {} abandoned at call_timeout,",
        stats.calls(),
        stats.successes,
        tally.refused_by_db.load(Ordering::Relaxed),
        stats.timeouts
    );
    println!(
        "  {} duplicate keys (ignored: the caller's fault), {} rejected by the open circuit",
        stats.ignored, stats.rejected
    );
    println!(
        "  rejected queries took no connection and returned within {:.3} ms; at most {} of 5 connections were ever in use",
        tally.slowest_rejection_ns.load(Ordering::Relaxed) as f64 / 1e6,
        db.max_in_use.load(Ordering::SeqCst)
    );

    real_postgres().await;
}

/// A real PostgreSQL's errors, sorted by `cb_runtime::classify::postgres`.
async fn real_postgres() {
    println!("\n== a real PostgreSQL, errors sorted by cb_runtime::classify::postgres");
    let Some(mut server) = cb_postgres::testing::postgres_or_skip("examples/database") else {
        return;
    };
    let (db, connection) = tokio_postgres::connect(&server.url(), tokio_postgres::NoTls)
        .await
        .expect("the server just started");
    tokio::spawn(connection);
    db.batch_execute("CREATE TABLE orders (id int PRIMARY KEY)")
        .await
        .expect("a table");

    for (what, id) in [
        ("order 1", 1),
        ("order 1 again (a duplicate key)", 1),
        ("order 2", 2),
    ] {
        match insert_order(&db, id).await {
            Ok(_) => println!("  {what}: inserted"),
            Err(CallError::Inner(e)) => match e.as_db_error() {
                Some(db) => println!("  {what}: {} (SQLSTATE {})", db.message(), db.code().code()),
                None => println!("  {what}: {e}"),
            },
            Err(e) => println!("  {what}: {e}"),
        }
    }
    server.kill();
    match insert_order(&db, 3).await {
        Ok(_) => println!("  order 3: inserted?"),
        Err(e) => println!("  order 3, the server killed: {e}"),
    }
    let stats = registry()
        .get("orders-pg")
        .expect("created by the first insert")
        .stats();
    println!(
        "  breaker `orders-pg`: {} successes, {} ignored (the duplicate), {} failure (the dead server)",
        stats.successes, stats.ignored, stats.failures
    );
    assert_eq!((stats.successes, stats.ignored, stats.failures), (2, 1, 1));
}

#[circuit_breaker(name = "orders-pg", preset = "database", classify = cb_runtime::classify::postgres)]
async fn insert_order(db: &tokio_postgres::Client, id: i32) -> Result<u64, CallError<tokio_postgres::Error>> {
    db.execute("INSERT INTO orders (id) VALUES ($1)", &[&id]).await
}
