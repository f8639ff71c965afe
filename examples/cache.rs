//! A read-through cache behind the `cache` preset: when the cache gets slow,
//! the breaker opens on the slow-call rate and reads go straight to the
//! database until the cache is fast again.
//!
//! Run with `cargo run --example cache`. It finishes by itself in about two
//! seconds.
//!
//! The cache and the database are in-process stand-ins: a cache read takes
//! 1 ms, a database read 8 ms. For a while the cache has a latency spike: its
//! reads take 70 ms, over the preset's 50 ms slow-call duration but under its
//! 250 ms timeout, so every read still *succeeds*. A breaker counting only
//! errors would never notice; this one opens when 80 % of the window is slow,
//! and the fallback reads from the database, which is now the faster path.
//!
//! Each read is one character: `.` a fast cache hit, `s` a slow cache hit,
//! `D` served by the database while the circuit is open.
//!
//! Then, when redis-server is installed, a real one on loopback, its errors
//! sorted by `cb_runtime::classify::redis`: a command on a key of the wrong
//! type is ignored, the server's death is a failure.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cb_runtime::{circuit_breaker, registry, BreakerError, CallError};

const BREAKER: &str = "session-cache";

#[derive(Debug)]
enum CacheError {
    /// The breaker refused the read or abandoned it at `call_timeout`.
    Breaker(#[allow(dead_code)] BreakerError),
}

impl From<BreakerError> for CacheError {
    fn from(e: BreakerError) -> Self {
        CacheError::Breaker(e)
    }
}

/// Where a value came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Cache,
    Database,
}

struct Sessions {
    cache: HashMap<String, String>,
    spike: AtomicBool,
}

impl Sessions {
    /// Reads through the cache. Judged on a window of the last 20 reads (the
    /// preset keeps 100) so the demo reacts within a second.
    #[circuit_breaker(
        name = "session-cache",
        preset = "cache",
        sliding_window = 20,
        open_duration = "300ms",
        fallback = read_database
    )]
    async fn get(&self, key: &str) -> Result<(String, Source), CacheError> {
        let latency = if self.spike.load(Ordering::SeqCst) { 70 } else { 1 };
        tokio::time::sleep(Duration::from_millis(latency)).await;
        let value = self.cache.get(key).cloned().unwrap_or_default();
        Ok((value, Source::Cache))
    }

    /// The fallback: the source of truth, a little slower than a healthy cache.
    async fn read_database(&self, key: &str) -> Result<(String, Source), CacheError> {
        tokio::time::sleep(Duration::from_millis(8)).await;
        Ok((format!("session of {key}"), Source::Database))
    }
}

/// Reads `n` keys, 4 at a time, printing one character per read.
async fn reads(sessions: &Arc<Sessions>, n: usize) -> Vec<Duration> {
    let mut took = Vec::new();
    for batch in 0..n / 4 {
        let mut tasks = Vec::new();
        for i in 0..4 {
            let sessions = Arc::clone(sessions);
            tasks.push(tokio::spawn(async move {
                let started = Instant::now();
                let (_, source) = sessions
                    .get(&format!("user-{}", batch * 4 + i))
                    .await
                    .expect("read");
                (source, started.elapsed())
            }));
        }
        for task in tasks {
            let (source, elapsed) = task.await.expect("reader");
            let c = match source {
                Source::Database => 'D',
                Source::Cache if elapsed >= Duration::from_millis(50) => 's',
                Source::Cache => '.',
            };
            print!("{c}");
            took.push(elapsed);
        }
        std::io::stdout().flush().ok();
    }
    println!();
    took
}

fn average(took: &[Duration]) -> String {
    let total: Duration = took.iter().sum();
    format!("{:.1} ms", total.as_secs_f64() * 1e3 / took.len().max(1) as f64)
}

#[tokio::main]
async fn main() {
    let cache = (0..200)
        .map(|i| (format!("user-{i}"), format!("session of user-{i}")))
        .collect();
    let sessions = Arc::new(Sessions {
        cache,
        spike: AtomicBool::new(false),
    });
    let started = Instant::now();
    let at = || format!("{:>5.2}s", started.elapsed().as_secs_f64());
    println!(
        "cache read 1 ms, database read 8 ms; `.` fast hit, `s` slow hit (70 ms), `D` from the database\n"
    );

    println!("{} the cache is healthy", at());
    let healthy = reads(&sessions, 24).await;
    let breaker = registry().get(BREAKER).expect("created by the first read");
    breaker.on_transition(move |t| {
        println!(
            "\n{:>5.2}s ** {} -> {} ({})",
            started.elapsed().as_secs_f64(),
            t.from,
            t.to,
            t.reason
        )
    });

    println!(
        "{} latency spike: every cache read takes 70 ms, and still succeeds",
        at()
    );
    sessions.spike.store(true, Ordering::SeqCst);
    let spike = reads(&sessions, 48).await;

    println!(
        "{} the spike ends; after the open duration, probes find the cache fast again",
        at()
    );
    sessions.spike.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = reads(&sessions, 24).await;

    let stats = breaker.stats();
    println!("\n== summary");
    println!(
        "  average read: healthy {}, during the spike {}, after {}",
        average(&healthy),
        average(&spike),
        average(&after)
    );
    println!(
        "  {} reads through the cache ({} slow), {} served by the database while open",
        stats.successes, stats.slow_calls, stats.rejected
    );
    println!("  without the breaker, every read during the spike would have taken 70 ms");

    real_redis().await;
}

/// A real redis-server's errors, sorted by `cb_runtime::classify::redis`.
async fn real_redis() {
    println!("\n== a real redis-server, errors sorted by cb_runtime::classify::redis");
    let Some(mut server) = cb_fleet::testing::redis_or_skip("examples/cache") else {
        return;
    };
    let client = redis::Client::open(server.url()).expect("a redis URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("the server just started");
    redis::cmd("SET")
        .arg("session:1")
        .arg("alice")
        .query_async::<()>(&mut conn)
        .await
        .expect("SET");

    let show = |what: &str, r: &Result<Option<String>, CallError<redis::RedisError>>| match r {
        Ok(v) => println!("  {what}: {v:?}"),
        Err(e) => println!("  {what}: {e}"),
    };
    show("GET session:1", &get(&mut conn, "GET", "session:1").await);
    // A list command on a string: WRONGTYPE, the caller's mistake.
    show("LPOP session:1", &get(&mut conn, "LPOP", "session:1").await);
    server.kill();
    show(
        "GET session:1, the server killed",
        &get(&mut conn, "GET", "session:1").await,
    );

    let stats = registry()
        .get("sessions-redis")
        .expect("created by the first read")
        .stats();
    println!(
        "  breaker `sessions-redis`: {} success, {} ignored (WRONGTYPE), {} failure (the dead server)",
        stats.successes, stats.ignored, stats.failures
    );
    assert_eq!((stats.successes, stats.ignored, stats.failures), (1, 1, 1));
}

#[circuit_breaker(name = "sessions-redis", preset = "cache", classify = cb_runtime::classify::redis)]
async fn get(
    conn: &mut redis::aio::MultiplexedConnection,
    command: &str,
    key: &str,
) -> Result<Option<String>, CallError<redis::RedisError>> {
    redis::cmd(command).arg(key).query_async(conn).await
}
