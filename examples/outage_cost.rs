//! What an outage costs behind each preset and behind the peers' defaults:
//! good calls refused (lost) and failed calls let through (dead), at 1 to
//! 1,000 calls a second, on a virtual clock.
//!
//! Run with `cargo run --release --example outage_cost` (about a second;
//! some seconds without `--release`). It prints the table of the guide's
//! chapter "Choosing a preset" (`docs/guide/choosing-a-preset.md`), then
//! the goals any preset misses; `tests/outage_cost.rs` checks those goals in
//! CI. The simulation is `tests/support/outage.rs`.
//!
//! The last rows are adaptive throttling (`trip = "adaptive"`) on two
//! presets: it never opens, so it has no recovery lag of its own.
//!
//! Each partial-outage cell is the mean of 5 seeds of 12,000 calls, as a
//! percentage of the calls: at 1 call a second a run lasts 3 h 20 min, at
//! 1,000 calls a second 12 s.

#[path = "../tests/support/outage.rs"]
mod outage;

use outage::{Cost, RATES, SHARES};

const CALLS: u64 = 12_000;
const SEEDS: u64 = 5;

fn percent(cost: Cost, n: u64) -> String {
    format!("{:.2} %", cost.percent(n))
}

fn main() {
    let mut setups = outage::presets();
    setups.extend(outage::peers());
    setups.extend(outage::adaptive());
    let mut table = String::from(
        "| setup | rate | p = 0.05: lost | p = 0.1: lost | p = 0.3: lost | p = 0.6: lost / dead | p = 1.0: dead | 5 min outage: dead | recovery lag |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    let mut misses = Vec::new();
    for setup in &setups {
        for rate in RATES {
            let costs: Vec<(f64, Cost)> = SHARES
                .iter()
                .map(|&p| (p, outage::partial_seeds(setup, rate, p, CALLS, SEEDS)))
                .collect();
            let recovery = outage::full_outage(setup, rate);
            let cost = |p: f64| {
                costs
                    .iter()
                    .find(|(q, _)| *q == p)
                    .map(|(_, c)| *c)
                    .unwrap_or_default()
            };
            table.push_str(&format!(
                "| {} | {rate}/s | {} | {} | {} | {} / {} | {} | {} | {} |\n",
                setup.name,
                percent(cost(0.05), cost(0.05).lost),
                percent(cost(0.1), cost(0.1).lost),
                percent(cost(0.3), cost(0.3).lost),
                percent(cost(0.6), cost(0.6).lost),
                percent(cost(0.6), cost(0.6).dead),
                percent(cost(1.0), cost(1.0).dead),
                recovery.dead,
                outage::seconds(recovery.lag),
            ));
            if setup.preset.is_some() {
                misses.extend(outage::misses(setup, rate, &costs, Some(recovery)));
            }
        }
    }
    println!("{table}");
    if misses.is_empty() {
        println!("Every preset meets the goals at every rate.");
    } else {
        println!("Goals missed:");
        for miss in &misses {
            println!("- {miss}");
        }
    }
}
