//! Parsing and checking the attribute's arguments.
//!
//! Keys are `syn::custom_keyword!`s read with a `lookahead1()`; every `key = value` pair is read
//! first, then each value is checked on its own, so that all mistakes in one attribute are
//! reported together, each at its own token.

use std::collections::HashMap;

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt as _;
use syn::parse::{Parse, ParseStream, Parser as _};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned as _;
use syn::{Expr, ExprLit, ExprUnary, Ident, Lit, LitStr, Path, Token, UnOp};

mod kw {
    syn::custom_keyword!(name);
    syn::custom_keyword!(preset);
    syn::custom_keyword!(fallback);
    syn::custom_keyword!(failure_if);
    syn::custom_keyword!(ignore_if);
    syn::custom_keyword!(stream);
    syn::custom_keyword!(failure_threshold);
    syn::custom_keyword!(failure_rate_threshold);
    syn::custom_keyword!(sliding_window);
    syn::custom_keyword!(minimum_calls);
    syn::custom_keyword!(slow_call_duration);
    syn::custom_keyword!(slow_call_rate_threshold);
    syn::custom_keyword!(open_duration);
    syn::custom_keyword!(half_open_max_calls);
    syn::custom_keyword!(success_threshold);
    syn::custom_keyword!(call_timeout);
    syn::custom_keyword!(open_backoff);
}

/// The presets the runtime knows: the name users write, and the `Preset` variant.
///
/// `ui-tests/pass/presets.rs` checks this list against `cb_runtime::Preset::ALL`.
pub(crate) const PRESETS: &[(&str, &str)] = &[
    ("llm", "Llm"),
    ("http_api", "HttpApi"),
    ("database", "Database"),
    ("cache", "Cache"),
    ("notification", "Notification"),
];

/// The runtime's limits (`Window::MAX_COUNT`, `MAX_PROBES`, `Window::MIN_TIME`, `Window::MAX_TIME`).
const MAX_WINDOW_CALLS: u32 = 100_000;
const MAX_PROBES: u32 = 10_000;
const MIN_WINDOW_NANOS: u64 = 100_000_000;
const MAX_WINDOW_NANOS: u64 = 24 * 3_600_000_000_000;

/// The keys only the attribute takes; the configuration fields
/// ([`cb_syntax::FIELDS`]) go between `name` and these.
const ATTRIBUTE_KEYS: [&str; 5] = ["fallback", "failure_if", "ignore_if", "stream", "crate"];

/// Every key, in the order the documentation lists them.
fn keys() -> Vec<&'static str> {
    let mut keys = vec!["name"];
    keys.extend(cb_syntax::FIELDS);
    keys.extend(ATTRIBUTE_KEYS);
    keys
}

/// What a key's value must be.
#[derive(Clone, Copy)]
enum Kind {
    Name,
    Preset,
    Crate,
    Fallback,
    FailureIf,
    IgnoreIf,
    /// `stream`: `true` or `false`.
    Stream,
    /// A `u32` builder field that must be between 1 and the given maximum.
    Count(u32),
    /// An `f64` builder field in `[0, 1]`.
    Rate,
    /// A `Duration` builder field; `true` when zero is refused.
    Duration(bool),
    /// `sliding_window`: a count or a duration.
    Window,
    /// `open_backoff`: `"<multiplier> <cap> [<jitter>]"`.
    Backoff,
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
        preset => Kind::Preset,
        failure_threshold => Kind::Count(u32::MAX),
        failure_rate_threshold => Kind::Rate,
        sliding_window => Kind::Window,
        minimum_calls => Kind::Count(MAX_WINDOW_CALLS),
        slow_call_duration => Kind::Duration(true),
        slow_call_rate_threshold => Kind::Rate,
        open_duration => Kind::Duration(true),
        half_open_max_calls => Kind::Count(MAX_PROBES),
        success_threshold => Kind::Count(u32::MAX),
        call_timeout => Kind::Duration(true),
        open_backoff => Kind::Backoff,
        fallback => Kind::Fallback,
        failure_if => Kind::FailureIf,
        ignore_if => Kind::IgnoreIf,
        stream => Kind::Stream,
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
        return Ok(Err(input.call(Ident::parse_any)?));
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
    Err(lookahead.error())
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

/// A checked builder override.
pub(crate) enum Value {
    U32(u32),
    F64(f64),
    /// A duration in nanoseconds.
    Duration(u64),
    WindowCount(u32),
    /// A time window in nanoseconds.
    WindowTime(u64),
    /// `minimum_calls` for a count window of this size when the attribute sets none: the
    /// preset's, capped at the window's size.
    MinimumCallsWithin(u32),
    /// `open_backoff`: the multiplier, the cap in nanoseconds and the jitter fraction.
    Backoff(f64, u64, f64),
}

/// A builder method to call, and its value.
pub(crate) struct Override {
    /// The builder method, spanned at the key the user wrote.
    pub(crate) setter: Ident,
    pub(crate) value: Value,
}

/// How a finished call is classified, when not by `Ok`/`Err` alone.
pub(crate) enum Classify {
    /// `failure_if = path`: an error counts only when `path(&e)` is `true`.
    FailureIf(Path),
    /// `ignore_if = path`: an error is not counted when `path(&e)` is `true`.
    IgnoreIf(Path),
}

/// The checked arguments.
pub(crate) struct Args {
    pub(crate) name: LitStr,
    /// The `Preset` variant, spanned at the value the user wrote (or the call site).
    pub(crate) preset: Ident,
    /// The path of `cb-runtime`; `::cb_runtime` unless `crate = "..."` says otherwise.
    pub(crate) krate: TokenStream,
    pub(crate) fallback: Option<Path>,
    pub(crate) classify: Option<Classify>,
    /// `stream = true` or `false`, with the value's span; `None` when the return type decides.
    pub(crate) stream: Option<(bool, Span)>,
    pub(crate) overrides: Vec<Override>,
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
    let mut classify: Option<(&'static str, Classify)> = None;
    let mut overrides = Vec::new();

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
                if lit.value().trim().is_empty() {
                    Err(syn::Error::new(
                        lit.span(),
                        "`name` must not be empty: it is the breaker's name in the registry",
                    ))
                } else {
                    name = Some(lit);
                    Ok(())
                }
            }),
            Kind::Preset => string(&key, &value).and_then(|lit| {
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
            Kind::Fallback => path(&key, &value).map(|p| fallback = Some(p)),
            Kind::FailureIf | Kind::IgnoreIf => path(&key, &value).and_then(|p| {
                if let Some((other, _)) = &classify {
                    return Err(syn::Error::new(
                        key.span,
                        format!(
                            "`{}` cannot be combined with `{other}`: use one of them to classify errors",
                            key.name
                        ),
                    ));
                }
                let chosen = match key.kind {
                    Kind::FailureIf => Classify::FailureIf(p),
                    _ => Classify::IgnoreIf(p),
                };
                classify = Some((key.name, chosen));
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
            Kind::Count(max) => count(&key, &value, max).map(|n| {
                overrides.push(setter(&key, Value::U32(n)));
            }),
            Kind::Rate => rate(&key, &value).map(|r| {
                overrides.push(setter(&key, Value::F64(r)));
            }),
            Kind::Duration(nonzero) => nanos(&key, &value, nonzero).map(|n| {
                overrides.push(setter(&key, Value::Duration(n)));
            }),
            Kind::Window => window(&key, &value).map(|w| overrides.push(setter(&key, w))),
            Kind::Backoff => backoff(&key, &value).map(|b| overrides.push(setter(&key, b))),
        };
        if let Err(error) = checked {
            errors.push(error);
        }
    }

    let window_calls = overrides.iter().find_map(|o| match o.value {
        Value::WindowCount(n) => Some((n, o.setter.span())),
        _ => None,
    });
    let minimum_calls = overrides.iter().find_map(|o| match o.value {
        Value::U32(n) if o.setter == "minimum_calls" => Some((n, o.setter.span())),
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
    Ok(Args {
        name,
        preset: preset.unwrap_or_else(|| Ident::new("HttpApi", Span::call_site())),
        krate: krate.unwrap_or_else(|| quote::quote!(::cb_runtime)),
        fallback,
        classify: classify.map(|(_, c)| c),
        stream,
        overrides,
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
        "preset" => "preset = \"llm\"".into(),
        "crate" => "crate = \"my_cb\"".into(),
        "fallback" => "fallback = cached_answer".into(),
        "failure_if" => "failure_if = is_server_error".into(),
        "ignore_if" => "ignore_if = is_client_error".into(),
        "stream" => "stream = true".into(),
        "failure_rate_threshold" | "slow_call_rate_threshold" => format!("{key} = 0.5"),
        "sliding_window" => "sliding_window = 20` or `sliding_window = \"60s\"".into(),
        "slow_call_duration" | "open_duration" | "call_timeout" => format!("{key} = \"30s\""),
        "open_backoff" => "open_backoff = \"2 5m 0.1\"".into(),
        _ => format!("{key} = 5"),
    }
}

fn wrong_type(key: &Key, value: &Expr, wanted: &str) -> syn::Error {
    syn::Error::new(
        value.span(),
        format!("`{}` takes {wanted}, like `{}`", key.name, example(key.name)),
    )
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
    let wanted = if matches!(key.kind, Kind::Fallback) {
        "the path of an async fn, not in quotes"
    } else {
        "the path of a `fn(&E) -> bool`, not in quotes"
    };
    match value {
        Expr::Path(p) if p.qself.is_none() && p.attrs.is_empty() => Ok(p.path.clone()),
        _ => Err(wrong_type(key, value, wanted)),
    }
}

/// A literal number, possibly negated, as written.
fn number(value: &Expr) -> Option<(bool, &Lit)> {
    match value {
        Expr::Lit(ExprLit { lit, .. }) => Some((false, lit)),
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_),
            expr,
            ..
        }) => match &**expr {
            Expr::Lit(ExprLit { lit, .. }) => Some((true, lit)),
            _ => None,
        },
        _ => None,
    }
}

fn count(key: &Key, value: &Expr, max: u32) -> syn::Result<u32> {
    let Some((negative, Lit::Int(int))) = number(value) else {
        return Err(wrong_type(key, value, "a whole number"));
    };
    let out_of_range = || {
        syn::Error::new(
            value.span(),
            format!("`{}` must be between 1 and {max}", key.name),
        )
    };
    if negative {
        return Err(out_of_range());
    }
    match int.base10_parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(out_of_range()),
    }
}

fn rate(key: &Key, value: &Expr) -> syn::Result<f64> {
    let parsed = match number(value) {
        Some((negative, Lit::Float(float))) => float.base10_parse::<f64>().map(|f| (negative, f)),
        Some((negative, Lit::Int(int))) => int.base10_parse::<f64>().map(|f| (negative, f)),
        _ => return Err(wrong_type(key, value, "a rate between 0 and 1")),
    };
    match parsed {
        Ok((false, r)) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(syn::Error::new(
            value.span(),
            format!(
                "`{}` is a rate and must be between 0 and 1 (0.5 is 50%)",
                key.name
            ),
        )),
    }
}

fn nanos(key: &Key, value: &Expr, nonzero: bool) -> syn::Result<u64> {
    let lit = match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => lit,
        _ => return Err(wrong_type(key, value, "a duration in a string with its unit")),
    };
    match cb_syntax::parse_nanos(&lit.value()) {
        Ok(0) if nonzero => Err(syn::Error::new(
            lit.span(),
            format!("`{}` must be longer than zero", key.name),
        )),
        Ok(n) => Ok(n),
        Err(message) => Err(syn::Error::new(lit.span(), message)),
    }
}

/// `open_backoff = "<multiplier> <cap> [<jitter>]"`, checked as the runtime's
/// `Backoff` is: a finite multiplier of at least 1, a cap above zero, a jitter
/// fraction in `[0, 1]`. (That the cap is at least the open duration is judged
/// with the whole configuration, at run time.)
fn backoff(key: &Key, value: &Expr) -> syn::Result<Value> {
    let lit = string(key, value)?;
    match cb_syntax::parse_backoff(&lit.value()) {
        Ok(b) => Ok(Value::Backoff(b.multiplier, b.cap_nanos, b.jitter)),
        Err(why) => Err(syn::Error::new(
            lit.span(),
            format!(
                "`open_backoff` {why}; it takes \"<multiplier> <cap> [<jitter>]\", like `{}`",
                example("open_backoff")
            ),
        )),
    }
}

fn window(key: &Key, value: &Expr) -> syn::Result<Value> {
    match value {
        Expr::Lit(ExprLit { lit: Lit::Str(_), .. }) => {
            let nanos = nanos(key, value, true)?;
            if !(MIN_WINDOW_NANOS..=MAX_WINDOW_NANOS).contains(&nanos) {
                return Err(syn::Error::new(
                    value.span(),
                    "a time `sliding_window` must be between 100ms and 24h",
                ));
            }
            Ok(Value::WindowTime(nanos))
        }
        _ => match number(value) {
            Some((_, Lit::Int(_))) => count(key, value, MAX_WINDOW_CALLS).map(Value::WindowCount),
            _ => Err(wrong_type(
                key,
                value,
                "a number of calls or a duration in a string",
            )),
        },
    }
}

fn check_preset(lit: &LitStr) -> syn::Result<Ident> {
    let written = lit.value();
    if let Some((_, variant)) = PRESETS.iter().find(|(name, _)| *name == written) {
        return Ok(Ident::new(variant, lit.span()));
    }
    let names: Vec<&str> = PRESETS.iter().map(|(name, _)| *name).collect();
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

    /// Every field the config file and the environment may set is also a
    /// key of the attribute: the two lists cannot drift apart.
    #[test]
    fn every_config_field_is_a_key() {
        for field in cb_syntax::FIELDS {
            let ident = proc_macro2::Ident::new(field, proc_macro2::Span::call_site());
            let key = parse_key.parse2(quote::quote!(#ident)).unwrap();
            assert!(key.is_ok(), "`{field}` is not an attribute key");
        }
    }
}
