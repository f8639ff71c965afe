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

use cb_runtime::{Preset, Window};
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

/// The window of an adaptive setup, in calls.
fn count_window(setup: &Setup) -> u64 {
    match setup.config.sliding_window() {
        Window::Count(n) => u64::from(n),
        other => panic!("{}: a count window, not {other}", setup.name),
    }
}

/// Adaptive throttling against a provider that fails every call, from the
/// first: nothing in its window is an accept, so it refuses with
/// probability `requests / (requests + 1)` whatever `adaptive_k`, and the
/// calls it lets through are exactly what that formula allows (the sum of
/// the probabilities, `outage::adaptive_dead_bound`, within four standard
/// deviations). So no window can bring it under `H(12,000)`, about 10 calls
/// (0.083 %), where the best threshold rows let 3 through at 100 and 1,000
/// calls a second (0.03 %): the bar the issue sets at `p` = 1.0 cannot be
/// met at those rates by the formula, and this test fails if the throttle
/// leaks more than it allows, or if a setup's window stops costing what the
/// guide says.
#[test]
fn adaptive_throttling_lets_through_what_the_formula_allows_to_a_dead_provider() {
    let harmonic: f64 = (1..=CALLS).map(|i| 1.0 / i as f64).sum();
    assert!((harmonic - 9.97).abs() < 0.01, "H(12,000) = {harmonic}");
    for setup in outage::adaptive() {
        let n = count_window(&setup);
        let (mean, var) = outage::adaptive_dead_bound(n, CALLS);
        assert!(mean >= harmonic, "{}: {mean} under H(calls)", setup.name);
        let (mean, sd) = (mean * SEEDS as f64, (var * SEEDS as f64).sqrt());
        for rate in RATES {
            let dead = outage::partial_seeds(&setup, rate, 1.0, CALLS, SEEDS);
            assert_eq!((dead.lost, dead.dead + dead.refused), (0, SEEDS * CALLS));
            assert!(
                (dead.dead as f64 - mean).abs() <= 4.0 * sd,
                "{} at {rate}/s: {} failed calls let through in {SEEDS} runs, the formula expects {mean:.1} (sd {sd:.1})",
                setup.name,
                dead.dead
            );
        }
    }
    // The two windows of the table: 200 calls leak 0.54 % of 12,000, 400
    // calls 0.30 %.
    let share = |n| 100.0 * outage::adaptive_dead_bound(n, CALLS).0 / CALLS as f64;
    assert!((share(200) - 0.54).abs() < 0.005 && (share(400) - 0.30).abs() < 0.005);
}

/// Where the adaptive rows of the guide's table are no worse than the best
/// threshold row (the best of the five presets at the same rate), in the
/// seeded runs the table prints: at `p` = 0.05 and 0.1 they lose no good
/// call, as the presets; at `p` = 0.3 they lose the calls a young window
/// refuses at the start of a run (a first call that fails makes the next
/// one a coin toss), at most 0.02 % of calls; at `p` = 0.6 they refuse
/// fewer good calls than any preset from 100 calls a second; and against a
/// provider dead from the first call they let fewer calls through than
/// any preset at 1 call a second. The columns left out are those where
/// they are worse: `p` = 0.6 dead, `p` = 1.0 from 10 calls a second, and
/// the 5-minute outage.
#[test]
fn adaptive_rows_are_no_worse_than_the_best_threshold_row_where_the_formula_allows() {
    let shares = [0.05, 0.1, 0.3, 0.6, 1.0];
    let costs = |setup: &Setup, rate| -> Vec<_> {
        shares
            .iter()
            .map(|&p| outage::partial_seeds(setup, rate, p, CALLS, SEEDS))
            .collect()
    };
    let mut worse = Vec::new();
    for rate in RATES {
        let presets: Vec<_> = outage::presets().iter().map(|s| costs(s, rate)).collect();
        let best = |i: usize, f: fn(&outage::Cost) -> u64| {
            presets
                .iter()
                .map(|c| c[i].percent(f(&c[i])))
                .fold(f64::INFINITY, f64::min)
        };
        for setup in outage::adaptive() {
            let c = costs(&setup, rate);
            let mut check = |what: &str, i: usize, n: u64, best: f64, slack: f64| {
                if c[i].percent(n) > best + slack {
                    worse.push(format!(
                        "{} at {rate}/s, p = {}: {what} {:.3} % (the best preset {best:.3} %)",
                        setup.name,
                        shares[i],
                        c[i].percent(n)
                    ));
                }
            };
            check("lost", 0, c[0].lost, best(0, |c| c.lost), 0.0);
            check("lost", 1, c[1].lost, best(1, |c| c.lost), 0.0);
            check("lost", 2, c[2].lost, best(2, |c| c.lost), 0.02);
            if rate >= 100 {
                check("lost", 3, c[3].lost, best(3, |c| c.lost), 0.0);
            }
            if rate == 1 {
                check("dead", 4, c[4].dead, best(4, |c| c.dead), 0.0);
            }
        }
    }
    assert!(
        worse.is_empty(),
        "adaptive rows worse than the best preset:\n{}",
        worse.join("\n")
    );
}
