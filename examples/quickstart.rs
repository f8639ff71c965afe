//! The quick start: a breaker protecting a flaky dependency, step by step.
//!
//! Run with `cargo run --example quickstart`. It finishes in about a second.

use std::time::{Duration, Instant};

use cb_runtime::{circuit_breaker, registry, BreakerError, CircuitBreaker, Config, State};

/// The error of our pretend inventory service.
#[derive(Debug)]
enum InventoryError {
    /// The service answered with an error.
    Down(&'static str),
    /// The breaker refused the call or it timed out.
    Breaker(BreakerError),
}

impl From<BreakerError> for InventoryError {
    fn from(e: BreakerError) -> Self {
        InventoryError::Breaker(e)
    }
}

/// A dependency that fails while `healthy` is false.
struct Inventory {
    healthy: std::sync::atomic::AtomicBool,
}

impl Inventory {
    /// One line is all it takes: a breaker named "inventory" with the
    /// `http_api` preset, opened after 3 consecutive failures for this demo.
    #[circuit_breaker(
        name = "inventory",
        preset = "http_api",
        failure_threshold = 3,
        open_duration = "300ms"
    )]
    async fn stock(&self, sku: &str) -> Result<u32, InventoryError> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if self.healthy.load(std::sync::atomic::Ordering::SeqCst) {
            Ok(sku.len() as u32)
        } else {
            Err(InventoryError::Down("503 Service Unavailable"))
        }
    }
}

#[tokio::main]
async fn main() {
    println!("== 1. The attribute: #[circuit_breaker(name = \"inventory\", preset = \"http_api\")]");
    let inventory = Inventory { healthy: true.into() };
    let started = Instant::now();
    let step = |what: &str, since: Instant| println!("{:>7.1?}  {what}", since.elapsed());

    for round in 0..8 {
        if round == 2 {
            inventory
                .healthy
                .store(false, std::sync::atomic::Ordering::SeqCst);
            step("-- the inventory service goes down --", started);
        }
        let t = Instant::now();
        let r = inventory.stock("sku-42").await;
        let state = registry()
            .get("inventory")
            .map(|b| b.state())
            .unwrap_or(State::Closed);
        let outcome = match r {
            Ok(n) => format!("ok ({n} in stock)"),
            Err(InventoryError::Down(why)) => format!("failed: {why}"),
            Err(InventoryError::Breaker(e)) => format!("refused: {e}"),
        };
        step(
            &format!(
                "call {round}: {outcome}, took {:.1?}, breaker {state}",
                t.elapsed()
            ),
            started,
        );
    }

    inventory.healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    step(
        "-- the service recovers; waiting out the open duration --",
        started,
    );
    tokio::time::sleep(Duration::from_millis(320)).await;
    for round in 8..11 {
        let r = inventory.stock("sku-42").await;
        let state = registry().get("inventory").unwrap().state();
        step(
            &format!(
                "call {round}: {:?}, breaker {state}",
                r.map_err(|e| format!("{e:?}"))
            ),
            started,
        );
    }
    let stats = registry().get("inventory").unwrap().stats();
    println!(
        "\nstats: {} successes, {} failures, {} rejected (each rejected call returned at once)",
        stats.successes, stats.failures, stats.rejected
    );

    println!("\n== 2. The same by hand, with CircuitBreaker::call");
    let breaker = CircuitBreaker::new(
        "payments",
        Config::builder()
            .failure_threshold(2)
            .open_duration(Duration::from_secs(30))
            .build()
            .unwrap(),
    );
    for i in 0..4 {
        let r = breaker.call(async { Err::<(), _>("connection refused") }).await;
        println!(
            "call {i}: {} -> breaker {}",
            match r {
                Err(e) if e.is_rejected() => format!("rejected: {e}"),
                Err(e) => format!("failed: {e}"),
                Ok(()) => "ok".into(),
            },
            breaker.state()
        );
    }
    breaker.reset();
    println!("after reset(): {}", breaker.state());
}
