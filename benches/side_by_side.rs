//! A second, independent harness for the same comparison as `overhead`, with
//! no criterion: each case is 10^7 calls timed with `Instant`, five rounds,
//! and the median round is printed in ns per call, with cb's ratio to the best
//! peer. A ready future is polled once with a no-op waker (`common::poll_once`),
//! as in `overhead`; the breaker goes through `black_box` on every call and the
//! result is observed by reference (`peers::poll_observed`).
//!
//! Run: `cargo bench --bench side_by_side` (release; about a minute).
//! `CB_SIDE_BY_SIDE_CALLS=1000000` makes the rounds shorter.

use std::hint::black_box;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

mod common;
mod peers;

use cb_runtime::State;
use peers::*;

/// Calls per round (per thread in the two-thread case).
fn calls() -> u64 {
    std::env::var("CB_SIDE_BY_SIDE_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000)
}

const ROUNDS: usize = 5;

/// The median of [`ROUNDS`] rounds of `n` calls of `call` on `b`, in ns per call.
fn one_thread<B>(b: &B, n: u64, call: impl Fn(&B)) -> f64 {
    median(
        || {
            let start = Instant::now();
            for _ in 0..n {
                call(black_box(b));
            }
            start.elapsed()
        },
        n,
    )
}

/// Two threads share `b`, `n` calls each after a barrier; the slower thread's
/// time per call, median of [`ROUNDS`].
fn two_threads<B: Sync>(b: &B, n: u64, call: impl Fn(&B) + Sync) -> f64 {
    median(
        || {
            let barrier = Barrier::new(2);
            thread::scope(|s| {
                let workers: Vec<_> = (0..2)
                    .map(|_| {
                        let (barrier, call) = (&barrier, &call);
                        s.spawn(move || {
                            barrier.wait();
                            let start = Instant::now();
                            for _ in 0..n {
                                call(black_box(b));
                            }
                            start.elapsed()
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .map(|w| w.join().expect("bench thread panicked"))
                    .max()
                    .expect("two workers")
            })
        },
        n,
    )
}

fn median(mut round: impl FnMut() -> Duration, n: u64) -> f64 {
    let mut ns: Vec<f64> = (0..ROUNDS)
        .map(|_| round().as_nanos() as f64 / n as f64)
        .collect();
    ns.sort_by(f64::total_cmp);
    ns[ROUNDS / 2]
}

/// One line of the table: cb's two configurations (`None` where a case does
/// not apply), the peers, and cb over the best peer.
fn row(case: &str, cb: f64, cb_llm: f64, failsafe: f64, recloser: f64) {
    let best = failsafe.min(recloser);
    println!(
        "| {case} | {cb:.1} | {cb_llm:.1} | {failsafe:.1} | {recloser:.1} | {:.2}× | {:.2}× |",
        cb / best,
        cb_llm / best
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it once, short.
    let n = if std::env::args().any(|a| a == "--bench") {
        calls()
    } else {
        10_000
    };
    println!("side_by_side: {n} calls per round, median of {ROUNDS} rounds, ns per call");
    println!();
    println!("| case | cb | cb_llm | failsafe | recloser | cb / best peer | cb_llm / best peer |");
    println!("|---|---:|---:|---:|---:|---:|---:|");

    // Closed, successful calls.
    let (ours, llm) = (cb_default(), cb_llm());
    let (fs, rc) = (failsafe_breaker(), recloser_breaker());
    assert_cb_closed(&ours);
    assert_cb_closed(&llm);
    assert_failsafe_closed(&fs);
    assert_recloser_closed(&rc);
    let closed = [
        one_thread(&ours, n, cb_timed),
        one_thread(&llm, n, cb_timed),
        one_thread(&fs, n, failsafe_timed),
        one_thread(&rc, n, recloser_timed),
    ];
    assert_cb_closed(&ours);
    assert_cb_closed(&llm);
    assert_failsafe_closed(&fs);
    assert_recloser_closed(&rc);

    // Two threads on one breaker, successful calls.
    let two = [
        two_threads(&ours, n, cb_timed),
        two_threads(&llm, n, cb_timed),
        two_threads(&fs, n, failsafe_timed),
        two_threads(&rc, n, recloser_timed),
    ];
    assert_cb_closed(&ours);
    assert_cb_closed(&llm);

    // Open: tripped by real failures, on fresh peers (recloser judges a
    // rate over its last calls, which the closed rounds filled).
    let (fs, rc) = (failsafe_breaker(), recloser_breaker());
    trip_cb(&ours);
    trip_cb(&llm);
    trip_failsafe(&fs);
    trip_recloser(&rc);
    assert_cb_rejects(&ours);
    assert_cb_rejects(&llm);
    assert_failsafe_rejects(&fs);
    assert_recloser_rejects(&rc);
    let tripped = [
        one_thread(&ours, n, cb_timed),
        one_thread(&llm, n, cb_timed),
        one_thread(&fs, n, failsafe_timed),
        one_thread(&rc, n, recloser_timed),
    ];
    assert!(matches!(ours.state(), State::Open) && matches!(llm.state(), State::Open));
    assert_failsafe_rejects(&fs);
    assert_recloser_rejects(&rc);

    // Forced open (cb only; the peers' tripped numbers for the ratio).
    ours.force_open();
    llm.force_open();
    assert_cb_rejects(&ours);
    assert_cb_rejects(&llm);
    let forced = [one_thread(&ours, n, cb_timed), one_thread(&llm, n, cb_timed)];

    row("closed, success", closed[0], closed[1], closed[2], closed[3]);
    row("open, tripped", tripped[0], tripped[1], tripped[2], tripped[3]);
    row(
        "open, forced (peers: tripped)",
        forced[0],
        forced[1],
        tripped[2],
        tripped[3],
    );
    row("2 threads, one breaker", two[0], two[1], two[2], two[3]);
}
