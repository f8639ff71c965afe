//! The goals of issue 39, checked for every preset at every rate: what an
//! outage costs behind it, simulated on a manual clock
//! (`tests/support/outage.rs`, which `examples/outage_cost.rs` prints as the
//! table of the guide's chapter "Choosing a preset").
//!
//! - a provider failing 10 % of calls at random: at most 1 % of calls are
//!   good calls refused;
//! - failing 30 %: at most 5 %;
//! - failing every call: at most 1.5 % of calls are failures let through;
//! - after a 5-minute full outage: a call is let through within one base
//!   open duration of the provider's return.
//!
//! Each share is 5 seeds of 12,000 calls, as in the issue, at 1, 10, 100
//! and 1,000 calls a second.

#[path = "support/outage.rs"]
mod outage;

use std::time::Duration;

use cb_runtime::Preset;
use outage::{Setup, RATES};

const CALLS: u64 = 12_000;
const SEEDS: u64 = 5;

#[test]
fn every_preset_meets_the_goals_at_every_rate() {
    let mut misses = Vec::new();
    for setup in outage::presets() {
        for rate in RATES {
            let costs: Vec<_> = [0.1, 0.3, 1.0]
                .into_iter()
                .map(|p| (p, outage::partial_seeds(&setup, rate, p, CALLS, SEEDS)))
                .collect();
            let recovery = outage::full_outage(&setup, rate);
            misses.extend(outage::misses(&setup, rate, &costs, Some(recovery)));
        }
    }
    assert!(misses.is_empty(), "goals missed:\n{}", misses.join("\n"));
}

/// The goals are not met by a breaker that never opens: a provider failing
/// 60 % of calls is cut off, and a dead one is found.
#[test]
fn a_failing_provider_is_still_cut_off() {
    for setup in outage::presets() {
        for rate in RATES {
            let most = outage::partial_seeds(&setup, rate, 0.6, CALLS, 1);
            assert!(
                most.percent(most.refused) > 50.0,
                "{} at {rate}/s let a provider failing 60 % of calls through: {most:?}",
                setup.name
            );
            let recovery = outage::full_outage(&setup, rate);
            let outage_calls = outage::OUTAGE.as_secs() * u64::from(rate);
            assert!(
                recovery.dead * 4 < outage_calls,
                "{} at {rate}/s let {} of {outage_calls} calls through to a dead provider",
                setup.name,
                recovery.dead
            );
        }
    }
}

/// The simulation's own arithmetic: the same seed gives the same run, a
/// breaker-less provider costs nothing, and every call is counted once.
#[test]
fn the_simulation_counts_every_call_once() {
    let setup = Setup::preset(Preset::Database);
    let a = outage::partial(&setup, 100, 0.3, 2_000, 7);
    assert_eq!(a, outage::partial(&setup, 100, 0.3, 2_000, 7));
    assert_eq!(a.calls, 2_000);
    assert!(a.lost <= a.refused && a.dead + a.refused <= a.calls);
    let healthy = outage::partial(&setup, 100, 0.0, 2_000, 7);
    assert_eq!((healthy.dead, healthy.lost, healthy.refused), (0, 0, 0));
    let dead = outage::partial(&setup, 100, 1.0, 2_000, 7);
    assert_eq!(dead.lost, 0);
    assert_eq!(dead.dead + dead.refused, 2_000);
    assert!(outage::full_outage(&setup, 10).lag <= Duration::from_secs(10));
}
