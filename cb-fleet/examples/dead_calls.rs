//! Dead calls before the fleet opens, in a uniform outage (every call of
//! every replica fails), with and without `share_failures`: the table in
//! cb-fleet's crate docs ("Shared failure counts").
//!
//! Starts its own redis-server (it must be installed) and runs R replicas
//! in this process, each its own registry and fleet. Calls go round-robin
//! across the replicas, one every `GAP` fleet-wide; a dead call is a call
//! let through (and failed) before every replica is open.
//!
//! ```text
//! cargo run --release -p cb-fleet --example dead_calls
//! ```

use std::time::Duration;

use cb_fleet::testing::{self, RedisServer};
use cb_runtime::{Config, State, Window};

/// Fleet-wide: one call per millisecond.
const GAP: Duration = Duration::from_millis(1);
const MINIMUM_CALLS: u32 = 20;
const INTERVAL: Duration = Duration::from_millis(10);

fn config() -> Config {
    Config::builder()
        .failure_threshold(10_000)
        .failure_rate_threshold(0.5)
        .minimum_calls(MINIMUM_CALLS)
        .sliding_window(Window::Count(100))
        .open_duration(Duration::from_secs(60))
        .build()
        .expect("a valid config")
}

async fn dead_calls(server: &RedisServer, count: usize, share: bool, run: usize) -> u64 {
    let ns = format!("dead-{count}-{share}-{run}");
    let joined = testing::replicas(server, &ns, count, |b| {
        b.share_failures(share).share_interval(INTERVAL)
    })
    .await;
    let breakers: Vec<_> = joined
        .iter()
        .map(|(_, registry)| registry.get_or_insert("provider", config))
        .collect();
    let mut tick = tokio::time::interval(GAP);
    let mut dead = 0u64;
    let mut i = 0usize;
    while !breakers.iter().all(|b| b.state() == State::Open) {
        tick.tick().await;
        if let Ok(permit) = breakers[i % count].try_acquire() {
            permit.record(false);
            dead += 1;
        }
        i += 1;
        assert!(i < 1_000_000, "the fleet never opened");
    }
    dead
}

#[tokio::main]
async fn main() {
    let server = RedisServer::start();
    println!("| replicas | share_failures(false) | share_failures(true), interval {INTERVAL:?} |");
    println!("|---|---|---|");
    for replicas in [1usize, 3, 10] {
        let mut row = Vec::new();
        for share in [false, true] {
            let runs: Vec<u64> = {
                let mut v = Vec::new();
                for run in 0..5 {
                    v.push(dead_calls(&server, replicas, share, run).await);
                }
                v
            };
            let mean = runs.iter().sum::<u64>() as f64 / runs.len() as f64;
            row.push(format!(
                "{mean:.0} ({}..{})",
                runs.iter().min().unwrap(),
                runs.iter().max().unwrap()
            ));
        }
        println!("| {replicas} | {} | {} |", row[0], row[1]);
    }
}
