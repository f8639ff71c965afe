//! Parsing and checking the attribute's arguments.
//!
//! The attribute's own keys are `syn::custom_keyword!`s; the configuration fields, their kinds
//! and ranges come from the table [`cb_syntax::FIELDS`], which the runtime's validation, config
//! file, environment and admin view read too. Every `key = value` pair is read first, then each
//! value is checked on its own, so that all mistakes in one attribute are reported together,
//! each at its own token.

use std::collections::HashMap;

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt as _;
use syn::parse::{Parse, ParseStream, Parser as _};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned as _;
use syn::{Expr, ExprLit, ExprUnary, Ident, Lit, LitStr, Path, Token, UnOp};

use cb_syntax::{Field, Kind as FieldKind, Refusal, Value as FieldValue, FIELD_NAMES, PRESETS};

mod kw {
    syn::custom_keyword!(name);
    syn::custom_keyword!(fallback);
    syn::custom_keyword!(failure_if);
    syn::custom_keyword!(ignore_if);
    syn::custom_keyword!(stream);
    syn::custom_keyword!(fallback_on);
    syn::custom_keyword!(throttle_if);
    syn::custom_keyword!(retry_after);
    syn::custom_keyword!(key);
    syn::custom_keyword!(classify);
    syn::custom_keyword!(fallback_with_cause);
    syn::custom_keyword!(health_check);
}

/// A key of the attribute that is not a configuration field, as the table of keys in the
/// guide's "Getting started" chapter (`docs/guide/getting-started.md`) describes it.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) struct KeyDoc {
    pub(crate) name: &'static str,
    /// What the value is.
    pub(crate) takes: &'static str,
    pub(crate) default: &'static str,
    /// One line of meaning.
    pub(crate) meaning: &'static str,
}

/// `name`, which comes first.
const NAME_KEY: KeyDoc = KeyDoc {
    name: "name",
    takes: "a string: 1 to 256 bytes, no control characters",
    default: "required",
    meaning: "The breaker's name in the registry; every function with this name shares one breaker.",
};

/// The keys only the attribute takes, in the order the documentation lists them; the
/// configuration fields ([`cb_syntax::FIELDS`]) go between `name` and these. A new key is one
/// entry here (and its `Kind`).
pub(crate) const ATTRIBUTE_KEYS: &[KeyDoc] = &[
    KeyDoc {
        name: "key",
        takes: "an expression over the arguments and `self` whose value is `AsRef<str>`, such as `model` or `self.tenant`",
        default: "none",
        meaning: "One breaker per distinct key, in the family `name` (`cb_runtime::Family`); evaluated on every call, before the body.",
    },
    KeyDoc {
        name: "fallback",
        takes: "the path of an `async fn` with the same parameters and return type",
        default: "none",
        meaning: "Awaited with the same arguments instead of the body's answer, when `fallback_on` says.",
    },
    KeyDoc {
        name: "fallback_on",
        takes: "`\"refusal\"`, `\"breaker\"`, `\"failure\"` or `\"error\"`",
        default: "`\"refusal\"`",
        meaning: "When the fallback runs: on a refusal; also on a timeout; also on an error counted as a failure or a rate limit; also on any other error.",
    },
    KeyDoc {
        name: "throttle_if",
        takes: "the path of a `fn(&E) -> bool`",
        default: "none",
        meaning: "An error for which it returns `true` is a rate limit (`Outcome::Throttled`): no failure, and the circuit opens for the hint or `throttle_duration` (asked first).",
    },
    KeyDoc {
        name: "retry_after",
        takes: "the path of a `fn(&E) -> Option<Duration>`",
        default: "none",
        meaning: "The provider's hint the error carries (a `Retry-After`, a \"try again in 20s\"), capped at `max_retry_after`.",
    },
    KeyDoc {
        name: "failure_if",
        takes: "the path of a `fn(&E) -> bool`",
        default: "none",
        meaning: "An error for which it returns `false` counts as a success (asked after `ignore_if`).",
    },
    KeyDoc {
        name: "ignore_if",
        takes: "the path of a `fn(&E) -> bool`",
        default: "none",
        meaning: "An error for which it returns `true` is counted in `Stats::ignored` only.",
    },
    KeyDoc {
        name: "stream",
        takes: "`true` or `false`",
        default: "detected from `Result<impl Stream<...>, E>`",
        meaning:
            "Judges the call by its stream's items (`true`, for boxed streams and aliases) or at its opening.",
    },
    KeyDoc {
        name: "crate",
        takes: "a path in a string, like `\"my_cb\"`",
        default: "`\"cb_runtime\"`",
        meaning: "Where `cb-runtime` is, when the dependency is renamed.",
    },
    KeyDoc {
        name: "classify",
        takes: "the path of a `fn(&E) -> Outcome`, such as `cb_runtime::classify::postgres`",
        default: "none",
        meaning: "Decides how each error counts (a failure, ignored, throttled, or a success); not with `failure_if`, `ignore_if` or `throttle_if`.",
    },
    KeyDoc {
        name: "fallback_with_cause",
        takes: "the path of an `async fn` with the same parameters, then a `cb_runtime::FallbackCause<E>`, and the same return type",
        default: "none",
        meaning: "Like `fallback`, and told why it runs: the reason, the body's error or the refusal, the time to wait, the key.",
    },
    KeyDoc {
        name: "health_check",
        takes: "the path of an `async fn() -> Result<T, E2>` (with `key`: `async fn(&str) -> Result<T, E2>`, given the key)",
        default: "none",
        meaning: "Run while the circuit is open, every `health_check_interval`: `success_threshold` `Ok`s in a row close it (`Reason::HealthCheck`).",
    },
];

/// Every key, in the order the documentation lists them.
fn keys() -> Vec<&'static str> {
    let mut keys = vec![NAME_KEY.name];
    keys.extend(FIELD_NAMES);
    keys.extend(ATTRIBUTE_KEYS.iter().map(|k| k.name));
    keys
}

/// The guide's table of keys (`docs/guide/getting-started.md`): `name`, the configuration
/// fields, then [`ATTRIBUTE_KEYS`].
#[cfg(test)]
pub(crate) fn guide_table() -> String {
    let mut table = String::from("| key | takes | default | meaning |\n|---|---|---|---|\n");
    let row = |k: &KeyDoc| format!("| `{}` | {} | {} | {} |\n", k.name, k.takes, k.default, k.meaning);
    table.push_str(&row(&NAME_KEY));
    for field in &cb_syntax::FIELDS {
        let (takes, default) = match field.kind {
            FieldKind::Preset => (
                format!("one of {}", cb_syntax::list(&PRESETS)),
                format!("`\"{}\"`", cb_syntax::DEFAULT_PRESET),
            ),
            _ => (
                format!("{}, like `{}`", field.range(), example(field.name)),
                "the preset's".to_owned(),
            ),
        };
        table.push_str(&format!(
            "| `{}` | {takes} | {default} | {} |\n",
            field.name, field.doc
        ));
    }
    for key in ATTRIBUTE_KEYS {
        table.push_str(&row(key));
    }
    table
}

/// What a key's value must be.
#[derive(Clone, Copy)]
enum Kind {
    Name,
    Crate,
    Fallback,
    FailureIf,
    IgnoreIf,
    /// `throttle_if = path`: a `fn(&E) -> bool`.
    ThrottleIf,
    /// `retry_after = path`: a `fn(&E) -> Option<Duration>`.
    RetryAfter,
    FallbackOn,
    /// `stream`: `true` or `false`.
    Stream,
    /// `key`: an expression over the arguments and `self`.
    Key,
    /// `classify = path`: a `fn(&E) -> Outcome`.
    Classify,
    /// `fallback_with_cause = path`: a fallback that takes a `FallbackCause<E>` last.
    FallbackWithCause,
    /// `health_check = path`: an `async fn() -> Result<T, E2>` (or `fn(&str)` with `key`).
    HealthCheck,
    /// A configuration field: its entry in the table says what it takes.
    Field(&'static Field),
}

/// A key as written, with its span.
struct Key {
    name: &'static str,
    kind: Kind,
    span: Span,
}

/// One `key = value` pair, before its value is checked.
struct RawArg {
    /// `Err` holds the unknown key as written.
    key: Result<Key, Ident>,
    value: Expr,
}

macro_rules! parse_key {
    ($input:ident, $lookahead:ident, $( $kw:ident => $kind:expr ),* $(,)?) => {
        $(
            if $lookahead.peek(kw::$kw) {
                let token = $input.parse::<kw::$kw>()?;
                return Ok(Ok(Key { name: stringify!($kw), kind: $kind, span: token.span }));
            }
        )*
    };
}

fn parse_key(input: ParseStream<'_>) -> syn::Result<Result<Key, Ident>> {
    let lookahead = input.lookahead1();
    parse_key!(input, lookahead,
        name => Kind::Name,
        fallback_on => Kind::FallbackOn,
        fallback => Kind::Fallback,
        failure_if => Kind::FailureIf,
        ignore_if => Kind::IgnoreIf,
        throttle_if => Kind::ThrottleIf,
        retry_after => Kind::RetryAfter,
        stream => Kind::Stream,
        key => Kind::Key,
        classify => Kind::Classify,
        fallback_with_cause => Kind::FallbackWithCause,
        health_check => Kind::HealthCheck,
    );
    if lookahead.peek(Token![crate]) {
        let token = input.parse::<Token![crate]>()?;
        return Ok(Ok(Key {
            name: "crate",
            kind: Kind::Crate,
            span: token.span,
        }));
    }
    if input.peek(Ident::peek_any) {
        let ident = input.call(Ident::parse_any)?;
        return Ok(match cb_syntax::field(&ident.to_string()) {
            Some(field) => Ok(Key {
                name: field.name,
                kind: Kind::Field(field),
                span: ident.span(),
            }),
            None => Err(ident),
        });
    }
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        return Err(syn::Error::new(
            lit.span(),
            format!(
                "arguments are `key = value` pairs; write `name = {}`",
                quote::ToTokens::to_token_stream(&lit)
            ),
        ));
    }
    Err(input.error(format!(
        "expected `key = value` arguments; the keys are {}",
        cb_syntax::list(&keys())
    )))
}

impl Parse for RawArg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let key = parse_key(input)?;
        if !input.peek(Token![=]) {
            let written = match &key {
                Ok(key) => key.name.to_string(),
                Err(ident) => ident.to_string(),
            };
            return Err(input.error(format!(
                "expected `=` and a value after `{written}`, like `{}`",
                example(&written)
            )));
        }
        input.parse::<Token![=]>()?;
        let value = input.parse()?;
        Ok(RawArg { key, value })
    }
}

/// A checked configuration override.
pub(crate) enum Value {
    /// A value of the field's kind, in its range.
    Field(FieldValue),
    /// `minimum_calls` for a count window of this size when the attribute sets none: the
    /// preset's, capped at the window's size.
    MinimumCallsWithin(u32),
}

/// A field to set, and its value.
pub(crate) struct Override {
    /// The field's name, spanned at the key the user wrote.
    pub(crate) setter: Ident,
    pub(crate) value: Value,
}

/// How a call's error is classified, when not every `Err` is a failure. The expansion asks
/// `throttle_if` first, then `ignore_if`, then `failure_if`.
#[derive(Default)]
pub(crate) struct Classify {
    /// `failure_if = path`: an error counts only when `path(&e)` is `true`.
    pub(crate) failure_if: Option<Path>,
    /// `ignore_if = path`: an error is not counted when `path(&e)` is `true`.
    pub(crate) ignore_if: Option<Path>,
    /// `throttle_if = path`: an error is a rate limit when `path(&e)` is `true`.
    pub(crate) throttle_if: Option<Path>,
    /// `retry_after = path`: the hint `path(&e)` reads from the error.
    pub(crate) retry_after: Option<Path>,
    /// `classify = path`: `path(&e)` is the error's outcome; alone, or with `retry_after`.
    pub(crate) classify: Option<Path>,
}

impl Classify {
    /// Whether any key classifies errors.
    pub(crate) fn is_set(&self) -> bool {
        self.failure_if.is_some()
            || self.ignore_if.is_some()
            || self.throttle_if.is_some()
            || self.retry_after.is_some()
            || self.classify.is_some()
    }
}

/// `fallback_on`: when the fallback runs. Each level includes the ones before it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum FallbackOn {
    /// The breaker refused the call (the default).
    Refusal,
    /// Also when the call timed out.
    Breaker,
    /// Also when the body's error counted as a failure, or was a rate limit.
    Failure,
    /// Also for any other error of the body (one the classifier ignored).
    Error,
}

/// `fallback_on`'s values, as written, in the order of [`FallbackOn`].
const FALLBACK_ON: [(&str, FallbackOn); 4] = [
    ("\"refusal\"", FallbackOn::Refusal),
    ("\"breaker\"", FallbackOn::Breaker),
    ("\"failure\"", FallbackOn::Failure),
    ("\"error\"", FallbackOn::Error),
];

/// The checked arguments.
pub(crate) struct Args {
    pub(crate) name: LitStr,
    /// The preset: its index in [`cb_syntax::PRESETS`] (and `Preset::ALL`), spanned at the
    /// value the user wrote (or the call site).
    pub(crate) preset: (usize, Span),
    /// The path of `cb-runtime`; `::cb_runtime` unless `crate = "..."` says otherwise.
    pub(crate) krate: TokenStream,
    pub(crate) fallback: Option<Path>,
    /// `fallback_on`, [`FallbackOn::Refusal`] when not given.
    pub(crate) fallback_on: FallbackOn,
    pub(crate) classify: Classify,
    /// `stream = true` or `false`, with the value's span; `None` when the return type decides.
    pub(crate) stream: Option<(bool, Span)>,
    /// `key = <expr>`: the function's breakers are a family, one per key.
    pub(crate) key: Option<Expr>,
    pub(crate) overrides: Vec<Override>,
    /// `fallback` was given as `fallback_with_cause`: the fallback takes a
    /// `FallbackCause<E>` after the function's parameters.
    pub(crate) fallback_with_cause: bool,
    /// `health_check = path`.
    pub(crate) health_check: Option<Path>,
}

/// Collects errors so that all of them are reported together.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn at(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }
}

/// Parses and checks the attribute's arguments; every mistake is in the error.
pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Args> {
    let raw = Punctuated::<RawArg, Token![,]>::parse_terminated.parse2(tokens)?;
    let mut errors = Errors::default();
    let mut seen: HashMap<&'static str, Span> = HashMap::new();

    let mut name = None;
    let mut preset = None;
    let mut krate = None;
    let mut fallback = None;
    let mut stream = None;
    let mut key_expr = None;
    let mut fallback_on = None;
    let mut with_cause = false;
    let mut classify = Classify::default();
    let mut overrides = Vec::new();
    let mut health_check = None;

    for RawArg { key, value } in raw {
        let key = match key {
            Ok(key) => key,
            Err(unknown) => {
                errors.push(unknown_key(&unknown));
                continue;
            }
        };
        if seen.insert(key.name, key.span).is_some() {
            errors.at(
                key.span,
                format!("duplicate key `{}`: each key may be given once", key.name),
            );
            continue;
        }
        let checked = match key.kind {
            Kind::Name => string(&key, &value).and_then(|lit| {
                let why = match cb_syntax::check_name(&lit.value()) {
                    Ok(()) => {
                        name = Some(lit);
                        return Ok(());
                    }
                    Err(cb_syntax::NameError::Empty) => {
                        "`name` must not be empty: it is the breaker's name in the registry".to_owned()
                    }
                    Err(e) => format!("`name` is refused: {e}; expected {}", cb_syntax::NAME_RULE),
                };
                Err(syn::Error::new(lit.span(), why))
            }),
            Kind::Field(field) if field.kind == FieldKind::Preset => string(&key, &value).and_then(|lit| {
                preset = Some(check_preset(&lit)?);
                Ok(())
            }),
            Kind::Crate => string(&key, &value).and_then(|lit| {
                let path: Path = lit.parse().map_err(|_| {
                    syn::Error::new(
                        lit.span(),
                        "`crate` takes the path of cb-runtime in a string, like `crate = \"my_cb\"`",
                    )
                })?;
                krate = Some(quote::quote_spanned!(lit.span()=> #path));
                Ok(())
            }),
            Kind::Fallback | Kind::FallbackWithCause => {
                let other = match key.kind {
                    Kind::Fallback => "fallback_with_cause",
                    _ => "fallback",
                };
                if seen.contains_key(other) {
                    Err(syn::Error::new(
                        key.span,
                        "`fallback` and `fallback_with_cause` both name the fallback; keep one: \
                         `fallback_with_cause` when the fallback takes a `FallbackCause<E>` after the \
                         function's parameters, `fallback` when it takes only them",
                    ))
                } else {
                    path(&key, &value).map(|p| {
                        with_cause = matches!(key.kind, Kind::FallbackWithCause);
                        fallback = Some(p);
                    })
                }
            }
            Kind::FailureIf => path(&key, &value).map(|p| classify.failure_if = Some(p)),
            Kind::IgnoreIf => path(&key, &value).map(|p| classify.ignore_if = Some(p)),
            Kind::ThrottleIf => path(&key, &value).map(|p| classify.throttle_if = Some(p)),
            Kind::RetryAfter => path(&key, &value).map(|p| classify.retry_after = Some(p)),
            Kind::Classify => path(&key, &value).map(|p| classify.classify = Some(p)),
            Kind::FallbackOn => string(&key, &value).and_then(|lit| {
                let written = lit.value();
                let Some((_, level)) = FALLBACK_ON.iter().find(|(v, _)| v.trim_matches('"') == written) else {
                    return Err(syn::Error::new(
                        lit.span(),
                        format!(
                            "unknown `fallback_on` value `{written}`: it is one of {} (the fallback runs on a \
                             refusal; also on a timeout; also on an error counted as a failure or a rate limit; \
                             also on any other error)",
                            cb_syntax::list(&FALLBACK_ON.map(|(v, _)| v))
                        ),
                    ));
                };
                fallback_on = Some((*level, key.span));
                Ok(())
            }),
            Kind::Stream => match &value {
                Expr::Lit(ExprLit {
                    lit: Lit::Bool(flag), ..
                }) => {
                    stream = Some((flag.value, flag.span));
                    Ok(())
                }
                _ => Err(wrong_type(&key, &value, "`true` or `false`")),
            },
            Kind::Key => {
                key_expr = Some(value);
                Ok(())
            }
            Kind::HealthCheck => path(&key, &value).map(|p| health_check = Some(p)),
            Kind::Field(field) => field_value(&key, field, &value).and_then(|v| {
                slow_call_floor(&key, &v, &value)?;
                overrides.push(setter(&key, Value::Field(v)));
                Ok(())
            }),
        };
        if let Err(error) = checked {
            errors.push(error);
        }
    }

    let window_calls = overrides.iter().find_map(|o| match o.value {
        Value::Field(FieldValue::WindowCalls(n)) => Some((n, o.setter.span())),
        _ => None,
    });
    let minimum_calls = overrides.iter().find_map(|o| match o.value {
        Value::Field(FieldValue::Count(n)) if o.setter == "minimum_calls" => Some((n, o.setter.span())),
        _ => None,
    });
    match (window_calls, minimum_calls) {
        (Some((window, _)), Some((minimum, span))) if minimum > window => errors.at(
            span,
            format!("`minimum_calls` ({minimum}) must not exceed the `sliding_window` of {window} calls"),
        ),
        (Some((window, span)), None) => overrides.push(Override {
            setter: Ident::new("minimum_calls", span),
            value: Value::MinimumCallsWithin(window),
        }),
        _ => {}
    }

    if let (Some((_, span)), None) = (fallback_on, &fallback) {
        if !seen.contains_key("fallback") && !seen.contains_key("fallback_with_cause") {
            errors.at(
                span,
                "`fallback_on` says when the fallback runs, and there is no `fallback`: add `fallback = path::to::fn` \
                 (or `fallback_with_cause = path::to::fn`)",
            );
        }
    }
    if seen.contains_key("classify") {
        for rule in ["failure_if", "ignore_if", "throttle_if"] {
            if let Some(span) = seen.get(rule) {
                errors.at(
                    *span,
                    format!(
                        "`{rule}` cannot be combined with `classify`: `classify` decides how every error \
                         counts; fold this rule into the `classify` function"
                    ),
                );
            }
        }
    }
    if name.is_none() && !seen.contains_key("name") {
        errors.at(
            Span::call_site(),
            "missing `name`: write #[circuit_breaker(name = \"...\")] with the breaker's name in the registry",
        );
    }
    if let Some(error) = errors.0 {
        return Err(error);
    }
    let Some(name) = name else {
        // Unreachable: a missing or refused name is an error above.
        return Err(syn::Error::new(Span::call_site(), "missing `name`"));
    };
    let default_preset = PRESETS.iter().position(|p| *p == cb_syntax::DEFAULT_PRESET);
    Ok(Args {
        name,
        preset: preset.unwrap_or((default_preset.unwrap_or(0), Span::call_site())),
        krate: krate.unwrap_or_else(|| quote::quote!(::cb_runtime)),
        fallback,
        fallback_on: fallback_on.map_or(FallbackOn::Refusal, |(level, _)| level),
        classify,
        stream,
        key: key_expr,
        overrides,
        fallback_with_cause: with_cause,
        health_check,
    })
}

fn setter(key: &Key, value: Value) -> Override {
    Override {
        setter: Ident::new(key.name, key.span),
        value,
    }
}

fn unknown_key(unknown: &Ident) -> syn::Error {
    let written = unknown.unraw().to_string();
    let keys = keys();
    let message = match cb_syntax::nearest(&written, &keys) {
        Some(near) => format!("unknown key `{written}`; did you mean `{near}`?"),
        None => format!("unknown key `{written}`; the keys are {}", cb_syntax::list(&keys)),
    };
    syn::Error::new(unknown.span(), message)
}

/// An example of a key with a value of the right type.
fn example(key: &str) -> String {
    match key {
        "name" => "name = \"openai\"".into(),
        "crate" => "crate = \"my_cb\"".into(),
        "fallback" => "fallback = cached_answer".into(),
        "fallback_on" => "fallback_on = \"failure\"".into(),
        "failure_if" => "failure_if = is_server_error".into(),
        "ignore_if" => "ignore_if = is_client_error".into(),
        "throttle_if" => "throttle_if = is_rate_limited".into(),
        "retry_after" => "retry_after = retry_after_hint".into(),
        "stream" => "stream = true".into(),
        "key" => "key = model".into(),
        "classify" => "classify = cb_runtime::classify::postgres".into(),
        "fallback_with_cause" => "fallback_with_cause = failover".into(),
        "health_check" => "health_check = ping".into(),
        _ => match cb_syntax::field(key) {
            Some(field) if field.kind == FieldKind::Window => {
                format!("{key} = {}` or `{key} = \"60s\"", field.example())
            }
            Some(field) => format!("{key} = {}", field.example()),
            None => format!("{key} = ..."),
        },
    }
}

fn wrong_type(key: &Key, value: &Expr, wanted: &str) -> syn::Error {
    syn::Error::new(
        value.span(),
        format!("`{}` takes {wanted}, like `{}`", key.name, example(key.name)),
    )
}

/// How a field's value is written as an attribute argument.
fn form(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::Preset => "a preset's name in a string",
        FieldKind::Count { .. } => "a whole number",
        FieldKind::Rate => "a rate between 0 and 1",
        FieldKind::Duration => "a duration in a string with its unit",
        FieldKind::OptionalDuration => "a duration in a string with its unit, or \"none\"",
        FieldKind::DurationUpTo { .. } => "a duration in a string with its unit, or \"0s\"",
        FieldKind::Window => "a number of calls or a duration in a string",
        FieldKind::Backoff => "\"<multiplier> <cap> [<jitter>]\" in a string, or \"none\"",
        FieldKind::Word(_) => "one of its words in a string (see the field's range)",
        FieldKind::OptionalCount { .. } => "a whole number, or \"none\"",
        FieldKind::Multiplier => "a number greater than 1",
        FieldKind::DurationOrNone { .. } => "a duration in a string with its unit, \"0s\" or \"none\"",
    }
}

/// The value of a configuration field, checked against its entry in the table: a string is
/// parsed as the config file's text is, a number literal is taken as a count or a rate.
fn field_value(key: &Key, field: &Field, value: &Expr) -> syn::Result<FieldValue> {
    let checked = match (field.kind, value) {
        (
            FieldKind::Duration
            | FieldKind::OptionalDuration
            | FieldKind::DurationUpTo { .. }
            | FieldKind::Window
            | FieldKind::Backoff
            | FieldKind::Word(_)
            | FieldKind::OptionalCount { .. }
            | FieldKind::DurationOrNone { .. },
            Expr::Lit(ExprLit {
                lit: Lit::Str(lit), ..
            }),
        ) => field.parse(&lit.value()),
        (
            FieldKind::Count { .. }
            | FieldKind::Window
            | FieldKind::Rate
            | FieldKind::OptionalCount { .. }
            | FieldKind::Multiplier,
            _,
        ) => {
            let Some(parsed) = number(field.kind, value) else {
                return Err(wrong_type(key, value, form(field.kind)));
            };
            parsed.and_then(|v| field.check(&v).map(|()| v))
        }
        (FieldKind::Word(_), _) => {
            return Err(wrong_type(key, value, &format!("{} in a string", field.range())))
        }
        _ => return Err(wrong_type(key, value, form(field.kind))),
    };
    checked.map_err(|refusal| {
        let message = match refusal {
            Refusal::Malformed(Some(why)) if field.kind == FieldKind::Backoff => format!(
                "`{}` {why}; it takes {}, like `{}`",
                key.name,
                form(field.kind),
                example(key.name)
            ),
            Refusal::Malformed(Some(why)) => why,
            Refusal::Malformed(None) => format!(
                "`{}` takes {}, like `{}`",
                key.name,
                form(field.kind),
                example(key.name)
            ),
            Refusal::OutOfRange => format!("`{}` takes {}", key.name, field.range()),
        };
        syn::Error::new(value.span(), message)
    })
}

/// The attribute's breakers run on the system clock, which cannot time a
/// `slow_call_duration` under [`cb_syntax::MIN_SLOW_CALL_NANOS`]: refused
/// here rather than logged at run time.
fn slow_call_floor(key: &Key, v: &FieldValue, value: &Expr) -> syn::Result<()> {
    match v {
        FieldValue::Duration(nanos)
            if key.name == "slow_call_duration" && *nanos < cb_syntax::MIN_SLOW_CALL_NANOS =>
        {
            Err(syn::Error::new(
                value.span(),
                "`slow_call_duration` must be at least \"10ms\": the system clock ticks about every millisecond \
                 and can lag on a busy machine, so a shorter call cannot be timed",
            ))
        }
        _ => Ok(()),
    }
}

/// A number literal, possibly negated, as a value of `kind`: `None` when `value` is not a
/// number literal of a type the kind takes, `Err(OutOfRange)` for a negative or too large one.
fn number(kind: FieldKind, value: &Expr) -> Option<Result<FieldValue, Refusal>> {
    let (negative, lit) = match value {
        Expr::Lit(ExprLit { lit, .. }) => (false, lit),
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_),
            expr,
            ..
        }) => match &**expr {
            Expr::Lit(ExprLit { lit, .. }) => (true, lit),
            _ => return None,
        },
        _ => return None,
    };
    let out_of_range = Err(Refusal::OutOfRange);
    Some(match (kind, lit) {
        (FieldKind::Multiplier, Lit::Int(_) | Lit::Float(_)) => {
            let k = match lit {
                Lit::Int(int) => int.base10_parse::<f64>(),
                Lit::Float(float) => float.base10_parse::<f64>(),
                _ => return None,
            };
            match k {
                Ok(k) if !negative => Ok(FieldValue::Multiplier(k)),
                _ => out_of_range,
            }
        }
        (FieldKind::Count { .. } | FieldKind::Window | FieldKind::OptionalCount { .. }, Lit::Int(int)) => {
            match int.base10_parse::<u32>() {
                Ok(n) if !negative && kind == FieldKind::Window => Ok(FieldValue::WindowCalls(n)),
                Ok(n) if !negative => Ok(FieldValue::Count(n)),
                _ => out_of_range,
            }
        }
        (FieldKind::Rate, Lit::Int(int)) => match int.base10_parse::<f64>() {
            Ok(r) if !negative => Ok(FieldValue::Rate(r)),
            _ => out_of_range,
        },
        (FieldKind::Rate, Lit::Float(float)) => match float.base10_parse::<f64>() {
            Ok(r) if !negative => Ok(FieldValue::Rate(r)),
            _ => out_of_range,
        },
        _ => return None,
    })
}

fn string(key: &Key, value: &Expr) -> syn::Result<LitStr> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Ok(lit.clone()),
        _ => Err(wrong_type(key, value, "a string")),
    }
}

fn path(key: &Key, value: &Expr) -> syn::Result<Path> {
    let wanted = match key.kind {
        Kind::Fallback | Kind::FallbackWithCause => "the path of an async fn, not in quotes",
        Kind::HealthCheck => "the path of an async fn returning a `Result`, not in quotes",
        Kind::RetryAfter => "the path of a `fn(&E) -> Option<Duration>`, not in quotes",
        _ => "the path of a `fn(&E) -> bool`, not in quotes",
    };
    match value {
        Expr::Path(p) if p.qself.is_none() && p.attrs.is_empty() => Ok(p.path.clone()),
        _ => Err(wrong_type(key, value, wanted)),
    }
}

/// The preset's index in [`cb_syntax::PRESETS`], spanned at its name.
fn check_preset(lit: &LitStr) -> syn::Result<(usize, Span)> {
    let written = lit.value();
    if let Some(index) = PRESETS.iter().position(|name| *name == written) {
        return Ok((index, lit.span()));
    }
    let names = PRESETS;
    let hint = match cb_syntax::nearest(&written.to_lowercase().replace('-', "_"), &names) {
        Some(near) => format!("; did you mean `{near}`?"),
        None => String::new(),
    };
    Err(syn::Error::new(
        lit.span(),
        format!(
            "unknown preset `{written}`: the presets are {}{hint}",
            cb_syntax::list(&names)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::parse_key;
    use syn::parse::Parser as _;

    /// The protection modes' keys: each bad value is refused with the
    /// field's range (`ui-tests/fail` shows where the errors point).
    #[test]
    fn the_protection_modes_keys_refuse_bad_values_with_their_range() {
        for (args, message) in [
            (
                quote::quote!(name = "x", mode = "dry_run"),
                "`mode` takes one of `enforce`, `shadow`",
            ),
            (
                quote::quote!(name = "x", mode = shadow),
                "`mode` takes one of `enforce`, `shadow` in a string, like `mode = \"shadow\"`",
            ),
            (
                quote::quote!(name = "x", max_concurrent_calls = 0),
                "`max_concurrent_calls` takes a whole number in 1..=1000000, or \"none\"",
            ),
            (
                quote::quote!(name = "x", adaptive_k = 1.0),
                "`adaptive_k` takes a number greater than 1.0, at most 100.0",
            ),
        ] {
            let err = super::parse(args).err().expect("refused");
            assert_eq!(err.to_string(), message);
        }
        for args in [
            quote::quote!(
                name = "x",
                mode = "shadow",
                max_concurrent_calls = 8,
                trip = "adaptive",
                adaptive_k = 1.5
            ),
            quote::quote!(name = "x", max_concurrent_calls = "none", adaptive_k = 3),
        ] {
            assert!(super::parse(args).is_ok());
        }
    }

    /// Every field the config file and the environment may set is also a
    /// key of the attribute: the two lists cannot drift apart.
    #[test]
    fn every_config_field_is_a_key() {
        for field in cb_syntax::FIELD_NAMES {
            let ident = proc_macro2::Ident::new(field, proc_macro2::Span::call_site());
            let key = parse_key.parse2(quote::quote!(#ident)).unwrap();
            assert!(key.is_ok(), "`{field}` is not an attribute key");
        }
    }

    /// Every key the attribute parses has a row in the guide's table of keys
    /// (`docs/guide/getting-started.md`), and the table is the one [`super::guide_table`]
    /// renders from the key list: it cannot drift.
    #[test]
    fn the_guide_lists_every_key() {
        for key in super::keys() {
            let ident = match key {
                "crate" => continue,
                key => proc_macro2::Ident::new(key, proc_macro2::Span::call_site()),
            };
            let parsed = parse_key.parse2(quote::quote!(#ident)).unwrap();
            assert!(parsed.is_ok(), "`{key}` is listed but not parsed");
        }
        let guide = include_str!("../../docs/guide/getting-started.md");
        let table = super::guide_table();
        assert!(
            guide.contains(&table),
            "docs/guide/getting-started.md's table of the attribute's keys differs from the key list; paste this:\n\n{table}"
        );
    }
}
