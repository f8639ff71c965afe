//! What the fleet costs Redis, per shared breaker: memory, commands per
//! second at rest and during an outage, and bytes Redis sends (script
//! answers and pub/sub deliveries), for 10, 100 and 1,000 replicas, with and
//! without `share_failures`: the table in cb-fleet's crate docs ("Costs").
//!
//! Starts its own redis-server (it must be installed) and runs the replicas
//! in this process, each its own registry and fleet, all sharing one breaker.
//! Each phase resets the server's statistics (`CONFIG RESETSTAT`), runs for
//! [`WINDOW`], then reads `INFO commandstats` and `INFO stats`; memory is the
//! sum of `MEMORY USAGE` over the namespace's keys.
//!
//! - At rest: every replica makes a successful call every 10 ms.
//! - Outage: every call fails; the breaker opens, probes after its open
//!   duration (1 s), fails, and opens again, on every replica.
//!
//! ```text
//! cargo run --release -p cb-fleet --example costs
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cb_fleet::testing::{replicas, RedisServer};
use cb_runtime::{CircuitBreaker, Config};
use std::sync::Arc;

/// How long each phase is measured.
const WINDOW: Duration = Duration::from_secs(4);
/// How often each replica calls.
const CALL_EVERY: Duration = Duration::from_millis(10);

fn config() -> Config {
    Config::builder()
        .failure_threshold(5)
        .open_duration(Duration::from_secs(1))
        .build()
        .expect("a valid config")
}

/// What one phase cost Redis.
struct Phase {
    commands: u64,
    bytes_out: u64,
}

async fn info(con: &mut redis::aio::MultiplexedConnection, section: &str) -> BTreeMap<String, String> {
    let text: String = redis::cmd("INFO")
        .arg(section)
        .query_async(con)
        .await
        .expect("INFO");
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect()
}

/// Runs the replicas' calls for [`WINDOW`] and reads what Redis did meanwhile.
async fn phase(
    con: &mut redis::aio::MultiplexedConnection,
    breakers: &[Arc<CircuitBreaker>],
    fail: bool,
) -> Phase {
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(con)
        .await
        .expect("CONFIG RESETSTAT");
    let started = Instant::now();
    let mut tick = tokio::time::interval(CALL_EVERY);
    while started.elapsed() < WINDOW {
        tick.tick().await;
        for breaker in breakers {
            if let Ok(permit) = breaker.try_acquire() {
                permit.record(!fail);
            }
        }
    }
    let stats = info(con, "commandstats").await;
    // `cmdstat_<name>:calls=N,usec=...`; the INFO and RESETSTAT of this
    // measurement are left out.
    let commands = stats
        .iter()
        .filter(|(k, _)| k.starts_with("cmdstat_") && *k != "cmdstat_info" && *k != "cmdstat_config")
        .filter_map(|(_, v)| v.strip_prefix("calls=")?.split(',').next()?.parse::<u64>().ok())
        .sum();
    let bytes_out = info(con, "stats").await["total_net_output_bytes"]
        .parse()
        .expect("total_net_output_bytes");
    Phase { commands, bytes_out }
}

/// The bytes the namespace's keys take (`MEMORY USAGE`, summed).
async fn memory(con: &mut redis::aio::MultiplexedConnection, ns: &str) -> (u64, usize) {
    let mut cursor = 0u64;
    let mut bytes = 0u64;
    let mut keys = 0usize;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("cb:{{{ns}}}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(con)
            .await
            .expect("SCAN");
        for key in batch {
            let used: Option<u64> = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(&key)
                .query_async(con)
                .await
                .expect("MEMORY USAGE");
            bytes += used.unwrap_or(0);
            keys += 1;
        }
        if next == 0 {
            return (bytes, keys);
        }
        cursor = next;
    }
}

#[tokio::main]
async fn main() {
    let server = RedisServer::start();
    let client = redis::Client::open(server.url()).expect("a redis URL");
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .expect("connects to redis-server");
    println!(
        "| replicas | share_failures | Redis memory (keys) | commands/s at rest, per replica | \
         commands/s in an outage, per replica | bytes/s sent at rest | bytes/s sent in an outage |"
    );
    println!("|---|---|---|---|---|---|---|");
    for count in [10usize, 100, 1000] {
        for share in [false, true] {
            let ns = format!("costs-{count}-{share}");
            let joined = replicas(&server, &ns, count, |b| b.share_failures(share)).await;
            let breakers: Vec<_> = joined
                .iter()
                .map(|(_, registry)| registry.get_or_insert("provider", config))
                .collect();
            // Let every replica register the breaker before measuring.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let rest = phase(&mut con, &breakers, false).await;
            let (bytes, keys) = memory(&mut con, &ns).await;
            let outage = phase(&mut con, &breakers, true).await;
            let per_s = |n: u64| n as f64 / WINDOW.as_secs_f64();
            println!(
                "| {count} | {share} | {:.1} KiB ({keys}) | {:.2} | {:.2} | {:.0} | {:.0} |",
                bytes as f64 / 1024.0,
                per_s(rest.commands) / count as f64,
                per_s(outage.commands) / count as f64,
                per_s(rest.bytes_out),
                per_s(outage.bytes_out),
            );
            // Dropping a fleet stops its task and closes its connections.
            drop(joined);
        }
    }
}
