//! The counts in the Prometheus exposition agree with `Stats`, total by total (issue 29):
//! `circuit_breaker_calls_total` has one `outcome` series per total, `cancelled` included, so a
//! breaker's series add up to `Stats::calls()`; a timeout is `outcome="timeout"` and a failure
//! in the window; fallbacks are `circuit_breaker_fallbacks_total{on}` and probes
//! `circuit_breaker_probes_total{result}`.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Waker};
use std::time::Duration;

use cb_runtime::metrics::{self, BreakerCollector};
use cb_runtime::{CallError, Clock, Config, FallbackReason, Outcome, Registry, State};

type Res = Result<u32, CallError<&'static str>>;

fn private_registry() -> &'static Registry {
    Box::leak(Box::new(Registry::with_env(Vec::new)))
}

fn exposition(registry: &'static Registry) -> String {
    let prom = prometheus::Registry::new();
    prom.register(Box::new(BreakerCollector::new(registry))).unwrap();
    metrics::encode(&prom.gather())
}

/// The value of the series `metric{name="<name>",<label>="<value>"}`.
fn series(text: &str, metric: &str, name: &str, label: &str, value: &str) -> Option<u64> {
    let wanted = [format!("name=\"{name}\""), format!("{label}=\"{value}\"")];
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .find(|l| wanted.iter().all(|w| l.contains(w.as_str())))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Every `outcome` series of `name`, summed.
fn outcome_sum(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with("circuit_breaker_calls_total{") && l.contains(&format!("name=\"{name}\"")))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

#[tokio::test(start_paused = true)]
async fn every_total_of_stats_has_its_outcome_series_and_they_add_up() {
    let registry = private_registry();
    let b = registry.get_or_insert("counts", || {
        Config::builder()
            .clock(Clock::tokio())
            .call_timeout(Duration::from_millis(100))
            .failure_threshold(4)
            .build()
            .unwrap()
    });
    for _ in 0..3 {
        let ok: Res = b.call(async { Ok(1) }).await;
        assert!(ok.is_ok());
    }
    let failed: Res = b.call(async { Err("503") }).await;
    assert!(failed.is_err());
    let timed_out: Res = b.call(std::future::pending()).await;
    assert!(timed_out.unwrap_err().is_timeout());
    let ignored: Res = b.call_with(async { Err("400") }, |_| Outcome::Ignored).await;
    assert!(ignored.is_err());
    // Cancelled: dropped while pending, after admission.
    {
        let mut call = pin!(b.call(std::future::pending::<Res>()));
        let polled = call.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        assert!(polled.is_pending());
    }
    // The timeout and the failure are both failures in the window.
    let stats = b.stats();
    assert_eq!(
        (stats.failures, stats.timeouts, stats.consecutive_failures),
        (1, 1, 2)
    );
    assert_eq!(stats.failures_in_window, 2);
    b.force_open();
    for _ in 0..2 {
        let refused: Res = b.call(async { Ok(1) }).await;
        assert!(refused.unwrap_err().is_rejected());
    }

    let stats = b.stats();
    let text = exposition(registry);
    let expected = [
        ("success", 3),
        ("failure", 1),
        ("timeout", 1),
        ("ignored", 1),
        ("cancelled", 1),
        ("rejected", 2),
    ];
    for (outcome, n) in expected {
        assert_eq!(
            series(&text, "circuit_breaker_calls_total", "counts", "outcome", outcome),
            Some(n),
            "outcome {outcome} in:\n{text}"
        );
    }
    assert_eq!(stats.outcomes().collect::<Vec<_>>(), expected);
    assert_eq!(stats.calls(), 9);
    assert_eq!(outcome_sum(&text, "counts"), stats.calls(), "{text}");
}

#[tokio::test]
async fn fallbacks_and_probes_are_counted_by_reason_and_result() {
    let registry = private_registry();
    let b = registry.get_or_insert("fallbacks-probes", || {
        Config::builder()
            .clock(Clock::tokio())
            .failure_threshold(1)
            .open_duration(Duration::from_secs(10))
            .half_open_max_calls(2)
            .success_threshold(2)
            .build()
            .unwrap()
    });
    let text = exposition(registry);
    for on in ["refusal", "timeout", "failure"] {
        assert_eq!(
            series(
                &text,
                "circuit_breaker_fallbacks_total",
                "fallbacks-probes",
                "on",
                on
            ),
            Some(0),
            "{text}"
        );
    }
    b.record_fallback(FallbackReason::Refusal);
    b.record_fallback(FallbackReason::Refusal);
    b.record_fallback(FallbackReason::Failure);

    // Open, then half-open: one probe ignored, one succeeds, one fails.
    let failed: Res = b.call(async { Err("down") }).await;
    assert!(failed.is_err());
    assert_eq!(b.state(), State::Open);
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(11)).await;
    let ignored: Res = b.call_with(async { Err("400") }, |_| Outcome::Ignored).await;
    assert!(ignored.is_err());
    let ok: Res = b.call(async { Ok(1) }).await;
    assert!(ok.is_ok());
    let failed: Res = b.call(async { Err("still down") }).await;
    assert!(failed.is_err());
    assert_eq!(b.state(), State::Open);

    let stats = b.stats();
    assert_eq!(stats.fallbacks, 3);
    assert_eq!(stats.fallbacks_on(FallbackReason::Refusal), 2);
    assert_eq!(stats.fallbacks_on(FallbackReason::Timeout), 0);
    assert_eq!(stats.fallbacks_on(FallbackReason::Failure), 1);
    let probes: Vec<_> = stats.probe_results().collect();
    assert_eq!(
        probes,
        [
            ("success", 1),
            ("failure", 1),
            ("timeout", 0),
            ("ignored", 1),
            ("cancelled", 0)
        ]
    );

    let text = exposition(registry);
    let fallbacks = |on| {
        series(
            &text,
            "circuit_breaker_fallbacks_total",
            "fallbacks-probes",
            "on",
            on,
        )
    };
    assert_eq!(
        (fallbacks("refusal"), fallbacks("timeout"), fallbacks("failure")),
        (Some(2), Some(0), Some(1))
    );
    for (result, n) in probes {
        assert_eq!(
            series(
                &text,
                "circuit_breaker_probes_total",
                "fallbacks-probes",
                "result",
                result
            ),
            Some(n),
            "probe result {result} in:\n{text}"
        );
    }
    assert!(
        text.contains("# TYPE circuit_breaker_fallbacks_total counter"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE circuit_breaker_probes_total counter"),
        "{text}"
    );
}
