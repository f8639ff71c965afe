//! What fleet mode costs a call: a closed call through a breaker of a
//! registry with no fleet, joined to a fleet, and joined with
//! `share_failures(true)` reporting every 10 ms while the bench runs. Calls
//! read local atomics only in every case: the reports are made by the
//! fleet's background task from the counts the breaker keeps anyway.
//!
//! Starts its own redis-server; without one installed, only the local
//! figure is measured and the fleet groups say they were skipped.
//!
//! Run: `cargo bench --bench fleet_overhead`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

mod common;

use cb_fleet::testing::RedisServer;
use cb_fleet::Fleet;
use cb_runtime::{CircuitBreaker, Config, Registry};
use common::poll_once;
use criterion::{criterion_group, Criterion};

fn breaker(registry: &'static Registry) -> Arc<CircuitBreaker> {
    registry.get_or_insert("fleet-bench", Config::default)
}

fn bench_call(c: &mut Criterion, name: &str, breaker: &CircuitBreaker) {
    c.bench_function(name, |b| {
        b.iter(|| black_box(poll_once(breaker.call(async { Ok::<u32, ()>(black_box(1)) }))))
    });
}

fn bench_fleet(c: &mut Criterion) {
    let local: &'static Registry = Box::leak(Box::new(Registry::with_env(Vec::new)));
    bench_call(c, "fleet_overhead/no_fleet", &breaker(local));

    if std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("fleet_overhead/joined and /share_failures skipped: redis-server is not installed");
        return;
    }
    let server = RedisServer::start();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    for (name, share) in [
        ("fleet_overhead/joined", false),
        ("fleet_overhead/share_failures", true),
    ] {
        let registry: &'static Registry = Box::leak(Box::new(Registry::with_env(Vec::new)));
        let fleet = runtime
            .block_on(
                Fleet::builder(&server.url())
                    .namespace(&format!("bench-{share}"))
                    .share_failures(share)
                    .share_interval(Duration::from_millis(10))
                    .join(registry),
            )
            .expect("joins the fleet");
        let breaker = breaker(registry);
        bench_call(c, name, &breaker);
        drop(fleet);
    }
}

criterion_group!(benches, bench_fleet);

fn main() {
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
