//! Per-item overhead of a streamed call (`CircuitBreaker::call_stream`).
//!
//! A stream of 1000 ready items is consumed with a no-op waker, raw and through
//! a `BreakerStream`; the difference divided by 1000 is the per-item cost
//! (the per-call cost, admission and judging, is amortised over the items).
//! With a `call_timeout`, each item also moves the next item's deadline (one
//! `Instant::now()`); the timer itself is armed only when the stream is pending.
//!
//! Run: `cargo bench --bench streams`.

use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

mod common;

use cb_runtime::{CircuitBreaker, Config};
use common::poll_once;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures::stream::{self, Stream};

const ITEMS: u64 = 1000;

fn items() -> impl Stream<Item = Result<u64, ()>> {
    stream::iter((0..ITEMS).map(Ok))
}

/// Sums the `Ok` items of `s`, which must be ready throughout.
#[inline(always)]
fn drain<S: Stream<Item = Result<u64, E>>, E>(s: S) -> u64 {
    let mut cx = Context::from_waker(Waker::noop());
    let mut s = pin!(s);
    let mut sum = 0;
    loop {
        match s.as_mut().poll_next(&mut cx) {
            Poll::Ready(Some(Ok(n))) => sum += black_box(n),
            Poll::Ready(Some(Err(_))) => unreachable!("no errors in this stream"),
            Poll::Ready(None) => return sum,
            Poll::Pending => unreachable!("a ready stream"),
        }
    }
}

fn streams(c: &mut Criterion) {
    let mut group = c.benchmark_group("stream_1000_items");
    group.throughput(Throughput::Elements(ITEMS));
    group.bench_function("raw", |b| b.iter(|| drain(items())));
    let plain = CircuitBreaker::new("bench-stream", Config::default());
    group.bench_function("call_stream", |b| {
        b.iter(|| {
            let s = poll_once(plain.call_stream(async { Ok(items()) })).unwrap();
            drain(s)
        })
    });
    let timed = CircuitBreaker::new(
        "bench-stream-timeout",
        Config::builder()
            .call_timeout(Duration::from_secs(20))
            .slow_call_duration(Duration::from_secs(5))
            .build()
            .unwrap(),
    );
    group.bench_function("call_stream_timeout_and_slow_calls", |b| {
        b.iter(|| {
            let s = poll_once(timed.call_stream(async { Ok(items()) })).unwrap();
            drain(s)
        })
    });
    group.finish();
}

criterion_group!(benches, streams);
criterion_main!(benches);
