//! Transition events, and the observers a breaker tells about them.

use std::collections::BTreeMap;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use crate::state::State;

/// One change of a breaker's state.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Transition {
    /// The breaker's name (a keyed breaker's is its family's).
    pub name: &'static str,
    /// A keyed breaker's key ([`CircuitBreaker::key`](crate::CircuitBreaker::key)); `None`
    /// for an unkeyed breaker.
    pub key: Option<Arc<str>>,
    /// The state it left.
    pub from: State,
    /// The state it entered.
    pub to: State,
    /// Why it happened.
    pub reason: Reason,
    /// When, on the breaker's monotonic clock.
    pub at: Duration,
    /// When, on the wall clock (for logs and stored event tables only).
    pub wall_time: SystemTime,
    /// On opening: how long the circuit stays open.
    pub open_for: Option<Duration>,
    /// On opening from closed: failures in the window that tripped it.
    pub failures_in_window: u64,
    /// On opening from closed: calls in the window that tripped it.
    pub calls_in_window: u64,
    /// On leaving open or forced open: calls rejected during that period.
    pub rejected_while_open: Option<u64>,
    /// The breaker's count of transitions before this one: the order
    /// observers are told them in (see [`Publisher`]).
    pub(crate) seq: u64,
}

/// Why a breaker changed state: the [`Transition::reason`].
///
/// `Display` and [`Reason::as_str`] give the words logs, events and the
/// fleet's transition log use (`"consecutive failures"`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// Closed to open: `failure_threshold` consecutive failures.
    ConsecutiveFailures,
    /// Closed to open: the window's failure rate reached its threshold.
    FailureRate,
    /// Closed to open: the window's slow-call rate reached its threshold.
    SlowCallRate,
    /// Open to half-open: the open duration elapsed.
    OpenDurationElapsed,
    /// Half-open to closed: `success_threshold` probes succeeded.
    ProbesSucceeded,
    /// Half-open to open: a probe failed.
    ProbeFailed,
    /// Half-open to open: the probes succeeded, but too many of them slowly.
    SlowProbes,
    /// To open for a given time: [`CircuitBreaker::open_for`](crate::CircuitBreaker::open_for),
    /// or a `Retry-After`.
    OpenedFor,
    /// [`CircuitBreaker::reset`](crate::CircuitBreaker::reset).
    Reset,
    /// [`CircuitBreaker::force_open`](crate::CircuitBreaker::force_open).
    ForcedOpen,
    /// [`CircuitBreaker::disable`](crate::CircuitBreaker::disable).
    Disabled,
    /// Opened because another replica of the fleet opened.
    OpenedByFleet,
    /// Closed because the fleet's probes succeeded.
    ClosedByFleet,
    /// A fleet-wide `reset`.
    ResetByFleet,
    /// A fleet-wide `force_open`.
    ForcedOpenByFleet,
    /// A fleet-wide `disable`.
    DisabledByFleet,
    /// To open: the dependency throttled a call ([`Outcome::Throttled`](crate::Outcome::Throttled)),
    /// for its `Retry-After` or `throttle_duration`. Not a failure.
    Throttled,
    /// To open because its family opened: `family_open_keys` keys of the
    /// family were open at once (see [`Family`](crate::Family)).
    FamilyOpen,
    /// Open to closed: `success_threshold` health checks in a row passed
    /// while open (see [`CircuitBreaker::set_health_check`](crate::CircuitBreaker::set_health_check)).
    HealthCheck,
}

impl Reason {
    /// Every reason.
    pub const ALL: [Reason; 19] = [
        Reason::ConsecutiveFailures,
        Reason::FailureRate,
        Reason::SlowCallRate,
        Reason::OpenDurationElapsed,
        Reason::ProbesSucceeded,
        Reason::ProbeFailed,
        Reason::SlowProbes,
        Reason::OpenedFor,
        Reason::Reset,
        Reason::ForcedOpen,
        Reason::Disabled,
        Reason::OpenedByFleet,
        Reason::ClosedByFleet,
        Reason::ResetByFleet,
        Reason::ForcedOpenByFleet,
        Reason::DisabledByFleet,
        Reason::Throttled,
        Reason::FamilyOpen,
        Reason::HealthCheck,
    ];

    /// The reason in words, as logs and events write it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::ConsecutiveFailures => "consecutive failures",
            Reason::FailureRate => "failure rate",
            Reason::SlowCallRate => "slow-call rate",
            Reason::OpenDurationElapsed => "open duration elapsed",
            Reason::ProbesSucceeded => "probes succeeded",
            Reason::ProbeFailed => "a probe failed",
            Reason::SlowProbes => "slow probes",
            Reason::OpenedFor => "opened for a given duration",
            Reason::Reset => "reset",
            Reason::ForcedOpen => "forced open",
            Reason::Disabled => "disabled",
            Reason::OpenedByFleet => "opened by the fleet",
            Reason::ClosedByFleet => "closed by the fleet",
            Reason::ResetByFleet => "reset by the fleet",
            Reason::ForcedOpenByFleet => "forced open by the fleet",
            Reason::DisabledByFleet => "disabled by the fleet",
            Reason::Throttled => "throttled",
            Reason::FamilyOpen => "its family opened",
            Reason::HealthCheck => "health checks passed",
        }
    }

    /// The reason whose [`as_str`](Self::as_str) is `words`.
    pub fn from_words(words: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == words)
    }

    /// `true` for a state another replica of the fleet decided.
    pub const fn is_from_fleet(self) -> bool {
        matches!(
            self,
            Reason::OpenedByFleet
                | Reason::ClosedByFleet
                | Reason::ResetByFleet
                | Reason::ForcedOpenByFleet
                | Reason::DisabledByFleet
        )
    }

    /// `true` for local manual control: `reset`, `force_open`, `disable`.
    pub const fn is_manual(self) -> bool {
        matches!(self, Reason::Reset | Reason::ForcedOpen | Reason::Disabled)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            None => write!(
                f,
                "circuit breaker `{}`: {} -> {} ({})",
                self.name, self.from, self.to, self.reason
            ),
            Some(key) => write!(
                f,
                "circuit breaker `{}` key `{key}`: {} -> {} ({})",
                self.name, self.from, self.to, self.reason
            ),
        }
    }
}

/// How many transitions a breaker made, by from and to state (the registry's
/// counts, which the metrics read).
#[derive(Default)]
pub(crate) struct TransitionCounts {
    transitions: [[std::sync::atomic::AtomicU64; 5]; 5],
}

impl TransitionCounts {
    /// Counts `t`.
    pub(crate) fn record(&self, t: &Transition) {
        self.transitions[usize::from(t.from.code())][usize::from(t.to.code())]
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Transitions from `from` to `to` so far.
    pub(crate) fn transitions(&self, from: State, to: State) -> u64 {
        self.transitions[usize::from(from.code())][usize::from(to.code())]
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Tells a breaker's transitions to its observers in the order they
/// happened, each one's `from` the previous one's `to`.
///
/// A transition is made under the breaker's lock, and told with no lock
/// held, so two threads that move one breaker one after the other could tell
/// their transitions in the other order. Each transition is stamped under the
/// lock ([`stamp`](Self::stamp)); [`publish`](Self::publish) queues it, and
/// whichever thread finds nobody telling tells every queued transition whose
/// turn has come, in stamp order, with no lock held while it does. A thread
/// that finds another one telling returns at once: its transition is told by
/// that one, right after those before it. An observer may move its own
/// breaker: its transition is queued and told next.
#[derive(Default)]
pub(crate) struct Publisher {
    stamps: AtomicU64,
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    /// The stamp of the next transition to tell.
    next: u64,
    waiting: BTreeMap<u64, Transition>,
    /// A thread is telling transitions now.
    telling: bool,
}

/// Transitions waiting for an earlier one that never came: past this many,
/// the gap is skipped (and logged) rather than every later one held back.
const MAX_WAITING: usize = 1024;

impl Publisher {
    /// The next transition's place in the order. Call with the breaker's
    /// lock held, where the transition is made.
    pub(crate) fn stamp(&self) -> u64 {
        self.stamps.fetch_add(1, Ordering::Relaxed)
    }

    /// Tells `t`, and every transition queued after it, to `tell`, in stamp
    /// order.
    pub(crate) fn publish(&self, t: Transition, tell: impl Fn(Transition)) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue.waiting.insert(t.seq, t);
        if queue.telling {
            return;
        }
        queue.telling = true;
        loop {
            let ready = match queue.waiting.first_key_value() {
                Some((&seq, _)) if seq == queue.next => true,
                Some((&seq, t)) if queue.waiting.len() > MAX_WAITING => {
                    tracing::error!(
                        target: "cb_runtime",
                        breaker = t.name,
                        "circuit breaker `{}`: transition {} was never told; {} later ones skip it",
                        t.name,
                        queue.next,
                        seq - queue.next
                    );
                    true
                }
                _ => false,
            };
            if !ready {
                queue.telling = false;
                return;
            }
            let Some((seq, t)) = queue.waiting.pop_first() else {
                queue.telling = false;
                return;
            };
            queue.next = seq + 1;
            drop(queue);
            // `tell` catches the observers' panics: `telling` is reset below.
            tell(t);
            queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        }
    }
}

type Observer = Arc<dyn Fn(&Transition) + Send + Sync>;

/// The functions to call on each transition.
#[derive(Default)]
pub(crate) struct Observers(RwLock<Vec<Observer>>);

impl Observers {
    pub(crate) fn add(&self, f: Box<dyn Fn(&Transition) + Send + Sync>) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::from(f));
    }

    /// Calls every observer, holding no lock while they run.
    ///
    /// An observer that panics is caught and logged at ERROR with the
    /// breaker's name; the breaker has already moved and stays as it is, and
    /// the other observers still run. This holds while another panic unwinds
    /// too (a panicking call records its failure from a drop guard, and that
    /// failure may open the circuit), where a second escaping panic would
    /// abort the process.
    pub(crate) fn notify(&self, t: &Transition) {
        let list: Vec<Observer> = {
            let guard = self.0.read().unwrap_or_else(PoisonError::into_inner);
            if guard.is_empty() {
                return;
            }
            guard.clone()
        };
        for f in list {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| f(t))) {
                tracing::error!(
                    target: "cb_runtime",
                    breaker = t.name,
                    from = %t.from,
                    to = %t.to,
                    panic = panic_message(&*panic),
                    "an on_transition observer of circuit breaker `{}` panicked; the breaker is unaffected",
                    t.name
                );
            }
        }
    }
}

/// The text of a panic's payload, when it has one.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "<non-string panic payload>"
    }
}
