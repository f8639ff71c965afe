//! Measures what a hung PostgreSQL costs a closed call with a cb-postgres
//! store attached: the latency of closed calls with the store attached and
//! its server stopped with SIGSTOP, against the same calls with no store.
//! Starts its own throwaway PostgreSQL (cb_postgres::testing).
//!
//! ```sh
//! cargo run --release --example postgres_hung
//! ```

use std::time::{Duration, Instant};

use cb_postgres::testing::postgres_or_skip;
use cb_postgres::Store;
use cb_runtime::{CircuitBreaker, Config, Registry};

const ROUNDS: usize = 20;
const CALLS: usize = 20_000;

fn registry() -> &'static Registry {
    Box::leak(Box::new(Registry::with_env(Vec::new)))
}

/// Times `CALLS` closed calls, one by one, in nanoseconds.
fn time_calls(b: &CircuitBreaker, out: &mut Vec<u64>) {
    for i in 0..CALLS {
        let start = Instant::now();
        let r = futures::executor::block_on(b.call(async move { Ok::<_, ()>(i) }));
        out.push(start.elapsed().as_nanos() as u64);
        assert_eq!(r, Ok(i));
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Some(mut server) = postgres_or_skip("postgres_hung") else {
        return;
    };
    let with = registry();
    let store = Store::builder(&server.url())
        .service("bench")
        .io_timeout(Duration::from_millis(200))
        .attach(with)
        .await
        .expect("attaches");
    assert!(store.is_connected());
    let without = registry();
    let config = || Config::builder().failure_threshold(1_000_000).build().unwrap();
    let (stored, plain) = (
        with.get_or_insert("closed", config),
        without.get_or_insert("closed", config),
    );
    // Another breaker of the stored registry keeps making transitions, so
    // events queue up behind the hung server while the calls are timed.
    let flipping = with.get_or_insert("flipping", config);
    server.hang();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // Alternate, so both see the same machine.
        time_calls(&stored, &mut a);
        time_calls(&plain, &mut b);
        if round % 2 == 0 {
            flipping.force_open();
        } else {
            flipping.reset();
        }
        // Over a second in all: the store's statements time out and it
        // keeps trying to reconnect while calls are timed.
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let connected = store.is_connected(); // false: it noticed the hang
    server.resume();
    for (label, v) in [("store attached, PostgreSQL hung", &mut a), ("no store", &mut b)] {
        v.sort_unstable();
        println!(
            "{label:<32} calls {:>7}  p50 {:>5} ns  p99 {:>5} ns  p99.9 {:>6} ns  max {:>8} ns",
            v.len(),
            percentile(v, 0.50),
            percentile(v, 0.99),
            percentile(v, 0.999),
            v[v.len() - 1]
        );
    }
    println!(
        "store connected while hung: {connected}; events dropped: {}; load average: {}",
        store.dropped_events(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
}
