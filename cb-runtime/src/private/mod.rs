//! What the `#[circuit_breaker]` expansion names, and nothing more. Not a public API: it may
//! change in any release.

use std::sync::{Arc, OnceLock};

pub use core::option::Option::{None, Some};
pub use core::result::Result::{Err, Ok};
pub use core::time::Duration;
pub use core::{concat, module_path};
pub use std::borrow::ToOwned;

mod classify;
mod stream;

pub use self::classify::{
    classify_with, due_cause, due_retry_after, errors, failure_if, fallback_due, ignore_if, refused_cause,
    refused_retry_after, throttle_if, ClassifyWith, Due, Errors, FailureIf, FallbackOn, IgnoreIf, ThrottleIf,
};
pub use self::stream::{
    fallback_stream, finish_boxed_stream, finish_boxed_stream_passed, finish_stream, finish_stream_or,
    finish_stream_or_passed, finish_stream_passed, stream_items, FallbackStream, FromGuarded, Guarded,
    StreamItem, StreamOr,
};
pub use crate::fallback::chain::{in_chain, InChain};
pub use crate::{
    Backoff, BreakerError, CallError, CircuitBreaker, ClassifyError, Config, ConfigBuilder, ErrIsFailure,
    FallbackCause, FallbackReason, Outcome, Preset, Window,
};
pub use cb_syntax::{BackoffText, Value as FieldValue};

/// The breaker of one annotated function: a `static` in its body, filled on the first call.
///
/// A static in a generic function is shared by every instantiation, so one function has one
/// breaker whatever its type parameters.
pub struct Slot {
    breaker: OnceLock<Arc<CircuitBreaker>>,
    /// With `key = ...`: the family, fetched on the first call.
    family: OnceLock<Arc<crate::Family>>,
}

impl Slot {
    /// An empty slot: nothing is registered until the first call.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Slot {
            breaker: OnceLock::new(),
            family: OnceLock::new(),
        }
    }

    /// The breaker, fetched from (or created in) the global registry on the first call, then
    /// read with one atomic load.
    #[inline(always)]
    pub fn get(
        &'static self,
        name: &'static str,
        origin: &'static str,
        preset: Preset,
        make: impl FnOnce() -> Config,
    ) -> &'static CircuitBreaker {
        match self.breaker.get() {
            Some(breaker) => breaker,
            None => self.init(name, origin, preset, make),
        }
    }

    #[cold]
    #[inline(never)]
    fn init(
        &'static self,
        name: &'static str,
        origin: &'static str,
        preset: Preset,
        make: impl FnOnce() -> Config,
    ) -> &'static CircuitBreaker {
        // The preset lets a config file's `[presets.<preset>]` table reach
        // the breakers the attribute makes.
        self.breaker
            .get_or_init(|| get_or_insert_at(crate::registry(), name, origin, Some(preset), make))
    }
}

/// The breaker of `key` in the family of a call site with `key = <expr>`: the family is fetched
/// from (or created in) the global registry on the first call and kept in `slot`; then the key is
/// looked up without a lock or an allocation ([`Family::get_or_insert`](crate::Family::get_or_insert)).
#[inline(always)]
pub fn keyed(
    slot: &'static Slot,
    name: &'static str,
    origin: &'static str,
    preset: Preset,
    make: impl FnOnce() -> Config,
    key: &str,
) -> crate::family::Lease {
    let family = match slot.family.get() {
        Some(family) => family,
        None => slot.family_init(name, origin, preset, make),
    };
    family.lease(key)
}

/// [`keyed`] for a streamed function, whose stream outlives the body: the breaker is shared.
#[inline(always)]
pub fn keyed_owned(
    slot: &'static Slot,
    name: &'static str,
    origin: &'static str,
    preset: Preset,
    make: impl FnOnce() -> Config,
    key: &str,
) -> OwnedKeyed {
    let family = match slot.family.get() {
        Some(family) => family,
        None => slot.family_init(name, origin, preset, make),
    };
    OwnedKeyed(family.get_or_insert(key))
}

impl Slot {
    #[cold]
    #[inline(never)]
    fn family_init(
        &'static self,
        name: &'static str,
        origin: &'static str,
        preset: Preset,
        make: impl FnOnce() -> Config,
    ) -> &'static Arc<crate::Family> {
        self.family.get_or_init(|| {
            let requested = make();
            let family = crate::registry().family_or_insert_from(name, Some(preset), || requested.clone());
            family.note_call_site(origin, Some(preset), &requested);
            family
        })
    }
}

/// `health_check = path`: the check's future, which must answer a `Result` (an error here is
/// at the path).
#[inline(always)]
pub fn health_check_future<F, T, E>(check: F) -> F
where
    F: core::future::Future<Output = Result<T, E>>,
{
    check
}

/// `health_check = path`: installs the function's health check once, on the breaker (or the
/// family) its slot holds, on the first call; later calls pay one atomic load.
pub struct HealthCheckSlot(OnceLock<()>);

impl HealthCheckSlot {
    /// Not installed yet.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        HealthCheckSlot(OnceLock::new())
    }

    /// Installs `check` (`async fn() -> Result<T, E2>`; `Ok` passes) on the breaker of `slot`.
    #[inline(always)]
    pub fn install<F, Fut, T, E>(&'static self, slot: &'static Slot, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: core::future::Future<Output = Result<T, E>> + Send + 'static,
    {
        if self.0.get().is_none() {
            self.init(|| {
                if let Some(breaker) = slot.breaker.get() {
                    breaker.set_health_check(move || {
                        let check = check();
                        async move { check.await.is_ok() }
                    });
                }
            });
        }
    }

    /// Installs `check` (`async fn(&str) -> Result<T, E2>`, given the key) on the family of
    /// `slot`.
    #[inline(always)]
    pub fn install_keyed<F, Fut, T, E>(&'static self, slot: &'static Slot, check: F)
    where
        F: Fn(&str) -> Fut + Send + Sync + 'static,
        Fut: core::future::Future<Output = Result<T, E>> + Send + 'static,
    {
        if self.0.get().is_none() {
            self.init(|| {
                if let Some(family) = slot.family.get() {
                    family.set_health_check(move |key: &str| {
                        let check = check(key);
                        async move { check.await.is_ok() }
                    });
                }
            });
        }
    }

    #[cold]
    #[inline(never)]
    fn init(&'static self, install: impl FnOnce()) {
        self.0.get_or_init(install);
    }
}

/// A streamed function's keyed breaker: its stream outlives the function's body, so its permit
/// holds a share of the breaker (an owned permit) instead of a borrow.
pub struct OwnedKeyed(pub Arc<CircuitBreaker>);

impl OwnedKeyed {
    /// [`CircuitBreaker::try_acquire_owned`].
    #[inline(always)]
    pub fn try_acquire(&self) -> Result<crate::OwnedPermit, BreakerError> {
        self.0.try_acquire_owned()
    }
}

impl core::ops::Deref for OwnedKeyed {
    type Target = CircuitBreaker;
    fn deref(&self) -> &CircuitBreaker {
        &self.0
    }
}

/// The text of a `key = <expr>` value: anything that is `AsRef<str>`.
#[diagnostic::on_unimplemented(
    message = "the key of a keyed #[circuit_breaker] must implement `AsRef<str>`; `{Self}` does not",
    label = "`key = ...` must be a `&str`, a `String` or another `AsRef<str>` value",
    note = "each distinct key has its own breaker in the family: convert it, e.g. `key = model.to_string()`, or implement `AsRef<str>` for `{Self}`"
)]
pub trait KeyText {
    /// The key as text.
    fn key_text(&self) -> &str;
}

impl<K: AsRef<str> + ?Sized> KeyText for K {
    #[inline(always)]
    fn key_text(&self) -> &str {
        self.as_ref()
    }
}

/// `key` as text, checked to be `AsRef<str>` where the attribute's `key = <expr>` is written.
#[inline(always)]
pub fn key_text<K: KeyText + ?Sized>(key: &K) -> &str {
    key.key_text()
}

/// [`Registry::get_or_insert`](crate::Registry::get_or_insert) for the breaker of a call site:
/// `origin` names the site in the warning about two configurations of one name, and `preset`
/// lets the config file's `[presets.<preset>]` table reach the breaker.
pub fn get_or_insert_at(
    registry: &crate::Registry,
    name: &str,
    origin: &'static str,
    preset: Option<Preset>,
    make: impl FnOnce() -> Config,
) -> Arc<CircuitBreaker> {
    registry.get_or_insert_from(name, Some(origin), preset, make)
}

/// The preset's configuration, unchanged.
pub fn preset_config(preset: Preset) -> Config {
    preset.config()
}

/// The preset with the attribute's overrides applied.
///
/// The macro checks each value at compile time; a combination that `build` still refuses
/// (which the macro cannot see, such as a `minimum_calls` above the preset's window) is logged
/// as an error naming the breaker, and the preset's configuration is used unchanged.
pub fn build_config(
    name: &str,
    preset: Preset,
    overrides: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
) -> Config {
    match overrides(preset.builder()).build() {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(
                breaker = name,
                preset = preset.name(),
                "#[circuit_breaker] overrides refused ({error}); using the preset unchanged"
            );
            preset.config()
        }
    }
}

/// `builder` with the attribute's `field = value`: `field` is a name of [`cb_syntax::FIELDS`]
/// and `value` was checked against that entry at compile time.
pub fn set(builder: ConfigBuilder, field: &'static str, value: FieldValue) -> ConfigBuilder {
    match cb_syntax::field(field) {
        Some(field) => builder.set(field, value),
        None => builder,
    }
}

/// `minimum_calls` for an attribute that sets a `sliding_window` of `calls` calls but no
/// `minimum_calls`: the preset's, or the window's size when that is smaller.
pub fn minimum_calls_within(preset: Preset, calls: u32) -> u32 {
    preset.config().minimum_calls().min(calls)
}

/// The error type of a `#[circuit_breaker]` function: what a refused or timed-out call returns.
///
/// The note never suggests `impl From<BreakerError> for {Self}`, which the orphan rule forbids
/// for an error type of another crate (`tokio_postgres::Error`, `reqwest::Error`, ...).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot carry the breaker's refusal or timeout: it does not implement `From<BreakerError>`",
    label = "a refused or timed-out call must return `Err(E::from(BreakerError))` here",
    note = "declare the error as `cb_runtime::CallError<{Self}>`; the body stays a `Result<T, {Self}>`, so `?` works as written, e.g. `async fn find(id: i64) -> Result<User, CallError<{Self}>> {{ let row = db.query_one(id).await?; Ok(User::from(row)) }}`",
    note = "or, for an error type your crate defines, give it a variant for the breaker: `impl From<BreakerError> for MyError`, or `#[error(transparent)] Breaker(#[from] BreakerError)` with thiserror"
)]
pub trait FromBreakerError {
    /// `Self::from(error)`.
    fn from_breaker_error(error: BreakerError) -> Self;
}

impl<E: From<BreakerError>> FromBreakerError for E {
    #[inline(always)]
    fn from_breaker_error(error: BreakerError) -> Self {
        E::from(error)
    }
}

/// The annotated function's result: the body's own value or error unchanged, and
/// `E::from(BreakerError)` for a refusal or a timeout.
#[inline(always)]
pub fn finish<T, E: FromBreakerError>(result: Result<T, CallError<E>>) -> Result<T, E> {
    match result {
        Ok(value) => Ok(value),
        Err(CallError::Inner(error)) => Err(error),
        Err(CallError::Rejected(error)) | Err(CallError::Timeout(error)) => Err(E::from_breaker_error(error)),
    }
}

/// The result of a function declared `-> Result<T, CallError<E>>`: the breaker's result as it is.
#[inline(always)]
pub fn finish_passed<T, E>(result: Result<T, CallError<E>>) -> Result<T, CallError<E>> {
    result
}

/// Counts a fallback about to run for `reason`.
#[inline(always)]
pub fn fell_back(breaker: &CircuitBreaker, reason: FallbackReason) {
    breaker.record_fallback(reason);
}

/// The last argument of a `fallback_with_cause` function: the cause, checked
/// to be what the fallback's last parameter takes.
#[inline(always)]
pub fn cause_arg<E, C: FromCause<E>>(cause: FallbackCause<E>) -> C {
    C::from_cause(cause)
}

/// The type of a `fallback_with_cause` function's last parameter.
#[diagnostic::on_unimplemented(
    message = "the last parameter of a `fallback_with_cause` function must be `FallbackCause<{E}>`, not `{Self}`",
    label = "this fallback is called with the function's arguments, then a `cb_runtime::FallbackCause<{E}>`",
    note = "`{E}` is the body's error type (for a function declared `Result<T, CallError<E>>`, that `E`); write the fallback as `async fn fallback(<the function's parameters>, cause: FallbackCause<{E}>)`"
)]
pub trait FromCause<E> {
    /// `cause`, as the parameter's type.
    fn from_cause(cause: FallbackCause<E>) -> Self;
}

impl<E> FromCause<E> for FallbackCause<E> {
    #[inline(always)]
    fn from_cause(cause: FallbackCause<E>) -> Self {
        cause
    }
}
