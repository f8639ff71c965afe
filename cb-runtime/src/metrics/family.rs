//! The metrics of families of keyed breakers as a whole: what a full family
//! did with its keys. Each key's own series are the breakers' (with a `key`
//! label); these have the family's `name` only (the table is in the parent module's documentation).

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounterVec, IntGaugeVec, Opts};

use crate::registry::Registry;

const KEYS: &str = "circuit_breaker_family_keys";
const KEYS_HELP: &str = "Keys a family of keyed breakers holds now.";
const EVICTIONS: &str = "circuit_breaker_family_evictions_total";
const EVICTIONS_HELP: &str = "Keys evicted from a family to make room for new ones.";
const UNGUARDED: &str = "circuit_breaker_family_unguarded_calls_total";
const UNGUARDED_HELP: &str = "Calls a family served with a breaker made for that call alone, by reason: \
                              full (every key held was open or probing) or bad_key (the key broke the name rule).";

/// The descriptions of the family metrics, for the collector.
pub(super) fn descs() -> Vec<Desc> {
    [
        super::desc(KEYS, KEYS_HELP, &["name"]),
        super::desc(EVICTIONS, EVICTIONS_HELP, &["name"]),
        super::desc(UNGUARDED, UNGUARDED_HELP, &["name", "reason"]),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The family metrics of every family of `registry`; none without a family.
pub(super) fn collect(registry: &Registry) -> prometheus::Result<Vec<MetricFamily>> {
    let families = registry.family_list();
    if families.is_empty() {
        return Ok(Vec::new());
    }
    let keys = IntGaugeVec::new(Opts::new(KEYS, KEYS_HELP), &["name"])?;
    let evictions = IntCounterVec::new(Opts::new(EVICTIONS, EVICTIONS_HELP), &["name"])?;
    let unguarded = IntCounterVec::new(Opts::new(UNGUARDED, UNGUARDED_HELP), &["name", "reason"])?;
    for family in &families {
        let name = family.name();
        keys.with_label_values(&[name])
            .set(i64::try_from(family.len()).unwrap_or(i64::MAX));
        evictions.with_label_values(&[name]).inc_by(family.evictions());
        let calls = family.unguarded_calls();
        unguarded.with_label_values(&[name, "full"]).inc_by(calls.full);
        unguarded
            .with_label_values(&[name, "bad_key"])
            .inc_by(calls.bad_key);
    }
    let mut all = keys.collect();
    all.extend(evictions.collect());
    all.extend(unguarded.collect());
    Ok(all)
}
