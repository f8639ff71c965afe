//! A second, independent harness for the same comparison as `overhead`, with
//! no criterion: each case is 10^7 calls timed with `Instant`, five rounds,
//! and the median round is printed in ns per call, with cb's ratio to the best
//! peer. A second table gives the same rounds timed by the timing thread's CPU
//! time, which a busy machine's preemptions do not inflate. A ready future is polled once with a no-op waker (`common::poll_once`),
//! as in `overhead`; the breaker goes through `black_box` on every call and the
//! result is observed by reference (`peers::poll_observed`).
//!
//! Run: `cargo bench --bench side_by_side` (release; about a minute).
//! `CB_SIDE_BY_SIDE_CALLS=1000000` makes the rounds shorter.

use std::sync::Barrier;
use std::thread;
use std::time::Duration;

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

/// One round's time: wall clock, and the timing thread's CPU time.
#[derive(Clone, Copy)]
struct Round {
    wall: Duration,
    cpu: Duration,
}

/// The calling thread's CPU time: it stands still while the thread is
/// preempted, so other work on a busy machine does not inflate it.
#[cfg(unix)]
fn thread_cpu() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(not(unix))]
fn thread_cpu() -> Duration {
    Duration::ZERO
}

/// Times `n` calls of `call` on `b` on this thread.
fn timed<B>(b: &B, n: u64, call: &impl Fn(&B)) -> Round {
    let cpu = thread_cpu();
    let wall = time_calls(b, n, call);
    Round {
        cpu: thread_cpu() - cpu,
        wall,
    }
}

/// The median of [`ROUNDS`] rounds of `n` calls of `call` on `b`, in ns per
/// call: (wall clock, CPU time).
fn one_thread<B>(b: &B, n: u64, call: impl Fn(&B)) -> (f64, f64) {
    median(|| timed(b, n, &call), n)
}

/// Two threads share `b`, `n` calls each after a barrier; the slower thread's
/// time per call, median of [`ROUNDS`]: (wall clock, CPU time).
fn two_threads<B: Sync>(b: &B, n: u64, call: impl Fn(&B) + Sync) -> (f64, f64) {
    median(
        || {
            let barrier = Barrier::new(2);
            thread::scope(|s| {
                let workers: Vec<_> = (0..2)
                    .map(|_| {
                        let (barrier, call) = (&barrier, &call);
                        s.spawn(move || {
                            barrier.wait();
                            timed(b, n, call)
                        })
                    })
                    .collect();
                let rounds: Vec<Round> = workers
                    .into_iter()
                    .map(|w| w.join().expect("bench thread panicked"))
                    .collect();
                Round {
                    wall: rounds.iter().map(|r| r.wall).max().expect("two workers"),
                    cpu: rounds.iter().map(|r| r.cpu).max().expect("two workers"),
                }
            })
        },
        n,
    )
}

fn median(mut round: impl FnMut() -> Round, n: u64) -> (f64, f64) {
    let rounds: Vec<Round> = (0..ROUNDS).map(|_| round()).collect();
    let mid = |f: fn(&Round) -> Duration| {
        let mut ns: Vec<f64> = rounds.iter().map(|r| f(r).as_nanos() as f64 / n as f64).collect();
        ns.sort_by(f64::total_cmp);
        ns[ROUNDS / 2]
    };
    (mid(|r| r.wall), mid(|r| r.cpu))
}

/// One line of the table: cb's two configurations, the peers, and each cb
/// configuration over the best peer.
fn row(case: &str, [cb, cb_llm, failsafe, recloser]: [f64; 4]) {
    let best = failsafe.min(recloser);
    println!(
        "| {case} | {cb:.1} | {cb_llm:.1} | {failsafe:.1} | {recloser:.1} | {:.2}× | {:.2}× |",
        cb / best,
        cb_llm / best
    );
}

/// The table of one measure (`pick`: wall clock or CPU time).
fn table(title: &str, cases: &[(&str, [(f64, f64); 4])], pick: fn((f64, f64)) -> f64) {
    println!();
    println!("{title}");
    println!();
    println!("| case | cb | cb_llm | failsafe | recloser | cb / best peer | cb_llm / best peer |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (case, times) in cases {
        row(case, times.map(pick));
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it once, short.
    let n = if std::env::args().any(|a| a == "--bench") {
        calls()
    } else {
        10_000
    };
    println!("side_by_side: {n} calls per round, median of {ROUNDS} rounds, ns per call");

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

    let cases = [
        ("closed, success", closed),
        ("open, tripped", tripped),
        (
            "open, forced (peers: tripped)",
            [forced[0], forced[1], tripped[2], tripped[3]],
        ),
        ("2 threads, one breaker", two),
    ];
    table("Wall clock (`Instant`):", &cases, |(wall, _)| wall);
    if cfg!(unix) {
        table(
            "CPU time of the timing thread (`CLOCK_THREAD_CPUTIME_ID`; preemptions by other work excluded):",
            &cases,
            |(_, cpu)| cpu,
        );
    }
}
