//! Streamed calls (`CircuitBreaker::call_stream`): every rule of the contract,
//! on tokio's paused clock (the breaker reads it through `Clock::tokio()`),
//! and over real TCP against a local server of server-sent events.

mod support;

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use cb_runtime::{BreakerErrorKind, CallError, CircuitBreaker, Clock, Config, State, Stats};
use futures::channel::mpsc;
use futures::stream::{self, Stream, StreamExt};
use support::{silence_deliberate_panics, DELIBERATE_PANIC};

type Item = Result<u32, String>;
type Tx = mpsc::UnboundedSender<Item>;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A breaker on tokio's clock with a 1 s `call_timeout`, a 500 ms slow-call
/// duration, and a circuit that opens on the first failure.
fn breaker(name: &str) -> CircuitBreaker {
    CircuitBreaker::new(name, config().build().unwrap())
}

fn config() -> cb_runtime::ConfigBuilder {
    Config::builder()
        .clock(Clock::tokio())
        .failure_threshold(1)
        .call_timeout(ms(1000))
        .slow_call_duration(ms(500))
        .slow_call_rate_threshold(1.0)
        .minimum_calls(100)
        .open_duration(Duration::from_secs(10))
        .half_open_max_calls(1)
        .success_threshold(1)
}

/// A stream fed by hand: send items on the returned sender.
fn channel() -> (Tx, mpsc::UnboundedReceiver<Item>) {
    mpsc::unbounded()
}

/// Each call lands in exactly one total.
#[track_caller]
fn one_call(stats: &Stats) {
    assert_eq!(stats.calls(), 1, "{stats:?}");
}

#[tokio::test(start_paused = true)]
async fn refused_while_open_never_polls_open() {
    let b = breaker("stream-refused");
    b.force_open();
    let polled = Arc::new(AtomicBool::new(false));
    let flag = polled.clone();
    let result = b
        .call_stream(async move {
            flag.store(true, Ordering::SeqCst);
            Ok::<_, String>(stream::iter(vec![Ok::<u32, String>(1)]))
        })
        .await;
    let error = result.unwrap_err();
    assert!(error.is_rejected());
    assert!(!polled.load(Ordering::SeqCst), "`open` was polled while open");
    assert_eq!(b.stats().rejected, 1);
    one_call(&b.stats());
}

#[tokio::test(start_paused = true)]
async fn open_error_is_a_failure() {
    let b = breaker("stream-open-error");
    let result = b
        .call_stream(async { Err::<stream::Iter<std::vec::IntoIter<Item>>, _>("refused".to_string()) })
        .await;
    assert_eq!(result.unwrap_err().into_inner().as_deref(), Some("refused"));
    assert_eq!(b.stats().failures, 1);
    one_call(&b.stats());
    assert_eq!(b.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn a_clean_end_is_a_success_and_items_pass_unchanged() {
    let b = breaker("stream-clean");
    let s = b
        .call_stream(async { Ok::<_, String>(stream::iter(vec![Ok(1), Ok(2), Ok(3)])) })
        .await
        .unwrap();
    let items: Vec<_> = s.collect().await;
    assert_eq!(items, vec![Ok(1), Ok(2), Ok(3)]);
    assert_eq!(b.stats().successes, 1);
    assert_eq!(b.stats().slow_calls, 0);
    one_call(&b.stats());
}

#[tokio::test(start_paused = true)]
async fn an_empty_stream_is_a_success() {
    let b = breaker("stream-empty");
    let s = b
        .call_stream(async { Ok::<_, String>(stream::iter(Vec::<Item>::new())) })
        .await
        .unwrap();
    assert_eq!(s.count().await, 0);
    assert_eq!(b.stats().successes, 1);
    one_call(&b.stats());
}

#[tokio::test(start_paused = true)]
async fn an_error_item_is_a_failure_judged_once_and_ends_the_stream() {
    let b = breaker("stream-error-item");
    let s = b
        .call_stream(async {
            Ok::<_, String>(stream::iter(vec![
                Ok(1),
                Err("cut".to_string()),
                Ok(3),
                Err("again".into()),
            ]))
        })
        .await
        .unwrap();
    let items: Vec<_> = s.collect().await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[0], Ok(1));
    assert!(matches!(&items[1], Err(CallError::Inner(e)) if e == "cut"));
    assert_eq!(b.stats().failures, 1);
    one_call(&b.stats());
    assert_eq!(b.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn no_first_item_within_call_timeout_yields_one_timeout_then_ends() {
    let b = breaker("stream-no-first-item");
    let (_tx, rx) = channel();
    let mut s = b.call_stream(async { Ok::<_, String>(rx) }).await.unwrap();
    let item = s.next().await.unwrap();
    let Err(CallError::Timeout(e)) = item else {
        panic!("expected a timeout, got {item:?}");
    };
    assert_eq!(e.kind(), BreakerErrorKind::Timeout);
    assert!(s.next().await.is_none());
    assert!(s.next().await.is_none());
    let stats = b.stats();
    assert_eq!(stats.timeouts, 1);
    assert_eq!(
        stats.slow_calls, 1,
        "a call judged before its first item is as slow as it was long"
    );
    one_call(&stats);
    assert_eq!(b.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn a_stall_mid_stream_is_a_timeout() {
    let b = breaker("stream-stall");
    let (tx, rx) = channel();
    let mut s = b.call_stream(async { Ok::<_, String>(rx) }).await.unwrap();
    for n in 0..3 {
        tx.unbounded_send(Ok(n)).unwrap();
        assert_eq!(s.next().await, Some(Ok(n)));
        tokio::time::sleep(ms(900)).await; // under the timeout each time
    }
    // The provider stalls: its next item comes 1100 ms after the previous one.
    // The 900 ms already spent since the last item count towards the
    // timeout, so the stall is caught before that item arrives.
    let feeder = tokio::spawn(async move {
        tokio::time::sleep(ms(200)).await;
        let _ = tx.unbounded_send(Ok(99));
        tx
    });
    let item = s.next().await.unwrap();
    assert!(item.as_ref().unwrap_err().is_timeout(), "{item:?}");
    assert!(s.next().await.is_none());
    let stats = b.stats();
    assert_eq!(stats.timeouts, 1);
    assert_eq!(stats.slow_calls, 0, "the first item came at once");
    one_call(&stats);
    drop(feeder.await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn call_timeout_bounds_each_gap_not_the_whole_stream() {
    let b = breaker("stream-long");
    let (tx, rx) = channel();
    let feeder = tokio::spawn(async move {
        for n in 0..10 {
            tokio::time::sleep(ms(800)).await;
            tx.unbounded_send(Ok(n)).unwrap();
        }
    });
    let s = b.call_stream(async { Ok::<_, String>(rx) }).await.unwrap();
    let items: Vec<_> = s.collect().await;
    assert_eq!(items, (0..10).map(Ok).collect::<Vec<_>>());
    feeder.await.unwrap();
    let stats = b.stats();
    assert_eq!(stats.successes, 1);
    assert_eq!(
        stats.slow_calls, 1,
        "the first item came after 800 ms, over the 500 ms slow-call duration"
    );
    one_call(&stats);
}

#[tokio::test(start_paused = true)]
async fn open_still_pending_at_call_timeout_is_a_timeout() {
    let b = breaker("stream-open-pending");
    let result = b
        .call_stream(async {
            std::future::pending::<()>().await;
            Ok::<_, String>(stream::iter(Vec::<Item>::new()))
        })
        .await;
    assert!(result.unwrap_err().is_timeout());
    assert_eq!(b.stats().timeouts, 1);
    one_call(&b.stats());
}

#[tokio::test(start_paused = true)]
async fn the_first_item_deadline_runs_from_admission() {
    let b = breaker("stream-deadline-from-admission");
    let (tx, rx) = channel();
    let s = b
        .call_stream(async {
            tokio::time::sleep(ms(600)).await;
            Ok::<_, String>(rx)
        })
        .await
        .unwrap();
    let mut s = pin!(s);
    let feeder = tokio::spawn(async move {
        tokio::time::sleep(ms(600)).await; // 1200 ms after admission
        let _ = tx.unbounded_send(Ok(1));
        tx
    });
    let item = s.next().await.unwrap();
    assert!(item.unwrap_err().is_timeout());
    assert_eq!(b.stats().timeouts, 1);
    one_call(&b.stats());
    drop(feeder.await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn dropped_before_the_first_item_is_cancelled() {
    let b = breaker("stream-drop-before-first");
    let (tx, rx) = channel();
    let mut s = b.call_stream(async { Ok::<_, String>(rx) }).await.unwrap();
    assert!(futures::poll!(s.next()).is_pending());
    drop(s);
    let stats = b.stats();
    assert_eq!(stats.cancelled, 1);
    assert_eq!(stats.successes + stats.failures + stats.timeouts, 0);
    one_call(&stats);
    assert_eq!(b.state(), State::Closed);
    drop(tx);
}

#[tokio::test(start_paused = true)]
async fn dropping_call_stream_while_opening_is_cancelled() {
    let b = breaker("stream-drop-opening");
    let mut opening = Box::pin(b.call_stream(async {
        std::future::pending::<()>().await;
        Ok::<_, String>(stream::iter(Vec::<Item>::new()))
    }));
    assert!(futures::poll!(opening.as_mut()).is_pending());
    drop(opening);
    assert_eq!(b.stats().cancelled, 1);
    one_call(&b.stats());
}

#[tokio::test(start_paused = true)]
async fn dropped_after_the_first_item_is_a_success() {
    let b = breaker("stream-drop-after-first");
    let (tx, rx) = channel();
    let mut s = b.call_stream(async { Ok::<_, String>(rx) }).await.unwrap();
    tx.unbounded_send(Ok(7)).unwrap();
    assert_eq!(s.next().await, Some(Ok(7)));
    assert!(s.is_pending_judgement());
    drop(s);
    assert_eq!(b.stats().successes, 1);
    one_call(&b.stats());
}

/// A stream never polled after its first item is not timed out (nothing
/// polls its timer); dropped later, it is a success.
#[tokio::test(start_paused = true)]
async fn a_stream_never_polled_after_its_first_item_is_a_success_when_dropped() {
    let b = breaker("stream-never-polled-again");
    let (tx, rx) = channel();
    let mut s = b.call_stream(async { Ok::<_, String>(rx) }).await.unwrap();
    tx.unbounded_send(Ok(1)).unwrap();
    assert_eq!(s.next().await, Some(Ok(1)));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(b.stats().calls(), 0, "judged before the drop");
    drop(s);
    assert_eq!(b.stats().successes, 1);
    assert_eq!(b.stats().timeouts, 0);
    one_call(&b.stats());
}

#[tokio::test(start_paused = true)]
async fn slow_calls_are_judged_by_time_to_first_item() {
    let b = breaker("stream-ttfi");
    // A fast first item, then a long answer: not slow.
    let (tx, rx) = channel();
    let feeder = tokio::spawn(async move {
        tokio::time::sleep(ms(10)).await;
        for n in 0..20 {
            tx.unbounded_send(Ok(n)).unwrap();
            tokio::time::sleep(ms(400)).await;
        }
    });
    let s = b.call_stream(async { Ok::<_, String>(rx) }).await.unwrap();
    assert_eq!(s.count().await, 20);
    feeder.await.unwrap();
    assert_eq!(b.stats().successes, 1);
    assert_eq!(
        b.stats().slow_calls,
        0,
        "an 8 s answer with its first item at 10 ms is not slow"
    );

    // A slow first item (measured from admission, `open` included), then a quick end: slow.
    let s = b
        .call_stream(async {
            tokio::time::sleep(ms(300)).await;
            Ok::<_, String>(stream::iter(vec![Ok(1), Ok(2)]).then(|item| async move {
                tokio::time::sleep(ms(300)).await;
                item
            }))
        })
        .await
        .unwrap();
    assert_eq!(s.count().await, 2);
    let stats = b.stats();
    assert_eq!(stats.successes, 2);
    assert_eq!(stats.slow_calls, 1, "first item at 600 ms, over 500 ms");
    assert_eq!(stats.calls(), 2);
}

/// Opens `b` with a failure and lets its open duration pass.
async fn to_half_open(b: &CircuitBreaker) {
    let _ = b.call(async { Err::<(), _>("down") }).await;
    assert_eq!(b.state(), State::Open);
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(b.state(), State::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn a_half_open_probe_keeps_its_slot_until_its_stream_is_judged() {
    let b = breaker("stream-probe");
    to_half_open(&b).await;
    let (tx, rx) = channel();
    let mut probe = b.call_stream(async { Ok::<_, String>(rx) }).await.unwrap();
    tx.unbounded_send(Ok(1)).unwrap();
    assert_eq!(probe.next().await, Some(Ok(1)));
    // The probe has its first item but is not judged: its slot is still taken.
    assert_eq!(b.stats().half_open_in_flight, 1);
    let second = b
        .call_stream(async { Ok::<_, String>(stream::iter(Vec::<Item>::new())) })
        .await
        .unwrap_err();
    assert!(second.is_rejected());
    assert_eq!(b.state(), State::HalfOpen);
    drop(tx);
    assert_eq!(probe.next().await, None);
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.stats().half_open_in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn a_probe_cut_mid_stream_reopens_the_circuit() {
    let b = breaker("stream-probe-cut");
    to_half_open(&b).await;
    let s = b
        .call_stream(async { Ok::<_, String>(stream::iter(vec![Ok(1), Err("cut".to_string())])) })
        .await
        .unwrap();
    let items: Vec<_> = s.collect().await;
    assert_eq!(items.len(), 2);
    assert_eq!(b.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn a_probe_dropped_before_its_first_item_gives_its_slot_back() {
    let b = breaker("stream-probe-dropped");
    to_half_open(&b).await;
    let (_tx, rx) = channel();
    let s = b.call_stream(async { Ok::<_, String>(rx) }).await.unwrap();
    assert_eq!(b.stats().half_open_in_flight, 1);
    drop(s);
    assert_eq!(b.stats().half_open_in_flight, 0);
    assert_eq!(b.state(), State::HalfOpen);
    assert_eq!(b.stats().cancelled, 1);
}

#[tokio::test(start_paused = true)]
async fn judge_at_first_item_closes_sooner_and_stops_watching() {
    let b = breaker("stream-judge-first");
    to_half_open(&b).await;
    let (tx, rx) = channel();
    let mut probe = b
        .call_stream(async { Ok::<_, String>(rx) })
        .judge_at_first_item()
        .await
        .unwrap();
    tx.unbounded_send(Ok(1)).unwrap();
    assert_eq!(probe.next().await, Some(Ok(1)));
    // Judged at once: the circuit closed while the answer still streams.
    assert!(!probe.is_pending_judgement());
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.stats().half_open_in_flight, 0);
    let successes = b.stats().successes;
    // The trade-off: a later error reaches the consumer but is not counted.
    tx.unbounded_send(Err("cut".to_string())).unwrap();
    assert!(matches!(probe.next().await, Some(Err(CallError::Inner(_)))));
    assert_eq!(probe.next().await, None);
    assert_eq!(b.stats().successes, successes);
    assert_eq!(b.stats().failures, 1, "only the failure that opened it");
    assert_eq!(b.state(), State::Closed);

    // A stall after the first item still ends the stream with a timeout, uncounted.
    let (tx, rx) = channel();
    let mut s = b
        .call_stream(async { Ok::<_, String>(rx) })
        .judge_at_first_item()
        .await
        .unwrap();
    tx.unbounded_send(Ok(1)).unwrap();
    assert_eq!(s.next().await, Some(Ok(1)));
    assert!(s.next().await.unwrap().unwrap_err().is_timeout());
    assert_eq!(s.next().await, None);
    assert_eq!(b.stats().timeouts, 0);
    assert_eq!(b.stats().successes, successes + 1);
}

#[tokio::test(start_paused = true)]
async fn judge_at_first_item_still_counts_failures_before_the_first_item() {
    let b = breaker("stream-judge-first-fail");
    let (_tx, rx) = channel();
    let mut s = b
        .call_stream(async { Ok::<_, String>(rx) })
        .judge_at_first_item()
        .await
        .unwrap();
    assert!(s.next().await.unwrap().unwrap_err().is_timeout());
    assert_eq!(b.stats().timeouts, 1);
    one_call(&b.stats());
    assert_eq!(b.state(), State::Open);
}

fn poll_once<F: Future>(fut: Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn a_panic_in_open_is_a_failure_releases_the_probe_and_propagates() {
    silence_deliberate_panics();
    let clock = cb_runtime::clock::ManualClock::new();
    let b = CircuitBreaker::new(
        "stream-panic-open",
        Config::builder()
            .clock(clock.clock())
            .failure_threshold(1)
            .open_duration(Duration::from_secs(1))
            .build()
            .unwrap(),
    );
    b.force_open();
    b.reset();
    let mut fut = Box::pin(b.call_stream(async {
        if true {
            panic!("{}", DELIBERATE_PANIC);
        }
        Ok::<_, String>(stream::iter(Vec::<Item>::new()))
    }));
    let caught = catch_unwind(AssertUnwindSafe(|| poll_once(fut.as_mut())));
    assert!(caught.is_err(), "the panic propagates");
    drop(fut);
    assert_eq!(b.stats().failures, 1);
    assert_eq!(b.stats().calls(), 1);
    assert_eq!(b.state(), State::Open);

    // In half-open, the probe's slot comes back.
    clock.advance(Duration::from_secs(2));
    let mut fut = Box::pin(b.call_stream(async {
        if true {
            panic!("{}", DELIBERATE_PANIC);
        }
        Ok::<_, String>(stream::iter(Vec::<Item>::new()))
    }));
    assert!(catch_unwind(AssertUnwindSafe(|| poll_once(fut.as_mut()))).is_err());
    drop(fut);
    assert_eq!(b.stats().half_open_in_flight, 0);
    assert_eq!(b.state(), State::Open, "a panicking probe is a failed probe");
}

/// A stream whose second poll panics.
struct PanicsOnSecond(u32);

impl Stream for PanicsOnSecond {
    type Item = Item;
    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Item>> {
        self.0 += 1;
        if self.0 == 2 {
            panic!("{}", DELIBERATE_PANIC);
        }
        Poll::Ready(Some(Ok(self.0)))
    }
}

#[test]
fn a_panic_in_the_streams_poll_is_a_failure_and_propagates() {
    silence_deliberate_panics();
    let clock = cb_runtime::clock::ManualClock::new();
    let b = CircuitBreaker::new(
        "stream-panic-poll",
        Config::builder()
            .clock(clock.clock())
            .failure_threshold(1)
            .open_duration(Duration::from_secs(1))
            .half_open_max_calls(1)
            .build()
            .unwrap(),
    );
    b.force_open();
    b.reset();
    let _ = tokio_test::block_on(b.call(async { Err::<(), _>(()) }));
    clock.advance(Duration::from_secs(2));
    assert_eq!(b.state(), State::HalfOpen);
    let mut s = match poll_once(pin!(b.call_stream(async { Ok::<_, String>(PanicsOnSecond(0)) }))) {
        Poll::Ready(Ok(s)) => s,
        other => panic!("{:?}", other.map(|r| r.map(drop))),
    };
    let mut cx = Context::from_waker(Waker::noop());
    assert_eq!(Pin::new(&mut s).poll_next(&mut cx), Poll::Ready(Some(Ok(1))));
    assert_eq!(b.stats().half_open_in_flight, 1);
    let caught = catch_unwind(AssertUnwindSafe(|| Pin::new(&mut s).poll_next(&mut cx)));
    assert!(caught.is_err(), "the panic propagates");
    drop(s); // judged already: the drop records nothing more
    let stats = b.stats();
    assert_eq!(stats.failures, 2);
    assert_eq!(stats.successes, 0);
    assert_eq!(stats.half_open_in_flight, 0);
    assert_eq!(b.state(), State::Open);
}

/// Without a runtime (no timer can be armed) a stream that is ready at once
/// works from a plain `poll`.
#[test]
fn works_without_a_runtime_when_nothing_waits() {
    let b = CircuitBreaker::new("stream-no-runtime", Config::default());
    let s = match poll_once(pin!(
        b.call_stream(async { Ok::<_, String>(stream::iter(vec![Ok(1), Ok(2)])) })
    )) {
        Poll::Ready(Ok(s)) => s,
        _ => panic!("not ready"),
    };
    let items: Vec<_> = futures::executor::block_on_stream(s).collect();
    assert_eq!(items, vec![Ok(1), Ok(2)]);
    assert_eq!(b.stats().successes, 1);
}

#[tokio::test(start_paused = true)]
async fn every_call_lands_in_exactly_one_total() {
    let b = CircuitBreaker::new(
        "stream-totals",
        config().failure_threshold(1_000_000).build().unwrap(),
    );
    let mut expected = 0;
    for round in 0..40u32 {
        let (tx, rx) = channel();
        let opening = b.call_stream(async move {
            if round % 7 == 3 {
                return Err("open failed".to_string());
            }
            Ok(rx)
        });
        expected += 1;
        let Ok(mut s) = opening.await else {
            continue;
        };
        match round % 5 {
            0 => {
                tx.unbounded_send(Ok(1)).unwrap();
                drop(tx);
                while s.next().await.is_some() {}
            }
            1 => {
                tx.unbounded_send(Err("bad".into())).unwrap();
                while s.next().await.is_some() {}
            }
            2 => while s.next().await.is_some() {},
            3 => drop(s),
            _ => {
                tx.unbounded_send(Ok(1)).unwrap();
                s.next().await;
                drop(s);
            }
        }
        assert_eq!(b.stats().calls(), expected, "round {round}");
    }
}

#[tokio::test(start_paused = true)]
async fn time_to_first_item_histogram_is_opt_in_and_streams_count_in_calls_total() {
    let registry: &'static cb_runtime::Registry = Box::leak(Box::new(cb_runtime::Registry::new()));
    let b = registry.get_or_insert("ttfi", || config().failure_threshold(100).build().unwrap());
    let exposition = || {
        use prometheus::core::Collector as _;
        cb_runtime::metrics::encode(&cb_runtime::metrics::BreakerCollector::new(registry).collect())
    };
    let run = |first: u64| {
        let b = b.clone();
        async move {
            let s = b
                .call_stream(async move {
                    tokio::time::sleep(ms(first)).await;
                    Ok::<_, String>(stream::iter(vec![Ok(1), Ok(2)]))
                })
                .await
                .unwrap();
            s.count().await
        }
    };
    run(10).await;
    assert!(!exposition().contains("circuit_breaker_time_to_first_item_seconds"));
    registry.record_time_to_first_item();
    run(30).await;
    run(700).await;
    // A stream dropped before its first item is cancelled: no observation.
    let (_tx, rx) = channel();
    drop(b.call_stream(async { Ok::<_, String>(rx) }).await.unwrap());
    // A stream that fails before its first item: counted, not observed.
    let s = b
        .call_stream(async { Ok::<_, String>(stream::iter(vec![Err::<u32, _>("x".to_string())])) })
        .await
        .unwrap();
    assert_eq!(s.count().await, 1);

    let text = exposition();
    for line in [
        "# TYPE circuit_breaker_time_to_first_item_seconds histogram",
        r#"circuit_breaker_time_to_first_item_seconds_count{name="ttfi"} 2"#,
        r#"circuit_breaker_time_to_first_item_seconds_bucket{name="ttfi",le="0.025"} 0"#,
        r#"circuit_breaker_time_to_first_item_seconds_bucket{name="ttfi",le="0.05"} 1"#,
        r#"circuit_breaker_time_to_first_item_seconds_bucket{name="ttfi",le="0.5"} 1"#,
        r#"circuit_breaker_time_to_first_item_seconds_bucket{name="ttfi",le="1"} 2"#,
        r#"circuit_breaker_calls_total{name="ttfi",outcome="success"} 3"#,
        r#"circuit_breaker_calls_total{name="ttfi",outcome="failure"} 1"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    assert_eq!(b.stats().cancelled, 1);
}

/// Over real TCP: a local axum server of server-sent events, consumed with
/// reqwest, each event's `data` an item.
mod sse {
    use super::*;
    use axum::response::sse::{Event, Sse};
    use axum::routing::get;
    use axum::Router;
    use eventsource_stream::Eventsource;

    type Events = Pin<Box<dyn Stream<Item = Result<Event, std::io::Error>> + Send>>;

    fn tokens(words: &'static [&'static str]) -> impl Stream<Item = Result<Event, std::io::Error>> + Send {
        stream::iter(words.iter().map(|w| Ok(Event::default().data(*w))))
    }

    /// The fake provider: `/tokens` streams three tokens, `/stall` two and
    /// then nothing, `/slow-first` waits 250 ms before its first token,
    /// `/cut` breaks the connection after one token, `/hang` never answers.
    async fn serve() -> String {
        let app = Router::new()
            .route(
                "/tokens",
                get(|| async { Sse::new(Box::pin(tokens(&["a", "b", "c"])) as Events) }),
            )
            .route(
                "/stall",
                get(|| async { Sse::new(Box::pin(tokens(&["a", "b"]).chain(stream::pending())) as Events) }),
            )
            .route(
                "/slow-first",
                get(|| async {
                    let late = stream::once(async {
                        tokio::time::sleep(ms(250)).await;
                        Ok(Event::default().data("late"))
                    });
                    Sse::new(Box::pin(late.chain(tokens(&["b"]))) as Events)
                }),
            )
            .route(
                "/cut",
                get(|| async {
                    // After the first token has gone out on the wire.
                    let cut = stream::once(async {
                        tokio::time::sleep(ms(50)).await;
                        Err(std::io::Error::other("provider crashed"))
                    });
                    Sse::new(Box::pin(tokens(&["a"]).chain(cut)) as Events)
                }),
            )
            .route(
                "/hang",
                get(|| async {
                    std::future::pending::<()>().await;
                    Sse::new(Box::pin(stream::empty()) as Events)
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    /// The `data` of each event of `response`'s body; a broken body is an `Err` item.
    fn events(response: reqwest::Response) -> impl Stream<Item = Result<String, String>> + Send {
        response
            .bytes_stream()
            .eventsource()
            .map(|event| event.map(|event| event.data).map_err(|e| e.to_string()))
    }

    fn breaker(name: &str) -> CircuitBreaker {
        CircuitBreaker::new(
            name,
            Config::builder()
                .call_timeout(ms(300))
                .slow_call_duration(ms(150))
                .failure_threshold(100)
                .build()
                .unwrap(),
        )
    }

    /// One streamed call to `path`: the items the consumer saw.
    async fn consume(
        b: &CircuitBreaker,
        base: &str,
        path: &str,
    ) -> Result<Vec<Result<String, CallError<String>>>, CallError<String>> {
        let client = reqwest::Client::new();
        let url = format!("{base}{path}");
        let s = b
            .call_stream(async move {
                let response = client.get(url).send().await.map_err(|e| e.to_string())?;
                Ok::<_, String>(events(response))
            })
            .await?;
        Ok(s.collect().await)
    }

    #[tokio::test]
    async fn a_whole_sse_answer_is_a_success() {
        let base = serve().await;
        let b = breaker("sse-tokens");
        let items = consume(&b, &base, "/tokens").await.unwrap();
        assert_eq!(items, vec![Ok("a".into()), Ok("b".into()), Ok("c".into())]);
        assert_eq!(b.stats().successes, 1);
        assert_eq!(b.stats().calls(), 1);
    }

    #[tokio::test]
    async fn a_stalled_sse_stream_is_a_timeout() {
        let base = serve().await;
        let b = breaker("sse-stall");
        let items = consume(&b, &base, "/stall").await.unwrap();
        assert_eq!(items.len(), 3, "{items:?}");
        assert_eq!(items[..2], [Ok("a".to_string()), Ok("b".to_string())]);
        assert!(items[2].as_ref().unwrap_err().is_timeout());
        assert_eq!(b.stats().timeouts, 1);
        assert_eq!(b.stats().calls(), 1);
    }

    #[tokio::test]
    async fn a_slow_first_token_is_a_slow_success() {
        let base = serve().await;
        let b = breaker("sse-slow-first");
        let items = consume(&b, &base, "/slow-first").await.unwrap();
        assert_eq!(items, vec![Ok("late".into()), Ok("b".into())]);
        let stats = b.stats();
        assert_eq!(stats.successes, 1);
        assert_eq!(stats.slow_calls, 1);
    }

    #[tokio::test]
    async fn a_connection_cut_mid_stream_is_a_failure() {
        let base = serve().await;
        let b = breaker("sse-cut");
        let items = consume(&b, &base, "/cut").await.unwrap();
        assert_eq!(items.len(), 2, "{items:?}");
        assert_eq!(items[0], Ok("a".to_string()));
        assert!(matches!(items[1], Err(CallError::Inner(_))), "{items:?}");
        assert_eq!(b.stats().failures, 1);
        assert_eq!(b.stats().calls(), 1);
    }

    #[tokio::test]
    async fn a_server_that_never_answers_is_a_timeout() {
        let base = serve().await;
        let b = breaker("sse-hang");
        let error = consume(&b, &base, "/hang").await.unwrap_err();
        assert!(error.is_timeout());
        assert_eq!(b.stats().timeouts, 1);
        assert_eq!(b.stats().calls(), 1);
    }

    #[tokio::test]
    async fn a_consumer_that_stops_after_the_first_token_is_a_success() {
        let base = serve().await;
        let b = breaker("sse-stop-early");
        let client = reqwest::Client::new();
        let url = format!("{base}/stall");
        let mut s = Box::pin(
            b.call_stream(async move {
                let response = client.get(url).send().await.map_err(|e| e.to_string())?;
                Ok::<_, String>(events(response))
            })
            .await
            .unwrap(),
        );
        assert_eq!(s.next().await, Some(Ok("a".to_string())));
        // Never polled again: the stall is not seen; dropping it is a success.
        tokio::time::sleep(ms(400)).await;
        drop(s);
        assert_eq!(b.stats().successes, 1);
        assert_eq!(b.stats().timeouts, 0);
    }
}

/// The tower layer that judges a response by its body (`cb_runtime::tower::body`).
mod tower_body {
    use super::*;
    use axum::body::Body;
    use cb_runtime::tower::body::BodyCircuitBreakerLayer;
    use http::{Request, Response, StatusCode};
    use std::convert::Infallible;
    use tower::{service_fn, Layer, ServiceExt};

    type Chunks = Pin<Box<dyn Stream<Item = Result<&'static str, std::io::Error>> + Send>>;

    /// A service answering `status` with a body streamed from `chunks`.
    fn upstream(
        status: StatusCode,
        chunks: fn() -> Chunks,
    ) -> impl tower::Service<Request<()>, Response = Response<Body>, Error = Infallible, Future: Send> + Clone
    {
        service_fn(move |_req: Request<()>| async move {
            Ok::<_, Infallible>(
                Response::builder()
                    .status(status)
                    .body(Body::from_stream(chunks()))
                    .unwrap(),
            )
        })
    }

    fn tokens() -> Chunks {
        Box::pin(stream::iter([Ok("a"), Ok("b")]))
    }

    fn stalls() -> Chunks {
        Box::pin(stream::iter([Ok("a")]).chain(stream::pending()))
    }

    fn cut() -> Chunks {
        Box::pin(stream::iter([Ok("a"), Err(std::io::Error::other("reset"))]))
    }

    /// The body's chunks, and whether it ended in a timeout or another error.
    async fn read(
        response: Response<cb_runtime::tower::body::JudgedBody<Body>>,
    ) -> (Vec<String>, Option<bool>) {
        let mut data = Body::new(response.into_body()).into_data_stream();
        let mut chunks = Vec::new();
        while let Some(chunk) = data.next().await {
            match chunk {
                Ok(bytes) => chunks.push(String::from_utf8_lossy(&bytes).into_owned()),
                Err(e) => {
                    let timeout = e.to_string().contains("timed out") || e.to_string().contains("timeout");
                    return (chunks, Some(timeout));
                }
            }
        }
        (chunks, None)
    }

    fn layer(name: &str) -> BodyCircuitBreakerLayer {
        BodyCircuitBreakerLayer::new(Arc::new(breaker(name)))
    }

    #[tokio::test(start_paused = true)]
    async fn a_whole_body_is_a_success() {
        let layer = layer("body-whole");
        let b = layer.breaker().clone();
        let response = layer
            .layer(upstream(StatusCode::OK, tokens))
            .oneshot(Request::new(()))
            .await
            .unwrap();
        assert_eq!(b.stats().calls(), 0, "judged by its body, not its head");
        assert_eq!(read(response).await, (vec!["a".into(), "b".into()], None));
        assert_eq!(b.stats().successes, 1);
        one_call(&b.stats());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_is_a_timeout() {
        let layer = layer("body-stall");
        let b = layer.breaker().clone();
        let response = layer
            .layer(upstream(StatusCode::OK, stalls))
            .oneshot(Request::new(()))
            .await
            .unwrap();
        assert_eq!(read(response).await, (vec!["a".into()], Some(true)));
        assert_eq!(b.stats().timeouts, 1);
        one_call(&b.stats());
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_error_is_a_failure() {
        let layer = layer("body-cut");
        let b = layer.breaker().clone();
        let response = layer
            .layer(upstream(StatusCode::OK, cut))
            .oneshot(Request::new(()))
            .await
            .unwrap();
        assert_eq!(read(response).await, (vec!["a".into()], Some(false)));
        assert_eq!(b.stats().failures, 1);
        one_call(&b.stats());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_status_is_judged_by_its_head_and_handed_back() {
        let layer = layer("body-503");
        let b = layer.breaker().clone();
        let response = layer
            .layer(upstream(StatusCode::SERVICE_UNAVAILABLE, tokens))
            .oneshot(Request::new(()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(b.stats().failures, 1);
        assert_eq!(read(response).await, (vec!["a".into(), "b".into()], None));
        one_call(&b.stats());
    }

    #[tokio::test(start_paused = true)]
    async fn refused_while_open_and_a_probe_holds_its_slot_until_its_body_is_judged() {
        let layer = layer("body-probe");
        let b = layer.breaker().clone();
        let service = layer.layer(upstream(StatusCode::OK, stalls));
        b.force_open();
        let refused = service.clone().oneshot(Request::new(())).await.unwrap_err();
        assert!(refused.is_rejected());
        b.reset();
        to_half_open(&b).await;
        let probe = service.clone().oneshot(Request::new(())).await.unwrap();
        assert_eq!(b.stats().half_open_in_flight, 1);
        assert!(service
            .clone()
            .oneshot(Request::new(()))
            .await
            .unwrap_err()
            .is_rejected());
        drop(probe); // before its first frame: cancelled, the slot comes back
        assert_eq!(b.stats().half_open_in_flight, 0);
        assert_eq!(b.stats().cancelled, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_that_never_comes_is_a_timeout() {
        let layer = layer("body-no-head");
        let b = layer.breaker().clone();
        let hang = service_fn(|_req: Request<()>| async {
            std::future::pending::<()>().await;
            Ok::<_, Infallible>(Response::new(Body::empty()))
        });
        let error = layer.layer(hang).oneshot(Request::new(())).await.unwrap_err();
        assert!(error.is_timeout());
        assert_eq!(b.stats().timeouts, 1);
        one_call(&b.stats());
    }
}
