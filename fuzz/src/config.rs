//! Fuzz targets `config_file` and `layers`: the TOML config file and the
//! `CB_<NAME>_<FIELD>` environment layer.

use std::sync::Arc;

use cb_runtime::{CircuitBreaker, Config, ConfigError, Preset, Registry};

/// The breakers that exist when a file loads: one per kind of base.
const BREAKERS: [(&str, Preset); 3] = [
    ("openai", Preset::Llm),
    ("x", Preset::HttpApi),
    ("db", Preset::Database),
];

fn create(registry: &Registry, name: &str, preset: Preset) -> Arc<CircuitBreaker> {
    registry.get_or_insert_preset(name, preset)
}

/// The configurations of [`BREAKERS`] in `registry`, creating them if need be.
fn configs(registry: &Registry) -> Vec<Config> {
    BREAKERS
        .iter()
        .map(|(name, preset)| create(registry, name, *preset).config())
        .collect()
}

/// A refusal says where, which field, what was given and what is allowed.
/// (A combination refused for an existing breaker starts with the breaker:
/// "breaker `db` with overrides from fuzz.toml, line 2, ...".)
fn assert_explained(error: &ConfigError, origin: &str) {
    let message = error.to_string();
    assert!(message.contains(origin), "no origin: {message}");
    assert!(
        !error.field().is_empty() && !error.expected().is_empty(),
        "{message}"
    );
    assert!(message.contains(", expected "), "{message}");
}

/// Checks, for any text loaded as a config file:
///
/// - loading never panics, and a refusal names the file and the field;
/// - a refused file changes no breaker ("on an error nothing changes");
/// - the order does not matter: breakers that existed when the file loaded
///   end with the same configuration as breakers created after it;
/// - a file refused with no breakers yet is refused with breakers too.
pub fn config_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let existing = Registry::with_env(Vec::new);
    let before = configs(&existing);
    let loaded = existing.load_str(text, "fuzz.toml");

    let empty = Registry::with_env(Vec::new);
    let parsed = empty.load_str(text, "fuzz.toml");
    if let Err(e) = &parsed {
        assert_explained(e, "fuzz.toml");
        assert!(loaded.is_err(), "refused alone ({e}) but accepted with breakers");
    }

    match loaded {
        Err(e) => {
            assert_explained(&e, "fuzz.toml");
            assert_eq!(
                configs(&existing),
                before,
                "the refused file ({e}) changed a breaker"
            );
        }
        Ok(()) => assert_eq!(
            configs(&existing),
            configs(&empty),
            "loading before or after creation differs"
        ),
    }
}

/// `value` as a TOML basic string.
fn toml_string(value: &str) -> String {
    let mut quoted = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// Checks, for lines of `<field>=<value>` (lines naming no field are
/// skipped; the last line for a field wins), that the environment and the
/// file are one language:
///
/// - `CB_FUZZ_<FIELD>=<value>` is refused exactly when `<field> = "<value>"`
///   in `[breakers.fuzz]` is, and both refusals name a field that was set;
/// - when both are accepted, breaker `fuzz` gets the same configuration from
///   either.
pub fn layers(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut settings: Vec<(&str, &str)> = Vec::new();
    for line in text.lines() {
        let Some((field, value)) = line.split_once('=') else {
            continue;
        };
        let Some(field) = cb_syntax::FIELD_NAMES.iter().copied().find(|f| *f == field) else {
            continue;
        };
        settings.retain(|(f, _)| *f != field);
        settings.push((field, value));
    }
    let vars: Vec<(String, String)> = settings
        .iter()
        .map(|(f, v)| (format!("CB_FUZZ_{}", f.to_ascii_uppercase()), (*v).to_owned()))
        .collect();
    let mut file = String::from("[breakers.fuzz]\n");
    for (field, value) in &settings {
        file.push_str(&format!("{field} = {}\n", toml_string(value)));
    }

    let env = Registry::with_env(move || vars.clone());
    let from_env = env.validate_env();
    let files = Registry::with_env(Vec::new);
    let from_file = files.load_str(&file, "fuzz.toml");
    match (&from_env, &from_file) {
        (Ok(()), Ok(())) => assert_eq!(
            create(&env, "fuzz", Preset::HttpApi).config(),
            create(&files, "fuzz", Preset::HttpApi).config(),
            "the environment and the file disagree on {settings:?}"
        ),
        (Err(a), Err(b)) => {
            assert_explained(a, "environment variable CB_FUZZ_");
            assert_explained(b, "fuzz.toml");
            for e in [a, b] {
                assert!(
                    settings.iter().any(|(f, _)| *f == e.field()),
                    "{e} names no field set"
                );
            }
        }
        _ => panic!("{settings:?}: the environment says {from_env:?}, the file says {from_file:?}"),
    }
}
