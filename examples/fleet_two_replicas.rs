//! Two replicas sharing one breaker through Redis (fleet mode), in one
//! process for the demo: a real service runs one replica per process.
//!
//! ```sh
//! cargo run --example fleet_two_replicas                      # starts its own redis-server
//! CB_FLEET_URL=redis://127.0.0.1:6379/ cargo run --example fleet_two_replicas
//! ```

use std::time::{Duration, Instant};

use cb_fleet::testing::RedisServer;
use cb_fleet::Fleet;
use cb_runtime::{Config, Registry, State};

fn replica() -> &'static Registry {
    Box::leak(Box::new(Registry::new()))
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    println!("  {what}: after {:.1} ms", start.elapsed().as_secs_f64() * 1e3);
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (_server, url) = match std::env::var("CB_FLEET_URL") {
        Ok(url) => (None, url),
        Err(_) => {
            let s = RedisServer::start();
            let url = s.url();
            (Some(s), url)
        }
    };
    let config = || {
        Config::builder()
            .failure_threshold(3)
            .open_duration(Duration::from_millis(800))
            .half_open_max_calls(1)
            .success_threshold(1)
            .build()
            .expect("valid")
    };
    let (one, two) = (replica(), replica());
    let fleet_one = Fleet::builder(&url)
        .namespace("demo")
        .replica_id("one")
        .join(one)
        .await?;
    let fleet_two = Fleet::builder(&url)
        .namespace("demo")
        .replica_id("two")
        .join(two)
        .await?;
    println!("{fleet_one:?}\n{fleet_two:?}");
    let (a, b) = (
        one.get_or_insert("payments", config),
        two.get_or_insert("payments", config),
    );

    println!("replica one fails 3 calls in a row:");
    for _ in 0..3 {
        a.try_acquire()?.record(false);
    }
    until("replica two is open too", || b.state() == State::Open).await;
    println!("  replica two refuses: {}", b.try_acquire().unwrap_err());

    println!("the open duration ends; one probe, fleet-wide, closes both:");
    let mut probe = None;
    until("a replica got the fleet's probe lease", || {
        probe = a.try_acquire().ok().or_else(|| b.try_acquire().ok());
        probe.is_some()
    })
    .await;
    probe.expect("a probe").record(true);
    until("both closed", || {
        a.state() == State::Closed && b.state() == State::Closed
    })
    .await;

    println!("an operator forces it open fleet-wide, then resets it:");
    fleet_one.force_open("payments").await?;
    until("replica two is forced open", || b.state() == State::ForcedOpen).await;
    fleet_two.reset("payments").await?;
    until("replica one is closed", || a.state() == State::Closed).await;

    tokio::time::sleep(Duration::from_millis(100)).await;
    println!("the fleet's transition log for `payments`, newest first:");
    for t in fleet_one.transitions("payments", 20).await? {
        println!("  {:<4} {:>11} -> {:<11} {}", t.replica, t.from, t.to, t.reason);
    }
    Ok(())
}
