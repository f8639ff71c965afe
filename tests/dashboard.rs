//! `dashboards/cb.json` (Grafana) and `dashboards/alerts.yml` (Prometheus)
//! name only metrics that cb's collector exports.
//!
//! The exported names come from the real exposition of a registry whose
//! breakers have made calls, opened and closed, with call durations on: not
//! from a hand-kept list.
//!
//! The registry records call durations and times to first item, and a
//! fleet (on a server that is not there: joining does not need one) adds
//! its gauges, so every histogram and gauge the panels and rules use is in
//! the exposition.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;

use cb_runtime::clock::ManualClock;
use cb_runtime::metrics::{self, BreakerCollector};
use cb_runtime::{CallError, Config, Registry, Window};
use serde_json::Value;

const DASHBOARD: &str = include_str!("../dashboards/cb.json");
const ALERTS: &str = include_str!("../dashboards/alerts.yml");

type Res = Result<(), CallError<&'static str>>;

/// The metric names in the exposition of a registry whose breakers have
/// made calls of every outcome, opened, half-opened and closed.
async fn exported() -> BTreeSet<String> {
    let registry: &'static Registry = Box::leak(Box::new(Registry::with_env(Vec::new)));
    registry.record_call_durations();
    registry.record_time_to_first_item();
    let clock = ManualClock::new();
    let b = registry.get_or_insert("payments", || {
        Config::builder()
            .failure_threshold(2)
            .sliding_window(Window::Count(10))
            .minimum_calls(2)
            .open_duration(Duration::from_secs(10))
            .slow_call_duration(Duration::from_millis(100))
            .clock(clock.clock())
            // Closed by its probe below, it ramps up: `circuit_breaker_ramp_share`.
            .ramp_up(Duration::from_secs(30))
            .build()
            .unwrap()
    });
    // A health check: `circuit_breaker_health_checks_total`.
    b.set_health_check(|| async { true });
    let ok: Res = b.call(async { Ok(()) }).await;
    assert!(ok.is_ok());
    for _ in 0..2 {
        let failed: Res = b.call(async { Err("down") }).await;
        assert!(failed.is_err());
    }
    let rejected: Res = b.call(async { Ok(()) }).await;
    assert!(matches!(rejected, Err(CallError::Rejected(_))));
    clock.advance(Duration::from_secs(11));
    let probe: Res = b.call(async { Ok(()) }).await;
    assert!(probe.is_ok());
    // Closed, with a failure rate: its window holds `minimum_calls` calls.
    let search = registry.get_or_insert("search", || {
        Config::builder()
            .sliding_window(Window::Count(10))
            .minimum_calls(2)
            .build()
            .unwrap()
    });
    for _ in 0..3 {
        let ok: Res = search.call(async { Ok(()) }).await;
        assert!(ok.is_ok());
    }
    let failed: Res = search.call(async { Err("timeout") }).await;
    assert!(failed.is_err());

    // A family of keyed breakers, full, for the family series.
    let family = registry.family_or_insert("llm", || {
        Config::builder()
            .failure_threshold(1)
            .max_keys(1)
            .build()
            .unwrap()
    });
    let down: Res = family.get_or_insert("gpt-4o").call(async { Err("down") }).await;
    assert!(down.is_err());
    let unguarded: Res = family.get_or_insert("o3").call(async { Ok(()) }).await;
    assert!(unguarded.is_ok());

    // A streamed call, for the time-to-first-item histogram.
    let stream = search
        .call_stream(async { Ok::<_, &str>(futures::stream::iter([Ok::<u8, &str>(1)])) })
        .await
        .expect("admitted");
    assert_eq!(stream.collect::<Vec<_>>().await.len(), 1);

    // The protection modes' series: a shadow breaker with a bulkhead, and an
    // adaptive one.
    let shadow = registry.get_or_insert("shadowed", || {
        Config::builder()
            .mode(cb_runtime::Mode::Shadow)
            .max_concurrent_calls(1)
            .build()
            .unwrap()
    });
    let held = shadow.try_acquire().unwrap();
    shadow.try_acquire().unwrap().record(true);
    drop(held);
    registry.get_or_insert("adaptive", || {
        Config::builder()
            .trip(cb_runtime::Trip::Adaptive)
            .build()
            .unwrap()
    });

    let prom = prometheus::Registry::new();
    prom.register(Box::new(BreakerCollector::new(registry))).unwrap();
    // The fleet's gauges: a fleet joined to a server that is not listening
    // (nothing is ever sent; joining does not wait for the server).
    let fleet = cb_fleet::Fleet::builder("redis://127.0.0.1:1/")
        .namespace("dashboard")
        .join(registry)
        .await
        .expect("an unreachable server is not an error");
    fleet.register_metrics(&prom).unwrap();
    let text = metrics::encode(&prom.gather());
    let names: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect();
    // The exposition must be a real one, or this test proves nothing.
    for sure in [
        "circuit_breaker_state",
        "circuit_breaker_calls_total",
        "circuit_breaker_state_transitions_total",
        "circuit_breaker_call_duration_seconds_bucket",
        "circuit_breaker_failure_rate",
        "circuit_breaker_time_to_first_item_seconds_bucket",
        "circuit_breaker_fleet_connected",
        "circuit_breaker_shadow_rejections_total",
        "circuit_breaker_refusal_share",
    ] {
        assert!(
            names.contains(sure),
            "`{sure}` missing from the exposition:\n{text}"
        );
    }
    names
}

/// Every `circuit_breaker_*` identifier in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("circuit_breaker_") {
        // Not the tail of a longer identifier.
        let before = rest[..at].chars().next_back();
        let tail = &rest[at..];
        let len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            names.push(tail[..len].to_owned());
        }
        rest = &tail[len..];
    }
    names
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// Every PromQL expression of the dashboard: the panels' targets and the
/// template variables' queries.
fn queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(dashboard) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().expect("every target has an `expr`");
            out.push((p["title"].as_str().unwrap_or("?").to_owned(), expr.to_owned()));
        }
    }
    for v in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        let q = match &v["query"] {
            Value::String(s) => s.clone(),
            Value::Object(o) => o
                .get("query")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            _ => String::new(),
        };
        out.push((format!("variable {}", v["name"]), q));
    }
    out
}

#[tokio::test]
async fn every_dashboard_query_names_an_exported_metric() {
    let exported = exported().await;
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("dashboards/cb.json is JSON");
    let mut used = BTreeSet::new();
    for (panel, expr) in queries(&dashboard) {
        if panel.starts_with("variable") && !expr.contains("circuit_breaker_") {
            continue; // the data-source picker
        }
        let names = metric_names(&expr);
        assert!(!names.is_empty(), "{panel}: `{expr}` names no cb metric");
        for name in names {
            assert!(
                exported.contains(&name),
                "{panel}: `{name}` is not exported by cb's collector; it exports {exported:?}"
            );
            used.insert(name);
        }
    }
    // The panels the issue asks for, each on the metric it is about.
    for needed in [
        "circuit_breaker_state",
        "circuit_breaker_calls_total",
        "circuit_breaker_failure_rate",
        "circuit_breaker_state_transitions_total",
        "circuit_breaker_time_to_first_item_seconds_bucket",
        "circuit_breaker_throttled",
        "circuit_breaker_fallbacks_total",
        "circuit_breaker_probes_total",
    ] {
        assert!(used.contains(needed), "no panel queries `{needed}`");
    }
    let throttled = queries(&dashboard)
        .into_iter()
        .any(|(_, e)| e.contains("circuit_breaker_calls_total") && e.contains(r#"outcome="throttled""#));
    assert!(throttled, "no panel shows throttled calls per second");
    let rejections = queries(&dashboard)
        .into_iter()
        .any(|(_, e)| e.contains("circuit_breaker_calls_total") && e.contains(r#"outcome="rejected""#));
    assert!(rejections, "no panel shows rejections per second");
}

#[test]
fn the_dashboard_is_well_formed() {
    let dashboard: Value = serde_json::from_str(DASHBOARD).unwrap();
    assert!(dashboard["uid"]
        .as_str()
        .is_some_and(|u| !u.is_empty() && u.len() <= 40));
    let panels = panels(&dashboard);
    let ids: BTreeSet<u64> = panels
        .iter()
        .map(|p| p["id"].as_u64().expect("a panel id"))
        .collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are not unique");
    for p in &panels {
        let title = p["title"].as_str().unwrap_or_default();
        assert!(!title.is_empty(), "a panel without a title");
        for key in ["x", "y", "w", "h"] {
            assert!(p["gridPos"][key].is_u64(), "{title}: gridPos.{key}");
        }
        if p["type"] != "row" {
            let targets = p["targets"].as_array().map_or(0, Vec::len);
            assert!(targets > 0, "{title}: no query");
            // Every query goes to the data source the viewer picked.
            for t in p["targets"].as_array().unwrap() {
                assert_eq!(
                    t["datasource"]["uid"], "${datasource}",
                    "{title}: a fixed data source"
                );
            }
        }
    }
    // The state timeline says every state in words, each with its own colour.
    let timeline = panels
        .iter()
        .find(|p| p["type"] == "state-timeline")
        .expect("a state-timeline panel");
    let options = &timeline["fieldConfig"]["defaults"]["mappings"][0]["options"];
    let mut colours = BTreeSet::new();
    for (code, word) in ["Closed", "Open", "Half-open", "Forced open", "Disabled"]
        .iter()
        .enumerate()
    {
        let m = &options[code.to_string()];
        assert_eq!(m["text"], *word, "state {code}");
        colours.insert(m["color"].as_str().unwrap().to_owned());
    }
    assert_eq!(colours.len(), 5, "two states share a colour");
}

#[tokio::test]
async fn every_alert_names_an_exported_metric() {
    let exported = exported().await;
    let exprs: Vec<&str> = ALERTS
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .collect();
    assert!(exprs.len() >= 3, "alerts.yml has {} rules", exprs.len());
    let mut used = BTreeSet::new();
    for expr in exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "`{expr}` names no cb metric");
        for name in names {
            assert!(
                exported.contains(&name),
                "alerts.yml: `{name}` is not exported by cb's collector; it exports {exported:?}"
            );
            used.insert(name);
        }
    }
    for needed in [
        "circuit_breaker_state",
        "circuit_breaker_state_transitions_total",
        "circuit_breaker_throttled",
        "circuit_breaker_fleet_connected",
    ] {
        assert!(used.contains(needed), "no alert on `{needed}`");
    }
}

#[test]
fn metric_names_are_found_whole() {
    assert_eq!(
        metric_names(
            r#"sum by (name) (rate(circuit_breaker_calls_total{outcome="x"}[5m])) / circuit_breaker_state"#
        ),
        ["circuit_breaker_calls_total", "circuit_breaker_state"]
    );
    assert!(metric_names("my_circuit_breaker_state").is_empty());
}
