//! Runtime configuration: a TOML file and `CB_<NAME>_<FIELD>` environment
//! variables, layered over the compiled-in configuration.
//!
//! The layers, lowest first: the preset, the attribute's arguments (together,
//! the compiled-in [`Config`]), then the file's `[defaults]`,
//! `[presets.<preset>]` and `[breakers.<name>]` tables, then the environment.
//! A `preset = "..."` key (in the environment, `[breakers.<name>]` or
//! `[defaults]`, the first found) replaces the compiled-in configuration with
//! that preset's; the fields of every layer then apply on top, in order.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Deserialize;
use toml::Spanned;

use crate::config::{Config, ConfigBuilder, ConfigError};
use cb_syntax::{Field, Refusal, Value, FIELDS, FIELD_NAMES};

use crate::preset::Preset;

/// The variable naming the config file to load at the first breaker's creation.
pub(crate) const CB_CONFIG: &str = "CB_CONFIG";

/// One parsed value of one field of the table ([`cb_syntax::FIELDS`]).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Setting {
    field: &'static Field,
    value: Value,
}

impl Setting {
    fn apply(&self, b: ConfigBuilder) -> ConfigBuilder {
        b.set(self.field, self.value)
    }

    /// The preset, for a `preset` setting.
    fn preset(&self) -> Option<Preset> {
        match self.value {
            Value::Preset(name) => Preset::from_name(name),
            _ => None,
        }
    }
}

fn unknown_key(key: &str, origin: String) -> ConfigError {
    let mut expected = format!("one of {}", cb_syntax::list(&FIELD_NAMES));
    if let Some(near) = nearest(key) {
        let _ = write!(expected, " (did you mean `{near}`?)");
    }
    ConfigError::new("key", format!("unknown key `{key}`"), expected).at(origin)
}

/// The known field closest to `key`, if it is close enough to be a typo.
fn nearest(key: &str) -> Option<&'static str> {
    cb_syntax::nearest(&key.to_ascii_lowercase(), &FIELD_NAMES)
}

/// Parses `text` as the value of `field`, in the field's range. (That
/// `minimum_calls` fits the window and a backoff's cap is at least the open
/// duration is judged with the whole configuration.)
fn parse_setting(field: &'static Field, text: &str, origin: &str) -> Result<Setting, ConfigError> {
    let value = field.parse(text).map_err(|refusal| {
        let expected = match refusal {
            Refusal::Malformed(_) => field.expected(),
            Refusal::OutOfRange => field.range(),
        };
        ConfigError::new(field.name, format!("{text:?}"), expected).at(origin)
    })?;
    Ok(Setting { field, value })
}

/// One setting and where it came from.
#[derive(Clone, Debug, PartialEq)]
struct Item {
    setting: Setting,
    origin: String,
}

/// The settings of one layer: a file table or the environment of one breaker.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Section {
    items: Vec<Item>,
}

impl Section {
    fn preset(&self) -> Option<(Preset, &str)> {
        self.items
            .iter()
            .rev()
            .find_map(|i| Some((i.setting.preset()?, i.origin.as_str())))
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// A parsed config file.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct FileConfig {
    defaults: Section,
    presets: BTreeMap<&'static str, Section>,
    breakers: BTreeMap<String, Section>,
    /// `[breakers.<name>.keys."<key>"]`: one key of a family.
    keys: BTreeMap<(String, String), Section>,
}

type RawTable = BTreeMap<Spanned<String>, Spanned<toml::Value>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    defaults: RawTable,
    #[serde(default)]
    presets: BTreeMap<Spanned<String>, RawTable>,
    #[serde(default)]
    breakers: BTreeMap<String, RawTable>,
    /// Fleet settings, read and validated by the `cb-fleet` crate; the
    /// breakers' configuration ignores them.
    #[serde(default, rename = "fleet")]
    _fleet: Option<toml::Table>,
}

/// The `keys` tables of `[breakers.<name>]`, with their spans.
#[derive(Deserialize)]
struct RawKeys {
    #[serde(default)]
    breakers: BTreeMap<String, RawKeysOf>,
}

#[derive(Deserialize)]
struct RawKeysOf {
    #[serde(default)]
    keys: BTreeMap<Spanned<String>, RawTable>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

impl FileConfig {
    /// Parses a config file's text; `source` (the path) goes into every error.
    pub(crate) fn parse(text: &str, source: &str) -> Result<FileConfig, ConfigError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let at = match e.span() {
                Some(span) => format!("{source}, line {}", line_of(text, span.start)),
                None => source.to_owned(),
            };
            let message = e.message().trim().to_owned();
            let expected =
                "a TOML file of `[defaults]`, `[presets.<preset>]` and `[breakers.<name>]` tables, \
                            whose keys are breaker fields";
            ConfigError::new("file", message, expected).at(at)
        })?;
        let table = |raw: RawTable, header: &str| -> Result<Section, ConfigError> {
            let mut items = Vec::new();
            for (key, value) in raw {
                let origin = format!("{source}, line {}, {header}", line_of(text, key.span().start));
                let Some(field) = cb_syntax::field(key.get_ref()) else {
                    return Err(unknown_key(key.get_ref(), origin));
                };
                let value_text = match value.get_ref() {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    other => {
                        return Err(ConfigError::new(
                            field.name,
                            format!("a {}", other.type_str()),
                            field.expected(),
                        )
                        .at(origin))
                    }
                };
                let setting = parse_setting(field, &value_text, &origin)?;
                items.push(Item { setting, origin });
            }
            Ok(Section { items })
        };
        let mut file = FileConfig {
            defaults: table(raw.defaults, "[defaults]")?,
            ..FileConfig::default()
        };
        for (preset, raw_table) in raw.presets {
            let at = format!("{source}, line {}", line_of(text, preset.span().start));
            let p: Preset = preset.get_ref().parse().map_err(|e: ConfigError| {
                ConfigError::new(
                    "preset",
                    format!("`[presets.{}]`", preset.get_ref()),
                    e.expected(),
                )
                .at(at.clone())
            })?;
            let header = format!("[presets.{p}]");
            let section = table(raw_table, &header)?;
            if let Some((_, origin)) = section.preset() {
                return Err(ConfigError::new(
                    "preset",
                    format!("a `preset` key in {header}"),
                    "no `preset` key: a [presets.<preset>] table tunes that preset",
                )
                .at(origin.to_owned()));
            }
            file.presets.insert(p.name(), section);
        }
        // `[breakers.<name>.keys."<key>"]`, read again with their spans.
        let raw_keys: RawKeys = toml::from_str(text).map_err(|e| {
            let at = match e.span() {
                Some(span) => format!("{source}, line {}", line_of(text, span.start)),
                None => source.to_owned(),
            };
            ConfigError::new(
                "keys",
                e.message().trim().to_owned(),
                "a table of keys' tables, like [breakers.<name>.keys.\"gpt-4o\"]",
            )
            .at(at)
        })?;
        for (name, of) in raw_keys.breakers {
            let keys = of.keys;
            for (key, raw_table) in keys {
                let key_header = format!("[breakers.{name}.keys.{:?}]", key.get_ref());
                if let Err(e) = cb_syntax::check_name(key.get_ref()) {
                    return Err(ConfigError::new(
                        "keys",
                        format!("{:?} ({e})", key.get_ref()),
                        cb_syntax::NAME_RULE,
                    )
                    .at(format!(
                        "{source}, line {}, {key_header}",
                        line_of(text, key.span().start)
                    )));
                }
                let section = table(raw_table, &key_header)?;
                if let Some((_, origin)) = section.preset() {
                    return Err(ConfigError::new(
                        "preset",
                        format!("a `preset` key in {key_header}"),
                        "no `preset` key: a key's table tunes its family's configuration",
                    )
                    .at(origin.to_owned()));
                }
                file.keys.insert((name.clone(), key.into_inner()), section);
            }
        }
        for (name, mut raw_table) in raw.breakers {
            let header = format!("[breakers.{name}]");
            raw_table.retain(|k, _| k.get_ref() != "keys");
            let section = table(raw_table, &header)?;
            file.breakers.insert(name, section);
        }
        Ok(file)
    }

    /// Reads and parses the file at `path`.
    pub(crate) fn load(path: &str) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new("file", format!("`{path}` ({e})"), "a readable TOML config file").at(path)
        })?;
        FileConfig::parse(&text, path)
    }
}

/// `name` as it appears in environment variables (`CB_<NAME>_<FIELD>`):
///
/// * ASCII letters are upper-cased, ASCII digits kept;
/// * every other ASCII character becomes `_`;
/// * every non-ASCII character becomes `U` and its code point in upper-case
///   hexadecimal, at least four digits (`ü` is `U00FC`), so names that
///   differ only outside ASCII still read different variables.
///
/// Names that differ only in case or punctuation (`a-b`, `a_b`, `A.B`)
/// share their variables: the registry warns when two such breakers are
/// registered, and [`Registry::validate_env`](crate::Registry::validate_env)
/// refuses a variable that both would read.
///
/// ```
/// assert_eq!(cb_runtime::env_name("openai-chat.v2"), "OPENAI_CHAT_V2");
/// assert_eq!(cb_runtime::env_name("café"), "CAFU00E9");
/// ```
pub fn env_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_uppercase());
        } else if c.is_ascii() {
            out.push('_');
        } else {
            out.push_str(&format!("U{:04X}", u32::from(c)));
        }
    }
    out
}

/// The environment variables a breaker named `name` reads, one per field.
pub(crate) fn env_section(name: &str, vars: &[(String, String)]) -> Result<Section, ConfigError> {
    let prefix = format!("CB_{}_", env_name(name));
    let mut items = Vec::new();
    for field in &FIELDS {
        let var = format!("{prefix}{}", field.name.to_ascii_uppercase());
        if let Some((_, value)) = vars.iter().rev().find(|(k, _)| *k == var) {
            let origin = format!("environment variable {var}");
            let setting = parse_setting(field, value, &origin)?;
            items.push(Item { setting, origin });
        }
    }
    Ok(Section { items })
}

/// Checks every `CB_*` variable: it must be `CB_CONFIG` or name a known field
/// (`CB_<NAME>_<FIELD>`) with a valid value.
pub(crate) fn validate_env(vars: &[(String, String)]) -> Result<(), ConfigError> {
    for (var, value) in vars {
        // These configure the `cb-fleet` crate, which validates them.
        let fleet = [
            "CB_FLEET_URL",
            "CB_FLEET_NAMESPACE",
            "CB_FLEET_REPLICA_ID",
            "CB_FLEET_OPEN_QUORUM",
            "CB_FLEET_SHARE_FAILURES",
            "CB_FLEET_SHARE_INTERVAL",
            "CB_FLEET_CLUSTER",
        ];
        if !var.starts_with("CB_") || var == CB_CONFIG || fleet.contains(&var.as_str()) {
            continue;
        }
        let origin = format!("environment variable {var}");
        let field = FIELDS
            .iter()
            .filter(|f| {
                let suffix = format!("_{}", f.name.to_ascii_uppercase());
                var.len() > "CB_".len() + suffix.len() && var.ends_with(&suffix)
            })
            .max_by_key(|f| f.name.len());
        match field {
            Some(field) => {
                parse_setting(field, value, &origin)?;
            }
            None => {
                let fields: Vec<String> = FIELD_NAMES.iter().map(|f| f.to_ascii_uppercase()).collect();
                return Err(ConfigError::new(
                    "key",
                    format!("`{var}`"),
                    format!(
                        "CB_CONFIG or CB_<NAME>_<FIELD> with FIELD one of {}",
                        fields.join(", ")
                    ),
                )
                .at(origin));
            }
        }
    }
    Ok(())
}

/// The configuration of `key` of the family `name` (`None`: the family's
/// own): [`resolve`]'s layers with the key's `[breakers.<name>.keys."<key>"]`
/// table between the family's table and the environment.
pub(crate) fn resolve_key(
    name: &str,
    key: Option<&str>,
    compiled: &Config,
    compiled_preset: Option<Preset>,
    file: Option<&FileConfig>,
    env: &Section,
) -> Result<Config, ConfigError> {
    let key_section = key.and_then(|k| file.and_then(|f| f.keys.get(&(name.to_owned(), k.to_owned()))));
    resolve_layers(name, compiled, compiled_preset, file, key_section, env)
}

/// The configuration of breaker `name`: `compiled` (its preset and the
/// attribute's arguments, or what `reconfigure` was given) with the file's
/// and the environment's layers on top. The error names the layer at fault.
pub(crate) fn resolve(
    name: &str,
    compiled: &Config,
    compiled_preset: Option<Preset>,
    file: Option<&FileConfig>,
    env: &Section,
) -> Result<Config, ConfigError> {
    resolve_layers(name, compiled, compiled_preset, file, None, env)
}

fn resolve_layers(
    name: &str,
    compiled: &Config,
    compiled_preset: Option<Preset>,
    file: Option<&FileConfig>,
    key: Option<&Section>,
    env: &Section,
) -> Result<Config, ConfigError> {
    let empty = Section::default();
    let key = key.unwrap_or(&empty);
    let defaults = file.map_or(&empty, |f| &f.defaults);
    let own = file.and_then(|f| f.breakers.get(name)).unwrap_or(&empty);
    let chosen = env
        .preset()
        .or(own.preset())
        .or(defaults.preset())
        .map(|(p, _)| p);
    let preset = chosen.or(compiled_preset);
    let tuned = match (file, preset) {
        (Some(f), Some(p)) => f.presets.get(p.name()).unwrap_or(&empty),
        _ => &empty,
    };
    let layers = [defaults, tuned, own, key, env];
    if chosen.is_none() && layers.iter().all(|l| l.is_empty()) {
        return Ok(compiled.clone());
    }
    let mut builder = match chosen {
        Some(p) => p.builder().clock(compiled.clock().clone()),
        None => compiled.to_builder(),
    };
    let mut origins: Vec<(&'static str, &str)> = Vec::new();
    for item in layers.iter().flat_map(|l| l.items.iter()) {
        builder = item.setting.apply(builder);
        origins.push((item.setting.field.name, &item.origin));
    }
    builder.build().map_err(|e| {
        let origin = origins
            .iter()
            .rev()
            .find(|(f, _)| *f == e.field())
            .map(|(_, o)| (*o).to_owned())
            .unwrap_or_else(|| {
                let all: Vec<&str> = origins.iter().map(|(_, o)| *o).collect();
                format!("breaker `{name}` with overrides from {}", all.join("; "))
            });
        e.at(origin)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn env_names() {
        assert_eq!(env_name("openai"), "OPENAI");
        assert_eq!(env_name("hidden-env"), "HIDDEN_ENV");
        assert_eq!(env_name("a.b c/d"), "A_B_C_D");
    }

    #[test]
    fn every_field_parses_from_text() {
        let cases = [
            ("preset", "llm"),
            ("failure_threshold", "7"),
            ("failure_rate_threshold", "0.25"),
            ("sliding_window", "60s"),
            ("sliding_window", "40"),
            ("minimum_calls", "5"),
            ("slow_call_duration", "none"),
            ("slow_call_rate_threshold", "1"),
            ("open_duration", "2m"),
            ("half_open_max_calls", "4"),
            ("success_threshold", "3"),
            ("call_timeout", "250ms"),
            ("open_backoff", "2 5m 0.1"),
            ("open_backoff", "1.5 10m"),
            ("open_backoff", "none"),
        ];
        for (field, text) in cases {
            parse_setting(cb_syntax::field(field).unwrap(), text, "test").unwrap();
        }
    }

    #[test]
    fn open_backoff_from_text() {
        let file = FileConfig::parse("[breakers.b]\nopen_backoff = \"2 5m 0.1\"\n", "cb.toml").unwrap();
        let c = resolve("b", &Preset::Llm.config(), None, Some(&file), &Section::default()).unwrap();
        let b = c.open_backoff().unwrap();
        assert_eq!(
            (b.multiplier(), b.max(), b.jitter_fraction()),
            (2.0, Duration::from_secs(300), 0.1)
        );
        let env = env_section("b", &vars(&[("CB_B_OPEN_BACKOFF", "none")])).unwrap();
        assert_eq!(resolve("b", &c, None, None, &env).unwrap().open_backoff(), None);
        for bad in ["2", "0.5 5m", "2 5m 1.5", "2 5m 0.1 x", "two 5m"] {
            let err = parse_setting(cb_syntax::field("open_backoff").unwrap(), bad, "test").unwrap_err();
            assert_eq!(err.field(), "open_backoff", "{bad}: {err}");
        }
        // A cap below the open duration is judged with the whole config.
        let env = env_section("b", &vars(&[("CB_B_OPEN_BACKOFF", "2 10s")])).unwrap();
        let err = resolve("b", &Preset::Llm.config(), None, None, &env).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("environment variable CB_B_OPEN_BACKOFF:"),
            "{err}"
        );
    }

    #[test]
    fn near_misses_are_suggested() {
        assert_eq!(nearest("failure_treshold"), Some("failure_threshold"));
        assert_eq!(nearest("open_duraton"), Some("open_duration"));
        assert_eq!(nearest("colour"), None);
    }

    #[test]
    fn layers_apply_in_order() {
        let file = FileConfig::parse(
            "[defaults]\nfailure_threshold = 4\nopen_duration = \"5s\"\n\
             [presets.llm]\nfailure_threshold = 6\n\
             [breakers.x]\nsuccess_threshold = 3\n",
            "cb.toml",
        )
        .unwrap();
        let env = env_section("x", &vars(&[("CB_X_OPEN_DURATION", "9s")])).unwrap();
        let compiled = Preset::Llm.config();
        let c = resolve("x", &compiled, Some(Preset::Llm), Some(&file), &env).unwrap();
        assert_eq!(c.failure_threshold(), 6);
        assert_eq!(c.open_duration(), Duration::from_secs(9));
        assert_eq!(c.success_threshold(), 3);
        // Without a known preset, [presets.llm] does not apply.
        let c = resolve("x", &compiled, None, Some(&file), &Section::default()).unwrap();
        assert_eq!(c.failure_threshold(), 4);
        assert_eq!(c.open_duration(), Duration::from_secs(5));
    }

    #[test]
    fn no_overrides_is_the_compiled_config() {
        let compiled = Config::builder().failure_threshold(2).build().unwrap();
        let c = resolve("y", &compiled, None, None, &Section::default()).unwrap();
        assert_eq!(c, compiled);
    }

    #[test]
    fn a_combination_refused_by_build_names_the_layer() {
        // A backoff capped below the preset's 120 s open duration. (A
        // preset's `minimum_calls` gives way to a smaller window instead.)
        let env = env_section("z", &vars(&[("CB_Z_OPEN_BACKOFF", "2 60s")])).unwrap();
        let compiled = Preset::Llm.config();
        let err = resolve("z", &compiled, None, None, &env).unwrap_err();
        assert_eq!(err.field(), "open_backoff");
        assert!(
            err.to_string()
                .starts_with("environment variable CB_Z_OPEN_BACKOFF:"),
            "{err}"
        );
    }

    #[test]
    fn validate_env_checks_every_cb_variable() {
        assert!(validate_env(&vars(&[("CB_CONFIG", "x.toml"), ("PATH", "/bin")])).is_ok());
        assert!(validate_env(&vars(&[("CB_MY_DB_OPEN_DURATION", "30s")])).is_ok());
        let err = validate_env(&vars(&[("CB_MY_DB_OPEN_DURATION", "30")])).unwrap_err();
        assert!(err.to_string().contains("CB_MY_DB_OPEN_DURATION"), "{err}");
        let err = validate_env(&vars(&[("CB_MY_DB_OPEN_DURATON", "30s")])).unwrap_err();
        assert_eq!(err.field(), "key");
        // cb-fleet's own variables: it checks their values.
        for var in [
            "CB_FLEET_OPEN_QUORUM",
            "CB_FLEET_SHARE_FAILURES",
            "CB_FLEET_SHARE_INTERVAL",
            "CB_FLEET_CLUSTER",
        ] {
            assert!(validate_env(&vars(&[(var, "x")])).is_ok(), "{var}");
        }
    }
}
