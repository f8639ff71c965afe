//! What this replica holds of one breaker's fleet state, with its version,
//! and how a state from the fleet is applied to a local breaker.

use std::time::{Duration, Instant};

use cb_runtime::{CircuitBreaker, State};

use crate::message::{Kind, Message, MAX_OPEN_MS};

/// One breaker's fleet state, as a script answered it or a message said it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct View {
    /// The last change: an open (`ms` 0: half-open), a close, or a manual command.
    pub(crate) kind: Kind,
    /// The breaker's version in Redis after that change.
    pub(crate) version: u64,
    /// The version that started the current open period.
    pub(crate) period: u64,
    /// While open: when the fleet's open duration ends, on this process's clock.
    pub(crate) open_until: Option<Instant>,
}

impl View {
    /// The view of a script's answer (`kind`, `PTTL` of the open marker,
    /// level, version, period); `None` for `none` (Redis holds no state) or
    /// an answer that is not a state. The time left is bounded as messages
    /// are ([`MAX_OPEN_MS`]), which no open a replica makes exceeds: only a
    /// corrupt marker is cut.
    pub(crate) fn from_fleet(kind: &str, ms: i64, level: i64, version: u64, period: u64) -> Option<Self> {
        let ms = ms.clamp(0, MAX_OPEN_MS as i64) as u64;
        let level = level.clamp(0, i64::from(u32::MAX)) as u32;
        let kind = Kind::from_word(kind, ms, level)?;
        Some(View::new(kind, version, period))
    }

    pub(crate) fn from_message(m: &Message) -> Self {
        View::new(m.kind, m.version, m.period)
    }

    fn new(kind: Kind, version: u64, period: u64) -> Self {
        let open_until = match kind {
            Kind::Open { ms, .. } if ms > 0 => Some(Instant::now() + Duration::from_millis(ms)),
            _ => None,
        };
        View {
            kind,
            version,
            period,
            open_until,
        }
    }

    /// `true` for a closed fleet state (after a close or a reset).
    pub(crate) fn is_closed(&self) -> bool {
        matches!(self.kind, Kind::Close | Kind::Reset)
    }

    /// `true` for a manual command (reset, force-open, disable): it replaces
    /// whatever state the replica had, local control included.
    pub(crate) fn is_manual(&self) -> bool {
        matches!(self.kind, Kind::Reset | Kind::ForcedOpen | Kind::Disabled)
    }

    /// The fleet's open time left; zero when half-open.
    pub(crate) fn remaining(&self) -> Duration {
        self.open_until
            .map_or(Duration::ZERO, |u| u.saturating_duration_since(Instant::now()))
    }

    /// Applies the state to `breaker`; `true` when the breaker's state is
    /// the fleet's afterwards. An open is adopted for the time that remains,
    /// never shortening the breaker's own; the fleet's half-open leaves an
    /// open or half-open breaker as it is (it reaches half-open by itself,
    /// and its probes in flight stay valid). A close ends an open or
    /// half-open state. Automatic fleet states (open, close) never override
    /// a forced-open or disabled breaker; manual commands replace any state.
    pub(crate) fn apply(&self, breaker: &CircuitBreaker) -> bool {
        let now = breaker.state();
        match self.kind {
            Kind::Open { level, .. } => {
                let remaining = self.remaining();
                match now {
                    State::ForcedOpen | State::Disabled => false,
                    State::HalfOpen | State::Open if remaining.is_zero() => true,
                    _ => breaker.follow_open(remaining, level),
                }
            }
            Kind::Close => {
                breaker.follow_close();
                breaker.state() == State::Closed
            }
            Kind::Reset => {
                if now != State::Closed {
                    breaker.follow_manual(State::Closed);
                }
                true
            }
            Kind::ForcedOpen => {
                if now != State::ForcedOpen {
                    breaker.follow_manual(State::ForcedOpen);
                }
                true
            }
            Kind::Disabled => {
                if now != State::Disabled {
                    breaker.follow_manual(State::Disabled);
                }
                true
            }
        }
    }
}
