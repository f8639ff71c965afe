//! Hostile input never panics: random text into the duration parser, the
//! TOML config loader and environment values (proptest, on stable). The
//! coverage-guided fuzz targets, with stronger checks, are in `fuzz/`.
//!
//! Each property also checks that a refusal says what was wrong.

use cb_runtime::{parse_duration, Config, Preset, Registry};
use proptest::prelude::*;

/// Text that looks like config: keys, numbers, units, quotes and brackets.
fn configish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("failure_threshold".to_owned()),
        Just("open_duration".to_owned()),
        Just("sliding_window".to_owned()),
        Just("preset".to_owned()),
        Just("[breakers.x]".to_owned()),
        Just("[presets.llm]".to_owned()),
        Just("[defaults]".to_owned()),
        Just(" = ".to_owned()),
        Just("\n".to_owned()),
        Just("\"".to_owned()),
        Just("30s".to_owned()),
        Just("-1".to_owned()),
        Just("1e309".to_owned()),
        "[a-z_]{1,12}",
        "[0-9]{1,25}",
        any::<String>(),
    ];
    proptest::collection::vec(token, 0..24).prop_map(|t| t.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The duration parser takes any string: an answer or an error, never a panic.
    #[test]
    fn durations_never_panic(text in any::<String>(), n in any::<u64>(), unit in "(ns|us|ms|s|m|h|d|x|)") {
        let _ = parse_duration(&text);
        let joined = format!("{n}{unit}");
        if let Err(e) = parse_duration(&joined) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    /// The TOML loader refuses garbage with an error naming the source, and
    /// never panics.
    #[test]
    fn config_files_never_panic(text in configish()) {
        let registry = Registry::with_env(Vec::new);
        if let Err(e) = registry.load_str(&text, "fuzz.toml") {
            prop_assert!(e.to_string().contains("fuzz.toml"), "{e}");
        }
        // Whatever was accepted builds breakers that work.
        let b = registry.get_or_insert("fuzzed", || Preset::HttpApi.config());
        let _ = b.try_acquire().map(|p| p.record(true));
    }

    /// Any environment value for any field either applies or is reported
    /// naming the variable; creating the breaker never panics.
    #[test]
    fn env_values_never_panic(field in "(FAILURE_THRESHOLD|OPEN_DURATION|SLIDING_WINDOW|FAILURE_RATE_THRESHOLD|PRESET|HALF_OPEN_MAX_CALLS|NOT_A_FIELD)", value in any::<String>()) {
        let var = format!("CB_FUZZED_{field}");
        let (v, val) = (var.clone(), value.clone());
        let registry = Registry::with_env(move || vec![(v.clone(), val.clone())]);
        if let Err(e) = registry.validate_env() {
            prop_assert!(e.to_string().contains(&var), "{e}");
        }
        let b = registry.get_or_insert("fuzzed", Config::default);
        let _ = b.try_acquire().map(|p| p.record(false));
    }
}
