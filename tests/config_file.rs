//! The TOML config file: its tables, its precedence over the compiled-in
//! configuration, and its errors (file, line, key and allowed values).

use std::path::PathBuf;
use std::time::Duration;

// The entry point of the attribute and the tower layer, which name their call site.
use cb_runtime::__private::get_or_insert_at;
use cb_runtime::{Config, Preset, Registry, State};

fn temp_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("cb-test-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

const FILE: &str = r#"
[defaults]
open_duration = "45s"
half_open_max_calls = 2

[presets.llm]
call_timeout = "90s"

[breakers.openai]
failure_threshold = 7

[breakers."search-api"]
preset = "cache"
sliding_window = "60s"
minimum_calls = 5
slow_call_duration = "none"
"#;

#[test]
fn file_layers_over_the_compiled_in_config() {
    let registry = Registry::with_env(Vec::new);
    let path = temp_file("layers.toml", FILE);
    registry.load_file(&path).unwrap();

    // The attribute's path: the preset is known, so [presets.llm] applies.
    let compiled = Preset::Llm
        .builder()
        .failure_threshold(3)
        .success_threshold(4)
        .build()
        .unwrap();
    let openai = get_or_insert_at(&registry, "openai", "tests::openai", Some(Preset::Llm), || {
        compiled
    });
    let c = openai.config();
    assert_eq!(c.failure_threshold(), 7, "[breakers.openai] beats the attribute");
    assert_eq!(c.success_threshold(), 4, "the attribute's own field stays");
    assert_eq!(c.open_duration(), Duration::from_secs(45), "[defaults]");
    assert_eq!(c.half_open_max_calls(), 2, "[defaults]");
    assert_eq!(c.call_timeout(), Some(Duration::from_secs(90)), "[presets.llm]");

    // A `preset` key starts from that preset.
    let search = registry.get_or_insert("search-api", || Preset::Llm.config());
    let c = search.config();
    assert_eq!(c.failure_threshold(), Preset::Cache.config().failure_threshold());
    assert_eq!(
        c.sliding_window(),
        cb_runtime::Window::Time(Duration::from_secs(60))
    );
    assert_eq!(c.minimum_calls(), 5);
    assert_eq!(c.slow_call_duration(), None);

    // Not named in the file: only [defaults].
    let other = registry.get_or_insert("other", Config::default);
    assert_eq!(other.config().open_duration(), Duration::from_secs(45));
    assert_eq!(other.config().failure_threshold(), 5);
}

#[test]
fn loading_a_file_retunes_live_breakers_without_losing_state() {
    let registry = Registry::with_env(Vec::new);
    let b = registry.get_or_insert("live", || {
        Config::builder().failure_threshold(10).build().unwrap()
    });
    for _ in 0..3 {
        b.try_acquire().unwrap().record(false);
    }
    registry
        .load_str("[breakers.live]\nfailure_threshold = 4\n", "live.toml")
        .unwrap();
    assert_eq!(b.config().failure_threshold(), 4);
    assert_eq!(b.state(), State::Closed);
    b.try_acquire().unwrap().record(false);
    assert_eq!(b.state(), State::Open, "the three earlier failures still count");
    assert_eq!(b.stats().failures, 4);
}

#[test]
fn cb_config_names_the_file_read_at_the_first_creation() {
    let path = temp_file(
        "cb_config.toml",
        "[breakers.from-env-file]\nsuccess_threshold = 5\n",
    );
    let path_text = path.display().to_string();
    let registry = Registry::with_env(move || vec![("CB_CONFIG".into(), path_text.clone())]);
    let b = registry.get_or_insert("from-env-file", Config::default);
    assert_eq!(b.config().success_threshold(), 5);
    assert!(registry.validate_config().is_ok());
}

fn error_of(text: &str) -> String {
    let registry = Registry::with_env(Vec::new);
    registry.load_str(text, "cb.toml").unwrap_err().to_string()
}

#[test]
fn unknown_key_names_file_line_key_and_suggests() {
    let msg = error_of("[defaults]\nopen_duration = \"5s\"\n\n[breakers.openai]\nfailure_treshold = 3\n");
    assert!(msg.starts_with("cb.toml, line 5, [breakers.openai]: "), "{msg}");
    assert!(msg.contains("unknown key `failure_treshold`"), "{msg}");
    assert!(
        msg.contains("`failure_threshold`, `failure_rate_threshold`"),
        "lists the keys: {msg}"
    );
    assert!(msg.contains("did you mean `failure_threshold`?"), "{msg}");
}

#[test]
fn bad_values_name_the_key_and_the_allowed_values() {
    let msg = error_of("[breakers.x]\nopen_duration = \"30\"\n");
    assert_eq!(
        msg,
        "cb.toml, line 2, [breakers.x]: invalid `open_duration`: got \"30\", expected a duration: \
         a number and a unit, like \"250ms\", \"30s\", \"2m\" or \"1m30s\" (units: ns, us, ms, s, m, h)"
    );
    let msg = error_of("[defaults]\npreset = \"redis\"\n");
    assert!(
        msg.starts_with("cb.toml, line 2, [defaults]: invalid `preset`"),
        "{msg}"
    );
    assert!(
        msg.contains("`llm`, `http_api`, `database`, `cache`, `notification`"),
        "{msg}"
    );
    let msg = error_of("[defaults]\nfailure_threshold = true\n");
    assert!(
        msg.contains("invalid `failure_threshold`: got a boolean"),
        "{msg}"
    );
    let msg = error_of("[defaults]\nfailure_threshold = -1\n");
    assert!(msg.contains("a whole number of at least 1"), "{msg}");
}

#[test]
fn unknown_tables_and_presets_are_errors() {
    let msg = error_of("\n[breaker.openai]\nfailure_threshold = 3\n");
    assert!(msg.starts_with("cb.toml, line 2: invalid `file`"), "{msg}");
    assert!(msg.contains("breaker") && msg.contains("breakers"), "{msg}");
    let msg = error_of("[presets.redis]\nfailure_threshold = 3\n");
    assert!(msg.starts_with("cb.toml, line 1: invalid `preset`"), "{msg}");
    assert!(msg.contains("`cache`"), "{msg}");
    let msg = error_of("[presets.llm]\npreset = \"cache\"\n");
    assert!(msg.contains("invalid `preset`"), "{msg}");
}

#[test]
fn syntax_errors_name_the_line() {
    let msg = error_of("[defaults]\nopen_duration = \n");
    assert!(msg.starts_with("cb.toml, line 2: invalid `file`"), "{msg}");
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let registry = Registry::with_env(Vec::new);
    let err = registry.load_file("/nonexistent/cb.toml").unwrap_err();
    assert!(err.to_string().contains("/nonexistent/cb.toml"), "{err}");
}

#[test]
fn a_file_refused_for_an_existing_breaker_changes_nothing() {
    let registry = Registry::with_env(Vec::new);
    let b = registry.get_or_insert("small-window", || {
        Config::builder()
            .sliding_window(cb_runtime::Window::Count(10))
            .minimum_calls(5)
            .build()
            .unwrap()
    });
    let err = registry
        .load_str(
            "[defaults]\nfailure_threshold = 9\n\n[breakers.small-window]\nminimum_calls = 50\n",
            "cb.toml",
        )
        .unwrap_err();
    assert_eq!(err.field(), "minimum_calls");
    assert!(
        err.to_string()
            .starts_with("cb.toml, line 5, [breakers.small-window]:"),
        "{err}"
    );
    assert_eq!(b.config().failure_threshold(), 5, "nothing applied");
    // And the bad file is not kept for later breakers either.
    let later = registry.get_or_insert("later", Config::default);
    assert_eq!(later.config().failure_threshold(), 5);
}

#[test]
fn a_bad_cb_config_file_is_reported_and_not_loaded() {
    let path = temp_file("bad_cb_config.toml", "[defaults]\nfailure_threshold = 0.5\n");
    let path_text = path.display().to_string();
    let registry = Registry::with_env(move || vec![("CB_CONFIG".into(), path_text.clone())]);
    let err = registry.validate_config().unwrap_err().to_string();
    assert!(
        err.contains("bad_cb_config.toml, line 2, [defaults]: invalid `failure_threshold`"),
        "{err}"
    );
    let b = registry.get_or_insert("unaffected", Config::default);
    assert_eq!(b.config(), Config::default());
}

/// The file takes every duration the attribute takes, exactly (found while
/// writing the `duration` fuzz target: the runtime parsed through `f64` and
/// refused sums).
#[test]
fn file_durations_are_spelled_as_in_the_attribute() {
    let registry = Registry::with_env(Vec::new);
    registry
        .load_str(
            "[breakers.spelled]\nopen_duration = \"1m30s\"\nsliding_window = \"1.5s\"\n\
             open_backoff = \"2 1h30m\"\ncall_timeout = \"1.001s\"\n",
            "cb.toml",
        )
        .unwrap();
    let config = registry.get_or_insert("spelled", Config::default).config();
    assert_eq!(config.open_duration(), Duration::from_secs(90));
    assert_eq!(
        config.sliding_window(),
        cb_runtime::Window::Time(Duration::from_millis(1500))
    );
    assert_eq!(config.call_timeout(), Some(Duration::from_millis(1001)));
    assert_eq!(
        config.open_backoff().map(|b| b.max()),
        Some(Duration::from_secs(5400))
    );
}
