//! Alerting on open: subscribe to the registry's transition events, page a
//! (pretend) PagerDuty and post to a (pretend) Slack when a breaker opens, and
//! keep a transition log the way a `circuit_breaker_events` table would.
//!
//! Run with `cargo run --example alerting`. It finishes in about a second.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use cb_runtime::{circuit_breaker, registry, BreakerError, Event, State};

#[derive(Debug)]
enum PaymentError {
    Declined,
    Unavailable(BreakerError),
}

impl From<BreakerError> for PaymentError {
    fn from(e: BreakerError) -> Self {
        PaymentError::Unavailable(e)
    }
}

static PROVIDER_UP: AtomicBool = AtomicBool::new(true);

#[circuit_breaker(
    name = "payments",
    preset = "http_api",
    failure_threshold = 3,
    open_duration = "200ms"
)]
async fn charge(cents: u64) -> Result<u64, PaymentError> {
    tokio::time::sleep(Duration::from_millis(5)).await;
    if PROVIDER_UP.load(Ordering::SeqCst) {
        Ok(cents)
    } else {
        Err(PaymentError::Declined)
    }
}

/// What a Slack webhook would be sent.
fn slack(event: &Event) {
    println!(
        "  [slack #oncall] :rotating_light: `{}` {} -> {} ({}); {} failures, {} rejected so far",
        event.name, event.from, event.to, event.transition.reason, event.stats.failures, event.stats.rejected
    );
}

/// What a PagerDuty Events API call would carry.
fn pagerduty(event: &Event, action: &str) {
    println!("  [pagerduty] {action} incident dedup_key=cb-{}", event.name);
}

/// One row of a transition log table.
fn persist(event: &Event) {
    let secs = event
        .time
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    println!(
        "  [circuit_breaker_events] ({secs:.3}, {:?}, {:?}, {:?}, {:?})",
        event.name,
        event.from.as_str(),
        event.to.as_str(),
        event.transition.reason
    );
}

#[tokio::main]
async fn main() {
    // Subscribe before anything happens; the alerter runs as its own task.
    let mut events = registry().subscribe();
    let alerter = tokio::spawn(async move {
        let mut closed_again = false;
        while let Some(event) = events.recv().await {
            persist(&event);
            match event.to {
                State::Open | State::ForcedOpen => {
                    slack(&event);
                    pagerduty(&event, "trigger");
                }
                State::Closed if event.from == State::HalfOpen => {
                    pagerduty(&event, "resolve");
                    closed_again = true;
                }
                _ => {}
            }
            if closed_again {
                return;
            }
        }
    });

    println!("== the provider goes down");
    PROVIDER_UP.store(false, Ordering::SeqCst);
    for _ in 0..5 {
        match charge(1999).await {
            Err(PaymentError::Unavailable(e)) => println!("  refused: {e}"),
            other => println!("  {other:?}"),
        }
    }

    println!("== it comes back; after the open duration, probes close the circuit");
    PROVIDER_UP.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(250)).await;
    for _ in 0..3 {
        println!("  {:?}", charge(1999).await);
    }

    tokio::time::timeout(Duration::from_secs(2), alerter)
        .await
        .expect("the alerter saw the circuit close")
        .expect("the alerter task ran");
    println!("== done");
}
