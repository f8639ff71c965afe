//! The errors a protected call can end with.

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Why the breaker itself refused or abandoned a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BreakerErrorKind {
    /// The circuit is open: the call was refused without being attempted.
    Open,
    /// The circuit was forced open by an operator.
    ForcedOpen,
    /// The circuit is half-open and every probe slot is taken; the error's
    /// [`retry_after`](BreakerError::retry_after) is a short time after which
    /// a probe slot may be free.
    HalfOpenFull,
    /// The call ran longer than the configured `call_timeout` and was abandoned.
    Timeout,
    /// The bulkhead is full: `max_concurrent_calls` calls are in flight, and
    /// the call was refused at once without being attempted.
    Saturated,
    /// An adaptive breaker (`trip = "adaptive"`) refused the call, as it
    /// refuses a share of calls that tracks the dependency's failures.
    AdaptiveThrottling,
    /// The circuit closed a moment ago and is ramping up (`ramp_up`): it
    /// admits a growing share of calls, and this one was outside it.
    Ramping,
}

/// The breaker's own refusal or timeout, as opposed to the protected
/// dependency's error.
///
/// It is `Send + Sync + 'static`, so `?` turns it into an `anyhow::Error` or a
/// `Box<dyn Error + Send + Sync>`. A retry layer should check
/// [`is_rejected`](Self::is_rejected) and stop: a rejected call never reached
/// the dependency, and [`retry_after`](Self::retry_after) says when the circuit
/// will next let a probe through.
///
/// A keyed breaker's error names its key too ([`key`](Self::key)), and its
/// message says ``circuit breaker `openai` key `gpt-4o` is open ...``.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BreakerError {
    name: &'static &'static str,
    /// The kind in the top two bits; then [`THROTTLED`]; below, `retry_after`
    /// or the timeout in nanoseconds, all ones for none. [`THROTTLED`]
    /// marks an open refusal as a throttled period's, and makes the other
    /// kinds' codes the protection modes' kinds (see [`KIND_SATURATED`]).
    packed: u64,
    /// A keyed breaker's key: the `Arc` its breaker holds, so that naming the
    /// key allocates nothing (one reference count more).
    key: Option<Arc<str>>,
}

const KIND_SHIFT: u32 = 62;
/// The bit that says a refusal while open is a throttled period's. With the
/// other kinds' bits, which no throttled refusal has, it says the kind is one
/// of the protection modes' or `Ramping`.
const THROTTLED: u64 = 1 << 61;
const NO_AFTER: u64 = THROTTLED - 1;
/// [`BreakerErrorKind::Saturated`]: the forced-open code with [`THROTTLED`].
const KIND_SATURATED: u64 = 1 << KIND_SHIFT | THROTTLED;
/// [`BreakerErrorKind::AdaptiveThrottling`]: the half-open-full code with [`THROTTLED`].
const KIND_ADAPTIVE: u64 = 2 << KIND_SHIFT | THROTTLED;
/// [`BreakerErrorKind::Ramping`]: the timeout code with [`THROTTLED`].
const KIND_RAMPING: u64 = 3 << KIND_SHIFT | THROTTLED;
/// The bits that say the kind.
const KIND_BITS: u64 = 3 << KIND_SHIFT | THROTTLED;

impl BreakerError {
    #[inline]
    pub(crate) fn new(name: &'static &'static str, kind: BreakerErrorKind, after: Option<Duration>) -> Self {
        let after = after.map_or(NO_AFTER, |d| crate::clock::duration_nanos(d).min(NO_AFTER - 1));
        let kind = match kind {
            BreakerErrorKind::Open => 0,
            BreakerErrorKind::ForcedOpen => 1 << KIND_SHIFT,
            BreakerErrorKind::HalfOpenFull => 2 << KIND_SHIFT,
            BreakerErrorKind::Timeout => 3 << KIND_SHIFT,
            BreakerErrorKind::Saturated => KIND_SATURATED,
            BreakerErrorKind::AdaptiveThrottling => KIND_ADAPTIVE,
            BreakerErrorKind::Ramping => KIND_RAMPING,
        };
        BreakerError {
            name,
            packed: kind | after,
            key: None,
        }
    }

    /// The same error, naming a keyed breaker's `key`.
    #[inline]
    pub(crate) fn with_key(mut self, key: Option<&Arc<str>>) -> Self {
        self.key = key.cloned();
        self
    }

    /// A refusal while open, `wait` nanoseconds before a probe may go
    /// through: [`new`](Self::new) without the `Duration` round trip.
    #[inline(always)]
    pub(crate) fn open(name: &'static &'static str, wait: u64) -> Self {
        BreakerError {
            name,
            // Kind `Open` is 0: the top bits stay clear.
            packed: wait.min(NO_AFTER - 1),
            key: None,
        }
    }

    /// [`open`](Self::open) for a refusal while the circuit is open for a
    /// throttled answer.
    #[inline]
    pub(crate) fn throttled(name: &'static &'static str, wait: u64) -> Self {
        BreakerError {
            name,
            packed: wait.min(NO_AFTER - 1) | THROTTLED,
            key: None,
        }
    }

    fn after(&self) -> Option<Duration> {
        let nanos = self.packed & NO_AFTER;
        (nanos != NO_AFTER).then(|| Duration::from_nanos(nanos))
    }

    /// The name of the breaker that refused the call (a keyed breaker's
    /// family).
    pub fn name(&self) -> &str {
        self.name
    }

    /// The key of the keyed breaker that refused the call (see
    /// [`Family`](crate::Family)), such as `Some("gpt-4o")`; `None` for an
    /// unkeyed breaker.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// Why the call was refused or abandoned.
    pub fn kind(&self) -> BreakerErrorKind {
        match self.packed & KIND_BITS {
            KIND_SATURATED => BreakerErrorKind::Saturated,
            KIND_ADAPTIVE => BreakerErrorKind::AdaptiveThrottling,
            KIND_RAMPING => BreakerErrorKind::Ramping,
            bits => match bits >> KIND_SHIFT {
                0 => BreakerErrorKind::Open,
                1 => BreakerErrorKind::ForcedOpen,
                2 => BreakerErrorKind::HalfOpenFull,
                _ => BreakerErrorKind::Timeout,
            },
        }
    }

    /// `true` when the call was refused without being attempted (open,
    /// forced open, half-open with every probe slot taken, ramping up,
    /// refused by adaptive throttling, or by a full bulkhead: see
    /// [`is_saturated`](Self::is_saturated)).
    pub fn is_rejected(&self) -> bool {
        !self.is_timeout()
    }

    /// `true` when the bulkhead refused the call: `max_concurrent_calls`
    /// calls were in flight. The call was never attempted; it is counted in
    /// [`Stats::saturated`](crate::Stats::saturated), not in `rejected`, and
    /// it is neither a failure nor a reason to open the circuit.
    pub fn is_saturated(&self) -> bool {
        self.kind() == BreakerErrorKind::Saturated
    }

    /// `true` when the call was attempted and abandoned at `call_timeout`.
    pub fn is_timeout(&self) -> bool {
        self.kind() == BreakerErrorKind::Timeout
    }

    /// `true` for a refusal while the circuit is open because the dependency
    /// throttled a call ([`Outcome::Throttled`](crate::Outcome::Throttled): a
    /// 429, a quota error): it is not down, it asked callers to wait, and
    /// [`retry_after`](Self::retry_after) says how long is left.
    ///
    /// A retry layer may wait that long and try again; the wait is the
    /// dependency's own hint (capped at `max_retry_after`) or the breaker's
    /// `throttle_duration`.
    pub fn is_throttled(&self) -> bool {
        self.packed & KIND_BITS == THROTTLED
    }

    /// `true` for a refusal while the circuit ramps up after closing
    /// (`ramp_up`): the dependency is back, and the breaker lets a growing
    /// share of calls through so that waiting callers do not all hit it at
    /// once. [`retry_after`](Self::retry_after) is short: trying again
    /// soon is likely to be admitted.
    pub fn is_ramping(&self) -> bool {
        self.kind() == BreakerErrorKind::Ramping
    }

    /// For a refusal while open: how long until the circuit lets a probe
    /// through (for a throttled period, the time left of it). For a refusal
    /// while half-open with every probe slot taken: a short time after which
    /// a slot may be free. While ramping up: a short wait after which a call
    /// is likely admitted. `None` when forced open (only an operator ends
    /// that) and for a timeout.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.kind() {
            BreakerErrorKind::Timeout => None,
            _ => self.after(),
        }
    }

    /// For a timeout: the `call_timeout` that elapsed.
    pub fn timeout(&self) -> Option<Duration> {
        match self.kind() {
            BreakerErrorKind::Timeout => self.after(),
            _ => None,
        }
    }
}

impl fmt::Display for BreakerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = Named(self);
        match self.kind() {
            BreakerErrorKind::Open if self.is_throttled() => {
                write!(
                    f,
                    "circuit breaker {name} is open: its dependency is rate limiting (throttled) and asked \
                     callers to wait; the call was rejected without being attempted"
                )?;
                if let Some(after) = self.after() {
                    write!(f, " (a probe is allowed in {after:?})")?;
                }
                Ok(())
            }
            BreakerErrorKind::Open => {
                write!(
                    f,
                    "circuit breaker {name} is open; the call was rejected without being attempted"
                )?;
                if let Some(after) = self.after() {
                    write!(f, " (a probe is allowed in {after:?})")?;
                }
                Ok(())
            }
            BreakerErrorKind::ForcedOpen => write!(
                f,
                "circuit breaker {name} is forced open; the call was rejected without being attempted"
            ),
            BreakerErrorKind::HalfOpenFull => {
                write!(
                    f,
                    "circuit breaker {name} is half-open and all probe slots are taken; the call was rejected without being attempted"
                )?;
                if let Some(after) = self.after() {
                    write!(f, " (a probe slot may be free in {after:?})")?;
                }
                Ok(())
            }
            BreakerErrorKind::Saturated => write!(
                f,
                "circuit breaker {name} is saturated: its bulkhead's `max_concurrent_calls` calls are in \
                 flight; the call was rejected without being attempted"
            ),
            BreakerErrorKind::AdaptiveThrottling => write!(
                f,
                "circuit breaker {name} is throttling adaptively while its dependency fails; the call was \
                 rejected without being attempted"
            ),
            BreakerErrorKind::Ramping => {
                write!(
                    f,
                    "circuit breaker `{name}` closed a moment ago and is ramping up: it lets a growing share of \
                     calls through, and this one was rejected without being attempted"
                )?;
                if let Some(after) = self.after() {
                    write!(f, " (try again in {after:?})")?;
                }
                Ok(())
            }
            BreakerErrorKind::Timeout => match self.after() {
                Some(t) => write!(
                    f,
                    "call through circuit breaker {name} timed out after {t:?} and was abandoned"
                ),
                None => write!(
                    f,
                    "call through circuit breaker {name} timed out and was abandoned"
                ),
            },
        }
    }
}

/// A breaker's name in a message: `` `openai` ``, or `` `openai` key `gpt-4o` ``
/// for a keyed breaker.
struct Named<'a>(&'a BreakerError);

impl fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`", self.0.name)?;
        if let Some(key) = &self.0.key {
            write!(f, " key `{key}`")?;
        }
        Ok(())
    }
}

impl Error for BreakerError {}

/// The result of a protected call that did not succeed: either the breaker
/// refused or abandoned it, or the call itself returned its own error.
///
/// `CallError` is transparent, as thiserror's `#[error(transparent)]` is: its
/// `Display` is the wrapped error's (the [`BreakerError`] or the call's own
/// error), and [`source`](Error::source) is that error's source, never the
/// wrapped error itself. So an error-chain reporter (anyhow's `{:#}`, a loop
/// over `source()`) prints each message once.
///
/// ```
/// use std::error::Error;
/// use cb_runtime::CallError;
///
/// #[derive(Debug)]
/// struct Io;
/// impl std::fmt::Display for Io {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("connection reset")
///     }
/// }
/// impl Error for Io {}
///
/// let e: CallError<Io> = CallError::Inner(Io);
/// assert_eq!(e.to_string(), "connection reset");
/// assert!(e.source().is_none());
/// ```
#[derive(Debug, PartialEq, Eq, Clone)]
pub enum CallError<E> {
    /// The breaker refused the call; it was never attempted.
    Rejected(BreakerError),
    /// The call outlived `call_timeout` and was abandoned; it counts as a failure.
    Timeout(BreakerError),
    /// The call ran and returned this error.
    Inner(E),
}

impl<E> CallError<E> {
    /// `true` when the breaker refused the call without attempting it.
    pub fn is_rejected(&self) -> bool {
        matches!(self, CallError::Rejected(_))
    }

    /// `true` when the call was abandoned at `call_timeout`.
    pub fn is_timeout(&self) -> bool {
        matches!(self, CallError::Timeout(_))
    }

    /// The call's own error, if it ran and failed.
    pub fn into_inner(self) -> Option<E> {
        match self {
            CallError::Inner(e) => Some(e),
            _ => None,
        }
    }

    /// The call's own error, by reference.
    pub fn inner(&self) -> Option<&E> {
        match self {
            CallError::Inner(e) => Some(e),
            _ => None,
        }
    }

    /// The breaker's refusal or timeout, if that is what this is.
    pub fn breaker_error(&self) -> Option<&BreakerError> {
        match self {
            CallError::Rejected(b) | CallError::Timeout(b) => Some(b),
            CallError::Inner(_) => None,
        }
    }

    /// Maps the call's own error, keeping the breaker's.
    pub fn map_inner<F, G: FnOnce(E) -> F>(self, f: G) -> CallError<F> {
        match self {
            CallError::Rejected(b) => CallError::Rejected(b),
            CallError::Timeout(b) => CallError::Timeout(b),
            CallError::Inner(e) => CallError::Inner(f(e)),
        }
    }

    /// Folds the breaker's error into the caller's error type, so that one
    /// `Result<T, E>` comes back whatever happened.
    pub fn into_error(self) -> E
    where
        E: From<BreakerError>,
    {
        match self {
            CallError::Rejected(b) | CallError::Timeout(b) => E::from(b),
            CallError::Inner(e) => e,
        }
    }
}

impl<E: fmt::Display> fmt::Display for CallError<E> {
    /// The wrapped error's message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Rejected(b) | CallError::Timeout(b) => b.fmt(f),
            CallError::Inner(e) => e.fmt(f),
        }
    }
}

impl<E: Error> Error for CallError<E> {
    /// The wrapped error's source: `CallError` is transparent, its message is
    /// the wrapped error's own.
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            CallError::Rejected(b) | CallError::Timeout(b) => b.source(),
            CallError::Inner(e) => e.source(),
        }
    }
}

impl<E> From<BreakerError> for CallError<E> {
    fn from(b: BreakerError) -> Self {
        if b.is_timeout() {
            CallError::Timeout(b)
        } else {
            CallError::Rejected(b)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync_static<T: Send + Sync + 'static>() {}

    #[test]
    fn breaker_error_is_a_proper_error() {
        assert_send_sync_static::<BreakerError>();
        let e = BreakerError::new(&"openai", BreakerErrorKind::Open, Some(Duration::from_secs(3)));
        let boxed: Box<dyn Error + Send + Sync> = e.into();
        let msg = boxed.to_string();
        assert!(
            msg.contains("`openai` is open") && msg.contains("rejected"),
            "{msg}"
        );
    }

    /// Pitfall 15: an open-circuit error must say it is a refusal, so a retry
    /// layer can stop instead of hammering.
    #[test]
    fn pitfall_15_refusal_is_distinguishable_from_timeout() {
        let open = BreakerError::new(&"db", BreakerErrorKind::Open, Some(Duration::from_secs(5)));
        assert!(open.is_rejected() && !open.is_timeout());
        assert_eq!(open.retry_after(), Some(Duration::from_secs(5)));
        let t = BreakerError::new(&"db", BreakerErrorKind::Timeout, Some(Duration::from_secs(2)));
        assert!(t.is_timeout() && !t.is_rejected());
        assert_eq!(t.retry_after(), None);
        assert_eq!(t.timeout(), Some(Duration::from_secs(2)));
        assert!(t.to_string().contains("timed out after 2s"));
    }

    #[test]
    fn the_open_shortcut_builds_the_same_error() {
        for nanos in [0, 1, 1_500_000_000, NO_AFTER - 1, NO_AFTER, u64::MAX] {
            let wait = Duration::from_nanos(nanos);
            assert_eq!(
                BreakerError::open(&"db", nanos),
                BreakerError::new(&"db", BreakerErrorKind::Open, Some(wait)),
                "{nanos}"
            );
        }
    }

    #[test]
    fn a_throttled_refusal_says_so_and_keeps_its_wait() {
        let wait = 1_500_000_000;
        let t = BreakerError::throttled(&"openai", wait);
        assert!(t.is_throttled() && t.is_rejected() && !t.is_timeout());
        assert_eq!(t.kind(), BreakerErrorKind::Open);
        assert_eq!(t.retry_after(), Some(Duration::from_nanos(wait)));
        assert!(t.to_string().contains("throttled"), "{t}");
        let plain = BreakerError::open(&"openai", wait);
        assert!(!plain.is_throttled());
        assert_ne!(t, plain);
        for kind in [
            BreakerErrorKind::ForcedOpen,
            BreakerErrorKind::HalfOpenFull,
            BreakerErrorKind::Timeout,
        ] {
            assert!(!BreakerError::new(&"x", kind, Some(Duration::MAX)).is_throttled());
        }
        assert_eq!(
            BreakerError::throttled(&"x", u64::MAX).retry_after(),
            Some(Duration::from_nanos(NO_AFTER - 1))
        );
    }

    #[test]
    fn every_kind_round_trips_and_only_a_saturated_refusal_is_saturated() {
        let kinds = [
            BreakerErrorKind::Open,
            BreakerErrorKind::ForcedOpen,
            BreakerErrorKind::HalfOpenFull,
            BreakerErrorKind::Timeout,
            BreakerErrorKind::Saturated,
            BreakerErrorKind::AdaptiveThrottling,
        ];
        for kind in kinds {
            for after in [None, Some(Duration::from_secs(3)), Some(Duration::MAX)] {
                let e = BreakerError::new(&"x", kind, after);
                assert_eq!(e.kind(), kind);
                assert_eq!(e.is_saturated(), kind == BreakerErrorKind::Saturated);
                assert_eq!(e.is_rejected(), kind != BreakerErrorKind::Timeout);
                assert!(!e.is_throttled(), "{kind:?}");
            }
        }
        let full = BreakerError::new(&"llm", BreakerErrorKind::Saturated, None);
        assert_eq!(full.retry_after(), None);
        assert!(full.to_string().contains("saturated"), "{full}");
        let shed = BreakerError::new(&"llm", BreakerErrorKind::AdaptiveThrottling, None);
        assert!(shed.to_string().contains("throttling adaptively"), "{shed}");
    }

    #[test]
    fn errors_stay_small() {
        // The name, the packed kind and wait, and the key's `Arc<str>`.
        assert_eq!(std::mem::size_of::<BreakerError>(), 32);
        assert!(std::mem::size_of::<CallError<()>>() <= 40);
    }

    #[test]
    fn a_keyed_error_names_its_key() {
        let key: Arc<str> = Arc::from("gpt-4o");
        let e = BreakerError::open(&"openai", 2_000_000_000).with_key(Some(&key));
        assert_eq!(e.key(), Some("gpt-4o"));
        assert_eq!(e.name(), "openai");
        let msg = e.to_string();
        assert!(
            msg.starts_with("circuit breaker `openai` key `gpt-4o` is open"),
            "{msg}"
        );
        let t = BreakerError::new(
            &"openai",
            BreakerErrorKind::Timeout,
            Some(Duration::from_secs(60)),
        )
        .with_key(Some(&key));
        assert_eq!(
            t.to_string(),
            "call through circuit breaker `openai` key `gpt-4o` timed out after 60s and was abandoned"
        );
        let full = BreakerError::new(
            &"openai",
            BreakerErrorKind::HalfOpenFull,
            Some(Duration::from_secs(1)),
        )
        .with_key(Some(&key));
        assert_eq!(full.retry_after(), Some(Duration::from_secs(1)));
        assert!(full.to_string().contains("key `gpt-4o` is half-open"), "{full}");
        let unkeyed = BreakerError::open(&"openai", 1);
        assert_eq!(unkeyed.key(), None);
        assert!(unkeyed
            .to_string()
            .starts_with("circuit breaker `openai` is open"));
    }

    #[test]
    fn call_error_accessors() {
        let e: CallError<&str> = CallError::Inner("boom");
        assert!(!e.is_rejected() && !e.is_timeout());
        assert_eq!(e.to_string(), "boom");
        assert_eq!(e.clone().into_inner(), Some("boom"));
        let r: CallError<&str> = BreakerError::new(&"x", BreakerErrorKind::ForcedOpen, None).into();
        assert!(r.is_rejected());
        assert_eq!(r.into_inner(), None);
    }

    /// The messages of `e` and of every source below it, as an error-chain
    /// reporter prints them.
    fn chain(e: &dyn Error) -> Vec<String> {
        let mut messages = vec![e.to_string()];
        let mut next = e.source();
        while let Some(source) = next {
            messages.push(source.to_string());
            next = source.source();
        }
        messages
    }

    #[test]
    fn an_error_chain_prints_each_message_once() {
        #[derive(Debug)]
        struct Query(std::io::Error);
        impl fmt::Display for Query {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("query failed")
            }
        }
        impl Error for Query {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(&self.0)
            }
        }
        let inner = CallError::Inner(Query(std::io::Error::other("connection reset")));
        assert_eq!(chain(&inner), ["query failed", "connection reset"]);

        let open = BreakerError::new(&"db", BreakerErrorKind::Open, None);
        let rejected: CallError<Query> = CallError::Rejected(open.clone());
        assert_eq!(chain(&rejected), [open.to_string()]);
        let timeout = BreakerError::new(&"db", BreakerErrorKind::Timeout, Some(Duration::from_secs(1)));
        let timed_out: CallError<Query> = CallError::Timeout(timeout.clone());
        assert_eq!(chain(&timed_out), [timeout.to_string()]);

        // Boxed as `dyn Error`, as anyhow and `?` into `Box<dyn Error>` keep it.
        let boxed: Box<dyn Error + Send + Sync> = Box::new(inner);
        assert_eq!(chain(&*boxed), ["query failed", "connection reset"]);
    }

    #[test]
    fn into_error_folds_breaker_errors() {
        #[derive(Debug, PartialEq)]
        enum MyErr {
            Breaker(BreakerError),
            Io,
        }
        impl From<BreakerError> for MyErr {
            fn from(b: BreakerError) -> Self {
                MyErr::Breaker(b)
            }
        }
        let b = BreakerError::new(&"x", BreakerErrorKind::Open, None);
        assert_eq!(
            CallError::<MyErr>::Rejected(b.clone()).into_error(),
            MyErr::Breaker(b)
        );
        assert_eq!(CallError::Inner(MyErr::Io).into_error(), MyErr::Io);
    }
}
