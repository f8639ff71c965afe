//! The fleet benchmark: R = 9 `fleet_replica` processes on loopback call a
//! fake dependency that counts the calls reaching it, through breaker `dep`
//! (failure_threshold 5, open 1 s, half_open_max_calls 2, success_threshold 2),
//! once with the fleet joined and once local-only, under several load shapes
//! (see [`SHAPES`]): how often each replica calls, and how long a failing
//! call takes. The dependency goes down, stays down 1.2 s after every replica
//! opened (so probes fail at least once), and comes back. Measured, not
//! asserted.
//!
//! ```sh
//! cargo build --release --example fleet_replica && nice -n 19 cargo run --release --example fleet_bench
//! ```
//!
//! `FLEET_BENCH_SHAPES=uniform-instant,hot-cold-instant` runs only those;
//! `FLEET_BENCH_DEBUG=1` prints each outage.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use cb_fleet::testing::RedisServer;
use cb_fleet::Fleet;
use cb_runtime::{Config, Registry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const R: usize = 9;

fn unix_ns() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A load shape: how often replica `i` calls, and how long a failure takes.
struct Shape {
    name: &'static str,
    /// For the README: the load in words.
    load: &'static str,
    /// Milliseconds between calls of replica `i`.
    every_ms: fn(usize) -> u64,
    /// Milliseconds a failing call takes (a success always takes 30 ms).
    fail_ms: u64,
}

const SHAPES: [Shape; 4] = [
    Shape {
        name: "uniform-slow",
        load: "every replica every 5 ms; a failure takes 30 ms (a timeout-like outage)",
        every_ms: |_| 5,
        fail_ms: 30,
    },
    Shape {
        name: "uniform-instant",
        load: "every replica every 5 ms; a failure is immediate (connection refused)",
        every_ms: |_| 5,
        fail_ms: 0,
    },
    Shape {
        name: "hot-cold-instant",
        load: "one hot replica every 1 ms, 8 cold ones every 100 ms; immediate failures",
        every_ms: |i| if i == 0 { 1 } else { 100 },
        fail_ms: 0,
    },
    Shape {
        name: "hot-cold-slow",
        load: "one hot replica every 1 ms, 8 cold ones every 100 ms; a failure takes 30 ms",
        every_ms: |i| if i == 0 { 1 } else { 100 },
        fail_ms: 30,
    },
];

/// The fake dependency: answers `K` after 30 ms, or `E` while down, after `fail_ms`.
struct Dep {
    down: AtomicBool,
    fail_ms: u64,
    /// (arrived, left) in unix ns, and whether the caller said it was a
    /// half-open probe, for every call.
    calls: Mutex<Vec<(u128, u128, bool)>>,
}

async fn serve(dep: Arc<Dep>, listener: tokio::net::TcpListener) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            continue;
        };
        let dep = Arc::clone(&dep);
        tokio::spawn(async move {
            let mut b = [0u8; 1];
            if s.read_exact(&mut b).await.is_err() {
                return;
            }
            let arrived = unix_ns();
            let down = dep.down.load(Ordering::SeqCst);
            let ms = if down { dep.fail_ms } else { 30 };
            if ms > 0 {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            let _ = s.write_all(if down { b"E" } else { b"K" }).await;
            dep.calls.lock().unwrap().push((arrived, unix_ns(), b == *b"P"));
        });
    }
}

struct Event {
    replica: usize,
    to: String,
    ns: u128,
}

/// The `fleet_replica` example beside this one, built (release) if missing.
fn replica_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .join(format!("fleet_replica{}", std::env::consts::EXE_SUFFIX));
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "--example", "fleet_replica"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building fleet_replica failed");
    }
    path
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Most intervals overlapping at once.
fn max_overlap(intervals: &[(u128, u128)]) -> usize {
    let mut edges: Vec<(u128, i32)> = intervals.iter().flat_map(|&(a, b)| [(a, 1), (b, -1)]).collect();
    edges.sort_by_key(|&(t, d)| (t, d));
    let (mut now, mut max) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        max = max.max(now);
    }
    max as usize
}

struct Outcome {
    propagation_ms: Vec<f64>,
    dead_calls: Vec<usize>,
    /// Of `dead_calls`: those that arrived before the first replica opened
    /// (no coordination can stop them), and those after every replica had.
    before_first_open: Vec<usize>,
    after_all_open: Vec<usize>,
    max_probes: Vec<usize>,
}

async fn run(mode: &str, url: &str, outages: usize, shape: &Shape) -> Outcome {
    let dep = Arc::new(Dep {
        down: AtomicBool::new(false),
        fail_ms: shape.fail_ms,
        calls: Mutex::new(Vec::new()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(serve(Arc::clone(&dep), listener));
    let (tx, rx) = mpsc::channel::<Event>();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let ns = format!("bench-{mode}-{}-{}", shape.name, std::process::id());
    let mut children: Vec<Child> = (0..R)
        .map(|i| {
            let every = (shape.every_ms)(i).to_string();
            let mut c = Command::new(replica_binary())
                .args([
                    url,
                    &ns,
                    &format!("r{i}"),
                    "bench",
                    &port.to_string(),
                    mode,
                    &every,
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("build fleet_replica first: cargo build --release --example fleet_replica");
            let out = c.stdout.take().unwrap();
            let (tx, ready_tx) = (tx.clone(), ready_tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let f: Vec<&str> = line.split(' ').collect();
                    match f.as_slice() {
                        ["ready"] => {
                            let _ = ready_tx.send(());
                        }
                        ["T", _from, to, ns] => {
                            let _ = tx.send(Event {
                                replica: i,
                                to: (*to).to_owned(),
                                ns: ns.parse().unwrap_or(0),
                            });
                        }
                        _ => {}
                    }
                }
            });
            c
        })
        .collect();
    for _ in 0..R {
        ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("replica ready");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut events: Vec<Event> = Vec::new();
    let mut state = vec![String::from("closed"); R];
    let drain = |events: &mut Vec<Event>, state: &mut Vec<String>| {
        while let Ok(e) = rx.try_recv() {
            state[e.replica] = e.to.clone();
            events.push(e);
        }
    };
    let mut windows = Vec::new();
    for _ in 0..outages {
        let down_at = unix_ns();
        dep.down.store(true, Ordering::SeqCst);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            drain(&mut events, &mut state);
            if state.iter().all(|s| s == "open") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let up_at = unix_ns();
        dep.down.store(false, Ordering::SeqCst);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(8) {
            drain(&mut events, &mut state);
            if state.iter().all(|s| s == "closed") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        drain(&mut events, &mut state);
        windows.push((down_at, up_at));
    }
    for c in &mut children {
        drop(c.stdin.take());
    }
    for c in &mut children {
        let _ = c.wait();
    }
    let calls = dep.calls.lock().unwrap().clone();
    let mut out = Outcome {
        propagation_ms: Vec::new(),
        dead_calls: Vec::new(),
        before_first_open: Vec::new(),
        after_all_open: Vec::new(),
        max_probes: Vec::new(),
    };
    for (k, &(down_at, up_at)) in windows.iter().enumerate() {
        let end = windows.get(k + 1).map_or(u128::MAX, |w| w.0);
        // First open of each replica in this outage.
        let mut first_open = vec![None; R];
        for e in events
            .iter()
            .filter(|e| e.ns >= down_at && e.ns < up_at && e.to == "open")
        {
            first_open[e.replica].get_or_insert(e.ns);
        }
        if first_open.iter().all(Option::is_some) {
            let opens: Vec<u128> = first_open.iter().map(|o| o.unwrap()).collect();
            let (lo, hi) = (opens.iter().min().unwrap(), opens.iter().max().unwrap());
            out.propagation_ms.push((hi - lo) as f64 / 1e6);
            let dead = |from: u128, to: u128| calls.iter().filter(|&&(a, _, _)| a >= from && a < to).count();
            out.before_first_open.push(dead(down_at, *lo));
            out.after_all_open.push(dead(*hi, up_at));
            // Probes: calls the replicas tagged as half-open probes, from the outage until the first close after it.
            let first_close = events
                .iter()
                .filter(|e| e.ns >= up_at && e.ns < end && e.to == "closed")
                .map(|e| e.ns)
                .min()
                .unwrap_or(end);
            let probes: Vec<(u128, u128)> = calls
                .iter()
                .filter(|&&(a, _, probe)| probe && a >= down_at && a < first_close)
                .map(|&(a, b, _)| (a, b))
                .collect();
            out.max_probes.push(max_overlap(&probes));
            if std::env::var_os("FLEET_BENCH_DEBUG").is_some() {
                eprintln!(
                    "outage {k}: spread {:.1} ms, window {:.0} ms after all open, {} calls in it, {} at once; closed {:.0} ms after up",
                    (hi - lo) as f64 / 1e6,
                    (first_close.min(end).saturating_sub(*hi)) as f64 / 1e6,
                    probes.len(),
                    max_overlap(&probes),
                    first_close.saturating_sub(up_at) as f64 / 1e6
                );
            }
        }
        out.dead_calls.push(
            calls
                .iter()
                .filter(|&&(a, _, _)| a >= down_at && a < up_at)
                .count(),
        );
    }
    out
}

/// ns per closed call through `try_acquire` + `record`, best of 5.
fn per_call_ns(b: &cb_runtime::CircuitBreaker) -> f64 {
    let n = 2_000_000;
    (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                std::hint::black_box(b).try_acquire().unwrap().record(true);
            }
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .fold(f64::INFINITY, f64::min)
}

#[tokio::main]
async fn main() {
    let server = RedisServer::start();
    let url = server.url();
    let only = std::env::var("FLEET_BENCH_SHAPES").ok();
    let debug = std::env::var_os("FLEET_BENCH_DEBUG").is_some();
    println!("R = {R} replica processes, redis-server {url}");
    let mean = |v: &[usize]| v.iter().sum::<usize>() as f64 / v.len().max(1) as f64;
    let max = |v: &[usize]| v.iter().max().copied().unwrap_or(0);
    let mut rows = Vec::new();
    for shape in SHAPES
        .iter()
        .filter(|s| only.as_deref().is_none_or(|o| o.split(',').any(|n| n == s.name)))
    {
        println!("shape {}: {}", shape.name, shape.load);
        let fleet = run("fleet", &url, 10, shape).await;
        let local = run("local", &url, 5, shape).await;
        let mut p = fleet.propagation_ms.clone();
        p.sort_by(f64::total_cmp);
        let mut lp = local.propagation_ms.clone();
        lp.sort_by(f64::total_cmp);
        let o = &fleet;
        let l = &local;
        rows.push(format!(
            "| {} | {:.1} / {:.1} ms | {:.1} / {:.1} ms | {} / {} | {:.1} ({}) | {:.1} ({}) | {:.1} / {:.1} | {:.1} / {:.1} |",
            shape.name,
            percentile(&p, 0.5),
            percentile(&p, 0.99),
            percentile(&lp, 0.5),
            percentile(&lp, 0.99),
            max(&o.max_probes),
            max(&l.max_probes),
            mean(&o.dead_calls),
            max(&o.dead_calls),
            mean(&l.dead_calls),
            max(&l.dead_calls),
            mean(&o.before_first_open),
            mean(&o.after_all_open),
            mean(&l.before_first_open),
            mean(&l.after_all_open),
        ));
        println!("{}", rows.last().unwrap());
        if debug {
            return;
        }
    }

    let joined: &'static Registry = Box::leak(Box::new(Registry::new()));
    let alone: &'static Registry = Box::leak(Box::new(Registry::new()));
    let _f = Fleet::builder(&url)
        .namespace("bench-overhead")
        .join(joined)
        .await
        .unwrap();
    let cfg = || Config::builder().build().unwrap();
    let (bj, ba) = (joined.get_or_insert("x", cfg), alone.get_or_insert("x", cfg));
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        without.push(per_call_ns(&ba));
        with.push(per_call_ns(&bj));
    }
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);

    println!();
    println!("| shape | trip-to-all-open p50 / p99, fleet | local-only | most probes in flight per half-open period, fleet / local | dead calls per outage, fleet: mean (max) | local-only: mean (max) | fleet: before the first open / after all open | local-only: the same |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!("{r}");
    }
    println!();
    println!(
        "closed call, `try_acquire` + `record`, best of 3: {:.1} ns joined, {:.1} ns not joined",
        best(&with),
        best(&without)
    );
}
