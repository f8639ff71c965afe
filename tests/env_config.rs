//! `CB_<NAME>_<FIELD>` environment variables: precedence over the file and the
//! attribute, and what a bad value does.
//!
//! The environment is process-global, so only `process_environment_and_the_attribute`
//! touches it (setting every variable before the first breaker is created);
//! the other tests give their registry its own environment with
//! `Registry::with_env`.

use std::time::Duration;

mod support;

use support::logs_of;

use cb_runtime::{circuit_breaker, registry, BreakerError, Config, Preset, Registry};

#[derive(Debug)]
struct Refused(#[allow(dead_code)] BreakerError);

impl From<BreakerError> for Refused {
    fn from(e: BreakerError) -> Self {
        Refused(e)
    }
}

#[circuit_breaker(
    name = "hidden-env",
    preset = "http_api",
    open_duration = "10s",
    failure_threshold = 3
)]
async fn hidden() -> Result<u32, Refused> {
    Ok(1)
}

#[circuit_breaker(name = "bad-env", preset = "database", failure_threshold = 4)]
async fn bad() -> Result<u32, Refused> {
    Ok(2)
}

#[test]
fn process_environment_and_the_attribute() {
    let file = std::env::temp_dir().join(format!("cb-env-test-{}.toml", std::process::id()));
    std::fs::write(
        &file,
        "[breakers.hidden-env]\nopen_duration = \"5s\"\nsuccess_threshold = 4\n\n[presets.http_api]\nhalf_open_max_calls = 7\n",
    )
    .unwrap();
    // Set before any breaker exists: the registry reads them at creation.
    std::env::set_var("CB_CONFIG", &file);
    std::env::set_var("CB_HIDDEN_ENV_OPEN_DURATION", "250ms");
    std::env::set_var("CB_HIDDEN_ENV_FAILURE_THRESHOLD", "2");
    std::env::set_var("CB_BAD_ENV_FAILURE_THRESHOLD", "lots");

    // The startup check refuses the bad variable, naming it.
    let err = registry().validate_env().unwrap_err();
    assert_eq!(
        err.to_string(),
        "environment variable CB_BAD_ENV_FAILURE_THRESHOLD: invalid `failure_threshold`: got \"lots\", \
         expected a whole number of at least 1"
    );

    // Environment > file > attribute > preset.
    assert_eq!(tokio_test::block_on(hidden()).unwrap(), 1);
    let c = registry().get("hidden-env").unwrap().config();
    assert_eq!(
        c.open_duration(),
        Duration::from_millis(250),
        "env beats the file and the attribute"
    );
    assert_eq!(c.failure_threshold(), 2, "env beats the attribute");
    assert_eq!(c.success_threshold(), 4, "the file beats the preset");
    assert_eq!(
        c.call_timeout(),
        Preset::HttpApi.config().call_timeout(),
        "the preset"
    );

    // A bad value: the first call logs an error naming the variable, and the
    // breaker runs on its compiled-in configuration.
    let (result, logs) = logs_of(|| tokio_test::block_on(bad()));
    assert_eq!(result.unwrap(), 2);
    assert!(logs.contains("ERROR"), "{logs}");
    assert!(logs.contains("CB_BAD_ENV_FAILURE_THRESHOLD"), "{logs}");
    assert!(logs.contains("compiled-in configuration"), "{logs}");
    let c = registry().get("bad-env").unwrap().config();
    assert_eq!(c.failure_threshold(), 4);
    assert_eq!(
        c.success_threshold(),
        Preset::Database.config().success_threshold()
    );

    // reconfigure applies the layers again: the env override keeps winning.
    let new = Preset::HttpApi
        .builder()
        .open_duration(Duration::from_secs(60))
        .success_threshold(1)
        .build()
        .unwrap();
    registry().reconfigure("hidden-env", new).unwrap();
    let c = registry().get("hidden-env").unwrap().config();
    assert_eq!(c.open_duration(), Duration::from_millis(250));
    assert_eq!(c.success_threshold(), 4, "the file's field still applies");
    assert_eq!(c.failure_threshold(), 2);
    std::fs::remove_file(&file).unwrap();
}

fn env(list: &[(&str, &str)]) -> impl Fn() -> Vec<(String, String)> + Send + Sync + 'static {
    let vars: Vec<(String, String)> = list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move || vars.clone()
}

#[test]
fn names_are_upper_cased_with_punctuation_as_underscores() {
    assert_eq!(cb_runtime::env_name("search.v2-api"), "SEARCH_V2_API");
    let registry = Registry::with_env(env(&[
        ("CB_SEARCH_V2_API_SLIDING_WINDOW", "30s"),
        ("CB_SEARCH_V2_API_MINIMUM_CALLS", "3"),
        ("CB_SEARCH_V2_API_CALL_TIMEOUT", "none"),
        ("CB_SEARCH_V2_API_FAILURE_RATE_THRESHOLD", "0.25"),
    ]));
    let c = registry
        .get_or_insert("search.v2-api", || Preset::HttpApi.config())
        .config();
    assert_eq!(
        c.sliding_window(),
        cb_runtime::Window::Time(Duration::from_secs(30))
    );
    assert_eq!(c.minimum_calls(), 3);
    assert_eq!(c.call_timeout(), None);
    assert_eq!(c.failure_rate_threshold(), 0.25);
}

#[test]
fn an_env_preset_replaces_the_compiled_one() {
    let registry = Registry::with_env(env(&[("CB_MAILER_PRESET", "notification")]));
    let c = registry.get_or_insert("mailer", || Preset::Llm.config()).config();
    assert_eq!(c, Preset::Notification.config());
}

#[test]
fn a_value_refused_by_build_is_logged_with_its_variable() {
    let registry = Registry::with_env(env(&[("CB_TINY_HALF_OPEN_MAX_CALLS", "0")]));
    let (b, logs) = logs_of(|| registry.get_or_insert("tiny", || Preset::Cache.config()));
    assert_eq!(b.config(), Preset::Cache.config());
    assert!(logs.contains("CB_TINY_HALF_OPEN_MAX_CALLS"), "{logs}");
    assert!(logs.contains("1..=10000"), "{logs}");
    let err = registry.validate_env().unwrap_err();
    assert!(
        err.to_string()
            .starts_with("environment variable CB_TINY_HALF_OPEN_MAX_CALLS:"),
        "{err}"
    );
    let err = registry.reconfigure("tiny", Config::default()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("environment variable CB_TINY_HALF_OPEN_MAX_CALLS:"),
        "{err}"
    );
}

#[test]
fn a_combination_refused_by_build_names_the_variable() {
    // The value is fine alone; with the preset's 10 s open duration it is not (a
    // backoff capped under it). A preset's `minimum_calls` gives way to a
    // smaller window instead, so it no longer serves here.
    let registry = Registry::with_env(env(&[("CB_WIDE_OPEN_BACKOFF", "2 5s")]));
    assert!(registry.validate_env().is_ok());
    let (b, logs) = logs_of(|| registry.get_or_insert("wide", || Preset::Database.config()));
    assert_eq!(b.config(), Preset::Database.config());
    assert!(logs.contains("CB_WIDE_OPEN_BACKOFF"), "{logs}");
}

#[test]
fn validate_env_refuses_unknown_fields() {
    let registry = Registry::with_env(env(&[("CB_OPENAI_FAILURE_TRESHOLD", "3")]));
    let err = registry.validate_env().unwrap_err().to_string();
    assert!(
        err.starts_with("environment variable CB_OPENAI_FAILURE_TRESHOLD:"),
        "{err}"
    );
    assert!(err.contains("FAILURE_THRESHOLD"), "{err}");
}

/// The environment takes every duration the attribute takes: sums, `us` and
/// `ns`, and decimals counted exactly (the runtime once parsed them through
/// `f64` and refused `"1m30s"`; found while writing the `duration` fuzz target).
#[test]
fn env_durations_are_spelled_as_in_the_attribute() {
    let registry = Registry::with_env(env(&[
        ("CB_SPELLED_OPEN_DURATION", "1m30s"),
        ("CB_SPELLED_CALL_TIMEOUT", "0.3s"),
        ("CB_SPELLED_SLOW_CALL_DURATION", "25000us"),
    ]));
    registry.validate_env().unwrap();
    let config = registry.get_or_insert("spelled", Config::default).config();
    assert_eq!(config.open_duration(), Duration::from_secs(90));
    assert_eq!(config.call_timeout(), Some(Duration::from_millis(300)));
    assert_eq!(config.slow_call_duration(), Some(Duration::from_micros(25000)));
}
