//! The configuration fields: one entry per field, with its name, the kind of
//! value it takes, that value's range, the "expected ..." text of a refusal
//! and one line of documentation.
//!
//! Every layer reads this table: the `#[circuit_breaker]` attribute (its keys
//! and their checks), `cb-runtime`'s `ConfigBuilder::build` (its ranges), its
//! config file and `CB_<NAME>_<FIELD>` environment variables (their keys,
//! parser and messages), and its admin API's view of a configuration. Adding a
//! field is adding an entry to [`FIELDS`] and the `Config` field it sets.

use std::fmt;

use crate::backoff::{parse_backoff, BackoffText};
use crate::duration::{parse_nanos, DURATION_FORMAT};

/// The presets' names, in the order of `cb_runtime::Preset::ALL` (the
/// runtime checks the order at compile time). The presets' numbers live in
/// `cb-runtime`'s `preset.rs`, and only there.
pub const PRESETS: [&str; 5] = ["llm", "http_api", "database", "cache", "notification"];

/// The preset of an attribute that names none.
pub const DEFAULT_PRESET: &str = "http_api";

/// The shortest `slow_call_duration` on the system clock, in nanoseconds
/// (10 ms): its readings tick about every millisecond (later on a starved
/// machine), so a shorter threshold would count fast calls as slow. Clocks that are exact (manual, tokio) take
/// any duration; the attribute always runs on the system clock.
pub const MIN_SLOW_CALL_NANOS: u64 = 10_000_000;

/// The largest count window (`sliding_window = 100000`).
pub const MAX_WINDOW_CALLS: u32 = 100_000;
/// The shortest time window, in nanoseconds (100 ms).
pub const MIN_WINDOW_NANOS: u64 = 100_000_000;
/// The longest time window, in nanoseconds (24 h).
pub const MAX_WINDOW_NANOS: u64 = 24 * 3_600_000_000_000;
/// The most probes `half_open_max_calls` may allow at once.
pub const MAX_PROBES: u32 = 10_000;
/// The longest `max_retry_after`, in nanoseconds: [`MAX_OPEN_NANOS`], since
/// a hint opens the circuit for that long.
pub const MAX_RETRY_AFTER_NANOS: u64 = MAX_OPEN_NANOS;
/// The most keys `max_keys` may allow in one family of keyed breakers.
pub const MAX_KEYS: u32 = 100_000;
/// The longest open period, in nanoseconds (24 h), and the one bound of
/// every open: `open_duration` and `throttle_duration` (the
/// [`Kind::Duration`] fields), `open_backoff`'s cap (and the open durations
/// it grows, jitter included), `max_retry_after`, and the runtime's
/// `open_for`, which cuts a longer period to it. The fleet's messages carry
/// any open up to it, and a fleet resynchronising never cuts one shorter.
pub const MAX_OPEN_NANOS: u64 = 24 * 3_600_000_000_000;
/// The most calls `max_concurrent_calls` may allow in flight at once.
pub const MAX_CONCURRENT_CALLS: u32 = 1_000_000;
/// The largest `adaptive_k`: past it the adaptive throttle refuses nothing
/// short of a dependency that answers nearly every call with an error.
pub const MAX_ADAPTIVE_K: f64 = 100.0;
/// The words of the field `mode`: the breaker enforces its decisions, or
/// only counts the calls it would have refused.
pub const MODES: [&str; 2] = ["enforce", "shadow"];
/// The words of the field `trip`: the classic thresholds and open circuit,
/// or client-side adaptive throttling.
pub const TRIPS: [&str; 2] = ["threshold", "adaptive"];
/// The longest `ramp_up`, in nanoseconds (1 h): a longer ramp refuses
/// callers of a recovered dependency for longer than any outage it hides.
pub const MAX_RAMP_UP_NANOS: u64 = 3_600_000_000_000;

/// What a field takes, with its range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The name of a preset, one of [`PRESETS`]: the base the other fields
    /// override.
    Preset,
    /// A whole number in `min..=max`.
    Count {
        /// The smallest value allowed.
        min: u32,
        /// The largest value allowed.
        max: u32,
    },
    /// A fraction in `[0, 1]`.
    Rate,
    /// An open period: a duration longer than zero and at most
    /// [`MAX_OPEN_NANOS`].
    Duration,
    /// A duration longer than zero, or `"none"` (or `"off"`) for none.
    OptionalDuration,
    /// A duration from zero (`"0s"`, which turns the field's effect off) up
    /// to `max` nanoseconds.
    DurationUpTo {
        /// The longest duration allowed, in nanoseconds.
        max: u64,
    },
    /// A count window of `1..=`[`MAX_WINDOW_CALLS`] calls (a number), or a
    /// time window of [`MIN_WINDOW_NANOS`]`..=`[`MAX_WINDOW_NANOS`] (a
    /// duration).
    Window,
    /// `"<multiplier> <cap> [<jitter>]"` ([`parse_backoff`]: a multiplier of
    /// at least 1, a cap longer than zero and at most [`MAX_OPEN_NANOS`], a
    /// jitter fraction in `[0, 1]`), or `"none"` (or `"off"`) for none.
    Backoff,
    /// One of a few words (`"enforce"` or `"shadow"`, say).
    Word(&'static [&'static str]),
    /// A whole number in `1..=max`, or `"none"` (or `"off"`) for none.
    OptionalCount {
        /// The largest value allowed.
        max: u32,
    },
    /// A number greater than 1.0, up to [`MAX_ADAPTIVE_K`].
    Multiplier,
    /// A duration from zero up to `max` nanoseconds, where `"0s"` and
    /// `"none"` (or `"off"`) both turn the field's effect off.
    DurationOrNone {
        /// The longest duration allowed, in nanoseconds.
        max: u64,
    },
}

/// One configuration field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// The name users write: the attribute's key, the config file's key, the
    /// `<FIELD>` of `CB_<NAME>_<FIELD>` (upper-cased there), and the
    /// `ConfigBuilder` method.
    pub name: &'static str,
    /// What it takes, with the range.
    pub kind: Kind,
    /// One line saying what it does.
    pub doc: &'static str,
}

const fn count(max: u32) -> Kind {
    Kind::Count { min: 1, max }
}

/// Every field a preset sets and a user may override: as an attribute
/// argument, as a key of a config file table, or as the `<FIELD>` of a
/// `CB_<NAME>_<FIELD>` environment variable.
///
/// `preset` comes first: it chooses the base that the other fields override.
pub const FIELDS: [Field; 24] = [
    Field {
        name: "preset",
        kind: Kind::Preset,
        doc: "The preset the configuration starts from; the other fields override it.",
    },
    Field {
        name: "failure_threshold",
        kind: count(u32::MAX),
        doc: "Consecutive failures that open the circuit.",
    },
    Field {
        name: "failure_rate_threshold",
        kind: Kind::Rate,
        doc: "Failure rate in the sliding window that opens the circuit (rate >= threshold).",
    },
    Field {
        name: "sliding_window",
        kind: Kind::Window,
        doc: "The window the rates are judged over: the last N calls, or the calls of the last duration.",
    },
    Field {
        name: "minimum_calls",
        kind: count(u32::MAX),
        doc: "Calls in the window before any rate is judged (at most a count window's size).",
    },
    Field {
        name: "slow_call_duration",
        kind: Kind::OptionalDuration,
        doc: "A call slower than this is slow; \"none\" turns slow-call detection off.",
    },
    Field {
        name: "slow_call_rate_threshold",
        kind: Kind::Rate,
        doc: "Slow-call rate in the sliding window that opens the circuit (rate >= threshold).",
    },
    Field {
        name: "open_duration",
        kind: Kind::Duration,
        doc: "How long the circuit stays open before a probe is let through.",
    },
    Field {
        name: "half_open_max_calls",
        kind: count(MAX_PROBES),
        doc: "Probes in flight at once while half-open; more are rejected.",
    },
    Field {
        name: "success_threshold",
        kind: count(u32::MAX),
        doc: "Successful probes that close the circuit; any failed probe reopens it.",
    },
    Field {
        name: "call_timeout",
        kind: Kind::OptionalDuration,
        doc: "A call still running then is abandoned and counts as a failure; \"none\" for no timeout.",
    },
    Field {
        name: "open_backoff",
        kind: Kind::Backoff,
        doc: "Grows the open duration on each reopen, up to the cap (at least `open_duration`), with jitter.",
    },
    Field {
        name: "throttle_duration",
        kind: Kind::Duration,
        doc: "How long a throttled answer (a 429, a quota error) without a `Retry-After` hint keeps the circuit open.",
    },
    Field {
        name: "max_retry_after",
        kind: Kind::DurationUpTo {
            max: MAX_RETRY_AFTER_NANOS,
        },
        doc: "The longest `Retry-After` hint honoured; a longer one is cut to this, and \"0s\" ignores hints.",
    },
    Field {
        name: "max_keys",
        kind: count(MAX_KEYS),
        doc: "Keyed breakers: the most keys a family holds; a new key evicts the least recently used closed one.",
    },
    Field {
        name: "family_open_keys",
        kind: Kind::Count { min: 0, max: MAX_KEYS },
        doc: "Keyed breakers: this many keys open at once open the whole family; 0 turns it off.",
    },
    // Issue 39: triggers that chance runs of failures do not fool.
    Field {
        name: "streak_failure_rate",
        kind: Kind::Rate,
        doc: "A run of `failure_threshold` errors opens only if this share of the window failed (judged over at least `minimum_calls` calls); a run of timeouts, one too long for chance, or one in a window without a success opens on its own; 0 lets any run open.",
    },
    Field {
        name: "open_growth",
        kind: Kind::Rate,
        doc: "Long outages: after a failed probe the circuit stays open this share of the time since it opened, when longer than `open_duration`; 0 turns it off.",
    },
    // Issue 43: the protection modes.
    Field {
        name: "mode",
        kind: Kind::Word(&MODES),
        doc: "`enforce` refuses calls; `shadow` lets every call through and counts those it would have refused.",
    },
    Field {
        name: "max_concurrent_calls",
        kind: Kind::OptionalCount {
            max: MAX_CONCURRENT_CALLS,
        },
        doc: "Bulkhead: calls in flight at once (per key); one more is refused at once as saturated; \"none\" for no cap.",
    },
    Field {
        name: "trip",
        kind: Kind::Word(&TRIPS),
        doc: "`threshold` opens the circuit on the triggers; `adaptive` never opens and refuses a share of calls that tracks the failures.",
    },
    Field {
        name: "adaptive_k",
        kind: Kind::Multiplier,
        doc: "Adaptive throttling: refuses calls once requests exceed k times the successes in the window; lower refuses sooner.",
    },
    // Issue 40: recovery by health checks and a ramp-up.
    Field {
        name: "health_check_interval",
        kind: Kind::Duration,
        doc: "While open, how often the health check (if one is set) runs; its successes can close the circuit early.",
    },
    Field {
        name: "ramp_up",
        kind: Kind::DurationOrNone {
            max: MAX_RAMP_UP_NANOS,
        },
        doc: "After closing from half-open or by health checks, the admitted share grows from 10 % to 100 % over this; \"0s\" or \"none\" turns it off.",
    },
];

/// The names of [`FIELDS`], in order: for lists in messages and suggestions.
pub const FIELD_NAMES: [&str; FIELDS.len()] = {
    let mut names = [""; FIELDS.len()];
    let mut i = 0;
    while i < FIELDS.len() {
        names[i] = FIELDS[i].name;
        i += 1;
    }
    names
};

/// The field called `name`, if there is one.
///
/// ```
/// let field = cb_syntax::field("half_open_max_calls").unwrap();
/// assert_eq!(field.range(), "a whole number in 1..=10000");
/// assert!(cb_syntax::field("retries").is_none());
/// ```
pub fn field(name: &str) -> Option<&'static Field> {
    FIELDS.iter().find(|f| f.name == name)
}

/// A field's value, in the units the table speaks: whole nanoseconds for
/// durations.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    /// A preset, by its name in [`PRESETS`].
    Preset(&'static str),
    /// A whole number.
    Count(u32),
    /// A fraction.
    Rate(f64),
    /// A duration, in nanoseconds.
    Duration(u64),
    /// `"none"`: no duration, no backoff.
    Off,
    /// A count window of this many calls.
    WindowCalls(u32),
    /// A time window, in nanoseconds.
    WindowTime(u64),
    /// An open-duration backoff.
    Backoff(BackoffText),
    /// One of a field's words.
    Word(&'static str),
    /// A multiplier (`adaptive_k`).
    Multiplier(f64),
}

impl fmt::Display for Value {
    /// The value as it would be written in a config file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Value::Preset(name) => write!(f, "`{name}`"),
            Value::Count(n) | Value::WindowCalls(n) => write!(f, "{n}"),
            Value::Rate(r) | Value::Multiplier(r) => write!(f, "{r}"),
            Value::Word(word) => write!(f, "\"{word}\""),
            Value::Duration(nanos) | Value::WindowTime(nanos) => f.write_str(&format_nanos(nanos)),
            Value::Off => f.write_str("none"),
            Value::Backoff(b) => write!(
                f,
                "\"{} {} {}\"",
                b.multiplier,
                format_nanos(b.cap_nanos),
                b.jitter
            ),
        }
    }
}

/// `nanos` in the largest unit that writes it exactly: `"5m"`, `"250ms"`, `"0s"`.
pub fn format_nanos(nanos: u64) -> String {
    const UNITS: [(u64, &str); 6] = [
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
        (1, "ns"),
    ];
    if nanos == 0 {
        return "0s".to_owned();
    }
    let (size, unit) = UNITS
        .into_iter()
        .find(|(size, _)| nanos % size == 0)
        .unwrap_or((1, "ns"));
    format!("{}{unit}", nanos / size)
}

/// Why a value was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not the kind of value the field takes ([`Field::expected`] says what
    /// is); the detail says what is wrong, when the parser knows (a duration,
    /// a backoff).
    Malformed(Option<String>),
    /// The right kind of value, outside the field's range ([`Field::range`]).
    OutOfRange,
}

impl Field {
    /// What to write, for a value that is not of the field's kind: the
    /// "expected ..." of a refusal.
    pub fn expected(&self) -> String {
        match self.kind {
            Kind::Duration => format!("a duration: {DURATION_FORMAT}"),
            Kind::OptionalDuration => format!("a duration: {DURATION_FORMAT}, or \"none\""),
            Kind::DurationUpTo { .. } => format!("a duration: {DURATION_FORMAT}, or \"0s\""),
            Kind::DurationOrNone { .. } => format!("a duration: {DURATION_FORMAT}, or \"0s\" or \"none\""),
            Kind::Window => format!("a number of calls (such as 100) or a time window: {DURATION_FORMAT}"),
            Kind::Backoff => format!(
                "\"<multiplier> <cap> [<jitter>]\" such as \"2 5m 0.1\" (a multiplier >= 1, a cap that is \
                 {DURATION_FORMAT}, a jitter fraction in [0.0, 1.0]), or \"none\""
            ),
            Kind::OptionalCount { .. } => "a whole number, or \"none\"".to_owned(),
            Kind::Preset | Kind::Count { .. } | Kind::Rate | Kind::Word(_) | Kind::Multiplier => self.range(),
        }
    }

    /// The values allowed, for a value of the right kind out of range.
    pub fn range(&self) -> String {
        match self.kind {
            Kind::Preset => {
                let names: Vec<String> = PRESETS.iter().map(|p| format!("`{p}`")).collect();
                format!("one of {}", names.join(", "))
            }
            Kind::Count { min, max: u32::MAX } => format!("a whole number of at least {min}"),
            Kind::Count { min, max } => format!("a whole number in {min}..={max}"),
            Kind::Rate => "a rate in [0.0, 1.0]".to_owned(),
            Kind::Duration => format!(
                "a duration longer than zero, at most {}",
                format_nanos(MAX_OPEN_NANOS)
            ),
            Kind::OptionalDuration => "a duration longer than zero, or \"none\"".to_owned(),
            Kind::DurationUpTo { max } => format!("a duration from 0s to {}", format_nanos(max)),
            Kind::DurationOrNone { max } => {
                format!(
                    "a duration from 0s to {}, or \"none\" (as 0s: off)",
                    format_nanos(max)
                )
            }
            Kind::Window => format!(
                "a count window of 1..={MAX_WINDOW_CALLS} calls, or a time window between {} and {}",
                format_nanos(MIN_WINDOW_NANOS),
                format_nanos(MAX_WINDOW_NANOS)
            ),
            Kind::Backoff => format!(
                "a multiplier of at least 1, a cap longer than zero and at most {}, and an optional jitter \
                 fraction in [0.0, 1.0], such as \"2 5m 0.1\"; or \"none\"",
                format_nanos(MAX_OPEN_NANOS)
            ),
            Kind::Word(words) => {
                let words: Vec<String> = words.iter().map(|w| format!("`{w}`")).collect();
                format!("one of {}", words.join(", "))
            }
            Kind::OptionalCount { max } => format!("a whole number in 1..={max}, or \"none\""),
            Kind::Multiplier => format!("a number greater than 1.0, at most {MAX_ADAPTIVE_K:.1}"),
        }
    }

    /// An example of a value, as an attribute argument or in a TOML file.
    pub fn example(&self) -> &'static str {
        match self.kind {
            Kind::Preset => "\"llm\"",
            Kind::Count { .. } => "5",
            Kind::Rate => "0.5",
            Kind::Duration
            | Kind::OptionalDuration
            | Kind::DurationUpTo { .. }
            | Kind::DurationOrNone { .. } => "\"30s\"",
            Kind::Window => "20",
            Kind::Backoff => "\"2 5m 0.1\"",
            Kind::Word(words) if words == MODES.as_slice() => "\"shadow\"",
            Kind::Word(_) => "\"adaptive\"",
            Kind::OptionalCount { .. } => "16",
            Kind::Multiplier => "2.0",
        }
    }

    /// Parses the text of a value (a config file's value, an environment
    /// variable, an attribute's string) and checks its range.
    ///
    /// ```
    /// use cb_syntax::{field, Refusal, Value};
    ///
    /// let timeout = field("call_timeout").unwrap();
    /// assert_eq!(timeout.parse("250ms"), Ok(Value::Duration(250_000_000)));
    /// assert_eq!(timeout.parse("none"), Ok(Value::Off));
    /// assert_eq!(timeout.parse("0s"), Err(Refusal::OutOfRange));
    /// let window = field("sliding_window").unwrap();
    /// assert_eq!(window.parse("40"), Ok(Value::WindowCalls(40)));
    /// ```
    pub fn parse(&self, text: &str) -> Result<Value, Refusal> {
        let t = text.trim();
        let off = matches!(t, "none" | "off");
        let duration = || parse_nanos(t).map_err(|why| Refusal::Malformed(Some(why)));
        let value = match self.kind {
            Kind::Preset => Value::Preset(PRESETS.into_iter().find(|p| *p == t).ok_or(Refusal::OutOfRange)?),
            Kind::Count { .. } => Value::Count(t.parse().map_err(|_| Refusal::Malformed(None))?),
            Kind::Rate => Value::Rate(
                t.parse::<f64>()
                    .ok()
                    .filter(|r| r.is_finite())
                    .ok_or(Refusal::Malformed(None))?,
            ),
            Kind::Duration => Value::Duration(duration()?),
            Kind::OptionalDuration if off => Value::Off,
            Kind::OptionalDuration | Kind::DurationUpTo { .. } => Value::Duration(duration()?),
            Kind::DurationOrNone { .. } if off => Value::Duration(0),
            Kind::DurationOrNone { .. } => Value::Duration(duration()?),
            Kind::Window => match t.parse::<u32>() {
                Ok(calls) => Value::WindowCalls(calls),
                Err(_) => Value::WindowTime(duration()?),
            },
            Kind::Backoff if off => Value::Off,
            Kind::Backoff => Value::Backoff(parse_backoff(t).map_err(|why| Refusal::Malformed(Some(why)))?),
            Kind::Word(words) => Value::Word(words.iter().find(|w| **w == t).ok_or(Refusal::OutOfRange)?),
            Kind::OptionalCount { .. } if off => Value::Off,
            Kind::OptionalCount { .. } => Value::Count(t.parse().map_err(|_| Refusal::Malformed(None))?),
            Kind::Multiplier => Value::Multiplier(
                t.parse::<f64>()
                    .ok()
                    .filter(|r| r.is_finite())
                    .ok_or(Refusal::Malformed(None))?,
            ),
        };
        self.check(&value)?;
        Ok(value)
    }

    /// Checks that `value` is of the field's kind and in its range.
    ///
    /// ```
    /// use cb_syntax::{field, Refusal, Value};
    ///
    /// let rate = field("failure_rate_threshold").unwrap();
    /// assert_eq!(rate.check(&Value::Rate(0.5)), Ok(()));
    /// assert_eq!(rate.check(&Value::Rate(1.5)), Err(Refusal::OutOfRange));
    /// assert_eq!(rate.check(&Value::Count(1)), Err(Refusal::Malformed(None)));
    /// ```
    pub fn check(&self, value: &Value) -> Result<(), Refusal> {
        let in_range = match (self.kind, *value) {
            (Kind::Preset, Value::Preset(name)) => PRESETS.contains(&name),
            (Kind::Count { min, max }, Value::Count(n)) => (min..=max).contains(&n),
            (Kind::Rate, Value::Rate(r)) => (0.0..=1.0).contains(&r),
            (Kind::Duration, Value::Duration(nanos)) => (1..=MAX_OPEN_NANOS).contains(&nanos),
            (Kind::OptionalDuration, Value::Duration(nanos)) => nanos > 0,
            (Kind::DurationUpTo { max } | Kind::DurationOrNone { max }, Value::Duration(nanos)) => {
                nanos <= max
            }
            (Kind::OptionalDuration | Kind::Backoff | Kind::OptionalCount { .. }, Value::Off) => true,
            (Kind::Word(words), Value::Word(word)) => words.contains(&word),
            (Kind::OptionalCount { max }, Value::Count(n)) => (1..=max).contains(&n),
            (Kind::Multiplier, Value::Multiplier(k)) => k > 1.0 && k <= MAX_ADAPTIVE_K,
            (Kind::Window, Value::WindowCalls(calls)) => (1..=MAX_WINDOW_CALLS).contains(&calls),
            (Kind::Window, Value::WindowTime(nanos)) => {
                (MIN_WINDOW_NANOS..=MAX_WINDOW_NANOS).contains(&nanos)
            }
            (Kind::Backoff, Value::Backoff(b)) => {
                b.multiplier.is_finite()
                    && b.multiplier >= 1.0
                    && (1..=MAX_OPEN_NANOS).contains(&b.cap_nanos)
                    && (0.0..=1.0).contains(&b.jitter)
            }
            _ => return Err(Refusal::Malformed(None)),
        };
        if in_range {
            Ok(())
        } else {
            Err(Refusal::OutOfRange)
        }
    }

    /// The field's row in a Markdown table of `| field | takes | meaning |`,
    /// as the guide's "Configuring" chapter (`docs/guide/configuring.md`) and
    /// the runtime's docs list the fields.
    pub fn doc_row(&self) -> String {
        format!("| `{}` | {} | {} |", self.name, self.range(), self.doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_indexed() {
        for (i, f) in FIELDS.iter().enumerate() {
            assert_eq!(FIELD_NAMES[i], f.name);
            assert_eq!(field(f.name), Some(f));
            assert_eq!(
                FIELDS.iter().filter(|g| g.name == f.name).count(),
                1,
                "{}",
                f.name
            );
            assert!(!f.doc.is_empty() && !f.doc.contains('|'), "{}", f.name);
        }
        assert_eq!(FIELDS[0].kind, Kind::Preset);
        assert!(PRESETS.contains(&DEFAULT_PRESET));
    }

    #[test]
    fn every_field_parses_its_example_and_refuses_nonsense() {
        for f in FIELDS {
            let example = f.example().trim_matches('"');
            let value = f.parse(example).unwrap_or_else(|e| panic!("{}: {e:?}", f.name));
            assert_eq!(
                f.parse(&value.to_string().replace(['"', '`'], "")),
                Ok(value),
                "{}",
                f.name
            );
            assert!(f.parse("x").is_err(), "{}", f.name);
        }
    }

    #[test]
    fn ranges() {
        let probes = field("half_open_max_calls").unwrap();
        assert_eq!(probes.parse("0"), Err(Refusal::OutOfRange));
        assert_eq!(probes.parse("10001"), Err(Refusal::OutOfRange));
        assert_eq!(probes.parse("-1"), Err(Refusal::Malformed(None)));
        let window = field("sliding_window").unwrap();
        assert_eq!(window.parse("0"), Err(Refusal::OutOfRange));
        assert_eq!(window.parse("50ms"), Err(Refusal::OutOfRange));
        assert_eq!(window.parse("60s"), Ok(Value::WindowTime(60_000_000_000)));
        assert_eq!(
            field("open_duration").unwrap().parse("none"),
            Err(Refusal::Malformed(Some(
                "invalid duration `none`: `none` does not start with a number; write ".to_owned()
                    + DURATION_FORMAT
            )))
        );
        assert_eq!(field("preset").unwrap().parse("redis"), Err(Refusal::OutOfRange));
        assert_eq!(
            field("preset").unwrap().range(),
            "one of `llm`, `http_api`, `database`, `cache`, `notification`"
        );
    }

    #[test]
    fn max_retry_after_takes_zero_and_at_most_a_day() {
        let cap = field("max_retry_after").unwrap();
        assert_eq!(cap.parse("0s"), Ok(Value::Duration(0)));
        assert_eq!(cap.parse("24h"), Ok(Value::Duration(MAX_RETRY_AFTER_NANOS)));
        assert_eq!(cap.parse("25h"), Err(Refusal::OutOfRange));
        assert_eq!(cap.range(), "a duration from 0s to 24h");
        assert!(matches!(cap.parse("none"), Err(Refusal::Malformed(Some(_)))));
        let throttle = field("throttle_duration").unwrap();
        assert_eq!(throttle.parse("0s"), Err(Refusal::OutOfRange));
        assert_eq!(throttle.parse("10s"), Ok(Value::Duration(10_000_000_000)));
    }

    #[test]
    fn every_open_is_at_most_a_day() {
        for name in ["open_duration", "throttle_duration"] {
            let f = field(name).unwrap();
            assert_eq!(f.parse("24h"), Ok(Value::Duration(MAX_OPEN_NANOS)), "{name}");
            assert_eq!(f.parse("86400001ms"), Err(Refusal::OutOfRange), "{name}");
            assert_eq!(f.parse("2d").map_err(|_| ()), Err(()), "{name}");
            assert_eq!(f.range(), "a duration longer than zero, at most 24h", "{name}");
        }
        let backoff = field("open_backoff").unwrap();
        assert!(backoff.parse("2 24h 0.1").is_ok());
        assert_eq!(backoff.parse("2 25h 0.1"), Err(Refusal::OutOfRange));
        assert!(backoff.range().contains("at most 24h"), "{}", backoff.range());
        assert_eq!(MAX_RETRY_AFTER_NANOS, MAX_OPEN_NANOS);
    }

    #[test]
    fn the_protection_modes_fields_take_their_words_a_cap_and_a_multiplier() {
        let mode = field("mode").unwrap();
        assert_eq!(mode.parse("shadow"), Ok(Value::Word("shadow")));
        assert_eq!(mode.parse(" enforce "), Ok(Value::Word("enforce")));
        assert_eq!(mode.parse("dry-run"), Err(Refusal::OutOfRange));
        assert_eq!(mode.range(), "one of `enforce`, `shadow`");
        assert_eq!(mode.check(&Value::Word("adaptive")), Err(Refusal::OutOfRange));
        let trip = field("trip").unwrap();
        assert_eq!(trip.parse("adaptive"), Ok(Value::Word("adaptive")));
        assert_eq!(trip.range(), "one of `threshold`, `adaptive`");
        let cap = field("max_concurrent_calls").unwrap();
        assert_eq!(cap.parse("none"), Ok(Value::Off));
        assert_eq!(cap.parse("16"), Ok(Value::Count(16)));
        assert_eq!(cap.parse("0"), Err(Refusal::OutOfRange));
        assert_eq!(cap.parse("1000001"), Err(Refusal::OutOfRange));
        assert_eq!(cap.parse("many"), Err(Refusal::Malformed(None)));
        assert_eq!(cap.range(), "a whole number in 1..=1000000, or \"none\"");
        let k = field("adaptive_k").unwrap();
        assert_eq!(k.parse("1.5"), Ok(Value::Multiplier(1.5)));
        assert_eq!(k.parse("2"), Ok(Value::Multiplier(2.0)));
        assert_eq!(k.parse("1.0"), Err(Refusal::OutOfRange));
        assert_eq!(k.parse("101"), Err(Refusal::OutOfRange));
        assert_eq!(k.parse("NaN"), Err(Refusal::Malformed(None)));
        assert_eq!(k.range(), "a number greater than 1.0, at most 100.0");
    }

    #[test]
    fn ramp_up_takes_zero_none_and_at_most_an_hour() {
        let ramp = field("ramp_up").unwrap();
        assert_eq!(ramp.parse("0s"), Ok(Value::Duration(0)));
        assert_eq!(ramp.parse("none"), Ok(Value::Duration(0)));
        assert_eq!(ramp.parse("30s"), Ok(Value::Duration(30_000_000_000)));
        assert_eq!(ramp.parse("2h"), Err(Refusal::OutOfRange));
        assert!(ramp.range().contains("0s to 1h"), "{}", ramp.range());
        let interval = field("health_check_interval").unwrap();
        assert_eq!(interval.parse("0s"), Err(Refusal::OutOfRange));
        assert_eq!(interval.parse("5s"), Ok(Value::Duration(5_000_000_000)));
    }

    #[test]
    fn nanos_are_written_in_the_largest_exact_unit() {
        assert_eq!(format_nanos(0), "0s");
        assert_eq!(format_nanos(300_000_000_000), "5m");
        assert_eq!(format_nanos(90_000_000_000), "90s");
        assert_eq!(format_nanos(250_000_000), "250ms");
        assert_eq!(format_nanos(MAX_WINDOW_NANOS), "24h");
        assert_eq!(format_nanos(7), "7ns");
    }
}
