//! Feature `otel`: each transition of an installed registry's breaker is a
//! `tracing` event with the instruments' attribute names.
//!
//! Its own test binary, with one test: `tracing` decides whether a callsite
//! is enabled when it is first hit, and a test of another thread hitting it
//! while this one's subscriber is being set up could make it miss events.

use std::io::Write;
use std::sync::{Arc, Mutex};

use cb_runtime::{otel, Config, Registry};

/// A writer the fmt subscriber prints into, for reading the events back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self, target: &str) -> Vec<String> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .filter(|l| l.contains(&format!(" {target}: ")))
            .map(str::to_owned)
            .collect()
    }
}

/// Each transition of an installed registry's breaker is one `tracing` event,
/// target `cb_runtime::otel`, with the instruments' attribute names; a
/// registry without `install` emits none.
#[test]
fn transitions_are_tracing_events_with_the_attribute_names() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let installed: &'static Registry = Box::leak(Box::new(Registry::with_env(Vec::new)));
    // The API's default meter is a no-op one: the events do not need an SDK.
    otel::install(installed, &opentelemetry::global::meter("cb-test"));
    let plain: &'static Registry = Box::leak(Box::new(Registry::with_env(Vec::new)));
    tracing::subscriber::with_default(subscriber, || {
        let b = installed.get_or_insert("otel-events", Config::default);
        b.force_open();
        b.reset();
        let other = plain.get_or_insert("otel-no-install", Config::default);
        other.force_open();
    });
    let lines = captured.lines("cb_runtime::otel");
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines[0].contains(" WARN "), "{}", lines[0]);
    assert!(lines[1].contains(" INFO "), "{}", lines[1]);
    for (line, from, to, reason) in [
        (&lines[0], "closed", "forced_open", "forced open"),
        (&lines[1], "forced_open", "closed", "reset"),
    ] {
        assert!(line.contains("circuitbreaker.transition"), "{line}");
        assert!(line.contains(r#"circuitbreaker.name="otel-events""#), "{line}");
        assert!(
            line.contains(&format!(r#"circuitbreaker.from="{from}""#)),
            "{line}"
        );
        assert!(line.contains(&format!(r#"circuitbreaker.to="{to}""#)), "{line}");
        assert!(
            line.contains(&format!(r#"circuitbreaker.reason="{reason}""#)),
            "{line}"
        );
    }
    // The breaker's own log lines are still there, under their own target.
    assert_eq!(captured.lines("cb_runtime").len(), 3);
}
