//! What a key costs: a keyed call on an existing key, in a family of 1,000
//! keys, against an unkeyed call, both through `#[circuit_breaker]` with the
//! same configuration (the `http_api` preset), each a ready `Ok` body polled
//! once with a no-op waker.
//!
//! Groups:
//! - `keyed/unkeyed`: `#[circuit_breaker(name = ..)]`, the function's own breaker.
//! - `keyed/same_key`: `#[circuit_breaker(name = .., key = model)]`, one key over and over.
//! - `keyed/unkeyed_as_task`, `keyed/same_key_as_task`: the same two calls
//!   polled as an executor polls a task (`common::poll_as_task`: through
//!   `dyn Future`, not inlined), so neither call's `poll` is folded into the
//!   bench loop.
//! - `keyed/cycling_keys`: the same family, the 1,000 keys in turn (every
//!   call moves the family's recency clock), through a second function so
//!   that the two compared above have the same callers.
//! - `keyed/lease_only`: `Family::lease` and its drop alone, one key: the thread cache's share.
//! - `keyed/family_get_or_insert`: `Family::get_or_insert` alone, the 1,000 keys in turn.
//! - `keyed/llm_unkeyed_as_task`, `keyed/llm_same_key_as_task`: the case of an
//!   independent harness: the `llm` preset (slow-call detection and a call
//!   timeout on, so every call reads the clock twice), a family of 1,000 keys
//!   with `max_keys = 2000`, the 10-byte key `model-0500`, polled as a task.
//!   Its functions are their own, called from here and from the plain loop.
//!
//! After Criterion's report, a plain timing loop prints the differences per
//! call in ns. The target: at most 15 ns more than unkeyed (and no
//! allocation: `tests/keyed_memory.rs` asserts that).
//!
//! Run: `cargo bench --bench keyed`.

use std::hint::black_box;
use std::time::Instant;

mod common;

use cb_runtime::{circuit_breaker, registry, BreakerError};
use common::{poll_as_task, poll_once};
use criterion::{criterion_group, Criterion};

/// The error type of the annotated functions.
#[derive(Debug)]
pub struct BenchError;

impl From<BreakerError> for BenchError {
    fn from(_: BreakerError) -> Self {
        BenchError
    }
}

#[circuit_breaker(name = "bench-unkeyed", preset = "http_api")]
async fn unkeyed(model: &str) -> Result<usize, BenchError> {
    Ok(model.len())
}

#[circuit_breaker(name = "bench-keyed", preset = "http_api", key = model, max_keys = 1000)]
async fn keyed(model: &str) -> Result<usize, BenchError> {
    Ok(model.len())
}

/// `keyed` again (the same family and configuration) for filling the family
/// and cycling through its keys, so that `keyed` and `unkeyed` are each
/// called from the same places: whether LLVM inlines a call's `poll` depends
/// on how many callers it has, and the comparison is of a key's cost only.
#[circuit_breaker(name = "bench-keyed", preset = "http_api", key = model, max_keys = 1000)]
async fn keyed_elsewhere(model: &str) -> Result<usize, BenchError> {
    Ok(model.len())
}

#[circuit_breaker(name = "bench-llm-unkeyed", preset = "llm")]
async fn llm_unkeyed(model: &str) -> Result<usize, BenchError> {
    Ok(model.len())
}

#[circuit_breaker(name = "bench-llm-keyed", preset = "llm", key = model, max_keys = 2000)]
async fn llm_keyed(model: &str) -> Result<usize, BenchError> {
    Ok(model.len())
}

/// The `llm` family filled with the 1,000 keys, through `Family::get_or_insert`
/// (not through `llm_keyed`, which keeps the callers of the comparison).
fn fill_llm(models: &[String]) {
    poll_once(llm_keyed(&models[0])).unwrap();
    let family = registry().family("bench-llm-keyed").unwrap();
    for m in models {
        family.get_or_insert(m);
    }
    assert_eq!(family.len(), 1000);
}

fn models() -> Vec<String> {
    (0..1000).map(|i| format!("model-{i:04}")).collect()
}

/// The 1,000 keys, each called once, so the family holds them all.
fn fill(models: &[String]) {
    for m in models {
        poll_once(keyed_elsewhere(m)).unwrap();
    }
    let family = registry().family("bench-keyed").unwrap();
    assert_eq!(family.len(), 1000);
}

fn bench_keyed(c: &mut Criterion) {
    let models = models();
    fill(&models);
    let one = models[500].as_str();
    let family = registry().family("bench-keyed").unwrap();
    let mut group = c.benchmark_group("keyed");
    group.bench_function("unkeyed", |b| {
        b.iter(|| black_box(poll_once(unkeyed(black_box(one)))))
    });
    group.bench_function("same_key", |b| {
        b.iter(|| black_box(poll_once(keyed(black_box(one)))))
    });
    group.bench_function("unkeyed_as_task", |b| {
        b.iter(|| black_box(poll_as_task(unkeyed(black_box(one)))))
    });
    group.bench_function("same_key_as_task", |b| {
        b.iter(|| black_box(poll_as_task(keyed(black_box(one)))))
    });
    let mut i = 0;
    group.bench_function("cycling_keys", |b| {
        b.iter(|| {
            i = (i + 1) % models.len();
            black_box(poll_once(keyed_elsewhere(black_box(&models[i]))))
        })
    });
    group.bench_function("lease_only", |b| {
        b.iter(|| drop(black_box(family.lease(black_box(one)))))
    });
    let mut i = 0;
    group.bench_function("family_get_or_insert", |b| {
        b.iter(|| {
            i = (i + 1) % models.len();
            black_box(family.get_or_insert(black_box(&models[i])))
        })
    });
    fill_llm(&models);
    group.bench_function("llm_unkeyed_as_task", |b| {
        b.iter(|| black_box(poll_as_task(llm_unkeyed(black_box(one)))))
    });
    group.bench_function("llm_same_key_as_task", |b| {
        b.iter(|| black_box(poll_as_task(llm_keyed(black_box(one)))))
    });
    group.finish();
    assert_eq!(family.len(), 1000, "no key was created or evicted");
}

/// Mean ns per call of `a` and of `b` over `calls` calls each, each the best
/// of a few rounds; the rounds alternate, so that both see the same machine.
fn ns_per_call_pair(calls: u32, mut a: impl FnMut(), mut b: impl FnMut()) -> (f64, f64) {
    let round = |f: &mut dyn FnMut()| {
        let started = Instant::now();
        for _ in 0..calls {
            f();
        }
        started.elapsed().as_nanos() as f64 / f64::from(calls)
    };
    let (mut best_a, mut best_b) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..9 {
        best_a = best_a.min(round(&mut a));
        best_b = best_b.min(round(&mut b));
    }
    (best_a, best_b)
}

fn print_difference() {
    let models = models();
    fill(&models);
    let one = models[500].as_str();
    let calls = 1_000_000;
    let (base, same) = ns_per_call_pair(
        calls,
        || {
            black_box(poll_once(unkeyed(black_box(one)))).ok();
        },
        || {
            black_box(poll_once(keyed(black_box(one)))).ok();
        },
    );
    let (base_task, same_task) = ns_per_call_pair(
        calls,
        || {
            black_box(poll_as_task(unkeyed(black_box(one)))).ok();
        },
        || {
            black_box(poll_as_task(keyed(black_box(one)))).ok();
        },
    );
    fill_llm(&models);
    let (llm_base, llm_same) = ns_per_call_pair(
        calls,
        || {
            black_box(poll_as_task(llm_unkeyed(black_box(one)))).ok();
        },
        || {
            black_box(poll_as_task(llm_keyed(black_box(one)))).ok();
        },
    );
    let mut i = 0;
    let (_, cycling) = ns_per_call_pair(
        calls,
        || {},
        || {
            i = (i + 1) % models.len();
            black_box(poll_once(keyed_elsewhere(black_box(&models[i])))).ok();
        },
    );
    println!(
        "keyed call, 1,000 keys in the family: unkeyed {base:.2} ns, same key {same:.2} ns ({:+.2} ns), \
         cycling keys {cycling:.2} ns ({:+.2} ns) per call",
        same - base,
        cycling - base
    );
    println!(
        "polled as a task (through `dyn Future`, not inlined): unkeyed {base_task:.2} ns, \
         same key {same_task:.2} ns ({:+.2} ns) per call",
        same_task - base_task
    );
    println!(
        "the llm preset, max_keys = 2000, polled as a task: unkeyed {llm_base:.2} ns, \
         same key {llm_same:.2} ns ({:+.2} ns) per call",
        llm_same - llm_base
    );
}

criterion_group!(benches, bench_keyed);

fn main() {
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
    if !std::env::args().any(|arg| arg == "--list") {
        print_difference();
    }
}
