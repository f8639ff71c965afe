//! The circuit breaker: its state machine, admission and outcome recording.
//!
//! # How it is built
//!
//! Everything admission needs is packed in one atomic word (state, a "dirty"
//! bit, probes in flight and a generation; see `state::StateWord`):
//!
//! * **Admission** is one atomic load while closed. While half-open it is one
//!   compare-and-swap that takes a probe slot, so probes in flight never
//!   exceed `half_open_max_calls` (pitfall 1). While open it is one load of
//!   the deadline, one of the clock (the system clock's recent time is a
//!   load too, see `clock`) and a compare; the refusal adds one to the
//!   thread's own counter shard and builds a two-word error, no allocation.
//!   Once the open duration has elapsed exactly one caller wins the
//!   compare-and-swap to half-open and takes the first probe (pitfall 2).
//! * **A success while closed** with a clean window (no failure or slow call
//!   in it, no consecutive failure) adds one to a sharded counter and is done:
//!   no lock, no allocation, no clock read unless slow-call detection is on
//!   (then two loads of the recent time).
//!   The count window catches up with those successes the next time its lock
//!   is taken.
//! * **Everything else** (failures, slow calls, probes, transitions, a window
//!   that holds failures, time windows) takes the breaker's mutex for a few
//!   dozen nanoseconds. The lock is never held across the protected call, an
//!   `.await` or user code (pitfall 13).
//! * **Every transition bumps the generation.** A permit remembers the
//!   generation it was admitted in, and its outcome only moves the state
//!   machine if the generation is still current: a call admitted while closed
//!   that finishes after the circuit opened and half-opened is counted in the
//!   totals but is not a probe result (pitfall 5).
//! * **Permits are drop guards**: a call dropped before it finishes gives its
//!   probe slot back and records no outcome (pitfalls 3 and 4); a panic
//!   counts as a failure and gives the slot back.

use std::fmt;
use std::sync::Weak;
use std::time::Duration;

// Hooks for sharing state across processes (the `cb-fleet` crate). A child
// module, so that it can drive the state machine with the same private steps.
#[path = "coordination.rs"]
pub mod coordination;
// The protection modes' hooks: a child module, so that the breaker and its
// hooks do not depend on each other.
#[path = "modes.rs"]
pub(crate) mod modes;

// Recovery: health checks while open and the ramp after closing. Child
// modules, so that each reaches the state machine through one narrow hook.
#[path = "health.rs"]
pub mod health;
#[path = "ramp.rs"]
pub(crate) mod ramp;

// Manual control and opens for a given time.
mod control;
// A dependency's hints: throttled answers and a failure's `Retry-After`.
mod hints;
// Streamed calls, judged by their time to first item.
mod streamed;

use crate::clock::{duration_nanos, Clock};
use crate::config::{Config, ConfigError};
use crate::counters::{Counter, Counters, RareCounts};
use crate::error::{BreakerError, BreakerErrorKind};
use crate::fallback::FallbackReason;
use crate::log::RejectionLog;
use crate::outcome::CallEnd;
use crate::state::{next_generation, Admission, State, StateWord, Ticket, MAX_IN_FLIGHT};
use crate::stats::Stats;
use crate::sync::{lock, AtomicU64, Mutex, Ordering};
use crate::transition::{Observers, Publisher, Reason, Transition};
use crate::trigger::Streak;
use crate::window::{SlidingWindow, Tally};

/// A circuit breaker guarding one dependency.
///
/// It is `Send + Sync`; share it by reference or in an `Arc`, or let the
/// [`registry`](crate::registry()) hold it.
///
/// ```
/// use cb_runtime::{CallError, CircuitBreaker, Config, State};
///
/// # tokio_test::block_on(async {
/// let breaker = CircuitBreaker::new("inventory", Config::builder().failure_threshold(2).build()?);
///
/// let ok: Result<u32, CallError<&str>> = breaker.call(async { Ok(7) }).await;
/// assert_eq!(ok, Ok(7));
///
/// for _ in 0..2 {
///     let _ = breaker.call(async { Err::<u32, _>("connection refused") }).await;
/// }
/// assert_eq!(breaker.state(), State::Open);
///
/// // An open breaker fails fast, without polling the future.
/// let refused = breaker.call(async { Ok::<u32, &str>(1) }).await;
/// assert!(refused.unwrap_err().is_rejected());
/// # Ok::<(), cb_runtime::ConfigError>(())
/// # }).unwrap();
/// ```
pub struct CircuitBreaker {
    /// The packed state word; see `state::StateWord`.
    word: AtomicU64,
    /// While open: the clock reading at which a probe may go through.
    open_until: AtomicU64,
    /// `slow_call_duration` in nanoseconds; 0 when slow-call detection is off.
    slow_nanos: AtomicU64,
    /// `call_timeout` in nanoseconds; 0 when there is none.
    timeout_nanos: AtomicU64,
    /// `half_open_max_calls` in the low 32 bits, and [`TIMED`]: calls are
    /// timed (slow-call detection or a duration observer is on), so
    /// admission reads the clock. One load decides either.
    probes_and_timed: AtomicU64,
    counters: Counters,
    /// Fallbacks and probes, counted from the first one on.
    rare: crate::sync::OnceBox<RareCounts>,
    clock: Clock,
    name: &'static &'static str,
    /// A keyed breaker's key (see [`Family`](crate::Family)); `None` for an
    /// unkeyed one. Keys are not interned: they come from requests.
    inner: Mutex<LockedState>,
    observers: Observers,
    rejections: RejectionLog,
    /// Told each admitted call's duration, when call timing is on (metrics).
    durations: DurationObservers,
    /// Told each streamed call's time to first item, when that is on (metrics).
    first_items: DurationObservers,
    /// Fleet mode: consulted only on the half-open admission path (see
    /// `coordination::ProbeGate`).
    gate: std::sync::OnceLock<Box<std::sync::Arc<dyn coordination::ProbeGate>>>,
}

/// What separates a family's name from a key in [`CircuitBreaker::id`]:
/// U+001F, a control character, which neither may hold.
pub const ID_SEPARATOR: char = '\u{1f}';

/// The `retry_after` of a refusal while half-open with every probe slot
/// taken: a probe usually ends within it, and a caller that waits this long
/// may take a freed slot (or find the circuit closed).
pub(crate) const HALF_OPEN_RETRY: Duration = Duration::from_secs(1);

/// The bit of `probes_and_timed` that says calls are timed.
const TIMED: u64 = 1 << 32;
/// The bits of `probes_and_timed` that hold `half_open_max_calls`; above
/// them, [`TIMED`] and the protection modes' flags (`modes::ANY`).
const PROBES: u64 = u32::MAX as u64;

/// No generation: generations have 44 bits.
const NO_GENERATION: u64 = u64::MAX;

pub(crate) use crate::timing::DurationObserver;
use crate::timing::DurationObservers;

/// What the breaker's lock guards: the configuration, the sliding window
/// and everything else only the slow paths touch.
struct LockedState {
    config: Config,
    window: SlidingWindow,
    streak: Streak,
    /// When the circuit last left the closed state, for `open_growth`;
    /// `OpenedAt::NONE` while closed.
    opened_at: crate::trigger::OpenedAt,
    /// The `FastSuccess` total the window has caught up with.
    synced_fast: u64,
    /// The generation `probe_successes` and `probe_slow` count for.
    probe_generation: u64,
    probe_successes: u32,
    /// Of `probe_successes`, the slow ones.
    probe_slow: u32,
    /// The open period whose window is still shown (the generation of the
    /// open word that closed-state judging tripped): `stats()` shows the
    /// window while closed, and while open in this period only.
    /// [`NO_GENERATION`] when there is none.
    window_open_generation: u64,
    /// Reopens since the circuit last closed, for the open-duration backoff.
    reopens: u32,
    /// Why the circuit last opened (the reason of the transition to open),
    /// shown while it is open or half-open; `None` before the first open.
    open_reason: Option<Reason>,
}

impl CircuitBreaker {
    /// A new, closed breaker.
    ///
    /// The name identifies it in errors, logs, metrics and the admin API.
    /// Names are interned for the life of the process (a breaker's error
    /// carries its name without allocating), so create breakers per
    /// dependency, not per request.
    ///
    /// A name must be 1 to 256 bytes, not only white space, with no control
    /// characters ([`cb_syntax::check_name`]). This constructor cannot fail,
    /// so it repairs a name that breaks the rule and logs the repair at ERROR
    /// (control characters become `U+FFFD`, a long name is cut, an empty one
    /// becomes `<unnamed>`); [`try_new`](Self::try_new) refuses it instead.
    pub fn new(name: impl Into<String>, config: Config) -> Self {
        let name = name.into();
        let name = match crate::name::repaired(&name) {
            std::borrow::Cow::Borrowed(_) => name,
            std::borrow::Cow::Owned(fixed) => fixed,
        };
        CircuitBreaker::with_valid_name(name, config)
    }

    /// Like [`new`](Self::new), refusing a name that breaks the rule with a
    /// [`ConfigError`] for the field `name`.
    ///
    /// ```
    /// use cb_runtime::{CircuitBreaker, Config};
    ///
    /// assert!(CircuitBreaker::try_new("payments", Config::default()).is_ok());
    /// let err = CircuitBreaker::try_new("pay\nments", Config::default()).unwrap_err();
    /// assert_eq!(err.field(), "name");
    /// ```
    pub fn try_new(name: impl Into<String>, config: Config) -> Result<Self, ConfigError> {
        let name = name.into();
        crate::name::checked(&name)?;
        Ok(CircuitBreaker::with_valid_name(name, config))
    }

    fn with_valid_name(name: String, config: Config) -> Self {
        CircuitBreaker::with_rare(name, config, None)
    }

    /// A breaker with its rare counts made already (a keyed breaker's).
    fn with_rare(name: String, config: Config, rare: Option<Box<RareCounts>>) -> Self {
        let dirty = config.sliding_window.is_time();
        let breaker = CircuitBreaker {
            word: AtomicU64::new(StateWord::new(State::Closed, 0, dirty).0),
            open_until: AtomicU64::new(0),
            slow_nanos: AtomicU64::new(0),
            timeout_nanos: AtomicU64::new(0),
            probes_and_timed: AtomicU64::new(0),
            counters: Counters::new(),
            rare: crate::sync::OnceBox::new(),
            clock: config.clock.clone(),
            name: crate::intern::intern(name),
            inner: Mutex::new(LockedState {
                window: SlidingWindow::new(config.sliding_window),
                config,
                streak: Streak::default(),
                opened_at: crate::trigger::OpenedAt::NONE,
                synced_fast: 0,
                probe_generation: 0,
                probe_successes: 0,
                probe_slow: 0,
                window_open_generation: NO_GENERATION,
                reopens: 0,
                open_reason: None,
            }),
            observers: Observers::default(),
            rejections: RejectionLog::default(),
            durations: DurationObservers::default(),
            first_items: DurationObservers::default(),
            gate: std::sync::OnceLock::new(),
        };
        if let Some(rare) = rare {
            let _ = breaker.rare.set(rare);
        }
        breaker.publish(&lock(&breaker.inner).config);
        breaker
    }

    /// Copies what admission and recording read without the lock out of
    /// `config`, into their atomics.
    fn publish(&self, config: &Config) {
        self.slow_nanos.store(
            config.slow_call_duration.map_or(0, duration_nanos),
            Ordering::Release,
        );
        let timed =
            config.slow_call_duration.is_some() || !self.durations.is_empty() || !self.first_items.is_empty();
        self.timeout_nanos
            .store(config.call_timeout.map_or(0, duration_nanos), Ordering::Release);
        let probes = u64::from(config.half_open_max_calls.min(MAX_IN_FLIGHT));
        let modes = modes::publish(self, config);
        self.probes_and_timed
            .store(probes | modes | if timed { TIMED } else { 0 }, Ordering::Release);
    }

    /// The breaker's name. A keyed breaker's name is its family's.
    pub fn name(&self) -> &str {
        self.name
    }

    /// A keyed breaker's key (its family is [`name`](Self::name)), such as
    /// `Some("gpt-4o")`; `None` for an unkeyed breaker.
    pub fn key(&self) -> Option<&str> {
        self.key_tag().map(|tag| &*tag.key)
    }

    /// A keyed breaker's key with what its family's call path checks.
    #[inline(always)]
    pub(crate) fn key_tag(&self) -> Option<&crate::key::KeyTag> {
        self.rare.get().and_then(|r| r.key.as_ref())
    }

    /// The one identity of this breaker across processes, for a store that
    /// shares breakers between replicas (the fleet) or keeps their history:
    /// the name for an unkeyed breaker, and for a keyed one the family's name,
    /// U+001F (the ASCII unit separator) and the key. Neither a name nor a key
    /// may hold a control character ([`cb_syntax::check_name`]), so two
    /// breakers never share an identity, and an unkeyed breaker's identity is
    /// its name, as before keys existed.
    ///
    /// ```
    /// use cb_runtime::{Config, Registry};
    ///
    /// let registry = Registry::new();
    /// let family = registry.family_or_insert("openai", Config::default);
    /// assert_eq!(family.get_or_insert("gpt-4o").id(), "openai\u{1f}gpt-4o");
    /// assert_eq!(registry.get_or_insert("billing", Config::default).id(), "billing");
    /// ```
    pub fn id(&self) -> std::borrow::Cow<'_, str> {
        match self.key() {
            None => std::borrow::Cow::Borrowed(self.name),
            Some(key) => std::borrow::Cow::Owned(format!("{}{}{key}", self.name, ID_SEPARATOR)),
        }
    }

    /// A keyed breaker of the family `name` (valid: the family's), for `key`
    /// (valid, or repaired for a call served unguarded).
    pub(crate) fn keyed(name: &str, tag: crate::key::KeyTag, config: Config) -> Self {
        CircuitBreaker::with_rare(name.to_owned(), config, Some(RareCounts::keyed(tag)))
    }

    /// The breaker's current configuration.
    pub fn config(&self) -> Config {
        lock(&self.inner).config.clone()
    }

    /// Replaces the configuration without losing the state or the totals.
    ///
    /// The window keeps its contents when its kind and size are unchanged, and
    /// starts empty otherwise. The new thresholds are judged from the next
    /// recorded outcome; an open circuit keeps its current deadline. The
    /// clock cannot change: a breaker keeps the clock it was created with.
    pub fn reconfigure(&self, config: Config) -> Result<(), ConfigError> {
        let transition = self.reconfigure_deferred(config)?;
        self.publish_transition(transition);
        Ok(())
    }

    /// [`reconfigure`](Self::reconfigure), returning the transition it made
    /// (a lower threshold may open the circuit) instead of telling the
    /// observers: the registry tells them once it holds no lock.
    pub(crate) fn reconfigure_deferred(&self, config: Config) -> Result<Option<Transition>, ConfigError> {
        // Re-validate: a `Config` is valid by construction, but say so here.
        let config = config.to_builder().clock(self.clock.clone()).build()?;
        let transition = {
            let mut inner = lock(&self.inner);
            if inner.config.sliding_window != config.sliding_window {
                self.sync_fast_successes(&mut inner);
                inner.window = SlidingWindow::new(config.sliding_window);
            }
            self.publish(&config);
            inner.config = config;
            // A lower threshold may already be met.
            let w = self.load();
            if w.state() == State::Closed {
                self.sync_fast_successes(&mut inner);
                self.judge_closed(&mut inner, w)
            } else {
                None
            }
        };
        Ok(transition)
    }

    /// Logs `transition` and tells the observers; call it with no lock held.
    pub(crate) fn publish_transition(&self, transition: Option<Transition>) {
        self.emit(transition);
    }

    /// The circuit's state.
    ///
    /// An open circuit whose open duration has elapsed is moved to half-open
    /// here, even if no call arrived since (pitfall 11): what this returns,
    /// and what metrics report, is always what the next call will meet.
    pub fn state(&self) -> State {
        loop {
            let w = self.load();
            if w.state() != State::Open {
                return w.state();
            }
            if self.health_verdict(w) {
                continue;
            }
            match self.try_half_open(w, 0) {
                Err(_) => return State::Open,
                Ok(None) => continue,
                Ok(Some(_)) => return State::HalfOpen,
            }
        }
    }

    /// Whether a family may evict this key's breaker now: `Ok` when it holds
    /// nothing worth keeping (closed, or half-open with no probe in flight:
    /// an open period that has ended moves to half-open here); otherwise
    /// `Err` with the clock reading at which that may change, when known
    /// (the end of an open period).
    pub(crate) fn eviction_check(&self) -> Result<(), Option<u64>> {
        match self.state() {
            State::Closed => Ok(()),
            State::HalfOpen if self.load().in_flight() == 0 => Ok(()),
            State::Open => Err(Some(self.open_until.load(Ordering::Acquire))),
            State::HalfOpen | State::ForcedOpen | State::Disabled => Err(None),
        }
    }

    /// A snapshot of the state and every count. The counts are exact.
    pub fn stats(&self) -> Stats {
        let state = self.state();
        let (tally, consecutive, minimum) = {
            let mut inner = lock(&self.inner);
            self.sync_fast_successes(&mut inner);
            let now = self.window_now(&inner);
            let shown = match self.load() {
                w if w.state() == State::Open => inner.window_open_generation == w.generation(),
                w => w.state() != State::HalfOpen,
            };
            (
                if shown {
                    inner.window.tally(now)
                } else {
                    Tally::default()
                },
                u64::from(inner.streak.failures),
                u64::from(inner.config.minimum_calls),
            )
        };
        let c = |k| self.counters.sum(k);
        let rate =
            |n: u64| (tally.calls >= minimum && tally.calls > 0).then(|| n as f64 / tally.calls as f64);
        let w = self.load();
        let fallbacks_by = match self.rare.get() {
            Some(rare) => FallbackReason::ALL.map(|r| rare.fallbacks.sum(r.index())),
            None => [0; FallbackReason::ALL.len()],
        };
        Stats {
            state,
            successes: c(Counter::Success) + c(Counter::FastSuccess),
            failures: c(Counter::Failure),
            rejected: c(Counter::Rejected),
            slow_calls: c(Counter::Slow),
            consecutive_failures: if w.state() == State::Closed {
                consecutive
            } else {
                0
            },
            timeouts: c(Counter::Timeout),
            ignored: c(Counter::Ignored),
            cancelled: c(Counter::Cancelled),
            throttled: self
                .rare
                .get()
                .map_or(0, |rare| rare.throttled.load(Ordering::Relaxed)),
            calls_in_window: tally.calls,
            failures_in_window: tally.failures,
            slow_calls_in_window: tally.slow,
            failure_rate: rate(tally.failures),
            slow_call_rate: rate(tally.slow),
            half_open_in_flight: u64::from(w.in_flight()),
            fallbacks: fallbacks_by.iter().sum(),
            fallbacks_by,
            probes_by: match self.rare.get() {
                Some(rare) => CallEnd::ALL.map(|end| rare.probes[end.index()].load(Ordering::Relaxed)),
                None => [0; CallEnd::ALL.len()],
            },
            saturated: self.modes().map_or(0, |m| m.saturated()),
            shadow_rejected: self.modes().map_or(0, |m| m.shadow_rejected()),
            refusal_share: self.refusal_share(),
            concurrent_calls: self.modes().map_or(0, |m| m.bulkhead.in_flight()),
            health_checks_passed: self.health_check_counts().0,
            health_checks_failed: self.health_check_counts().1,
            ramp_share: self.ramp_share_now(),
        }
    }

    /// The rare counts, allocated on the first.
    #[inline]
    fn rare(&self) -> &RareCounts {
        self.rare.get_or_init(RareCounts::new)
    }

    /// Counts a fallback that ran in place of (or after) a call through this
    /// breaker, for `reason`: in [`Stats::fallbacks`] and the metric
    /// `circuit_breaker_fallbacks_total{on}`. The attribute counts its own
    /// fallbacks; call this when you run one yourself around
    /// [`call`](Self::call).
    #[inline]
    pub fn record_fallback(&self, reason: FallbackReason) {
        self.rare().fallbacks.add(reason.index());
    }

    /// How long the circuit stays open before it lets probes through: `Some`
    /// while the state is [`State::Open`], `None` in every other state (a
    /// forced-open circuit has no end but [`reset`](Self::reset)).
    ///
    /// Like [`state`](Self::state), an open circuit whose open duration has
    /// elapsed is moved to half-open here, and `None` returned.
    pub fn open_remaining(&self) -> Option<Duration> {
        loop {
            let w = self.load();
            if w.state() != State::Open {
                return None;
            }
            match self.try_half_open(w, 0) {
                Err(wait) => return Some(wait),
                Ok(None) => continue,
                Ok(Some(_)) => return None,
            }
        }
    }

    /// `true` while the circuit is open because the dependency throttled a
    /// call ([`Outcome::Throttled`](crate::Outcome::Throttled)): it is not
    /// down, it asked callers to wait ([`open_remaining`](Self::open_remaining)
    /// says how long is left). `false` in every other state, and once that
    /// period has elapsed (the circuit is half-open then).
    pub fn is_throttled(&self) -> bool {
        self.state() == State::Open && self.load().throttled()
    }

    /// `true` while the circuit is open or half-open after a throttled
    /// answer (and no failure since): the dependency is rate limiting, not
    /// down. The metric `circuit_breaker_throttled` reports it, so that an
    /// alert can tell a rate limit from an outage.
    pub fn throttling(&self) -> bool {
        let _ = self.state();
        self.load().throttled()
    }

    /// Why the circuit is not closed: the reason it last opened
    /// ([`Reason::Throttled`] for a rate limit, [`Reason::ConsecutiveFailures`],
    /// ...) while it is open or half-open after that opening, and
    /// [`Reason::ForcedOpen`] while forced open; `None` while closed or
    /// disabled.
    pub fn open_reason(&self) -> Option<Reason> {
        match self.state() {
            State::Closed | State::Disabled => None,
            State::ForcedOpen => Some(Reason::ForcedOpen),
            State::Open | State::HalfOpen => lock(&self.inner).open_reason,
        }
    }

    /// Admission: a ticket for one call, or the refusal. Wrapped by
    /// [`try_acquire`](Self::try_acquire) and every call future.
    ///
    /// Tests rather than a `match`: a `match` on the state compiles to a jump
    /// table, an indirect jump that profiles showed as the closed path's most
    /// sampled instruction; closed is tested first.
    #[inline(always)]
    pub(crate) fn admit(&self) -> Result<Ticket, BreakerError> {
        let w = self.load();
        // The flags word the ticket reads anyway: a protection mode (a bit
        // no breaker without one has set) takes admission out of line.
        let flags = self.probes_and_timed.load(Ordering::Relaxed);
        if flags & modes::ANY != 0 {
            return modes::admit(self, w, flags);
        }
        self.admit_plain(w, flags)
    }

    /// Admission by the state machine alone, for a word `w` and the flags
    /// word `flags`.
    #[inline(always)]
    pub(crate) fn admit_plain(&self, w: StateWord, flags: u64) -> Result<Ticket, BreakerError> {
        // Closed and not ramping up: one test, as for the state alone.
        if w.admits_all() {
            return Ok(self.ticket_with(w, Admission::Closed, flags));
        }
        let state = w.state();
        if state == State::Open {
            return self.admit_open(w);
        }
        if state == State::ForcedOpen {
            return Err(self.reject(w, BreakerErrorKind::ForcedOpen, None));
        }
        // Half-open, disabled and ramping up.
        self.admit_slow(w)
    }

    /// Admission for an open word: while the open duration runs, which is
    /// nearly always, one load of the deadline, one of the recent time, a
    /// compare and the refusal, in line; the move to half-open out of line.
    #[inline(always)]
    fn admit_open(&self, w: StateWord) -> Result<Ticket, BreakerError> {
        let deadline = self.open_until.load(Ordering::Acquire);
        let now = self.clock.now_nanos();
        if now < deadline && !self.health_verdict(w) {
            return Err(self.reject_open(w, deadline - now));
        }
        self.admit_slow(self.load())
    }

    #[inline(always)]
    fn ticket(&self, w: StateWord, admission: Admission) -> Ticket {
        self.ticket_with(w, admission, self.probes_and_timed.load(Ordering::Relaxed))
    }

    /// A ticket for `w`, timed when `flags` (the flags word) says so.
    #[inline(always)]
    pub(crate) fn ticket_with(&self, w: StateWord, admission: Admission, flags: u64) -> Ticket {
        let start = if flags & TIMED != 0 {
            self.clock.now_nanos()
        } else {
            Ticket::NO_START
        };
        Ticket::new(w.generation(), admission, start)
    }

    #[cold]
    fn admit_slow(&self, mut w: StateWord) -> Result<Ticket, BreakerError> {
        loop {
            match w.state() {
                State::Closed if w.ramping() => {
                    if let Some(admitted) = self.admit_ramping(w) {
                        return admitted;
                    }
                }
                State::Closed => return Ok(self.ticket(w, Admission::Closed)),
                State::Disabled => return Ok(self.ticket(w, Admission::Disabled)),
                State::ForcedOpen => return Err(self.reject(w, BreakerErrorKind::ForcedOpen, None)),
                State::Open => {
                    // Looked at in line by `admit_open` already; again here
                    // after a lost race.
                    let deadline = self.open_until.load(Ordering::Acquire);
                    let now = self.clock.now_nanos();
                    if now < deadline {
                        return Err(self.reject_open(w, deadline - now));
                    }
                    // Fleet mode: a probe needs a lease too (never waits).
                    let leased = self.take_lease_when_due();
                    match self.try_half_open(w, u32::from(leased)) {
                        Err(wait) => {
                            self.return_lease(leased);
                            return Err(self.reject_open(w, duration_nanos(wait)));
                        }
                        Ok(None) => self.return_lease(leased),
                        // This caller made the move, and its probe is the first.
                        Ok(Some(probing)) if leased => return Ok(self.ticket(probing, Admission::HalfOpen)),
                        Ok(Some(_)) => return Err(self.reject(w, BreakerErrorKind::HalfOpenFull, None)),
                    }
                }
                State::HalfOpen => {
                    let n = w.in_flight();
                    if u64::from(n) >= self.probes_and_timed.load(Ordering::Acquire) & PROBES
                        || !self.take_lease()
                    {
                        return Err(self.reject(w, BreakerErrorKind::HalfOpenFull, None));
                    }
                    let taken = w.with_in_flight(n + 1);
                    if self.cas(w, taken) {
                        return Ok(self.ticket(taken, Admission::HalfOpen));
                    }
                    self.return_lease(true);
                }
            }
            w = self.load();
        }
    }

    /// For an open word: `Err(wait)` while the open duration runs. Once it
    /// has elapsed, moves to half-open with `probes` slots taken, by one
    /// compare-and-swap so that exactly one caller makes the move (pitfall 2):
    /// `Ok(Some(new_word))` for that caller, `Ok(None)` when the word had
    /// moved on (look again).
    fn try_half_open(&self, w: StateWord, probes: u32) -> Result<Option<StateWord>, Duration> {
        let deadline = self.open_until.load(Ordering::Acquire);
        let now = self.clock.now_nanos();
        if now < deadline {
            return Err(Duration::from_nanos(deadline - now));
        }
        // A throttled period's half-open keeps the mark: still rate limited.
        let half_open = w.next(State::HalfOpen, w.throttled()).with_in_flight(probes);
        // Under the lock, as every other transition: stamped in the order of
        // the states (once per open period, so the lock costs nothing).
        let transition = {
            let _inner = lock(&self.inner);
            if !self.cas(w, half_open) {
                return Ok(None);
            }
            self.transition(w, half_open, Reason::OpenDurationElapsed)
        };
        self.emit(Some(transition));
        Ok(Some(half_open))
    }

    /// Counts and logs a refusal of a call that found the word `w`.
    #[inline(always)]
    pub(crate) fn reject(
        &self,
        w: StateWord,
        kind: BreakerErrorKind,
        wait: Option<Duration>,
    ) -> BreakerError {
        self.count_refusal(kind);
        self.rejections
            .first_of_period(self.name, self.key(), w.generation(), kind);
        let wait = match kind {
            BreakerErrorKind::HalfOpenFull => Some(HALF_OPEN_RETRY),
            _ => wait,
        };
        BreakerError::new(self.name, kind, wait).with_key(self.shared_key())
    }

    /// A keyed breaker's key as the `Arc` it holds, for its errors.
    #[inline(always)]
    fn shared_key(&self) -> Option<&std::sync::Arc<str>> {
        self.key_tag().map(|tag| &tag.key)
    }

    /// [`reject`](Self::reject) for an open circuit whose deadline is `wait`
    /// nanoseconds away: a count in this thread's shard, one check that the
    /// period's first rejection was logged, and two words of error.
    #[inline(always)]
    fn reject_open(&self, w: StateWord, wait: u64) -> BreakerError {
        self.count_refusal(BreakerErrorKind::Open);
        self.rejections
            .first_of_period(self.name, self.key(), w.generation(), BreakerErrorKind::Open);
        let error = if w.throttled() {
            BreakerError::throttled(self.name, wait)
        } else {
            BreakerError::open(self.name, wait)
        };
        error.with_key(self.shared_key())
    }

    /// The `call_timeout` in force, if any.
    #[inline]
    pub(crate) fn call_timeout(&self) -> Option<Duration> {
        match self.timeout_nanos.load(Ordering::Relaxed) {
            0 => None,
            n => Some(Duration::from_nanos(n)),
        }
    }

    pub(crate) fn timeout_error(&self, after: Duration) -> BreakerError {
        BreakerError::new(self.name, BreakerErrorKind::Timeout, Some(after)).with_key(self.shared_key())
    }

    /// Records how an admitted call ended.
    #[inline(always)]
    pub(crate) fn finish(&self, ticket: Ticket, finish: CallEnd) {
        let slow = ticket.start != Ticket::NO_START && self.measure(ticket, finish);
        if finish == CallEnd::Success && !slow && ticket.is_plain_closed() {
            // The hot path: closed, clean window, same generation.
            if self.load().is_clean_closed(ticket.generation()) {
                self.counters.add(Counter::FastSuccess);
                return;
            }
        }
        self.finish_slow(ticket, finish, slow);
    }

    /// For a call whose start was read: tells the duration observer, if any,
    /// and returns whether the call was slow.
    #[inline]
    fn measure(&self, ticket: Ticket, finish: CallEnd) -> bool {
        let elapsed = self.clock.now_nanos().saturating_sub(ticket.start);
        if finish != CallEnd::Cancelled {
            self.durations.notify(Duration::from_nanos(elapsed));
        }
        let limit = self.slow_nanos.load(Ordering::Relaxed);
        // "Slower than" is strictly longer, as in resilience4j.
        limit != 0 && elapsed > limit
    }

    /// Times every call from now on, telling `observe` each one's duration
    /// (the metrics' histograms), after the observers added before it.
    pub(crate) fn observe_call_durations(&self, observe: DurationObserver) {
        self.durations.add(observe);
        self.probes_and_timed.fetch_or(TIMED, Ordering::AcqRel);
    }

    /// Records a finish the hot path did not; `true` when it moved the state
    /// (to the generation after the ticket's).
    #[cold]
    fn finish_slow(&self, ticket: Ticket, finish: CallEnd, slow: bool) -> bool {
        self.counters.add(match finish {
            CallEnd::Success => Counter::Success,
            CallEnd::Failure => Counter::Failure,
            CallEnd::Timeout => Counter::Timeout,
            CallEnd::Ignored => Counter::Ignored,
            CallEnd::Cancelled => Counter::Cancelled,
            CallEnd::Throttled => return self.finish_throttled(ticket, slow, None),
        });
        if slow && finish != CallEnd::Cancelled {
            self.counters.add(Counter::Slow);
        }
        let heard = !ticket.has_mode_flags() || modes::finish(self, ticket, finish);
        let transition = match ticket.admission() {
            _ if !heard => None,
            Admission::Disabled | Admission::Shadow => None,
            Admission::Closed => self.finish_closed(ticket, finish, slow),
            Admission::HalfOpen => {
                self.rare().probes[finish.index()].fetch_add(1, Ordering::Relaxed);
                let transition = self.finish_probe(ticket, finish, slow);
                self.probe_ended(finish);
                self.tell_family_probe_ended();
                transition
            }
        };
        let moved = transition.is_some();
        self.emit(transition);
        if matches!(finish, CallEnd::Failure | CallEnd::Timeout) {
            self.hand_over_if_evicted();
        }
        moved
    }

    /// A keyed breaker's probe ended: its family may evict the key now, if
    /// it is full (a probe that ends without a transition says so only here).
    fn tell_family_probe_ended(&self) {
        if let Some(family) = self.key_tag().and_then(|tag| tag.home.as_ref()?.upgrade()) {
            family.key_settled();
        }
    }

    /// A keyed breaker whose key was evicted while this call was in flight:
    /// the failure is handed over to the key's breaker in its family now,
    /// so that it still counts for the key (see the family's `handover`
    /// module). One load of the key's tag on the failure path; nothing for
    /// an unkeyed breaker.
    fn hand_over_if_evicted(&self) {
        if let Some(tag) = self.key_tag() {
            if !tag.detached && tag.evicted.load(Ordering::Acquire) {
                if let Some(family) = tag.home.as_ref().and_then(Weak::upgrade) {
                    let opened = self
                        .open_remaining()
                        .map(|left| (left, self.open_reason().unwrap_or(Reason::ConsecutiveFailures)));
                    family.hand_over(&tag.key, opened);
                }
            }
        }
    }

    fn finish_closed(&self, ticket: Ticket, finish: CallEnd, slow: bool) -> Option<Transition> {
        let failure = match finish {
            CallEnd::Success => false,
            CallEnd::Failure | CallEnd::Timeout => true,
            CallEnd::Ignored | CallEnd::Cancelled | CallEnd::Throttled => return None,
        };
        let mut inner = lock(&self.inner);
        let w = self.load();
        if w.state() != State::Closed || w.generation() != ticket.generation() {
            return None; // a late result from an earlier state
        }
        self.sync_fast_successes(&mut inner);
        let now = self.window_now(&inner);
        inner.window.record(now, failure, slow);
        inner.streak.record(finish);
        self.judge_closed(&mut inner, w)
    }

    /// Opens the circuit if a trigger is met, or else updates the dirty bit.
    fn judge_closed(&self, inner: &mut LockedState, w: StateWord) -> Option<Transition> {
        let now = self.window_now(inner);
        let tally = inner.window.tally(now);
        match crate::trigger::closed_reason(&inner.config, tally, inner.streak) {
            Some(reason) => {
                inner.reopens = 0;
                let opened = self.open_locked(inner, w, reason, tally);
                // The window that tripped the circuit stays readable in
                // `stats()` while open; it is dropped on the move to
                // half-open, and emptied when the circuit closes again.
                if opened.is_some() {
                    inner.window_open_generation = next_generation(w.generation());
                }
                inner.streak.clear();
                opened
            }
            None => {
                let dirty = !(inner.window.is_clean() && inner.streak.is_clear());
                if dirty != w.dirty() {
                    // Nothing else changes a closed word without this lock.
                    let _ = self.cas(w, w.with_dirty(dirty));
                }
                None
            }
        }
    }

    fn finish_probe(&self, ticket: Ticket, finish: CallEnd, slow: bool) -> Option<Transition> {
        if matches!(finish, CallEnd::Ignored | CallEnd::Cancelled | CallEnd::Throttled) {
            self.release_probe(ticket.generation());
            return None;
        }
        let mut inner = lock(&self.inner);
        // The word after giving the slot back; `None` for a late result.
        let w = self.release_probe(ticket.generation())?;
        if inner.probe_generation != ticket.generation() {
            inner.probe_generation = ticket.generation();
            inner.probe_successes = 0;
            inner.probe_slow = 0;
        }
        match finish {
            CallEnd::Success => {
                inner.probe_successes += 1;
                inner.probe_slow += u32::from(slow);
                if inner.probe_successes < inner.config.success_threshold {
                    return None;
                }
                // Slow probes count against closing: a dependency that comes
                // back slow stays open instead of flapping (as resilience4j
                // judges its probes' slow-call rate).
                let slow_rate = f64::from(inner.probe_slow) / f64::from(inner.probe_successes);
                if inner.probe_slow > 0 && slow_rate >= inner.config.slow_call_rate_threshold {
                    inner.reopens = inner.reopens.saturating_add(1);
                    return self.open_locked(&mut inner, w, Reason::SlowProbes, Tally::default());
                }
                let closed = w.next(State::Closed, inner.config.sliding_window.is_time());
                let closed = self.ramped(closed, inner.config.ramp_up());
                let transition = self.swap_locked(w, closed, Reason::ProbesSucceeded)?;
                self.start_over(&mut inner);
                Some(transition)
            }
            _ => {
                inner.reopens = inner.reopens.saturating_add(1);
                let tally = Tally::default();
                self.open_locked(&mut inner, w, Reason::ProbeFailed, tally)
            }
        }
    }

    /// Gives a probe slot back if its generation is still current; returns the
    /// word after, or `None` when the generation has moved on.
    fn release_probe(&self, generation: u64) -> Option<StateWord> {
        let mut w = self.load();
        loop {
            if w.state() != State::HalfOpen || w.generation() != generation {
                return None;
            }
            let released = w.with_in_flight(w.in_flight().saturating_sub(1));
            match self.cas_from(w, released) {
                Ok(()) => return Some(released),
                Err(now) => w = now,
            }
        }
    }

    /// Moves `w` (of one generation) to open, with the backoff's duration.
    /// Call with the lock held.
    fn open_locked(
        &self,
        inner: &mut LockedState,
        w: StateWord,
        reason: Reason,
        tally: Tally,
    ) -> Option<Transition> {
        let now = self.clock.now_nanos();
        let since_open = inner.opened_at.since(now);
        let duration = crate::trigger::open_period(&inner.config, inner.reopens, since_open, fastrand::f64());
        self.open_until
            .store(now.saturating_add(duration_nanos(duration)), Ordering::Release);
        let open = w.next(State::Open, false);
        let mut t = self.swap_locked(w, open, reason)?;
        if w.state() == State::Closed {
            inner.opened_at = crate::trigger::OpenedAt::at(now);
        }
        inner.open_reason = Some(reason);
        t.failures_in_window = tally.failures;
        t.calls_in_window = tally.calls;
        t.open_for = Some(duration);
        Some(t)
    }

    /// Swaps `from` for `to` while `from`'s generation and state hold (only
    /// the probe count may move meanwhile). Call with the lock held.
    fn swap_locked(&self, from: StateWord, to: StateWord, reason: Reason) -> Option<Transition> {
        let mut w = from;
        loop {
            if w.state() != from.state() || w.generation() != from.generation() {
                return None;
            }
            match self.cas_from(w, to) {
                Ok(()) => return Some(self.transition(w, to, reason)),
                Err(now) => w = now,
            }
        }
    }

    /// Empties the window, the failure streak and the backoff, and counts the
    /// successes that skipped the lock so far as already seen.
    fn start_over(&self, inner: &mut LockedState) {
        inner.window.clear();
        inner.streak.clear();
        inner.opened_at = crate::trigger::OpenedAt::NONE;
        inner.reopens = 0;
        inner.synced_fast = self.counters.sum(Counter::FastSuccess);
    }

    /// Brings the window up to date with the successes that skipped the lock.
    fn sync_fast_successes(&self, inner: &mut LockedState) {
        let total = self.counters.sum(Counter::FastSuccess);
        let pending = total.wrapping_sub(inner.synced_fast);
        if pending != 0 {
            inner.synced_fast = total;
            let now = self.window_now(inner);
            inner.window.record_successes(now, pending);
            inner.streak.clear();
        }
    }

    fn window_now(&self, inner: &LockedState) -> u64 {
        if inner.config.sliding_window.is_time() {
            self.clock.now_nanos()
        } else {
            0
        }
    }

    #[inline(always)]
    fn load(&self) -> StateWord {
        StateWord(self.word.load(Ordering::Acquire))
    }

    fn cas(&self, from: StateWord, to: StateWord) -> bool {
        self.cas_from(from, to).is_ok()
    }

    fn cas_from(&self, from: StateWord, to: StateWord) -> Result<(), StateWord> {
        self.word
            .compare_exchange(from.0, to.0, Ordering::AcqRel, Ordering::Acquire)
            .map(drop)
            .map_err(StateWord)
    }

    fn transition(&self, from: StateWord, to: StateWord, reason: Reason) -> Transition {
        Transition {
            name: self.name,
            key: self.key_tag().map(|tag| std::sync::Arc::clone(&tag.key)),
            from: from.state(),
            to: to.state(),
            reason,
            at: self.clock.now(),
            wall_time: std::time::SystemTime::now(),
            open_for: None,
            failures_in_window: 0,
            calls_in_window: 0,
            rejected_while_open: None,
            seq: self.publisher().stamp(),
        }
    }

    /// What tells the observers the transitions in order: with the rare
    /// counts, made at the first transition.
    fn publisher(&self) -> &Publisher {
        &self.rare().published
    }

    /// Logs a transition and tells the observers, with no lock held, in the
    /// order the transitions happened (see `transition::Publisher`).
    fn emit(&self, transition: Option<Transition>) {
        if let Some(t) = transition {
            self.publisher().publish(t, |mut t| {
                if t.from.is_open() {
                    t.rejected_while_open = Some(self.rejections.end_period(self.refusals()));
                } else if t.to.is_open() {
                    self.rejections.start_period(self.refusals());
                }
                crate::log::transition(&t);
                self.observers.notify(&t);
            });
            self.health_moved();
        }
    }

    /// Runs `f` on every transition of this breaker, after it has happened and
    /// with no lock held.
    pub fn on_transition(&self, f: impl Fn(&Transition) + Send + Sync + 'static) {
        self.observers.add(Box::new(f));
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.name)
            .field("key", &self.key())
            .field("state", &self.load().state())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
impl CircuitBreaker {
    /// Bytes held by one breaker: the struct plus the window's heap.
    pub(crate) fn footprint(&self) -> usize {
        std::mem::size_of::<Self>() + lock(&self.inner).window.heap_bytes()
    }
}
