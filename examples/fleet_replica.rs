//! One replica of a service in fleet mode, as an OS process: run several
//! against one Redis server and they share breaker `dep`.
//!
//! ```sh
//! cargo run --example fleet_replica -- redis://127.0.0.1:6379/ demo r1 watch   # prints `open <ms>` when `dep` opens
//! cargo run --example fleet_replica -- redis://127.0.0.1:6379/ demo r2 trip    # trips `dep` on the line `go`
//! ```
//!
//! Modes:
//! * `watch`: prints `ready`, then `open <remaining ms>` and exits once its
//!   breaker opens (exit 1 after 20 s without).
//! * `trip`: prints `ready`, trips its breaker when it reads `go` on stdin,
//!   prints `tripped` and exits once the fleet has it.
//! * `bench <dependency port> fleet|local [interval ms]`: the benchmark's
//!   replica (`examples/fleet_bench.rs`): calls the fake dependency every
//!   `interval` ms (default 5) through the breaker, prints each transition as
//!   `T <from> <to> <unix ns>`, and exits when stdin closes. `local` does not
//!   join the fleet.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant, SystemTime};

use cb_fleet::Fleet;
use cb_runtime::{Config, Registry, State};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn unix_ns() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        eprintln!(
            "usage: fleet_replica <redis url> <namespace> <replica id> watch|trip|bench <port> fleet|local [interval ms]"
        );
        std::process::exit(2);
    }
    let (url, namespace, id, mode) = (&args[0], &args[1], &args[2], args[3].as_str());
    let registry: &'static Registry = Box::leak(Box::new(Registry::new()));
    let fleet_on = !(mode == "bench" && args.get(5).map(String::as_str) == Some("local"));
    let fleet = if fleet_on {
        match Fleet::builder(url)
            .namespace(namespace)
            .replica_id(id)
            .join(registry)
            .await
        {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("fleet_replica: {e}");
                std::process::exit(2);
            }
        }
    } else {
        None
    };
    match mode {
        "watch" | "trip" => {
            let dep = registry.get_or_insert("dep", || {
                Config::builder()
                    .failure_threshold(1)
                    .open_duration(Duration::from_secs(30))
                    .build()
                    .expect("valid")
            });
            say("ready");
            if mode == "watch" {
                let deadline = Instant::now() + Duration::from_secs(20);
                while Instant::now() < deadline {
                    if dep.state() == State::Open {
                        say(&format!(
                            "open {}",
                            dep.open_remaining().unwrap_or_default().as_millis()
                        ));
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                std::process::exit(1);
            }
            let line = tokio::task::spawn_blocking(|| {
                let mut l = String::new();
                let _ = std::io::stdin().lock().read_line(&mut l);
                l
            })
            .await
            .unwrap_or_default();
            if line.trim() != "go" {
                std::process::exit(1);
            }
            dep.try_acquire().expect("closed").record(false);
            say("tripped");
            // Stay until the fleet has it: it is in the transition log.
            let fleet = fleet.expect("joined");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if fleet.transitions("dep", 1).await.is_ok_and(|l| !l.is_empty()) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            std::process::exit(1);
        }
        "bench" => {
            let every = args.get(6).map_or(5, |ms| ms.parse().expect("an interval in ms"));
            bench(
                registry,
                args[4].parse().expect("a port"),
                fleet,
                Duration::from_millis(every),
            )
            .await
        }
        other => {
            eprintln!("fleet_replica: unknown mode `{other}`");
            std::process::exit(2);
        }
    }
}

async fn bench(registry: &'static Registry, port: u16, fleet: Option<Fleet>, every: Duration) {
    let dep = registry.get_or_insert("dep", || {
        Config::builder()
            .failure_threshold(5)
            .failure_rate_threshold(1.0)
            .minimum_calls(100)
            .open_duration(Duration::from_millis(1000))
            .half_open_max_calls(2)
            .success_threshold(2)
            .call_timeout(Duration::from_secs(1))
            .build()
            .expect("valid")
    });
    dep.on_transition(|t| say(&format!("T {} {} {}", t.from, t.to, unix_ns())));
    // Exit when the orchestrator closes stdin.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while std::io::stdin().lock().read_line(&mut sink).is_ok_and(|n| n > 0) {}
        drop(fleet);
        std::process::exit(0);
    });
    say("ready");
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let dep = dep.clone();
        tokio::spawn(async move {
            let Ok(permit) = dep.try_acquire() else { return };
            // Tell the dependency which calls are half-open probes, so it can count them.
            let probe = dep.state() == State::HalfOpen;
            let _ = permit
                .run(async move {
                    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
                    s.write_all(if probe { b"P" } else { b"?" }).await?;
                    let mut reply = [0u8; 1];
                    s.read_exact(&mut reply).await?;
                    if &reply == b"K" {
                        Ok(())
                    } else {
                        Err(std::io::Error::other("dependency failed"))
                    }
                })
                .await;
        });
    }
}
