//! Every field of the field table (`cb_syntax::FIELDS`) goes through every
//! layer: the attribute, the config file and the environment accept it, and
//! the admin view (`ConfigView`, the JSON of `GET /circuit-breakers/{name}`)
//! reports it. A table entry that some layer does not know fails here:
//!
//! - the attribute: each field has an annotated function below, named
//!   `fields-<field>`; a new field fails until one is added;
//! - the file and the environment: the field set to a sample of its kind must
//!   change the breaker's configuration, and only that field;
//! - the admin view: the field's member must show the sample.
//!
//! The docs are checked against the table too: the field list of the guide's
//! "Configuring" chapter (`docs/guide/configuring.md`) is the table's, and the
//! attribute's documentation names every field.

// The entry point of the attribute and the tower layer, which name their call site.
use cb_runtime::__private::get_or_insert_at;
use cb_runtime::admin::ConfigView;
use cb_runtime::{circuit_breaker, registry, BreakerError, Preset, Registry};
use cb_syntax::{Field, Kind, FIELDS};
use serde_json::{json, Value};

#[derive(Debug)]
pub struct Error;

impl From<BreakerError> for Error {
    fn from(_: BreakerError) -> Self {
        Error
    }
}

/// The base every layer starts from: the attribute's default preset.
const BASE: Preset = Preset::HttpApi;

/// A value of the field's kind that differs from `BASE`'s, as the config file
/// and the environment write it, and as the admin view reports it.
fn sample(field: &Field) -> (&'static str, Value) {
    match field.kind {
        Kind::Preset => ("cache", json!("cache")),
        Kind::Count { .. } => ("7", json!(7)),
        Kind::Rate => ("0.25", json!(0.25)),
        Kind::Duration | Kind::OptionalDuration | Kind::DurationUpTo { .. } | Kind::DurationOrNone { .. } => {
            ("7s", json!(7000))
        }
        // Above the presets' 200 calls: a window under their `minimum_calls`
        // (50) would also clamp that.
        Kind::Window => ("400", json!({ "calls": 400 })),
        Kind::Backoff => (
            "2 5m 0.1",
            json!({ "multiplier": 2.0, "max_ms": 300_000, "jitter": 0.1 }),
        ),
        // The default is each list's first word.
        Kind::Word(words) => (words[1], json!(words[1])),
        Kind::OptionalCount { .. } => ("7", json!(7)),
        Kind::Multiplier => ("1.5", json!(1.5)),
    }
}

// One function per field, each setting its field to the sample of its kind.

#[circuit_breaker(name = "fields-preset", preset = "cache")]
async fn preset() -> Result<(), Error> {
    Ok(())
}

#[circuit_breaker(name = "fields-failure_threshold", failure_threshold = 7)]
async fn failure_threshold() -> Result<(), Error> {
    Ok(())
}

#[circuit_breaker(name = "fields-failure_rate_threshold", failure_rate_threshold = 0.25)]
async fn failure_rate_threshold() -> Result<(), Error> {
    Ok(())
}

#[circuit_breaker(name = "fields-sliding_window", sliding_window = 400)]
async fn sliding_window() -> Result<(), Error> {
    Ok(())
}

#[circuit_breaker(name = "fields-minimum_calls", minimum_calls = 7)]
async fn minimum_calls() -> Result<(), Error> {
    Ok(())
}

#[circuit_breaker(name = "fields-slow_call_duration", slow_call_duration = "7s")]
async fn slow_call_duration() -> Result<(), Error> {
    Ok(())
}

#[circuit_breaker(name = "fields-slow_call_rate_threshold", slow_call_rate_threshold = 0.25)]
async fn slow_call_rate_threshold() -> Result<(), Error> {
    Ok(())
}

#[circuit_breaker(name = "fields-open_duration", open_duration = "7s")]
async fn open_duration() -> Result<(), Error> {
    Ok(())
}

#[circuit_breaker(name = "fields-half_open_max_calls", half_open_max_calls = 7)]
async fn half_open_max_calls() -> Result<(), Error> {
    Ok(())
}

#[circuit_breaker(name = "fields-success_threshold", success_threshold = 7)]
async fn success_threshold() -> Result<(), Error> {
    Ok(())
}

#[circuit_breaker(name = "fields-call_timeout", call_timeout = "7s")]
async fn call_timeout() -> Result<(), Error> {
    Ok(())
}

#[circuit_breaker(name = "fields-open_backoff", open_backoff = "2 5m 0.1")]
async fn open_backoff() -> Result<(), Error> {
    Ok(())
}

#[circuit_breaker(name = "fields-throttle_duration", throttle_duration = "7s")]
async fn throttle_duration() -> Result<(), Error> {
    Ok(())
}

#[circuit_breaker(name = "fields-max_retry_after", max_retry_after = "7s")]
async fn max_retry_after() -> Result<(), Error> {
    Ok(())
}

// The two fields of keyed breakers are fields of every breaker's configuration.
#[circuit_breaker(name = "fields-max_keys", max_keys = 7)]
async fn max_keys() -> Result<(), Error> {
    Ok(())
}

#[circuit_breaker(name = "fields-family_open_keys", family_open_keys = 7)]
async fn family_open_keys() -> Result<(), Error> {
    Ok(())
}

#[circuit_breaker(name = "fields-streak_failure_rate", streak_failure_rate = 0.25)]
async fn streak_failure_rate() -> Result<(), Error> {
    Ok(())
}

#[circuit_breaker(name = "fields-open_growth", open_growth = 0.25)]
async fn open_growth() -> Result<(), Error> {
    Ok(())
}

// The protection modes.
#[circuit_breaker(name = "fields-mode", mode = "shadow")]
async fn mode() -> Result<(), Error> {
    Ok(())
}

#[circuit_breaker(name = "fields-max_concurrent_calls", max_concurrent_calls = 7)]
async fn max_concurrent_calls() -> Result<(), Error> {
    Ok(())
}

#[circuit_breaker(name = "fields-trip", trip = "adaptive")]
async fn trip() -> Result<(), Error> {
    Ok(())
}

#[circuit_breaker(name = "fields-adaptive_k", adaptive_k = 1.5)]
async fn adaptive_k() -> Result<(), Error> {
    Ok(())
}

// Recovery: health checks and ramp-up.
#[circuit_breaker(name = "fields-health_check_interval", health_check_interval = "7s")]
async fn health_check_interval() -> Result<(), Error> {
    Ok(())
}

#[circuit_breaker(name = "fields-ramp_up", ramp_up = "7s")]
async fn ramp_up() -> Result<(), Error> {
    Ok(())
}

/// Calls every annotated function once, so that their breakers exist.
async fn call_every_annotated_function() {
    preset().await.unwrap();
    failure_threshold().await.unwrap();
    failure_rate_threshold().await.unwrap();
    sliding_window().await.unwrap();
    minimum_calls().await.unwrap();
    slow_call_duration().await.unwrap();
    slow_call_rate_threshold().await.unwrap();
    open_duration().await.unwrap();
    half_open_max_calls().await.unwrap();
    success_threshold().await.unwrap();
    call_timeout().await.unwrap();
    open_backoff().await.unwrap();
    throttle_duration().await.unwrap();
    max_retry_after().await.unwrap();
    max_keys().await.unwrap();
    family_open_keys().await.unwrap();
    streak_failure_rate().await.unwrap();
    open_growth().await.unwrap();
    mode().await.unwrap();
    max_concurrent_calls().await.unwrap();
    trip().await.unwrap();
    adaptive_k().await.unwrap();
    health_check_interval().await.unwrap();
    ramp_up().await.unwrap();
}

/// The view of breaker `b` of `registry`, made from `BASE` as the attribute
/// makes its breakers.
fn view_of(registry: &Registry) -> ConfigView {
    let breaker = get_or_insert_at(registry, "b", "tests/fields.rs", Some(BASE), || BASE.config());
    ConfigView::from(&breaker.config())
}

#[test]
fn every_field_goes_through_every_layer() {
    tokio_test::block_on(call_every_annotated_function());
    let base = ConfigView::from(&BASE.config());
    for field in &FIELDS {
        let name = field.name;
        let key = ConfigView::key(field);
        let (text, reported) = sample(field);
        assert_ne!(
            base.get(&key),
            Some(&reported),
            "the sample of `{name}` is the base's value: pick another"
        );

        let file = Registry::with_env(Vec::new);
        file.load_str(&format!("[breakers.b]\n{name} = \"{text}\"\n"), "fields.toml")
            .unwrap_or_else(|e| panic!("the config file refuses `{name}`: {e}"));
        let from_file = view_of(&file);

        let var = format!("CB_B_{}", name.to_ascii_uppercase());
        let env = {
            let var = var.clone();
            Registry::with_env(move || vec![(var.clone(), text.to_owned())])
        };
        env.validate_env()
            .unwrap_or_else(|e| panic!("the environment refuses {var}: {e}"));
        let from_env = view_of(&env);

        let annotated = registry()
            .get(&format!("fields-{name}"))
            .unwrap_or_else(|| panic!("no annotated function sets `{name}`: add one above"));
        let from_attribute = ConfigView::from(&annotated.config());

        assert_eq!(
            from_file.get(&key),
            Some(&reported),
            "the admin view reports `{key}` of a file setting `{name} = \"{text}\"` wrongly"
        );
        assert_eq!(
            from_env, from_file,
            "`{name}`: the environment and the file differ"
        );
        assert_eq!(
            from_attribute, from_file,
            "`{name}`: the attribute and the file differ"
        );
        if field.kind != Kind::Preset {
            // The value went to its own field, and nowhere else.
            for other in FIELDS.iter().filter(|f| f.name != name) {
                let other = ConfigView::key(other);
                assert_eq!(
                    from_file.get(&other),
                    base.get(&other),
                    "setting `{name}` changed `{other}`"
                );
            }
        }
    }
}

#[test]
fn the_admin_view_has_one_member_per_field() {
    let view = serde_json::to_value(ConfigView::from(&BASE.config())).unwrap();
    let mut keys: Vec<&String> = view.as_object().unwrap().keys().collect();
    keys.sort();
    let expected: Vec<String> = FIELDS.iter().map(ConfigView::key).collect();
    let mut sorted: Vec<&String> = expected.iter().collect();
    sorted.sort();
    assert_eq!(keys, sorted);
    for key in &expected {
        assert!(
            !view[key].is_null() || key == "open_backoff" || key == "max_concurrent_calls",
            "`{key}` of the {} preset is null",
            BASE.name()
        );
    }
}

/// The guide's list of fields (`docs/guide/configuring.md`), as the table renders it.
fn guide_table() -> String {
    let mut table = String::from("| field | takes | meaning |\n|---|---|---|\n");
    for field in &FIELDS {
        table.push_str(&field.doc_row());
        table.push('\n');
    }
    table
}

#[test]
fn the_guide_lists_the_fields_of_the_table() {
    let chapter = include_str!("../docs/guide/configuring.md");
    let table = guide_table();
    assert!(
        chapter.contains(&table),
        "docs/guide/configuring.md's field list differs from cb_syntax::FIELDS; paste this:\n\n{table}"
    );
}

#[test]
fn the_attribute_documents_every_field_and_preset() {
    let docs = include_str!("../cb-macros/src/lib.rs");
    for field in &FIELDS {
        assert!(
            docs.contains(&format!("`{}`", field.name)),
            "the attribute's docs do not name `{}`",
            field.name
        );
    }
    for preset in cb_syntax::PRESETS {
        assert!(
            docs.contains(&format!("`\"{preset}\"`")),
            "the attribute's docs do not name preset `{preset}`"
        );
    }
}

#[circuit_breaker(
    name = "fields-none",
    preset = "llm",
    slow_call_duration = "none",
    call_timeout = "off",
    open_backoff = "none"
)]
async fn nothing_optional() -> Result<(), Error> {
    Ok(())
}

/// `"none"` turns an optional field off in the attribute, as in the file.
#[test]
fn none_turns_optional_fields_off_in_every_layer() {
    tokio_test::block_on(nothing_optional()).unwrap();
    let annotated = registry().get("fields-none").unwrap().config();
    assert_eq!(annotated.slow_call_duration(), None);
    assert_eq!(annotated.call_timeout(), None);
    assert_eq!(annotated.open_backoff(), None);
    assert_eq!(annotated.preset(), Some(Preset::Llm));

    let file = Registry::with_env(Vec::new);
    file.load_str(
        "[breakers.b]\npreset = \"llm\"\nslow_call_duration = \"none\"\ncall_timeout = \"off\"\nopen_backoff = \"none\"\n",
        "fields.toml",
    )
    .unwrap();
    let from_file = get_or_insert_at(&file, "b", "tests/fields.rs", Some(BASE), || BASE.config());
    assert_eq!(from_file.config(), annotated);
}
