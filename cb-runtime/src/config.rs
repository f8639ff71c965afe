//! Breaker configuration: the builder, its defaults and its validation.

use std::fmt;
use std::time::Duration;

use cb_syntax::{Field, Value, FIELDS};

use crate::clock::{duration_nanos, Clock};
use crate::mode::{Mode, Trip};

/// The sliding window over which failure and slow-call rates are judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Window {
    /// The last `n` calls, exactly. `n` must be in `1..=100_000`.
    Count(u32),
    /// The calls of the last duration, in ten buckets that slide by a tenth of
    /// the duration. The duration must be between 100 ms and 24 h.
    Time(Duration),
}

impl Window {
    /// The largest count window.
    pub const MAX_COUNT: u32 = cb_syntax::MAX_WINDOW_CALLS;
    /// The shortest time window.
    pub const MIN_TIME: Duration = Duration::from_nanos(cb_syntax::MIN_WINDOW_NANOS);
    /// The longest time window.
    pub const MAX_TIME: Duration = Duration::from_nanos(cb_syntax::MAX_WINDOW_NANOS);
    /// How many buckets a time window is cut into.
    pub const TIME_BUCKETS: u32 = 10;

    /// Whether this is a time window, which sees every call under the lock.
    pub(crate) fn is_time(&self) -> bool {
        matches!(self, Window::Time(_))
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Window::Count(n) => write!(f, "the last {n} calls"),
            Window::Time(d) => write!(f, "the calls of the last {d:?}"),
        }
    }
}

/// Exponential backoff of the open duration when probes keep failing.
///
/// After the `k`-th consecutive reopen (a failed probe in half-open), the
/// circuit stays open `open_duration × multiplier^k`, capped at `max`, then
/// spread by ± `jitter` (a fraction) so that replicas don't probe in lockstep.
/// Closing the circuit or [`reset`](crate::CircuitBreaker::reset) starts over.
///
/// ```
/// use std::time::Duration;
/// use cb_runtime::{Backoff, Config};
///
/// let config = Config::builder()
///     .open_duration(Duration::from_secs(10))
///     .open_backoff(Backoff::exponential(2.0, Duration::from_secs(300)).jitter(0.1))
///     .build()
///     .unwrap();
/// assert_eq!(config.open_backoff().unwrap().max(), Duration::from_secs(300));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    multiplier: f64,
    max: Duration,
    jitter: f64,
}

impl Backoff {
    /// Multiply the open duration by `multiplier` at each reopen, up to `max`.
    pub fn exponential(multiplier: f64, max: Duration) -> Self {
        Backoff {
            multiplier,
            max,
            jitter: 0.0,
        }
    }

    /// Spread each open duration by up to ± `fraction` of itself (in `[0, 1]`).
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction;
        self
    }

    /// The growth factor per reopen.
    pub fn multiplier(&self) -> f64 {
        self.multiplier
    }

    /// The cap on the open duration.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The jitter fraction.
    pub fn jitter_fraction(&self) -> f64 {
        self.jitter
    }

    /// The open duration after `reopens` consecutive reopens, given a jitter
    /// draw `unit` in `[0, 1)`.
    pub(crate) fn open_duration(&self, base: Duration, reopens: u32, unit: f64) -> Duration {
        let grown = base.as_secs_f64() * self.multiplier.powi(reopens.min(1024) as i32);
        let capped = grown.min(self.max.as_secs_f64());
        let spread = capped * (1.0 + self.jitter * (2.0 * unit - 1.0));
        // Jitter spreads around the cap, never past the bound of every open.
        let spread = spread.clamp(0.0, MAX_OPEN_DURATION.as_secs_f64());
        Duration::try_from_secs_f64(spread).unwrap_or(self.max)
    }
}

/// A validated breaker configuration. Build one with [`Config::builder`] or
/// from a [`Preset`](crate::Preset).
///
/// Each field is described once, in the table [`cb_syntax::FIELDS`] (its
/// kind, range and messages), which the attribute, [`ConfigBuilder::build`],
/// the config file, the environment and the admin view all read; the
/// guide's "Configuring" chapter (`docs/guide/configuring.md`) lists them.
/// The builder's defaults:
///
/// | field | default |
/// |---|---|
/// | `preset` | none (a preset's configuration records its preset) |
/// | `failure_threshold` | 5 consecutive failures |
/// | `failure_rate_threshold` | 0.5 |
/// | `sliding_window` | `Window::Count(100)` |
/// | `minimum_calls` | 20 |
/// | `slow_call_duration` | none: no slow-call trigger |
/// | `slow_call_rate_threshold` | 1.0 (used once a slow-call duration is set) |
/// | `open_duration` | 30 s |
/// | `half_open_max_calls` | 1 |
/// | `success_threshold` | 1 |
/// | `call_timeout` | none |
/// | `open_backoff` | none |
/// | `throttle_duration` | 5 s |
/// | `max_retry_after` | 5 min |
/// | `max_keys` | 100 keys per family (keyed breakers only) |
/// | `family_open_keys` | 0: off (keyed breakers only) |
/// | `streak_failure_rate` | 0: any run of `failure_threshold` failures opens |
/// | `open_growth` | 0: off |
/// | `mode` | [`Mode::Enforce`] |
/// | `max_concurrent_calls` | none: no bulkhead |
/// | `trip` | [`Trip::Threshold`] |
/// | `adaptive_k` | 2.0 (used with [`Trip::Adaptive`]) |
/// | `health_check_interval` | 5 s (used once a health check is set) |
/// | `ramp_up` | 0 s: off |
/// | `clock` | [`Clock::system`] |
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The preset this configuration started from: its index in
    /// [`cb_syntax::PRESETS`] (one byte, not a `&str`, so that a breaker
    /// stays within 1 KiB).
    pub(crate) preset: Option<u8>,
    pub(crate) failure_threshold: u32,
    pub(crate) failure_rate_threshold: f64,
    pub(crate) sliding_window: Window,
    pub(crate) minimum_calls: u32,
    pub(crate) slow_call_duration: Option<Duration>,
    pub(crate) slow_call_rate_threshold: f64,
    pub(crate) open_nanos: u64,
    pub(crate) half_open_max_calls: u32,
    pub(crate) success_threshold: u32,
    pub(crate) call_timeout: Option<Duration>,
    pub(crate) open_backoff: Option<Backoff>,
    /// `throttle_duration` and `max_retry_after`, in whole milliseconds
    /// (rounded up), so that a breaker stays within 1 KiB.
    pub(crate) throttle_ms: u32,
    pub(crate) max_retry_after_ms: u32,
    pub(crate) max_keys: u32,
    pub(crate) family_open_keys: u32,
    /// Issue 39: how much of the window must agree with a run of errors,
    /// and how the open period grows in a long outage.
    /// In ten-thousandths (so that a breaker stays within 1 KiB), or
    /// [`NOT_A_RATE`] for a value no rate field takes.
    pub(crate) streak_failure_rate: u16,
    pub(crate) open_growth: u16,
    /// `health_check_interval`, in whole milliseconds (rounded up), as the
    /// throttle's durations; `ramp_up` in tenths of a second (rounded up, at
    /// most 1 h), in the two bytes the layout had spare: the breaker stays
    /// within 1 KiB.
    pub(crate) health_check_interval_ms: u32,
    pub(crate) ramp_up_ds: u16,
    pub(crate) clock: Clock,
    // Protection modes (see `shadow`, `bulkhead`, `adaptive`), in the six
    // bytes the fields above leave free, so that a breaker stays within 1 KiB.
    /// `adaptive_k` in hundredths ([`K_CENTS`], at most 10000), with
    /// `mode` and `trip` above it: [`SHADOW_MODE`] and [`ADAPTIVE_TRIP`].
    pub(crate) protection: u16,
    /// `max_concurrent_calls`; 0 for none.
    pub(crate) max_concurrent_calls: u32,
}

/// The bit of `Config::protection` for [`Mode::Shadow`].
const SHADOW_MODE: u16 = 1 << 15;
/// The bit of `Config::protection` for [`Trip::Adaptive`].
const ADAPTIVE_TRIP: u16 = 1 << 14;
/// The bits of `Config::protection` that hold `adaptive_k` in hundredths.
const K_CENTS: u16 = ADAPTIVE_TRIP - 1;

impl Default for Config {
    /// The builder's defaults (see the table on [`Config`]).
    fn default() -> Self {
        Config {
            preset: None,
            failure_threshold: 5,
            failure_rate_threshold: 0.5,
            sliding_window: Window::Count(100),
            minimum_calls: 20,
            slow_call_duration: None,
            slow_call_rate_threshold: 1.0,
            open_nanos: 30_000_000_000,
            half_open_max_calls: 1,
            success_threshold: 1,
            call_timeout: None,
            open_backoff: None,
            throttle_ms: 5_000,
            max_retry_after_ms: 300_000,
            max_keys: 100,
            family_open_keys: 0,
            streak_failure_rate: 0,
            open_growth: 0,
            health_check_interval_ms: 5_000,
            ramp_up_ds: 0,
            clock: Clock::system(),
            protection: crate::mode::DEFAULT_K_CENTS,
            max_concurrent_calls: 0,
        }
    }
}

impl Config {
    /// A builder starting from the documented defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder {
            config: Config::default(),
            zero_cap: false,
            adaptive_k: None,
        }
    }

    /// A builder starting from this configuration, to change a few fields.
    pub fn to_builder(&self) -> ConfigBuilder {
        ConfigBuilder {
            config: self.clone(),
            zero_cap: false,
            adaptive_k: None,
        }
    }

    /// The name of the preset this configuration started from (see
    /// [`Config::preset`] for the [`Preset`](crate::Preset)); `None` for a
    /// configuration built from [`Config::builder`].
    pub fn preset_name(&self) -> Option<&'static str> {
        self.preset.map(|i| cb_syntax::PRESETS[usize::from(i)])
    }

    /// Consecutive failures that open the circuit.
    pub fn failure_threshold(&self) -> u32 {
        self.failure_threshold
    }

    /// Failure rate in the window that opens the circuit (rate `>=` threshold).
    pub fn failure_rate_threshold(&self) -> f64 {
        self.failure_rate_threshold
    }

    /// The sliding window the rates are judged over.
    pub fn sliding_window(&self) -> Window {
        self.sliding_window
    }

    /// Calls in the window before any rate is judged.
    pub fn minimum_calls(&self) -> u32 {
        self.minimum_calls
    }

    /// A call slower than this is slow; `None` turns slow-call detection off.
    pub fn slow_call_duration(&self) -> Option<Duration> {
        self.slow_call_duration
    }

    /// Slow-call rate in the window that opens the circuit.
    pub fn slow_call_rate_threshold(&self) -> f64 {
        self.slow_call_rate_threshold
    }

    /// How long the circuit stays open before a probe is let through.
    pub fn open_duration(&self) -> Duration {
        Duration::from_nanos(self.open_nanos)
    }

    /// Probes in flight at once in half-open.
    pub fn half_open_max_calls(&self) -> u32 {
        self.half_open_max_calls
    }

    /// Successful probes that close the circuit.
    pub fn success_threshold(&self) -> u32 {
        self.success_threshold
    }

    /// A call still running after this is abandoned and fails with a timeout.
    pub fn call_timeout(&self) -> Option<Duration> {
        self.call_timeout
    }

    /// Backoff of the open duration on repeated reopens, if any.
    pub fn open_backoff(&self) -> Option<Backoff> {
        self.open_backoff
    }

    /// How long a throttled answer ([`Outcome::Throttled`](crate::Outcome::Throttled))
    /// without a `Retry-After` hint keeps the circuit open.
    pub fn throttle_duration(&self) -> Duration {
        Duration::from_millis(u64::from(self.throttle_ms))
    }

    /// The longest `Retry-After` hint honoured; `Duration::ZERO` ignores
    /// hints (a throttled answer then opens for `throttle_duration`).
    pub fn max_retry_after(&self) -> Duration {
        Duration::from_millis(u64::from(self.max_retry_after_ms))
    }

    /// How long a throttled answer keeps the circuit open: its hint, capped at
    /// `max_retry_after` (a zero hint, or a zero cap, is no hint), or
    /// `throttle_duration` without one.
    pub(crate) fn throttle_period(&self, hint: Option<Duration>) -> Duration {
        let cap = self.max_retry_after();
        match hint.filter(|h| !h.is_zero() && !cap.is_zero()) {
            Some(hint) => hint.min(cap),
            None => self.throttle_duration(),
        }
    }

    /// Keyed breakers: the most keys a [`Family`](crate::Family) holds
    /// before a new key evicts the least recently used closed one.
    pub fn max_keys(&self) -> u32 {
        self.max_keys
    }

    /// Keyed breakers: how many keys open at once open the whole
    /// [`Family`](crate::Family); 0 when that is off.
    pub fn family_open_keys(&self) -> u32 {
        self.family_open_keys
    }

    /// The share of the window that must have failed for a run of
    /// [`failure_threshold`](Self::failure_threshold) errors to open the
    /// circuit (0: any run opens). See
    /// [`ConfigBuilder::streak_failure_rate`].
    pub fn streak_failure_rate(&self) -> f64 {
        from_ten_thousandths(self.streak_failure_rate)
    }

    /// The share of an outage's length that the circuit stays open after a
    /// failed probe, when longer than the open duration (0: off). See
    /// [`ConfigBuilder::open_growth`].
    pub fn open_growth(&self) -> f64 {
        from_ten_thousandths(self.open_growth)
    }

    /// While the circuit is open, how often its health check runs (see
    /// [`CircuitBreaker::set_health_check`](crate::CircuitBreaker::set_health_check)).
    pub fn health_check_interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.health_check_interval_ms))
    }

    /// After the circuit closes from half-open or by health checks, how long
    /// the admitted share takes to grow from 10 % to 100 %;
    /// `Duration::ZERO` when there is no ramp.
    pub fn ramp_up(&self) -> Duration {
        match self.ramp_up_ds {
            RAMP_UP_TOO_LONG => Duration::from_nanos(cb_syntax::MAX_RAMP_UP_NANOS + 1),
            ds => Duration::from_millis(u64::from(ds) * 100),
        }
    }

    /// The clock the breaker reads.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Whether the breaker enforces its decisions ([`Mode::Enforce`]) or
    /// only counts the calls it would have refused ([`Mode::Shadow`]).
    pub fn mode(&self) -> Mode {
        if self.protection & SHADOW_MODE != 0 {
            Mode::Shadow
        } else {
            Mode::Enforce
        }
    }

    /// The bulkhead: how many calls may be in flight at once through the
    /// breaker (through each key's breaker in a [`Family`](crate::Family));
    /// `None` for no cap.
    pub fn max_concurrent_calls(&self) -> Option<u32> {
        (self.max_concurrent_calls != 0).then_some(self.max_concurrent_calls)
    }

    /// What refuses calls: the classic thresholds and open circuit
    /// ([`Trip::Threshold`]), or adaptive throttling ([`Trip::Adaptive`]).
    pub fn trip(&self) -> Trip {
        if self.protection & ADAPTIVE_TRIP != 0 {
            Trip::Adaptive
        } else {
            Trip::Threshold
        }
    }

    /// Adaptive throttling's multiplier `k` (greater than 1.0, kept to two
    /// decimals): calls are refused once the window's requests exceed `k`
    /// times its successes.
    pub fn adaptive_k(&self) -> f64 {
        f64::from(self.protection & K_CENTS) / 100.0
    }

    /// The value of `field` in this configuration, in the units of the
    /// field table. Every entry of [`FIELDS`] has an arm here and one in
    /// [`ConfigBuilder::set`]; `tests/fields.rs` fails for an entry without.
    pub(crate) fn value(&self, field: &Field) -> Option<Value> {
        let duration = |d: Duration| Value::Duration(duration_nanos(d));
        let optional = |d: Option<Duration>| d.map_or(Value::Off, duration);
        Some(match field.name {
            "preset" => Value::Preset(self.preset_name()?),
            "failure_threshold" => Value::Count(self.failure_threshold),
            "failure_rate_threshold" => Value::Rate(self.failure_rate_threshold),
            "sliding_window" => match self.sliding_window {
                Window::Count(n) => Value::WindowCalls(n),
                Window::Time(d) => Value::WindowTime(duration_nanos(d)),
            },
            "minimum_calls" => Value::Count(self.minimum_calls),
            "slow_call_duration" => optional(self.slow_call_duration),
            "slow_call_rate_threshold" => Value::Rate(self.slow_call_rate_threshold),
            "open_duration" => duration(self.open_duration()),
            "half_open_max_calls" => Value::Count(self.half_open_max_calls),
            "success_threshold" => Value::Count(self.success_threshold),
            "call_timeout" => optional(self.call_timeout),
            "open_backoff" => self.open_backoff.map_or(Value::Off, |b| {
                Value::Backoff(cb_syntax::BackoffText {
                    multiplier: b.multiplier,
                    cap_nanos: duration_nanos(b.max),
                    jitter: b.jitter,
                })
            }),
            "throttle_duration" => duration(self.throttle_duration()),
            "max_retry_after" => duration(self.max_retry_after()),
            "max_keys" => Value::Count(self.max_keys),
            "family_open_keys" => Value::Count(self.family_open_keys),
            "streak_failure_rate" => Value::Rate(self.streak_failure_rate()),
            "open_growth" => Value::Rate(self.open_growth()),
            "mode" => Value::Word(self.mode().as_str()),
            "max_concurrent_calls" => self.max_concurrent_calls().map_or(Value::Off, Value::Count),
            "trip" => Value::Word(self.trip().as_str()),
            "adaptive_k" => Value::Multiplier(self.adaptive_k()),
            "health_check_interval" => duration(self.health_check_interval()),
            "ramp_up" => duration(self.ramp_up()),
            _ => return None,
        })
    }

    /// Checks every field against its range in [`FIELDS`], then the fields
    /// that depend on each other.
    fn validate(&self) -> Result<(), ConfigError> {
        for field in &FIELDS {
            let Some(value) = self.value(field) else {
                continue;
            };
            if field.check(&value).is_err() {
                return Err(ConfigError::new(field.name, value.to_string(), field.range()));
            }
        }
        if let Window::Count(n) = self.sliding_window {
            if self.minimum_calls > n {
                return Err(ConfigError::new(
                    "minimum_calls",
                    self.minimum_calls.to_string(),
                    format!("at most the sliding window's size, 1..={n}"),
                ));
            }
        }
        if let Some(d) = self.slow_call_duration {
            if self.clock.is_system() && d < MIN_SLOW_CALL_DURATION {
                return Err(ConfigError::new(
                    "slow_call_duration",
                    format!("{d:?}"),
                    format!(
                        "at least {MIN_SLOW_CALL_DURATION:?} with the system clock, which ticks every {:?} \
                         (and lags more on a starved machine), so shorter calls cannot be told apart; \
                         a manual or tokio clock times any duration",
                        self.clock.resolution()
                    ),
                ));
            }
        }
        if let Some(b) = self.open_backoff {
            if b.max < self.open_duration() {
                return Err(ConfigError::new(
                    "open_backoff",
                    format!("max {:?}", b.max),
                    format!("a cap of at least open_duration ({:?})", self.open_duration()),
                ));
            }
        }
        Ok(())
    }
}

/// A rate field kept in ten-thousandths that was given no rate (negative,
/// above 1, NaN): `validate` refuses it.
const NOT_A_RATE: u16 = u16::MAX;

/// `rate` in ten-thousandths, rounded (0.033 is 330), or [`NOT_A_RATE`].
fn ten_thousandths(rate: f64) -> u16 {
    if (0.0..=1.0).contains(&rate) {
        (rate * 10_000.0).round() as u16
    } else {
        NOT_A_RATE
    }
}

/// A rate kept in ten-thousandths, back as a fraction (330 reads 0.033
/// exactly); NaN for [`NOT_A_RATE`], which `validate` refuses.
fn from_ten_thousandths(n: u16) -> f64 {
    if n == NOT_A_RATE {
        f64::NAN
    } else {
        f64::from(n) / 10_000.0
    }
}

/// `d` in whole milliseconds, rounded up (a period is never cut short),
/// saturating at `u32::MAX` (49 days).
fn whole_millis(d: Duration) -> u32 {
    let ms = duration_nanos(d).div_ceil(1_000_000);
    u32::try_from(ms).unwrap_or(u32::MAX)
}

/// `ramp_up` longer than allowed, kept so that `build` refuses it.
const RAMP_UP_TOO_LONG: u16 = u16::MAX;

/// The most probes `half_open_max_calls` may allow.
pub const MAX_PROBES: u32 = cb_syntax::MAX_PROBES;

/// The longest open period (24 h), the one bound of every open:
/// `open_duration`, `throttle_duration` and `open_backoff`'s cap are
/// refused above it, the open durations a backoff grows (jitter included)
/// and [`CircuitBreaker::open_for`](crate::CircuitBreaker::open_for) are cut
/// to it, and the fleet (`cb-fleet`) carries any open up to it.
pub const MAX_OPEN_DURATION: Duration = Duration::from_nanos(cb_syntax::MAX_OPEN_NANOS);

/// The shortest `slow_call_duration` accepted with [`Clock::system`]: it
/// reads a recent time that a background thread refreshes about every
/// millisecond (see [`Clock::system`]), and a call is judged by two readings,
/// so a shorter threshold would count fast calls as slow whenever a tick fell
/// between them, or the thread was late. With this floor, ten ticks, a call is
/// never misjudged by more than one tick. The attribute, which always runs on the
/// system clock, refuses a shorter one at compile time.
pub const MIN_SLOW_CALL_DURATION: Duration = Duration::from_nanos(cb_syntax::MIN_SLOW_CALL_NANOS);

/// Builds a [`Config`]. Each method takes the builder by value, so calls chain;
/// [`build`](Self::build) validates the whole.
///
/// ```
/// use std::time::Duration;
/// use cb_runtime::{Config, Window};
///
/// let config = Config::builder()
///     .failure_threshold(3)
///     .failure_rate_threshold(0.5)
///     .sliding_window(Window::Count(50))
///     .minimum_calls(10)
///     .open_duration(Duration::from_secs(30))
///     .call_timeout(Duration::from_secs(5))
///     .build()?;
/// assert_eq!(config.failure_threshold(), 3);
///
/// let err = Config::builder().failure_rate_threshold(1.5).build().unwrap_err();
/// assert_eq!(err.field(), "failure_rate_threshold");
/// # Ok::<(), cb_runtime::ConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ConfigBuilder {
    config: Config,
    /// `max_concurrent_calls(0)` was asked for: refused by `build` (the
    /// configuration keeps 0 for "none").
    zero_cap: bool,
    /// The `adaptive_k` asked for, checked by `build` before it is rounded.
    adaptive_k: Option<f64>,
}

impl Default for ConfigBuilder {
    fn default() -> Self {
        Config::builder()
    }
}

impl ConfigBuilder {
    /// Consecutive failures that open the circuit (at least 1).
    pub fn failure_threshold(mut self, n: u32) -> Self {
        self.config.failure_threshold = n;
        self
    }

    /// Failure rate in `[0, 1]` that opens the circuit once `minimum_calls`
    /// calls are in the window (rate `>=` threshold opens).
    pub fn failure_rate_threshold(mut self, rate: f64) -> Self {
        self.config.failure_rate_threshold = rate;
        self
    }

    /// The window the rates are judged over.
    pub fn sliding_window(mut self, window: Window) -> Self {
        self.config.sliding_window = window;
        self
    }

    /// Calls in the window before any rate is judged (at least 1, and at most
    /// the size of a count window).
    pub fn minimum_calls(mut self, n: u32) -> Self {
        self.config.minimum_calls = n;
        self
    }

    /// A call slower than this is slow; its result still goes back to the caller.
    pub fn slow_call_duration(mut self, d: Duration) -> Self {
        self.config.slow_call_duration = Some(d);
        self
    }

    /// Turns slow-call detection off (for instance after starting from a preset).
    pub fn no_slow_call_detection(mut self) -> Self {
        self.config.slow_call_duration = None;
        self
    }

    /// Slow-call rate in `[0, 1]` that opens the circuit (rate `>=` threshold).
    pub fn slow_call_rate_threshold(mut self, rate: f64) -> Self {
        self.config.slow_call_rate_threshold = rate;
        self
    }

    /// How long the circuit stays open before a probe is let through.
    pub fn open_duration(mut self, d: Duration) -> Self {
        // Nanoseconds (saturating): every valid open fits, and a breaker
        // stays within 1 KiB.
        self.config.open_nanos = duration_nanos(d);
        self
    }

    /// Probes in flight at once in half-open (`1..=10_000`); more are rejected.
    pub fn half_open_max_calls(mut self, n: u32) -> Self {
        self.config.half_open_max_calls = n;
        self
    }

    /// Successful probes that close the circuit; any failed probe reopens it.
    pub fn success_threshold(mut self, n: u32) -> Self {
        self.config.success_threshold = n;
        self
    }

    /// A call still running after `d` is abandoned, fails with a timeout and
    /// counts as a failure. The timer needs a tokio runtime, and is armed only
    /// when the call does not finish on its first poll.
    pub fn call_timeout(mut self, d: Duration) -> Self {
        self.config.call_timeout = Some(d);
        self
    }

    /// Removes the call timeout (for instance after starting from a preset).
    pub fn no_call_timeout(mut self) -> Self {
        self.config.call_timeout = None;
        self
    }

    /// Grows the open duration on repeated reopens.
    pub fn open_backoff(mut self, backoff: Backoff) -> Self {
        self.config.open_backoff = Some(backoff);
        self
    }

    /// Removes any open-duration backoff.
    pub fn no_open_backoff(mut self) -> Self {
        self.config.open_backoff = None;
        self
    }

    /// How long a throttled answer without a `Retry-After` hint keeps the
    /// circuit open (longer than zero; default 5 s), in whole milliseconds
    /// (rounded up). See [`Outcome::Throttled`](crate::Outcome::Throttled).
    pub fn throttle_duration(mut self, d: Duration) -> Self {
        self.config.throttle_ms = whole_millis(d);
        self
    }

    /// The longest `Retry-After` hint honoured (at most 24 h; default 5 min):
    /// a longer hint opens the circuit for `d` only. `Duration::ZERO` ignores
    /// hints, and a throttled answer opens for `throttle_duration`. Whole
    /// milliseconds (rounded up).
    pub fn max_retry_after(mut self, d: Duration) -> Self {
        self.config.max_retry_after_ms = whole_millis(d);
        self
    }

    /// Keyed breakers: the most keys a [`Family`](crate::Family) holds
    /// (`1..=100_000`; default 100). A new key beyond it evicts the least
    /// recently used key whose breaker is closed.
    pub fn max_keys(mut self, n: u32) -> Self {
        self.config.max_keys = n;
        self
    }

    /// Keyed breakers: with this many keys of a [`Family`](crate::Family)
    /// open at once, the whole family opens for `open_duration`
    /// (`0..=100_000`; 0, the default, turns it off).
    pub fn family_open_keys(mut self, n: u32) -> Self {
        self.config.family_open_keys = n;
        self
    }

    /// Makes the consecutive-failure trigger harder to fool: a run of
    /// `failure_threshold` errors opens the circuit only when at least
    /// `rate` of the window's calls failed, counting a window that holds
    /// fewer than `minimum_calls` calls as `minimum_calls` calls (the missing
    /// ones as successes). A run of `failure_threshold` **timeouts** still
    /// opens on its own: a hung dependency is found as fast as before. So
    /// does a run of errors in a window with no success (a fresh breaker's
    /// first calls), and a run too long for chance: one that a dependency
    /// failing `rate` of its calls at random makes less than once in a
    /// million calls (20 errors at 0.5, 12 at 0.3).
    /// `rate` is a fraction in `[0, 1]`; 0 (the default) lets any run open.
    ///
    /// A provider failing 10 % of its calls at random produces a run of 3
    /// failures every 1,000 calls or so, 10 seconds apart at 100 calls a
    /// second: without the window's agreement each run costs an open
    /// period (pitfall 17). The presets set it to their failure rate, 0.5;
    /// the guide's chapter "Choosing a preset" measures what it saves.
    ///
    /// ```
    /// use cb_runtime::{CircuitBreaker, Config, State, Window};
    ///
    /// let config = Config::builder()
    ///     .failure_threshold(3)
    ///     .sliding_window(Window::Count(100))
    ///     .minimum_calls(10)
    ///     .streak_failure_rate(0.5)
    ///     .build()?;
    /// let breaker = CircuitBreaker::new("streak-doc", config);
    /// let call = |ok: bool| breaker.try_acquire().unwrap().record(ok);
    /// for _ in 0..40 {
    ///     call(true);
    /// }
    /// (0..3).for_each(|_| call(false));
    /// assert_eq!(breaker.state(), State::Closed, "3 of 43 failed: a chance run");
    /// # Ok::<(), cb_runtime::ConfigError>(())
    /// ```
    pub fn streak_failure_rate(mut self, rate: f64) -> Self {
        self.config.streak_failure_rate = ten_thousandths(rate);
        self
    }

    /// Probes a long outage less often: after a failed probe the circuit
    /// stays open for `share` of the time since it opened (left the closed
    /// state), when that is longer than the open duration (and than
    /// `open_backoff`'s). `share` is a fraction in `[0, 1]`; 0 (the default)
    /// turns it off.
    ///
    /// The wait after a provider comes back is then at most the open
    /// duration or `share` of the outage, whichever is longer, and the
    /// calls let through to a dead provider grow with the logarithm of the
    /// outage's length, not with its length. The presets set 0.033: a
    /// `database` breaker (10 s open) probes every 10 s for the first 5
    /// minutes of an outage, every minute after half an hour.
    pub fn open_growth(mut self, share: f64) -> Self {
        self.config.open_growth = ten_thousandths(share);
        self
    }

    /// While the circuit is open, how often its health check runs (longer
    /// than zero; default 5 s, each preset sets its own), in whole
    /// milliseconds (rounded up). Without a health check it does nothing.
    pub fn health_check_interval(mut self, d: Duration) -> Self {
        self.config.health_check_interval_ms = whole_millis(d);
        self
    }

    /// After the circuit closes from half-open or by health checks, admit a
    /// share of calls growing linearly from 10 % to 100 % over `d` and refuse
    /// the rest ([`BreakerError::is_ramping`](crate::BreakerError::is_ramping)),
    /// so that a dependency that just recovered is not hit by every waiting
    /// caller at once. At most 1 h; `Duration::ZERO` (the default) turns it
    /// off. Tenths of a second (rounded up).
    pub fn ramp_up(mut self, d: Duration) -> Self {
        let ds = duration_nanos(d).div_ceil(100_000_000);
        self.config.ramp_up_ds = if ds > cb_syntax::MAX_RAMP_UP_NANOS / 100_000_000 {
            RAMP_UP_TOO_LONG
        } else {
            ds as u16
        };
        self
    }

    /// The clock the breaker reads: [`Clock::system`] unless a test injects one.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.config.clock = clock;
        self
    }

    /// Enforce the breaker's decisions ([`Mode::Enforce`], the default), or
    /// run it in shadow ([`Mode::Shadow`]): every call goes through, and
    /// those it would have refused are counted in
    /// [`Stats::shadow_rejected`](crate::Stats::shadow_rejected).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.config.protection &= !SHADOW_MODE;
        if mode == Mode::Shadow {
            self.config.protection |= SHADOW_MODE;
        }
        self
    }

    /// A bulkhead: at most `n` calls in flight at once through the breaker
    /// (`1..=1_000_000`; through each key's breaker in a
    /// [`Family`](crate::Family)). One more is refused at once, without
    /// being polled ([`BreakerError::is_saturated`](crate::BreakerError::is_saturated)).
    pub fn max_concurrent_calls(mut self, n: u32) -> Self {
        // 0 is out of range: kept apart from "none" by `build`.
        self.config.max_concurrent_calls = n;
        self.zero_cap = n == 0;
        self
    }

    /// Removes the bulkhead (the default): no cap on calls in flight.
    pub fn no_max_concurrent_calls(mut self) -> Self {
        self.config.max_concurrent_calls = 0;
        self.zero_cap = false;
        self
    }

    /// What refuses calls: the thresholds and the open circuit
    /// ([`Trip::Threshold`], the default), or adaptive throttling
    /// ([`Trip::Adaptive`]).
    pub fn trip(mut self, trip: Trip) -> Self {
        self.config.protection &= !ADAPTIVE_TRIP;
        if trip == Trip::Adaptive {
            self.config.protection |= ADAPTIVE_TRIP;
        }
        self
    }

    /// Adaptive throttling's multiplier `k`: greater than 1.0, at most 100
    /// (default 2.0), kept to two decimals (rounded up, so it stays above
    /// 1). A call is refused with probability
    /// `max(0, (requests - k * accepts) / (requests + 1))`.
    pub fn adaptive_k(mut self, k: f64) -> Self {
        self.adaptive_k = Some(k);
        if k.is_finite() && k > 1.0 && k <= cb_syntax::MAX_ADAPTIVE_K {
            // In range: at most 10000 hundredths.
            self.config.protection = (self.config.protection & !K_CENTS) | (k * 100.0).ceil() as u16;
        }
        self
    }

    /// Records the preset this configuration starts from (a name of
    /// [`cb_syntax::PRESETS`]).
    pub(crate) fn preset_name(mut self, name: &'static str) -> Self {
        self.config.preset = cb_syntax::PRESETS
            .iter()
            .position(|p| *p == name)
            .and_then(|i| u8::try_from(i).ok());
        self
    }

    /// Sets `field` (an entry of [`FIELDS`]) to `value`, a value of the
    /// field's kind, as the attribute, the config file and the environment
    /// do; [`build`](Self::build) checks the range. A `preset` value is not
    /// set here: a preset chooses the builder to start from
    /// ([`Preset::builder`](crate::Preset::builder)). A value of another kind
    /// than the field's leaves the builder unchanged.
    pub(crate) fn set(self, field: &Field, value: Value) -> Self {
        let nanos = Duration::from_nanos;
        match (field.name, value) {
            ("failure_threshold", Value::Count(n)) => self.failure_threshold(n),
            ("failure_rate_threshold", Value::Rate(r)) => self.failure_rate_threshold(r),
            ("sliding_window", Value::WindowCalls(n)) => self.sliding_window(Window::Count(n)),
            ("sliding_window", Value::WindowTime(t)) => self.sliding_window(Window::Time(nanos(t))),
            ("minimum_calls", Value::Count(n)) => self.minimum_calls(n),
            ("slow_call_duration", Value::Duration(d)) => self.slow_call_duration(nanos(d)),
            ("slow_call_duration", Value::Off) => self.no_slow_call_detection(),
            ("slow_call_rate_threshold", Value::Rate(r)) => self.slow_call_rate_threshold(r),
            ("open_duration", Value::Duration(d)) => self.open_duration(nanos(d)),
            ("half_open_max_calls", Value::Count(n)) => self.half_open_max_calls(n),
            ("success_threshold", Value::Count(n)) => self.success_threshold(n),
            ("call_timeout", Value::Duration(d)) => self.call_timeout(nanos(d)),
            ("call_timeout", Value::Off) => self.no_call_timeout(),
            ("open_backoff", Value::Backoff(b)) => {
                self.open_backoff(Backoff::exponential(b.multiplier, nanos(b.cap_nanos)).jitter(b.jitter))
            }
            ("open_backoff", Value::Off) => self.no_open_backoff(),
            ("throttle_duration", Value::Duration(d)) => self.throttle_duration(nanos(d)),
            ("max_retry_after", Value::Duration(d)) => self.max_retry_after(nanos(d)),
            ("max_keys", Value::Count(n)) => self.max_keys(n),
            ("family_open_keys", Value::Count(n)) => self.family_open_keys(n),
            ("streak_failure_rate", Value::Rate(r)) => self.streak_failure_rate(r),
            ("open_growth", Value::Rate(r)) => self.open_growth(r),
            ("mode", Value::Word(word)) => match word.parse() {
                Ok(mode) => self.mode(mode),
                Err(_) => self,
            },
            ("max_concurrent_calls", Value::Count(n)) => self.max_concurrent_calls(n),
            ("max_concurrent_calls", Value::Off) => self.no_max_concurrent_calls(),
            ("trip", Value::Word(word)) => match word.parse() {
                Ok(trip) => self.trip(trip),
                Err(_) => self,
            },
            ("adaptive_k", Value::Multiplier(k)) => self.adaptive_k(k),
            ("health_check_interval", Value::Duration(d)) => self.health_check_interval(nanos(d)),
            ("ramp_up", Value::Duration(d)) => self.ramp_up(nanos(d)),
            _ => self,
        }
    }

    /// Validates and returns the configuration. The error names the first
    /// field that is out of range, and the range allowed.
    ///
    /// A configuration started from a [`Preset`](crate::Preset) clamps its
    /// `minimum_calls` to a smaller count window set over it (as
    /// resilience4j clamps it): `sliding_window = 20` over a preset judging
    /// 50 calls judges 20. Without a preset, the two must agree.
    pub fn build(mut self) -> Result<Config, ConfigError> {
        if self.zero_cap {
            let field = cb_syntax::field("max_concurrent_calls").expect("in the table");
            return Err(ConfigError::new(field.name, "0", field.range()));
        }
        if let Some(k) = self.adaptive_k {
            let field = cb_syntax::field("adaptive_k").expect("in the table");
            if field.check(&Value::Multiplier(k)).is_err() {
                return Err(ConfigError::new(field.name, k.to_string(), field.range()));
            }
        }
        if let (Some(_), Window::Count(n)) = (self.config.preset, self.config.sliding_window) {
            self.config.minimum_calls = self.config.minimum_calls.min(n.max(1));
        }
        self.config.validate()?;
        Ok(self.config)
    }
}

/// A configuration value out of its allowed range.
///
/// Its message names the field, the value given and what is allowed:
/// ``invalid `failure_rate_threshold`: got 1.5, expected a rate in [0.0, 1.0]``.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    field: &'static str,
    value: String,
    expected: String,
    source_hint: Option<String>,
}

impl ConfigError {
    /// An error about `field`, which was given `value` where `expected` is allowed.
    pub fn new(field: &'static str, value: impl Into<String>, expected: impl Into<String>) -> Self {
        ConfigError {
            field,
            value: value.into(),
            expected: expected.into(),
            source_hint: None,
        }
    }

    /// Says where the bad value came from (a file and line, an environment
    /// variable), to print in front of the message.
    pub fn at(mut self, origin: impl Into<String>) -> Self {
        self.source_hint = Some(origin.into());
        self
    }

    /// The builder field at fault, named as the builder method.
    pub fn field(&self) -> &str {
        self.field
    }

    /// The value given, as text.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// What the field allows.
    pub fn expected(&self) -> &str {
        &self.expected
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(origin) = &self.source_hint {
            write!(f, "{origin}: ")?;
        }
        write!(
            f,
            "invalid `{}`: got {}, expected {}",
            self.field, self.value, self.expected
        )
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(b: ConfigBuilder) -> String {
        b.build().unwrap_err().field().to_owned()
    }

    #[test]
    fn defaults_are_documented_values() {
        let c = Config::builder().build().unwrap();
        assert_eq!(c.failure_threshold(), 5);
        assert_eq!(c.failure_rate_threshold(), 0.5);
        assert_eq!(c.sliding_window(), Window::Count(100));
        assert_eq!(c.minimum_calls(), 20);
        assert_eq!(c.slow_call_duration(), None);
        assert_eq!(c.open_duration(), Duration::from_secs(30));
        assert_eq!(c.half_open_max_calls(), 1);
        assert_eq!(c.success_threshold(), 1);
        assert_eq!(c.call_timeout(), None);
        assert_eq!(c.open_backoff(), None);
        assert_eq!(c.throttle_duration(), Duration::from_secs(5));
        assert_eq!(c.max_retry_after(), Duration::from_secs(300));
    }

    #[test]
    fn the_throttle_period_is_the_capped_hint_or_throttle_duration() {
        let c = Config::builder()
            .throttle_duration(Duration::from_secs(4))
            .max_retry_after(Duration::from_secs(60))
            .build()
            .unwrap();
        assert_eq!(c.throttle_period(None), Duration::from_secs(4));
        assert_eq!(c.throttle_period(Some(Duration::ZERO)), Duration::from_secs(4));
        assert_eq!(
            c.throttle_period(Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            c.throttle_period(Some(Duration::from_secs(600))),
            Duration::from_secs(60)
        );
        let ignores = c.to_builder().max_retry_after(Duration::ZERO).build().unwrap();
        assert_eq!(
            ignores.throttle_period(Some(Duration::from_secs(2))),
            Duration::from_secs(4)
        );
        assert_eq!(
            field_of(Config::builder().throttle_duration(Duration::ZERO)),
            "throttle_duration"
        );
        let err = Config::builder()
            .max_retry_after(Duration::from_secs(25 * 3600))
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "max_retry_after");
        assert!(err.to_string().contains("0s to 24h"), "{err}");
    }

    #[test]
    fn getters_return_what_was_set() {
        let c = Config::builder()
            .failure_threshold(7)
            .failure_rate_threshold(0.25)
            .sliding_window(Window::Time(Duration::from_secs(60)))
            .minimum_calls(500)
            .slow_call_duration(Duration::from_millis(250))
            .slow_call_rate_threshold(0.75)
            .open_duration(Duration::from_secs(9))
            .half_open_max_calls(4)
            .success_threshold(3)
            .call_timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        assert_eq!(c.failure_threshold(), 7);
        assert_eq!(c.failure_rate_threshold(), 0.25);
        assert_eq!(c.sliding_window(), Window::Time(Duration::from_secs(60)));
        assert_eq!(c.minimum_calls(), 500);
        assert_eq!(c.slow_call_duration(), Some(Duration::from_millis(250)));
        assert_eq!(c.slow_call_rate_threshold(), 0.75);
        assert_eq!(c.open_duration(), Duration::from_secs(9));
        assert_eq!(c.half_open_max_calls(), 4);
        assert_eq!(c.success_threshold(), 3);
        assert_eq!(c.call_timeout(), Some(Duration::from_secs(2)));
        assert_eq!(c.to_builder().build().unwrap(), c);
    }

    #[test]
    fn nonsense_is_refused_naming_the_field() {
        let b = Config::builder;
        assert_eq!(field_of(b().failure_threshold(0)), "failure_threshold");
        assert_eq!(
            field_of(b().failure_rate_threshold(1.01)),
            "failure_rate_threshold"
        );
        assert_eq!(
            field_of(b().failure_rate_threshold(-0.1)),
            "failure_rate_threshold"
        );
        assert_eq!(
            field_of(b().failure_rate_threshold(f64::NAN)),
            "failure_rate_threshold"
        );
        assert_eq!(
            field_of(b().slow_call_rate_threshold(2.0)),
            "slow_call_rate_threshold"
        );
        assert_eq!(field_of(b().sliding_window(Window::Count(0))), "sliding_window");
        assert_eq!(
            field_of(b().sliding_window(Window::Count(100_001))),
            "sliding_window"
        );
        assert_eq!(
            field_of(b().sliding_window(Window::Time(Duration::ZERO))),
            "sliding_window"
        );
        assert_eq!(
            field_of(b().sliding_window(Window::Time(Duration::from_secs(90_000)))),
            "sliding_window"
        );
        assert_eq!(field_of(b().minimum_calls(0)), "minimum_calls");
        assert_eq!(
            field_of(b().sliding_window(Window::Count(10)).minimum_calls(11)),
            "minimum_calls"
        );
        assert_eq!(
            field_of(b().slow_call_duration(Duration::ZERO)),
            "slow_call_duration"
        );
        assert_eq!(field_of(b().open_duration(Duration::ZERO)), "open_duration");
        assert_eq!(field_of(b().success_threshold(0)), "success_threshold");
        assert_eq!(field_of(b().call_timeout(Duration::ZERO)), "call_timeout");
        assert_eq!(field_of(b().half_open_max_calls(10_001)), "half_open_max_calls");
        assert_eq!(
            field_of(b().open_backoff(Backoff::exponential(0.5, Duration::from_secs(60)))),
            "open_backoff"
        );
        assert_eq!(
            field_of(b().open_backoff(Backoff::exponential(2.0, Duration::from_secs(1)))),
            "open_backoff"
        );
        assert_eq!(
            field_of(b().open_backoff(Backoff::exponential(2.0, Duration::from_secs(60)).jitter(1.5))),
            "open_backoff"
        );
    }

    /// Pitfall 16: `half_open_max_calls = 0` would never close; refused at build.
    #[test]
    fn pitfall_16_zero_probes_refused() {
        let err = Config::builder().half_open_max_calls(0).build().unwrap_err();
        assert_eq!(err.field(), "half_open_max_calls");
        let msg = err.to_string();
        assert!(
            msg.contains("half_open_max_calls") && msg.contains("1..=10000"),
            "{msg}"
        );
    }

    #[test]
    fn message_names_field_value_and_range() {
        let msg = Config::builder()
            .failure_rate_threshold(1.5)
            .build()
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "invalid `failure_rate_threshold`: got 1.5, expected a rate in [0.0, 1.0]"
        );
        let at =
            ConfigError::new("open_duration", "0s", "a duration greater than zero").at("CB_X_OPEN_DURATION");
        assert!(at
            .to_string()
            .starts_with("CB_X_OPEN_DURATION: invalid `open_duration`"));
    }

    /// The defaults table on [`Config`] lists every field of the table, in
    /// its order, then the clock.
    #[test]
    fn the_defaults_table_lists_every_field() {
        let source = include_str!("config.rs");
        let table = &source[source.find("/// | field | default |").unwrap()..];
        let rows: Vec<&str> = table
            .lines()
            .skip(2)
            .map_while(|line| line.strip_prefix("/// | `"))
            .map(|row| row.split('`').next().unwrap_or_default())
            .collect();
        let mut expected = cb_syntax::FIELD_NAMES.to_vec();
        expected.push("clock");
        assert_eq!(rows, expected);
    }

    #[test]
    fn every_field_is_wired_to_the_config() {
        let c = Config::default();
        for field in &FIELDS {
            if field.name != "preset" {
                assert!(
                    c.value(field).is_some(),
                    "`Config::value` misses `{}`",
                    field.name
                );
            }
        }
        let cache = Config::builder().preset_name("cache").build().unwrap();
        assert_eq!(cache.value(&FIELDS[0]), Some(Value::Preset("cache")));
    }

    #[test]
    fn every_open_is_bounded_by_one_bound() {
        let day = MAX_OPEN_DURATION;
        assert_eq!(day, Duration::from_secs(86_400));
        let over = day + Duration::from_millis(1);
        for (config, field) in [
            (Config::builder().open_duration(over), "open_duration"),
            (Config::builder().throttle_duration(over), "throttle_duration"),
            (
                Config::builder().open_backoff(Backoff::exponential(2.0, over)),
                "open_backoff",
            ),
        ] {
            let e = config.build().unwrap_err();
            assert_eq!(e.field(), field, "{e}");
            assert!(e.to_string().contains("at most 24h"), "{e}");
        }
        let c = Config::builder()
            .open_duration(day)
            .open_backoff(Backoff::exponential(2.0, day).jitter(1.0))
            .build()
            .unwrap();
        // The jitter spreads around the cap, never past the bound.
        let b = c.open_backoff().unwrap();
        assert_eq!(b.open_duration(day, 3, 0.999_999), day);
        assert!(b.open_duration(day, 3, 0.25) < day);
        // open_for cuts a longer period to the bound.
        let clock = crate::clock::ManualClock::new();
        let breaker =
            crate::CircuitBreaker::new("a-week", Config::builder().clock(clock.clock()).build().unwrap());
        assert!(breaker.open_for(Duration::from_secs(7 * 86_400)));
        assert_eq!(breaker.open_remaining(), Some(day));
    }

    #[test]
    fn a_presets_minimum_calls_gives_way_to_a_smaller_window() {
        let c = crate::Preset::Llm
            .builder()
            .sliding_window(Window::Count(20))
            .build()
            .unwrap();
        assert_eq!(c.minimum_calls(), 20);
        let c = crate::Preset::Llm
            .builder()
            .sliding_window(Window::Count(500))
            .build()
            .unwrap();
        assert_eq!(c.minimum_calls(), 50);
        let plain = Config::builder()
            .sliding_window(Window::Count(20))
            .minimum_calls(50);
        assert_eq!(field_of(plain), "minimum_calls");
    }

    #[test]
    fn health_check_interval_and_ramp_up_are_checked() {
        let c = Config::builder()
            .health_check_interval(Duration::from_secs(2))
            .ramp_up(Duration::from_secs(30))
            .build()
            .unwrap();
        assert_eq!(c.health_check_interval(), Duration::from_secs(2));
        assert_eq!(c.ramp_up(), Duration::from_secs(30));
        assert_eq!(Config::default().ramp_up(), Duration::ZERO);
        assert_eq!(
            field_of(Config::builder().health_check_interval(Duration::ZERO)),
            "health_check_interval"
        );
        let err = Config::builder()
            .ramp_up(Duration::from_secs(7200))
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "ramp_up");
        assert!(err.to_string().contains("0s to 1h"), "{err}");
    }

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let b = Backoff::exponential(2.0, Duration::from_secs(100));
        let base = Duration::from_secs(10);
        assert_eq!(b.open_duration(base, 0, 0.5), Duration::from_secs(10));
        assert_eq!(b.open_duration(base, 1, 0.5), Duration::from_secs(20));
        assert_eq!(b.open_duration(base, 3, 0.5), Duration::from_secs(80));
        assert_eq!(b.open_duration(base, 4, 0.5), Duration::from_secs(100));
        assert_eq!(b.open_duration(base, u32::MAX, 0.5), Duration::from_secs(100));
        let j = b.jitter(0.1);
        assert_eq!(j.open_duration(base, 0, 0.0), Duration::from_secs(9));
        assert_eq!(j.open_duration(base, 0, 1.0), Duration::from_secs(11));
    }
}
