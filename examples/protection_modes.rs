//! The three protection modes against a simulated provider:
//!
//! 1. **Shadow mode**: a breaker tuned in production without refusing anyone;
//!    it reports what it would have refused, then a reload makes it enforce.
//! 2. **A bulkhead**: four callers hang on a stuck provider; the fifth is
//!    refused at once instead of piling up.
//! 3. **Adaptive throttling**: a provider failing 30 %, then 70 %, then 100 %
//!    of calls; the share refused follows, without the circuit flapping.
//!
//! Run with `cargo run --example protection_modes`. It finishes in well under
//! a second: the provider is simulated.

use cb_runtime::{circuit_breaker, BreakerError, Config, Mode, Registry, Trip, Window};
use std::future::pending;

#[derive(Debug)]
enum LlmError {
    Provider,
    Breaker(BreakerError),
}

impl From<BreakerError> for LlmError {
    fn from(e: BreakerError) -> Self {
        LlmError::Breaker(e)
    }
}

/// A completion through a shadow breaker: nothing is refused while the
/// thresholds are tuned.
#[circuit_breaker(
    name = "example-shadow",
    preset = "llm",
    mode = "shadow",
    failure_threshold = 2
)]
async fn complete(fails: bool) -> Result<&'static str, LlmError> {
    if fails {
        Err(LlmError::Provider)
    } else {
        Ok("a completion")
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    shadow().await;
    bulkhead().await;
    adaptive();
}

async fn shadow() {
    println!("1. shadow mode");
    for fails in [true, true, false, false, true, false] {
        let answer = complete(fails).await;
        println!(
            "   call (provider fails: {fails:5}): {}",
            if answer.is_ok() { "ok" } else { "error" }
        );
    }
    let breaker = cb_runtime::registry().get("example-shadow").unwrap();
    let s = breaker.stats();
    println!(
        "   state {} (as if enforcing); would have refused {} calls, refused {}",
        s.state, s.shadow_rejected, s.rejected
    );
    // A week later: enforce, by a reload of the configuration.
    breaker
        .reconfigure(breaker.config().to_builder().mode(Mode::Enforce).build().unwrap())
        .unwrap();
    let refused = complete(false).await;
    println!(
        "   after the switch to enforce: {}",
        match refused {
            Err(LlmError::Breaker(e)) => e.to_string(),
            _ => "let through".to_owned(),
        }
    );
}

async fn bulkhead() {
    println!("2. a bulkhead of 4 calls in flight");
    let registry = Registry::new();
    let breaker = registry.get_or_insert("example-bulkhead", || {
        Config::builder().max_concurrent_calls(4).build().unwrap()
    });
    // Four calls hang on the stuck provider, each holding a slot.
    let mut hung = Vec::new();
    for _ in 0..4 {
        let call = Box::pin(breaker.call(pending::<Result<(), ()>>()));
        hung.push(call);
    }
    for call in &mut hung {
        assert!(futures::poll!(call.as_mut()).is_pending());
    }
    let fifth = breaker.call(async { Ok::<_, ()>("answer") }).await;
    let refusal = fifth.unwrap_err();
    println!("   the fifth call: {}", refusal.breaker_error().unwrap());
    drop(hung); // the callers give up: their slots come back
    let sixth = breaker.call(async { Ok::<_, ()>("answer") }).await;
    let s = breaker.stats();
    println!(
        "   once they gave up: {:?}; saturated {}, cancelled {}, state {}",
        sixth, s.saturated, s.cancelled, s.state
    );
}

fn adaptive() {
    // k = 2 (the default) refuses nothing while more than half the calls
    // succeed; k = 1.2 starts refusing once one call in six fails.
    for k in [2.0, 1.2] {
        println!("3. adaptive throttling, k = {k}");
        let registry = Registry::new();
        let breaker = registry.get_or_insert("example-adaptive", || {
            Config::builder()
                .trip(Trip::Adaptive)
                .adaptive_k(k)
                .sliding_window(Window::Count(200))
                .build()
                .unwrap()
        });
        let mut provider = fastrand::Rng::with_seed(1);
        for failing in [0.0, 0.3, 0.7, 1.0, 0.0] {
            let (mut refused, mut failed) = (0, 0);
            for _ in 0..2_000 {
                match breaker.try_acquire() {
                    Ok(permit) => {
                        let ok = provider.f64() >= failing;
                        failed += u32::from(!ok);
                        permit.record(ok);
                    }
                    Err(_) => refused += 1,
                }
            }
            println!(
                "   provider failing {:3.0} %: refused {:4} of 2000, {:4} failed, state {}, refusing {:.0} % now",
                failing * 100.0,
                refused,
                failed,
                breaker.state(),
                breaker.stats().refusal_share.unwrap_or(0.0) * 100.0
            );
        }
    }
}
