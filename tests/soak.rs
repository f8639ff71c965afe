//! The soak and fault storm of `examples/soak.rs`, bounded for CI: two
//! seconds of 32 tasks on a multi-thread runtime against four breakers, then
//! the memory phase over 10^6 transitions.
//!
//! Pitfalls covered (see the example's doc for how): 1 (probe cap under
//! load), 3 (no leaked probe: `half_open_in_flight == 0` when quiet and every
//! breaker recovers), 4 (cancellations reconcile exactly), 5 (late results do
//! not wedge half-open), 6 (hung calls end at `call_timeout`), 9 (RSS flat
//! over 10^6 transitions).

use std::time::Duration;

#[allow(dead_code)]
#[path = "../examples/soak.rs"]
mod soak;

/// The storm reconciles exactly, nothing hangs or leaks, every breaker ends
/// in a legal state and recovers, and RSS stays flat over 10^6 transitions.
#[test]
fn soak_storm_reconciles_and_memory_stays_flat() {
    let report = soak::run(soak::Settings {
        duration: Duration::from_secs(2),
        tasks: 32,
        workers: 4,
        transitions: 1_000_000,
        seed: 42,
    });
    println!("{report}");
    assert!(report.failures.is_empty(), "{report}");
    assert!(report.breakers.iter().all(|b| b.transitions > 0), "{report}");
}
