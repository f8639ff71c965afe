//! Prometheus metrics for every breaker of a registry, through the
//! [`prometheus`] crate.
//!
//! Counts and states are read from the breakers' own exact counters when
//! Prometheus scrapes, by a custom [`Collector`]:
//! registering the metrics adds nothing to a call. Every metric has a `name`
//! label, the breaker's name; a keyed breaker's series (see
//! [`Family`](crate::Family)) also have a `key` label, its key. A family
//! exposes the keys it holds now, at most `max_keys`, so the label's
//! cardinality is bounded: an evicted key's series leave. A family as a
//! whole has series of its own (its keys, evictions and unguarded calls; see
//! the table at the end).
//!
//! | metric | type | labels | value |
//! |---|---|---|---|
//! | `circuit_breaker_state` | gauge | `name` | 0 closed, 1 open, 2 half_open, 3 forced_open, 4 disabled |
//! | `circuit_breaker_calls_total` | counter | `name`, `outcome` | calls by outcome, one series per total of [`Stats`](crate::Stats): `success`, `failure`, `timeout`, `ignored`, `cancelled`, `rejected`, `throttled`, `saturated`; they add up to `Stats::calls()` (a timeout is in `timeout` only, and is a failure in the window) |
//! | `circuit_breaker_fallbacks_total` | counter | `name`, `on` | fallbacks that ran, by reason: `refusal`, `timeout`, `failure`, `throttled`, `error` |
//! | `circuit_breaker_probes_total` | counter | `name`, `result` | calls admitted half-open, by how they ended: `success`, `failure`, `timeout`, `ignored`, `throttled`, `cancelled` |
//! | `circuit_breaker_throttled` | gauge | `name` | 1 while open, or half-open, after a rate limit ([`Outcome::Throttled`](crate::Outcome::Throttled)), else 0 |
//! | `circuit_breaker_slow_calls_total` | counter | `name` | calls slower than `slow_call_duration` |
//! | `circuit_breaker_state_transitions_total` | counter | `name`, `from`, `to` | transitions since the breaker joined the registry |
//! | `circuit_breaker_consecutive_failures` | gauge | `name` | failures since the last success, while closed |
//! | `circuit_breaker_failure_rate` | gauge | `name` | the window's failure rate, once it holds `minimum_calls` calls |
//! | `circuit_breaker_call_duration_seconds` | histogram | `name` | call durations; opt-in, see below |
//! | `circuit_breaker_time_to_first_item_seconds` | histogram | `name` | streamed calls' time to first item; opt-in, see below |
//! | `circuit_breaker_health_checks_total` | counter | `name`, `result` | health checks run while open, by result: `passed`, `failed` (a check abandoned at `call_timeout` failed); breakers with a health check only |
//! | `circuit_breaker_ramp_share` | gauge | `name` | while ramping up after a close (`ramp_up`): the share of calls admitted, 0.1 to 1; absent otherwise |
//! | `circuit_breaker_shadow_rejections_total` | counter | `name` | shadow mode: calls the breaker would have refused, and let through ([`Stats::shadow_rejected`](crate::Stats::shadow_rejected)) |
//! | `circuit_breaker_shadow_mode` | gauge | `name` | 1 while the breaker runs in shadow mode (`mode = "shadow"`), else 0 |
//! | `circuit_breaker_concurrent_calls` | gauge | `name` | bulkhead: calls in flight holding a slot; `outcome="saturated"` counts its refusals |
//! | `circuit_breaker_refusal_share` | gauge | `name` | adaptive throttling: the probability of refusing the next call |
//!
//! The last four have series only for breakers whose configuration has set
//! a protection mode (shadow, a bulkhead or adaptive throttling) at some
//! point; `circuit_breaker_refusal_share` only while the breaker is adaptive.
//!
//! The state is what the next call would meet: an open breaker whose open
//! duration has elapsed is reported half-open (pitfall 11).
//!
//! Families of keyed breakers, as a whole:
//!
//! | metric | type | labels | value |
//! |---|---|---|---|
//! | `circuit_breaker_family_keys` | gauge | `name` | keys the family holds now (at most `max_keys`) |
//! | `circuit_breaker_family_evictions_total` | counter | `name` | keys evicted to make room for new ones |
//! | `circuit_breaker_family_unguarded_calls_total` | counter | `name`, `reason` | calls served by a breaker made for that call alone: `full` (every key held was open or probing), `bad_key` (the key broke the name rule) |
//!
//! # The duration histogram is opt-in
//!
//! Timing a call costs two clock reads and a histogram update per call, so it
//! is off until [`Registry::record_call_durations`](crate::Registry::record_call_durations)
//! (or [`register_with_call_durations`]) turns it on. Durations are measured on the
//! breaker's clock (the coarse monotonic clock by default: millisecond
//! resolution), from admission to the outcome; rejected and cancelled calls
//! are not timed. Buckets: [`DURATION_BUCKETS`], 1 ms to 60 s.
//!
//! # The time-to-first-item histogram is opt-in too
//!
//! For [streamed calls](crate::stream) (LLM tokens, server-sent events) the
//! time to first item is what users feel and what the breaker judges as the
//! slow-call signal. [`Registry::record_time_to_first_item`](crate::Registry::record_time_to_first_item)
//! (or [`register_with_time_to_first_item`]) turns its histogram on: one
//! observation per stream that yielded an item, from admission to the first
//! item on the breaker's clock, in the same [`DURATION_BUCKETS`]. Streamed
//! calls land in `circuit_breaker_calls_total` like any other call; a stream
//! whose consumer dropped it before its first item is `outcome="cancelled"`.
//!
//! ```
//! use cb_runtime::{registry, Config};
//!
//! let prom = prometheus::Registry::new();
//! cb_runtime::metrics::register(&prom).unwrap();
//! registry().get_or_insert("metrics-doc", Config::default);
//!
//! let text = cb_runtime::metrics::encode(&prom.gather());
//! assert!(text.contains(r#"circuit_breaker_state{name="metrics-doc"} 0"#));
//! ```

#[path = "metrics/family.rs"]
mod family;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, TextEncoder,
};

use std::sync::Arc;

use crate::breaker::CircuitBreaker;
use crate::fallback::FallbackReason;
use crate::hook::Hook;
use crate::registry::{registry, Registry, TransitionCounts};
use crate::state::State;

/// The histogram's buckets, in seconds.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

const STATE: &str = "circuit_breaker_state";
const CALLS: &str = "circuit_breaker_calls_total";
const FALLBACKS: &str = "circuit_breaker_fallbacks_total";
const PROBES: &str = "circuit_breaker_probes_total";
const SLOW: &str = "circuit_breaker_slow_calls_total";
const TRANSITIONS: &str = "circuit_breaker_state_transitions_total";
const CONSECUTIVE: &str = "circuit_breaker_consecutive_failures";
const RATE: &str = "circuit_breaker_failure_rate";
const THROTTLED: &str = "circuit_breaker_throttled";
const DURATION: &str = "circuit_breaker_call_duration_seconds";
const FIRST_ITEM: &str = "circuit_breaker_time_to_first_item_seconds";
const SHADOW_REJECTIONS: &str = "circuit_breaker_shadow_rejections_total";
const SHADOW_MODE: &str = "circuit_breaker_shadow_mode";
const CONCURRENT: &str = "circuit_breaker_concurrent_calls";
const REFUSAL_SHARE: &str = "circuit_breaker_refusal_share";
const HEALTH_CHECKS: &str = "circuit_breaker_health_checks_total";
const HEALTH_CHECKS_HELP: &str = "Health checks run while the circuit was open, by result (passed, failed).";
const RAMP_SHARE: &str = "circuit_breaker_ramp_share";
const RAMP_SHARE_HELP: &str = "While ramping up after a close: the share of calls admitted (0.1 to 1).";

/// Registers the metrics of every breaker in the global [`registry()`] with
/// `prom`. Registering twice with one `prom` is an error (`AlreadyReg`).
pub fn register(prom: &prometheus::Registry) -> prometheus::Result<()> {
    prom.register(Box::new(BreakerCollector::new(registry())))
}

/// Like [`register`], and turns the call-duration histogram on for the global
/// registry's breakers.
pub fn register_with_call_durations(prom: &prometheus::Registry) -> prometheus::Result<()> {
    registry().record_call_durations();
    register(prom)
}

/// Like [`register`], and turns the time-to-first-item histogram of streamed
/// calls on for the global registry's breakers.
pub fn register_with_time_to_first_item(prom: &prometheus::Registry) -> prometheus::Result<()> {
    registry().record_time_to_first_item();
    register(prom)
}

/// Registers the global [`registry()`]'s metrics with the `prometheus`
/// crate's default registry, the one `prometheus::gather()` reads.
pub fn register_default() -> prometheus::Result<()> {
    register(prometheus::default_registry())
}

/// The Prometheus text exposition of `families` (say, `prom.gather()`).
pub fn encode(families: &[MetricFamily]) -> String {
    let mut buf = Vec::new();
    // Writing to a Vec fails only on a malformed family, which the
    // collectors here never produce; an empty exposition is then returned.
    if TextEncoder::new().encode(families, &mut buf).is_err() {
        return String::new();
    }
    String::from_utf8(buf).unwrap_or_default()
}

/// The text exposition of the global registry's breakers alone, for an admin
/// endpoint that serves nothing else.
pub fn text() -> String {
    encode(&BreakerCollector::new(registry()).collect())
}

/// A Prometheus collector over one [`Registry`]'s breakers, reading their
/// counts at scrape time.
pub struct BreakerCollector {
    registry: &'static Registry,
    descs: Vec<Desc>,
}

fn desc(name: &str, help: &str, labels: &[&str]) -> Option<Desc> {
    Desc::new(
        name.to_owned(),
        help.to_owned(),
        labels.iter().map(|l| (*l).to_owned()).collect(),
        Default::default(),
    )
    .ok()
}

impl BreakerCollector {
    /// A collector over `registry` (the global one is [`registry()`]; a
    /// private one can be leaked with `Box::leak` to make it `'static`).
    pub fn new(registry: &'static Registry) -> Self {
        let descs = [
            desc(STATE, STATE_HELP, &["name"]),
            desc(CALLS, CALLS_HELP, &["name", "outcome"]),
            desc(FALLBACKS, FALLBACKS_HELP, &["name", "on"]),
            desc(PROBES, PROBES_HELP, &["name", "result"]),
            desc(SLOW, SLOW_HELP, &["name"]),
            desc(TRANSITIONS, TRANSITIONS_HELP, &["name", "from", "to"]),
            desc(CONSECUTIVE, CONSECUTIVE_HELP, &["name"]),
            desc(RATE, RATE_HELP, &["name"]),
            desc(THROTTLED, THROTTLED_HELP, &["name"]),
            desc(DURATION, DURATION_HELP, &["name"]),
            desc(FIRST_ITEM, FIRST_ITEM_HELP, &["name"]),
            desc(SHADOW_REJECTIONS, SHADOW_REJECTIONS_HELP, &["name"]),
            desc(SHADOW_MODE, SHADOW_MODE_HELP, &["name"]),
            desc(CONCURRENT, CONCURRENT_HELP, &["name"]),
            desc(REFUSAL_SHARE, REFUSAL_SHARE_HELP, &["name"]),
            desc(HEALTH_CHECKS, HEALTH_CHECKS_HELP, &["name", "result"]),
            desc(RAMP_SHARE, RAMP_SHARE_HELP, &["name"]),
        ]
        .into_iter()
        .flatten()
        .chain(family::descs())
        .collect();
        BreakerCollector { registry, descs }
    }
}

const STATE_HELP: &str = "Circuit state: 0 closed, 1 open, 2 half_open, 3 forced_open, 4 disabled.";
const CALLS_HELP: &str = "Calls through the breaker, by outcome; the outcomes add up to every call.";
const FALLBACKS_HELP: &str = "Fallbacks that ran, by reason: refusal, timeout, failure, throttled or error.";
const PROBES_HELP: &str = "Calls admitted while half-open, by how they ended.";
const SLOW_HELP: &str = "Calls slower than the slow-call duration.";
const TRANSITIONS_HELP: &str = "State transitions, by from and to state.";
const CONSECUTIVE_HELP: &str = "Consecutive failures while closed.";
const RATE_HELP: &str = "Failure rate of the sliding window, once it holds minimum_calls calls.";
const THROTTLED_HELP: &str =
    "1 while the circuit is open or half-open after the dependency throttled a call (a rate limit, not an outage).";
const DURATION_HELP: &str = "Duration of calls admitted by the breaker, in seconds.";
const FIRST_ITEM_HELP: &str = "Time from admission to the first item of streamed calls, in seconds.";
const SHADOW_REJECTIONS_HELP: &str = "Shadow mode: calls the breaker would have refused, let through.";
const SHADOW_MODE_HELP: &str = "1 while the breaker runs in shadow mode (it refuses nothing), else 0.";
const CONCURRENT_HELP: &str = "Bulkhead: calls in flight holding a slot of max_concurrent_calls.";
const REFUSAL_SHARE_HELP: &str = "Adaptive throttling: the probability of refusing the next call.";

/// A histogram with one series per breaker, fed by every breaker of a
/// registry: a hook of the registry, added by [`Registry::record_call_durations`]
/// or [`Registry::record_time_to_first_item`].
struct Histogram<K> {
    series: HistogramVec,
    /// The keyed breakers' series, labelled `name` and `key`.
    keyed: HistogramVec,
    kind: std::marker::PhantomData<K>,
}

/// What a [`Histogram`] measures.
trait Measure: Send + Sync + 'static {
    const NAME: &'static str;
    const HELP: &'static str;
    /// Has `breaker` tell `observe` each of its measurements.
    fn feed(breaker: &CircuitBreaker, observe: crate::breaker::DurationObserver);
}

/// Each call's duration.
struct CallDuration;

impl Measure for CallDuration {
    const NAME: &'static str = DURATION;
    const HELP: &'static str = DURATION_HELP;
    fn feed(breaker: &CircuitBreaker, observe: crate::breaker::DurationObserver) {
        breaker.observe_call_durations(observe);
    }
}

/// Each streamed call's time to first item.
struct TimeToFirstItem;

impl Measure for TimeToFirstItem {
    const NAME: &'static str = FIRST_ITEM;
    const HELP: &'static str = FIRST_ITEM_HELP;
    fn feed(breaker: &CircuitBreaker, observe: crate::breaker::DurationObserver) {
        breaker.observe_time_to_first_item(observe);
    }
}

impl<K: Measure> Histogram<K> {
    fn new() -> Option<Self> {
        let opts = HistogramOpts::new(K::NAME, K::HELP).buckets(DURATION_BUCKETS.to_vec());
        let series = HistogramVec::new(opts.clone(), &["name"]).ok()?;
        let keyed = HistogramVec::new(opts, &["name", "key"]).ok()?;
        Some(Histogram {
            series,
            keyed,
            kind: std::marker::PhantomData,
        })
    }
}

impl<K: Measure> Hook for Histogram<K> {
    fn attach(&self, breaker: &Arc<CircuitBreaker>) {
        let series = match breaker.key() {
            None => self.series.with_label_values(&[breaker.name()]),
            Some(key) => self.keyed.with_label_values(&[breaker.name(), key]),
        };
        K::feed(breaker, Box::new(move |d| series.observe(d.as_secs_f64())));
    }

    fn detach_key(&self, breaker: &Arc<CircuitBreaker>) {
        if let Some(key) = breaker.key() {
            let _ = self.keyed.remove_label_values(&[breaker.name(), key]);
        }
    }

    /// A series is absent when the breaker never finished a call (or never
    /// streamed): nothing to remove then.
    fn detach(&self, name: &str) {
        let _ = self.series.remove_label_values(&[name]);
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

impl Registry {
    /// Turns on the `circuit_breaker_call_duration_seconds` histogram for every
    /// breaker in the registry, now and later (see [`crate::metrics`]). It
    /// costs two clock reads and a histogram update per call, and cannot be
    /// turned off again.
    pub fn record_call_durations(&self) {
        self.add_hook_once(Histogram::<CallDuration>::new);
    }

    /// Turns on the `circuit_breaker_time_to_first_item_seconds` histogram
    /// of streamed calls ([`CircuitBreaker::call_stream`]) for every breaker
    /// in the registry, now and later (see [`crate::metrics`]). Like
    /// [`record_call_durations`](Self::record_call_durations) it makes every
    /// call read the clock at admission, and cannot be turned off again.
    pub fn record_time_to_first_item(&self) {
        self.add_hook_once(Histogram::<TimeToFirstItem>::new);
    }
}

impl Collector for BreakerCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        collect(self.registry).unwrap_or_default()
    }
}

fn collect(registry: &Registry) -> prometheus::Result<Vec<MetricFamily>> {
    let unkeyed = Series::new(&[])?;
    for (breaker, counts) in registry.observed() {
        unkeyed.add(&[breaker.name()], &breaker, &counts);
    }
    // Keyed breakers: the same metrics with a `key` label, one series per
    // key the family holds now, so at most `max_keys` per family; an
    // evicted key's series are gone.
    let keyed = Series::new(&["key"])?;
    for family in registry.family_list() {
        for (breaker, counts) in family.observed() {
            keyed.add(
                &[breaker.name(), breaker.key().unwrap_or_default()],
                &breaker,
                &counts,
            );
        }
    }
    let mut families = unkeyed.collect();
    merge(&mut families, keyed.collect());
    families.extend(family::collect(registry)?);
    if let Some(durations) = registry.hook::<Histogram<CallDuration>>() {
        families.extend(durations.series.collect());
        merge(&mut families, durations.keyed.collect());
    }
    if let Some(first_items) = registry.hook::<Histogram<TimeToFirstItem>>() {
        families.extend(first_items.series.collect());
        merge(&mut families, first_items.keyed.collect());
    }
    // An empty vector collects to a family with no metric, which the text
    // encoder refuses; leave such families out.
    families.retain(|f| !f.get_metric().is_empty());
    Ok(families)
}

/// Adds the series of `more` to the family of the same name in `families`
/// (one `# HELP` and `# TYPE` per metric), or `more` itself when there is none.
fn merge(families: &mut Vec<MetricFamily>, more: Vec<MetricFamily>) {
    for family in more {
        match families.iter_mut().find(|f| f.name() == family.name()) {
            Some(existing) => existing.mut_metric().extend(family.get_metric().iter().cloned()),
            None => families.push(family),
        }
    }
}

/// The scrape-time metrics of a set of breakers, labelled `name` and then
/// `extra` (`key` for keyed breakers).
struct Series {
    state: IntGaugeVec,
    calls: IntCounterVec,
    fallbacks: IntCounterVec,
    probes: IntCounterVec,
    slow: IntCounterVec,
    transitions: IntCounterVec,
    consecutive: IntGaugeVec,
    rate: GaugeVec,
    throttled: IntGaugeVec,
    // Protection modes.
    shadow_rejections: IntCounterVec,
    shadow_mode: IntGaugeVec,
    concurrent: IntGaugeVec,
    refusal_share: GaugeVec,
    health_checks: IntCounterVec,
    ramp_share: GaugeVec,
}

impl Series {
    fn new(extra: &[&str]) -> prometheus::Result<Self> {
        let labels = |more: &[&'static str]| -> Vec<&str> {
            let mut all = vec!["name"];
            all.extend_from_slice(extra);
            all.extend_from_slice(more);
            all
        };
        Ok(Series {
            state: IntGaugeVec::new(Opts::new(STATE, STATE_HELP), &labels(&[]))?,
            calls: IntCounterVec::new(Opts::new(CALLS, CALLS_HELP), &labels(&["outcome"]))?,
            fallbacks: IntCounterVec::new(Opts::new(FALLBACKS, FALLBACKS_HELP), &labels(&["on"]))?,
            probes: IntCounterVec::new(Opts::new(PROBES, PROBES_HELP), &labels(&["result"]))?,
            slow: IntCounterVec::new(Opts::new(SLOW, SLOW_HELP), &labels(&[]))?,
            transitions: IntCounterVec::new(
                Opts::new(TRANSITIONS, TRANSITIONS_HELP),
                &labels(&["from", "to"]),
            )?,
            consecutive: IntGaugeVec::new(Opts::new(CONSECUTIVE, CONSECUTIVE_HELP), &labels(&[]))?,
            rate: GaugeVec::new(Opts::new(RATE, RATE_HELP), &labels(&[]))?,
            throttled: IntGaugeVec::new(Opts::new(THROTTLED, THROTTLED_HELP), &labels(&[]))?,
            shadow_rejections: IntCounterVec::new(
                Opts::new(SHADOW_REJECTIONS, SHADOW_REJECTIONS_HELP),
                &labels(&[]),
            )?,
            shadow_mode: IntGaugeVec::new(Opts::new(SHADOW_MODE, SHADOW_MODE_HELP), &labels(&[]))?,
            concurrent: IntGaugeVec::new(Opts::new(CONCURRENT, CONCURRENT_HELP), &labels(&[]))?,
            refusal_share: GaugeVec::new(Opts::new(REFUSAL_SHARE, REFUSAL_SHARE_HELP), &labels(&[]))?,
            health_checks: IntCounterVec::new(
                Opts::new(HEALTH_CHECKS, HEALTH_CHECKS_HELP),
                &labels(&["result"]),
            )?,
            ramp_share: GaugeVec::new(Opts::new(RAMP_SHARE, RAMP_SHARE_HELP), &labels(&[]))?,
        })
    }

    /// The series of `breaker`, whose label values are `ids` (name, then key).
    fn add(&self, ids: &[&str], breaker: &CircuitBreaker, counts: &TransitionCounts) {
        let with =
            |more: &[&str]| -> Vec<String> { ids.iter().chain(more).map(|s| (*s).to_owned()).collect() };
        let labels = |more: &[&str]| with(more);
        let s = breaker.stats();
        let id = labels(&[]);
        let id: Vec<&str> = id.iter().map(String::as_str).collect();
        self.state.with_label_values(&id).set(i64::from(s.state.code()));
        for (outcome, n) in s.outcomes() {
            let l = labels(&[outcome]);
            let l: Vec<&str> = l.iter().map(String::as_str).collect();
            self.calls.with_label_values(&l).inc_by(n);
        }
        for reason in FallbackReason::ALL {
            let l = labels(&[reason.as_str()]);
            let l: Vec<&str> = l.iter().map(String::as_str).collect();
            self.fallbacks
                .with_label_values(&l)
                .inc_by(s.fallbacks_on(reason));
        }
        for (result, n) in s.probe_results() {
            let l = labels(&[result]);
            let l: Vec<&str> = l.iter().map(String::as_str).collect();
            self.probes.with_label_values(&l).inc_by(n);
        }
        self.slow.with_label_values(&id).inc_by(s.slow_calls);
        self.consecutive
            .with_label_values(&id)
            .set(i64::try_from(s.consecutive_failures).unwrap_or(i64::MAX));
        if let Some(r) = s.failure_rate {
            self.rate.with_label_values(&id).set(r);
        }
        self.throttled
            .with_label_values(&id)
            .set(i64::from(breaker.throttling()));
        if breaker.has_used_modes() {
            let shadow = breaker.config().mode() == crate::Mode::Shadow;
            self.shadow_rejections
                .with_label_values(&id)
                .inc_by(s.shadow_rejected);
            self.shadow_mode.with_label_values(&id).set(i64::from(shadow));
            self.concurrent
                .with_label_values(&id)
                .set(i64::try_from(s.concurrent_calls).unwrap_or(i64::MAX));
            if let Some(share) = s.refusal_share {
                self.refusal_share.with_label_values(&id).set(share);
            }
        }
        if breaker.has_health_check() || s.health_checks_passed + s.health_checks_failed > 0 {
            for (result, n) in [
                ("passed", s.health_checks_passed),
                ("failed", s.health_checks_failed),
            ] {
                let l = labels(&[result]);
                let l: Vec<&str> = l.iter().map(String::as_str).collect();
                self.health_checks.with_label_values(&l).inc_by(n);
            }
        }
        if let Some(share) = s.ramp_share() {
            self.ramp_share.with_label_values(&id).set(share);
        }
        for from in State::ALL {
            for to in State::ALL {
                let n = counts.transitions(from, to);
                if n > 0 {
                    let l = labels(&[from.as_str(), to.as_str()]);
                    let l: Vec<&str> = l.iter().map(String::as_str).collect();
                    self.transitions.with_label_values(&l).inc_by(n);
                }
            }
        }
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut families = Vec::new();
        families.extend(self.state.collect());
        families.extend(self.calls.collect());
        families.extend(self.fallbacks.collect());
        families.extend(self.probes.collect());
        families.extend(self.slow.collect());
        families.extend(self.transitions.collect());
        families.extend(self.consecutive.collect());
        families.extend(self.rate.collect());
        families.extend(self.throttled.collect());
        families.extend(self.shadow_rejections.collect());
        families.extend(self.shadow_mode.collect());
        families.extend(self.concurrent.collect());
        families.extend(self.refusal_share.collect());
        families.extend(self.health_checks.collect());
        families.extend(self.ramp_share.collect());
        families
    }
}
