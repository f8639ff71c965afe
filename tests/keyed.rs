//! Keyed breakers: `key = <expr>` in the attribute, families in the
//! registry, bounded keys with LRU eviction and unguarded calls, the
//! family open, configuration per key, metrics, events and concurrency.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cb_runtime::clock::ManualClock;
use cb_runtime::{circuit_breaker, registry, BreakerError, Config, Reason, Registry, State};
use futures::StreamExt as _;

mod support;

use support::keyed::{config, fail, ready};

#[derive(Debug, PartialEq)]
enum LlmError {
    Down,
    Breaker,
}

impl From<BreakerError> for LlmError {
    fn from(_: BreakerError) -> Self {
        LlmError::Breaker
    }
}

// ---- the attribute ----------------------------------------------------------

#[circuit_breaker(name = "keyed-free", failure_threshold = 2, key = model)]
async fn complete(model: &str, up: bool) -> Result<String, LlmError> {
    if up {
        Ok(format!("{model}: ok"))
    } else {
        Err(LlmError::Down)
    }
}

#[circuit_breaker(name = "keyed-twice", preset = "llm", key = model)]
async fn first_site(model: &str) -> Result<(), LlmError> {
    let _ = model;
    Ok(())
}

#[circuit_breaker(name = "keyed-twice", preset = "llm", key = model)]
async fn same_site_config(model: &str) -> Result<(), LlmError> {
    let _ = model;
    Ok(())
}

#[circuit_breaker(name = "keyed-twice", preset = "cache", key = model)]
async fn other_site_config(model: &str) -> Result<(), LlmError> {
    let _ = model;
    Ok(())
}

#[test]
fn a_second_call_site_with_another_configuration_is_warned_about_once() {
    let lines = warnings_during(|| {
        for _ in 0..3 {
            assert_eq!(ready(first_site("a")), Ok(()));
            assert_eq!(ready(same_site_config("b")), Ok(()));
            assert_eq!(ready(other_site_config("c")), Ok(()));
        }
    });
    let differ: Vec<_> = lines.iter().filter(|l| l.contains("keyed-twice")).collect();
    assert_eq!(
        differ.len(),
        1,
        "one warning, for the call site that differs: {lines:#?}"
    );
    for part in [
        "other_site_config",
        "first_site",
        "second_preset=\"cache\"",
        "first_preset=\"llm\"",
    ] {
        assert!(differ[0].contains(part), "{part} in {}", differ[0]);
    }
    // Every key runs on the first call site's configuration.
    let family = registry().family("keyed-twice").unwrap();
    assert_eq!(
        family.get("c").unwrap().config(),
        family.get("a").unwrap().config()
    );
}

#[tokio::test]
async fn one_keys_outage_leaves_the_other_keys_served() {
    for _ in 0..2 {
        assert_eq!(complete("gpt-4o", false).await, Err(LlmError::Down));
    }
    assert_eq!(
        complete("gpt-4o", true).await,
        Err(LlmError::Breaker),
        "gpt-4o is open"
    );
    assert_eq!(complete("gpt-4o-mini", true).await.unwrap(), "gpt-4o-mini: ok");
    let family = registry().family("keyed-free").unwrap();
    assert_eq!(family.name(), "keyed-free");
    assert_eq!(family.keys(), ["gpt-4o", "gpt-4o-mini"]);
    assert_eq!(family.len(), 2);
    let open = family.get("gpt-4o").unwrap();
    assert_eq!(
        (open.name(), open.key(), open.state()),
        ("keyed-free", Some("gpt-4o"), State::Open)
    );
    assert_eq!(family.get("gpt-4o-mini").unwrap().state(), State::Closed);
    assert!(family.get("claude").is_none(), "get does not create");
    assert!(
        registry().get("keyed-free").is_none(),
        "a family is not an unkeyed breaker"
    );
    assert!(registry().families().contains(&"keyed-free".to_owned()));
}

struct Gateway {
    tenant: String,
}

impl Gateway {
    #[circuit_breaker(name = "keyed-method", failure_threshold = 1, key = self.tenant)]
    async fn call(&self, up: bool) -> Result<u32, LlmError> {
        if up {
            Ok(1)
        } else {
            Err(LlmError::Down)
        }
    }

    /// The key computed from an argument and `self`, with a fallback.
    #[circuit_breaker(name = "keyed-computed", failure_threshold = 1, key = format!("{}/{model}", self.tenant), fallback = cached)]
    async fn routed(&self, model: String, up: bool) -> Result<String, LlmError> {
        if up {
            Ok(model)
        } else {
            Err(LlmError::Down)
        }
    }

    async fn cached(&self, model: String, _up: bool) -> Result<String, LlmError> {
        Ok(format!("cached {model}"))
    }
}

#[tokio::test]
async fn methods_take_their_key_from_self_and_the_arguments() {
    let acme = Gateway {
        tenant: "acme".into(),
    };
    let globex = Gateway {
        tenant: "globex".into(),
    };
    assert_eq!(acme.call(false).await, Err(LlmError::Down));
    assert_eq!(acme.call(true).await, Err(LlmError::Breaker));
    assert_eq!(globex.call(true).await, Ok(1));
    assert_eq!(
        registry().family("keyed-method").unwrap().keys(),
        ["acme", "globex"]
    );

    assert_eq!(acme.routed("gpt-4o".into(), false).await, Err(LlmError::Down));
    assert_eq!(acme.routed("gpt-4o".into(), true).await.unwrap(), "cached gpt-4o");
    assert_eq!(acme.routed("o3".into(), true).await.unwrap(), "o3");
    assert_eq!(
        registry().family("keyed-computed").unwrap().keys(),
        ["acme/gpt-4o", "acme/o3"]
    );
}

#[circuit_breaker(name = "keyed-stream", failure_threshold = 1, key = model)]
async fn tokens(
    model: &'static str,
    fail: bool,
) -> Result<impl futures::Stream<Item = Result<&'static str, LlmError>>, LlmError> {
    let items = if fail {
        vec![Err(LlmError::Down)]
    } else {
        vec![Ok(model)]
    };
    Ok(futures::stream::iter(items))
}

#[tokio::test]
async fn streamed_functions_are_keyed_too() {
    let items: Vec<_> = tokens("a", true).await.unwrap().collect().await;
    assert_eq!(items, [Err(LlmError::Down)]);
    assert!(matches!(tokens("a", false).await, Err(LlmError::Breaker)));
    let items: Vec<_> = tokens("b", false).await.unwrap().collect().await;
    assert_eq!(items, [Ok("b")]);
    let family = registry().family("keyed-stream").unwrap();
    assert_eq!(family.get("a").unwrap().state(), State::Open);
    assert_eq!(family.get("b").unwrap().state(), State::Closed);
}

// ---- the family API ---------------------------------------------------------

#[test]
fn families_are_created_once_and_listed() {
    let registry = Registry::with_env(Vec::new);
    let first = registry.family_or_insert("b-family", Config::default);
    let second = registry.family_or_insert("b-family", || panic!("the first configuration wins"));
    assert!(Arc::ptr_eq(&first, &second));
    registry.family_or_insert("a-family", Config::default);
    assert_eq!(registry.families(), ["a-family", "b-family"]);
    assert!(registry.family("c-family").is_none());
    assert!(first.is_empty());
    let a = first.get_or_insert("x");
    assert!(Arc::ptr_eq(&a, &first.get_or_insert("x")));
    assert_eq!(a.key(), Some("x"));
    assert_eq!(registry.get_or_insert("plain", Config::default).key(), None);
    assert_eq!(first.state(), State::Closed);
}

#[test]
fn a_new_key_beyond_max_keys_evicts_the_least_recently_used_closed_key() {
    let clock = ManualClock::new();
    let registry = Registry::with_env(Vec::new);
    let family =
        registry.family_or_insert("lru", || config(&clock).to_builder().max_keys(3).build().unwrap());
    let a = family.get_or_insert("a");
    family.get_or_insert("b");
    family.get_or_insert("c");
    // Used in the order b, a: c is now the least recently used.
    family.get_or_insert("b");
    family.get_or_insert("a");
    family.get_or_insert("d");
    assert_eq!(family.keys(), ["a", "b", "d"]);
    assert_eq!(family.len(), 3);
    // An open key is never evicted: b is the least recently used, but open.
    fail(family.get_or_insert("b"), 2);
    family.get_or_insert("a");
    family.get_or_insert("d");
    family.get_or_insert("e");
    assert_eq!(
        family.keys(),
        ["b", "d", "e"],
        "a was the least recently used closed key"
    );
    // A holder of an evicted key's breaker keeps using it.
    assert_eq!(ready(a.call(async { Ok::<_, ()>(1) })), Ok(1));
}

#[test]
fn a_lowered_max_keys_evicts_at_once_least_recently_used_closed_keys_first() {
    let clock = ManualClock::new();
    let registry = Registry::with_env(Vec::new);
    let family = registry.family_or_insert("shrink", || {
        config(&clock).to_builder().max_keys(5).build().unwrap()
    });
    for key in ["a", "b", "c", "d", "e"] {
        family.get_or_insert(key);
    }
    // a is the least recently used key, but open: it stays.
    fail(family.get_or_insert("a"), 2);
    family.get_or_insert("d");
    family.get_or_insert("b");
    family
        .reconfigure(config(&clock).to_builder().max_keys(2).build().unwrap())
        .unwrap();
    assert_eq!(
        family.keys(),
        ["a", "b"],
        "c, e and d left, in that order, with no new key"
    );
    assert_eq!(family.len(), 2);
    // With only open keys left, lowering further evicts none of them.
    fail(family.get_or_insert("b"), 2);
    family
        .reconfigure(config(&clock).to_builder().max_keys(1).build().unwrap())
        .unwrap();
    assert_eq!(family.keys(), ["a", "b"]);
}

#[test]
fn when_no_key_can_be_evicted_new_keys_are_served_unguarded() {
    let clock = ManualClock::new();
    let registry = Registry::with_env(Vec::new);
    let family = registry.family_or_insert("full", || {
        config(&clock).to_builder().max_keys(2).build().unwrap()
    });
    fail(family.get_or_insert("a"), 2);
    family.get_or_insert("b").force_open();
    // Each call of a new key gets a breaker of its own, outside the family:
    // one key's failures never refuse another's calls.
    let c = family.get_or_insert("c");
    assert_eq!((c.name(), c.key()), ("full", Some("c")));
    fail(&c, 5);
    let d = family.get_or_insert("d");
    assert!(!Arc::ptr_eq(&c, &d));
    assert_eq!(d.state(), State::Closed);
    assert_eq!(family.get_or_insert("c").state(), State::Closed);
    assert!(family.get("c").is_none());
    assert_eq!(family.keys(), ["a", "b"]);
    assert_eq!(family.len(), 2);
    assert_eq!(family.unguarded_calls().full, 3);
    // Once a key closes again, a new key takes its place.
    family.get("b").unwrap().reset();
    let c = family.get_or_insert("c");
    assert_eq!(c.key(), Some("c"));
    assert_eq!(family.keys(), ["a", "c"]);
    assert_eq!(family.evictions(), 1);
}

/// Counts the WARN lines written by `f`.
fn warnings_during(f: impl FnOnce()) -> Vec<String> {
    logs_during(f)
        .into_iter()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect()
}

/// Every line logged on this thread during `f`, DEBUG and up.
fn logs_during(f: impl FnOnce()) -> Vec<String> {
    let ((), text) = support::logs_of(f);
    text.lines().map(str::to_owned).collect()
}

#[test]
fn keys_that_break_the_name_rule_are_served_unguarded_with_one_warning() {
    let registry = Registry::with_env(Vec::new);
    let family = registry.family_or_insert("bad-keys", Config::default);
    let long = "k".repeat(300);
    let warnings = warnings_during(|| {
        for key in ["", "   ", "a\nb", &long, "tab\there"] {
            let breaker = family.get_or_insert(key);
            let shown = breaker.key().unwrap();
            assert!(
                cb_syntax::check_name(shown).is_ok(),
                "{key:?} is shown repaired: {shown:?}"
            );
            assert!(!Arc::ptr_eq(&breaker, &family.get_or_insert(key)), "{key:?}");
        }
    });
    let about_keys: Vec<_> = warnings.iter().filter(|l| l.contains("name rule")).collect();
    assert_eq!(about_keys.len(), 1, "{warnings:#?}");
    assert!(about_keys[0].contains("bad-keys"), "{}", about_keys[0]);
    assert!(family.is_empty());
    assert_eq!(family.keys(), Vec::<String>::new());
    assert_eq!(family.unguarded_calls().bad_key, 10);
}

// ---- the provider above the models ------------------------------------------

#[test]
fn family_open_keys_open_keys_open_the_whole_family() {
    let clock = ManualClock::new();
    let registry = Registry::with_env(Vec::new);
    let mut events = registry.subscribe();
    let family = registry.family_or_insert("provider", || {
        config(&clock).to_builder().family_open_keys(2).build().unwrap()
    });
    let mini = family.get_or_insert("gpt-4o-mini");
    fail(family.get_or_insert("gpt-4o"), 2);
    assert_eq!(family.state(), State::Closed, "one open key is not the provider");
    assert_eq!(mini.state(), State::Closed);
    fail(family.get_or_insert("o3"), 2);
    assert_eq!(family.state(), State::Open, "two open keys open the family");
    assert_eq!(family.open_remaining(), Some(Duration::from_secs(30)));
    assert_eq!(mini.state(), State::Open, "every key refuses");
    assert!(ready(mini.call(async { Ok::<_, ()>(()) }))
        .unwrap_err()
        .is_rejected());
    let new = family.get_or_insert("o4");
    assert_eq!(new.state(), State::Open, "new keys too");
    let mut reasons = Vec::new();
    while let Some(e) = events.try_recv() {
        if e.to == State::Open {
            reasons.push((e.key.as_deref().map(str::to_owned), e.transition.reason));
        }
    }
    assert!(
        reasons.contains(&(Some("gpt-4o-mini".into()), Reason::FamilyOpen)),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&(Some("o4".into()), Reason::FamilyOpen)),
        "{reasons:?}"
    );
    clock.advance(Duration::from_secs(30));
    assert_eq!(family.state(), State::Closed);
    assert_eq!(mini.state(), State::HalfOpen, "then every key probes on its own");
    assert_eq!(ready(mini.call(async { Ok::<_, ()>(1) })), Ok(1));
    assert_eq!(mini.state(), State::Closed);
}

#[test]
fn a_whole_family_is_reset_forced_open_and_disabled() {
    let registry = Registry::with_env(Vec::new);
    let family = registry.family_or_insert("manual", Config::default);
    let a = family.get_or_insert("a");
    family.force_open();
    assert_eq!(
        (family.state(), a.state()),
        (State::ForcedOpen, State::ForcedOpen)
    );
    assert_eq!(
        family.get_or_insert("b").state(),
        State::ForcedOpen,
        "new keys too"
    );
    assert_eq!(family.open_keys(), 2);
    family.disable();
    assert_eq!((family.state(), a.state()), (State::Disabled, State::Disabled));
    assert_eq!(family.get_or_insert("c").state(), State::Disabled);
    family.reset();
    assert_eq!(family.state(), State::Closed);
    assert!(family.breakers().iter().all(|b| b.state() == State::Closed));
    assert_eq!(family.get_or_insert("d").state(), State::Closed);
}

// ---- configuration ----------------------------------------------------------

#[test]
fn the_file_configures_the_family_and_each_key_and_reloads() {
    let registry = Registry::with_env(|| vec![("CB_CONF_FAMILY_OPEN_DURATION".into(), "9s".into())]);
    registry
        .load_str(
            r#"
[breakers.conf-family]
failure_threshold = 4
max_keys = 50

[breakers.conf-family.keys."gpt-4o"]
failure_threshold = 2
"#,
            "cb.toml",
        )
        .unwrap();
    let family = registry.family_or_insert("conf-family", Config::default);
    assert_eq!(family.config().max_keys(), 50);
    let gpt = family.get_or_insert("gpt-4o");
    let mini = family.get_or_insert("gpt-4o-mini");
    assert_eq!(gpt.config().failure_threshold(), 2, "the key's table");
    assert_eq!(mini.config().failure_threshold(), 4, "the family's table");
    for b in [&gpt, &mini] {
        assert_eq!(
            b.config().open_duration(),
            Duration::from_secs(9),
            "the environment"
        );
    }
    registry
        .load_str(
            "[breakers.conf-family]\nfailure_threshold = 6\n\n[breakers.conf-family.keys.\"gpt-4o-mini\"]\nfailure_threshold = 3\n",
            "cb.toml",
        )
        .unwrap();
    assert_eq!(
        gpt.config().failure_threshold(),
        6,
        "reloaded: the key's table is gone"
    );
    assert_eq!(mini.config().failure_threshold(), 3, "reloaded: a new key table");
    assert_eq!(family.config().max_keys(), 100);
}

#[test]
fn a_bad_key_table_is_an_error_naming_the_table() {
    let registry = Registry::with_env(Vec::new);
    let err = registry
        .load_str("[breakers.f.keys.\"gpt-4o\"]\nfailure_treshold = 2\n", "cb.toml")
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("[breakers.f.keys.\"gpt-4o\"]") && text.contains("failure_threshold"),
        "{text}"
    );
    let err = registry
        .load_str("[breakers.f.keys.\"gpt-4o\"]\nmax_keys = 0\n", "cb.toml")
        .unwrap_err();
    assert_eq!(err.field(), "max_keys");
    assert!(err.to_string().contains("1..=100000"), "{err}");
    let err = registry
        .load_str("[breakers.f]\nkeys = 3\n", "cb.toml")
        .unwrap_err();
    assert_eq!(err.field(), "keys", "{err}");
}

#[test]
fn family_reconfigure_keeps_keys_and_their_state() {
    let clock = ManualClock::new();
    let registry = Registry::with_env(Vec::new);
    let family = registry.family_or_insert("reconf", || config(&clock));
    let a = family.get_or_insert("a");
    fail(&a, 2);
    family
        .reconfigure(config(&clock).to_builder().failure_threshold(9).build().unwrap())
        .unwrap();
    assert_eq!(a.config().failure_threshold(), 9);
    assert_eq!(a.state(), State::Open);
    assert_eq!(family.get_or_insert("b").config().failure_threshold(), 9);
}

// ---- metrics ----------------------------------------------------------------

#[test]
fn metrics_carry_a_key_label_and_evicted_keys_leave() {
    let registry: &'static Registry = Box::leak(Box::new(Registry::with_env(Vec::new)));
    registry.record_call_durations();
    let family = registry.family_or_insert("metered", || Config::builder().max_keys(2).build().unwrap());
    registry.get_or_insert("metered-plain", Config::default);
    for key in ["a", "b"] {
        ready(family.get_or_insert(key).call(async { Ok::<_, ()>(()) })).unwrap();
    }
    let text = || {
        cb_runtime::metrics::encode(&prometheus::core::Collector::collect(
            &cb_runtime::metrics::BreakerCollector::new(registry),
        ))
    };
    let before = text();
    for line in [
        r#"circuit_breaker_state{key="a",name="metered"} 0"#,
        r#"circuit_breaker_calls_total{key="b",name="metered",outcome="success"} 1"#,
        r#"circuit_breaker_state{name="metered-plain"} 0"#,
    ] {
        assert!(before.lines().any(|l| l == line), "{line} not in\n{before}");
    }
    assert!(
        before.contains(r#"circuit_breaker_call_duration_seconds_count{key="a",name="metered"} 1"#),
        "{before}"
    );
    assert_eq!(
        before.matches("# TYPE circuit_breaker_state gauge").count(),
        1,
        "one family per metric"
    );
    ready(family.get_or_insert("c").call(async { Ok::<_, ()>(()) })).unwrap();
    let after = text();
    assert!(
        !after.contains(r#"key="a""#),
        "the evicted key's series left:\n{after}"
    );
    assert!(
        after.contains(r#"circuit_breaker_state{key="c",name="metered"} 0"#),
        "{after}"
    );
}

// ---- concurrency ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_on_many_keys_create_each_key_once() {
    let registry: &'static Registry = Box::leak(Box::new(Registry::with_env(Vec::new)));
    let family = registry.family_or_insert("crowd", || Config::builder().max_keys(1000).build().unwrap());
    let mut tasks = Vec::new();
    for t in 0..32u32 {
        let family = Arc::clone(&family);
        tasks.push(tokio::spawn(async move {
            let mut seen = HashMap::new();
            for i in 0..2_000u32 {
                let key = format!("key-{}", (i * 7 + t) % 200);
                let breaker = family.get_or_insert(&key);
                let ok = breaker.call(async { Ok::<_, ()>(()) }).await;
                assert_eq!(ok, Ok(()));
                seen.insert(key, Arc::as_ptr(&breaker) as usize);
                if i % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            seen
        }));
    }
    let mut first: HashMap<String, usize> = HashMap::new();
    for task in tasks {
        for (key, ptr) in task.await.unwrap() {
            let other = *first.entry(key.clone()).or_insert(ptr);
            assert_eq!(other, ptr, "key {key} was created twice");
        }
    }
    assert_eq!(family.len(), 200);
    let calls: u64 = family.breakers().iter().map(|b| b.stats().calls()).sum();
    assert_eq!(calls, 32 * 2_000, "every call counted once");
}

#[test]
fn logs_and_transitions_carry_the_key() {
    let registry = Registry::with_env(Vec::new);
    let family = registry.family_or_insert("logged", || {
        Config::builder().failure_threshold(1).build().unwrap()
    });
    let seen = Arc::new(Mutex::new(Vec::new()));
    let breaker = family.get_or_insert("gpt-4o");
    {
        let seen = Arc::clone(&seen);
        breaker.on_transition(move |t| seen.lock().unwrap().push(t.to_string()));
    }
    let warnings = warnings_during(|| fail(&breaker, 1));
    let opened: Vec<_> = warnings
        .iter()
        .filter(|l| l.contains("circuit breaker opened"))
        .collect();
    assert_eq!(opened.len(), 1, "{warnings:#?}");
    assert!(
        opened[0].contains("breaker=\"logged\"") || opened[0].contains("breaker=logged"),
        "{}",
        opened[0]
    );
    assert!(
        opened[0].contains("key=\"gpt-4o\"") || opened[0].contains("key=gpt-4o"),
        "{}",
        opened[0]
    );
    assert_eq!(
        *seen.lock().unwrap(),
        ["circuit breaker `logged` key `gpt-4o`: closed -> open (consecutive failures)"]
    );
    // The open period's first refusal names the key too.
    let lines = logs_during(|| {
        assert!(breaker.try_acquire().is_err());
        assert!(breaker.try_acquire().is_err());
    });
    let rejected: Vec<_> = lines.iter().filter(|l| l.contains("call rejected")).collect();
    assert_eq!(rejected.len(), 1, "{lines:#?}");
    assert!(
        rejected[0].contains("key=\"gpt-4o\"") || rejected[0].contains("key=gpt-4o"),
        "{}",
        rejected[0]
    );
}
