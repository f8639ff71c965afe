//! The circuit's states, how they pack into one atomic word, and the
//! ticket an admitted call carries back to that word.

use std::fmt;
use std::str::FromStr;

/// Where a circuit breaker stands.
///
/// `Display` and [`State::as_str`] give `closed`, `open`, `half_open`,
/// `forced_open` and `disabled`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Calls pass through; outcomes are counted.
    Closed,
    /// Calls are refused until the open duration has elapsed.
    Open,
    /// A limited number of probe calls pass to test the dependency.
    HalfOpen,
    /// Every call is refused until [`reset`](crate::CircuitBreaker::reset).
    ForcedOpen,
    /// Every call passes and is counted, and the circuit never opens, until
    /// [`reset`](crate::CircuitBreaker::reset).
    Disabled,
}

impl State {
    /// Every state, in the order of [`State::code`].
    pub const ALL: [State; 5] = [
        State::Closed,
        State::Open,
        State::HalfOpen,
        State::ForcedOpen,
        State::Disabled,
    ];

    /// The state's snake_case name, as `Display` writes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::ForcedOpen => "forced_open",
            State::Disabled => "disabled",
        }
    }

    /// The numeric code used by metrics: 0 closed, 1 open, 2 half_open,
    /// 3 forced_open, 4 disabled.
    pub const fn code(self) -> u8 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
            State::ForcedOpen => 3,
            State::Disabled => 4,
        }
    }

    /// Whether calls are refused in this state (open or forced open).
    pub const fn is_open(self) -> bool {
        matches!(self, State::Open | State::ForcedOpen)
    }

    #[inline]
    const fn from_code(code: u64) -> State {
        match code {
            0 => State::Closed,
            1 => State::Open,
            2 => State::HalfOpen,
            3 => State::ForcedOpen,
            _ => State::Disabled,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`State`] from an unknown name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseStateError(String);

impl fmt::Display for ParseStateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown circuit state `{}`; expected one of closed, open, half_open, forced_open, disabled",
            self.0
        )
    }
}

impl std::error::Error for ParseStateError {}

impl FromStr for State {
    type Err = ParseStateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        State::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| ParseStateError(s.to_owned()))
    }
}

/// The breaker's state word: everything admission needs, in one `u64`, so
/// reading it is one atomic load and every transition is one compare-and-swap.
///
/// | bits   | field                                                         |
/// |--------|---------------------------------------------------------------|
/// | 0..3   | the [`State`] code                                            |
/// | 3      | closed: `dirty`, outcomes must go through the window's lock; open or half-open: `throttled`, the open period is a throttled answer's |
/// | 4..19  | probes in flight (half-open only)                             |
/// | 19     | closed: `ramping`, admission goes through the ramp (`ramp.rs`) |
/// | 20..64 | generation: bumped by every transition                        |
///
/// A permit remembers the generation it was admitted in; a result from an
/// earlier generation never counts as a probe result (pitfall 5).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct StateWord(pub(crate) u64);

const STATE_MASK: u64 = 0b111;
const DIRTY: u64 = 1 << 3;
const IN_FLIGHT_SHIFT: u32 = 4;
const IN_FLIGHT_MASK: u64 = 0x7FFF << IN_FLIGHT_SHIFT;
/// A closed word whose admission goes through the ramp; no transition sets
/// or clears it but the close that starts a ramp and the ramp's end.
const RAMPING: u64 = 1 << 19;
const GEN_SHIFT: u32 = 20;

/// The most probes the word can count in flight (at least
/// `cb_syntax::MAX_PROBES`).
pub(crate) const MAX_IN_FLIGHT: u32 = 0x7FFF;
const _: () = assert!(MAX_IN_FLIGHT >= cb_syntax::MAX_PROBES);

impl StateWord {
    #[inline]
    pub(crate) const fn new(state: State, generation: u64, dirty: bool) -> StateWord {
        StateWord(state.code() as u64 | if dirty { DIRTY } else { 0 } | (generation << GEN_SHIFT))
    }

    #[inline]
    pub(crate) const fn state(self) -> State {
        State::from_code(self.0 & STATE_MASK)
    }

    #[inline]
    pub(crate) const fn dirty(self) -> bool {
        self.0 & DIRTY != 0
    }

    /// An open or half-open word whose open period a throttled answer
    /// started (the bit a closed word uses for `dirty`).
    #[inline]
    pub(crate) const fn throttled(self) -> bool {
        self.0 & DIRTY != 0 && matches!(self.state(), State::Open | State::HalfOpen)
    }

    /// The next generation's open word, throttled or not.
    #[inline]
    pub(crate) const fn next_open(self, throttled: bool) -> StateWord {
        StateWord::new(State::Open, next_generation(self.generation()), throttled)
    }

    #[inline]
    pub(crate) const fn in_flight(self) -> u32 {
        ((self.0 & IN_FLIGHT_MASK) >> IN_FLIGHT_SHIFT) as u32
    }

    #[inline]
    pub(crate) const fn generation(self) -> u64 {
        self.0 >> GEN_SHIFT
    }

    /// `true` when the word is closed, clean, of generation `generation`
    /// (ramping or not): the only case in which a success may skip the
    /// window's lock.
    #[inline]
    pub(crate) const fn is_clean_closed(self, generation: u64) -> bool {
        self.0 & !(IN_FLIGHT_MASK | RAMPING) == StateWord::new(State::Closed, generation, false).0
    }

    /// `true` for a closed word that is not ramping: admission lets the call
    /// through with this one test (as cheap as testing the state alone).
    #[inline(always)]
    pub(crate) const fn admits_all(self) -> bool {
        self.0 & (STATE_MASK | RAMPING) == 0
    }

    /// `true` for a closed word whose admission goes through the ramp.
    #[inline]
    pub(crate) const fn ramping(self) -> bool {
        self.0 & (STATE_MASK | RAMPING) == RAMPING
    }

    /// The word with the ramp mark set or cleared (closed words only).
    #[inline]
    pub(crate) const fn with_ramping(self, ramping: bool) -> StateWord {
        StateWord(if ramping {
            self.0 | RAMPING
        } else {
            self.0 & !RAMPING
        })
    }

    /// The next generation's word in `state`.
    #[inline]
    pub(crate) const fn next(self, state: State, dirty: bool) -> StateWord {
        StateWord::new(state, next_generation(self.generation()), dirty)
    }

    #[inline]
    pub(crate) const fn with_dirty(self, dirty: bool) -> StateWord {
        StateWord(if dirty { self.0 | DIRTY } else { self.0 & !DIRTY })
    }

    #[inline]
    pub(crate) const fn with_in_flight(self, n: u32) -> StateWord {
        StateWord((self.0 & !IN_FLIGHT_MASK) | ((n as u64) << IN_FLIGHT_SHIFT))
    }
}

impl fmt::Debug for StateWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateWord")
            .field("state", &self.state())
            .field("dirty", &self.dirty())
            .field("in_flight", &self.in_flight())
            .field("generation", &self.generation())
            .finish()
    }
}

/// The generation a transition from generation `g` moves to.
#[inline]
pub(crate) const fn next_generation(g: u64) -> u64 {
    g.wrapping_add(1) & (u64::MAX >> GEN_SHIFT)
}

/// The state a call was admitted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    Closed,
    HalfOpen,
    Disabled,
    /// Let through by shadow mode only: its end is counted, and does not
    /// move the state machine.
    Shadow,
}

/// What the breaker needs to record a call's end: the generation it was
/// admitted in, how, and the protection modes' flags (packed in one word),
/// and when it started (for slow-call detection and call timing). Sixteen
/// bytes, so it moves in registers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket {
    /// `generation << 4 | flags << 2 | admission`.
    packed: u64,
    pub(crate) start: u64,
}

/// The ticket's flag: the call holds a bulkhead slot.
const SLOT: u64 = 1 << 2;
/// The ticket's flag: an adaptive breaker's call, told to its window.
const ADAPTIVE: u64 = 1 << 3;
const LOW_BITS: u32 = 4;

impl Ticket {
    /// `start` when the call is not timed.
    pub(crate) const NO_START: u64 = u64::MAX;

    #[inline]
    pub(crate) const fn new(generation: u64, admission: Admission, start: u64) -> Self {
        let a = match admission {
            Admission::Closed => 0,
            Admission::HalfOpen => 1,
            Admission::Disabled => 2,
            Admission::Shadow => 3,
        };
        Ticket {
            packed: generation << LOW_BITS | a,
            start,
        }
    }

    #[inline]
    pub(crate) const fn generation(self) -> u64 {
        self.packed >> LOW_BITS
    }

    #[inline]
    pub(crate) const fn admission(self) -> Admission {
        match self.packed & 3 {
            0 => Admission::Closed,
            1 => Admission::HalfOpen,
            2 => Admission::Disabled,
            _ => Admission::Shadow,
        }
    }

    /// Admitted closed, with no mode flag: the only ticket whose success may
    /// take the hot path.
    #[inline(always)]
    pub(crate) const fn is_plain_closed(self) -> bool {
        self.packed & ((1 << LOW_BITS) - 1) == 0
    }

    /// Whether the ticket carries a mode flag (a slot, an adaptive call).
    #[inline(always)]
    pub(crate) const fn has_mode_flags(self) -> bool {
        self.packed & (SLOT | ADAPTIVE) != 0
    }

    /// This ticket, holding a bulkhead slot.
    #[inline]
    pub(crate) const fn holding_slot(self) -> Self {
        Ticket {
            packed: self.packed | SLOT,
            start: self.start,
        }
    }

    #[inline]
    pub(crate) const fn holds_slot(self) -> bool {
        self.packed & SLOT != 0
    }

    /// This ticket, as an adaptive breaker's call.
    #[inline]
    pub(crate) const fn adaptive(self) -> Self {
        Ticket {
            packed: self.packed | ADAPTIVE,
            start: self.start,
        }
    }

    #[inline]
    pub(crate) const fn is_adaptive(self) -> bool {
        self.packed & ADAPTIVE != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names() {
        let names: Vec<String> = State::ALL.iter().map(|s| s.to_string()).collect();
        assert_eq!(names, ["closed", "open", "half_open", "forced_open", "disabled"]);
        for s in State::ALL {
            assert_eq!(s.as_str().parse::<State>().unwrap(), s);
            assert_eq!(State::from_code(s.code() as u64), s);
        }
        let err = "ajar".parse::<State>().unwrap_err().to_string();
        assert!(err.contains("ajar") && err.contains("half_open"), "{err}");
    }

    #[test]
    fn word_round_trips_every_field() {
        for s in State::ALL {
            for dirty in [false, true] {
                let w = StateWord::new(s, 12345, dirty).with_in_flight(MAX_IN_FLIGHT);
                assert_eq!(w.state(), s);
                assert_eq!(w.dirty(), dirty);
                assert_eq!(w.in_flight(), MAX_IN_FLIGHT);
                assert_eq!(w.generation(), 12345);
                let n = w.next(State::Open, false);
                assert_eq!(
                    (n.state(), n.generation(), n.in_flight(), n.dirty()),
                    (State::Open, 12346, 0, false)
                );
            }
        }
        assert!(StateWord::new(State::Closed, 7, false)
            .with_in_flight(3)
            .is_clean_closed(7));
        assert!(!StateWord::new(State::Closed, 7, true).is_clean_closed(7));
        assert!(!StateWord::new(State::Closed, 7, false).is_clean_closed(8));
        assert!(!StateWord::new(State::Disabled, 7, false).is_clean_closed(7));
    }

    #[test]
    fn the_throttled_bit_is_read_only_on_open_and_half_open_words() {
        let closed = StateWord::new(State::Closed, 3, true);
        assert!(closed.dirty() && !closed.throttled());
        let open = closed.next_open(true);
        assert!(open.throttled() && open.state() == State::Open && open.generation() == 4);
        assert!(!closed.next_open(false).throttled());
        assert!(StateWord::new(State::HalfOpen, 5, true).throttled());
        assert!(!StateWord::new(State::ForcedOpen, 5, true).throttled());
    }

    #[test]
    fn a_ticket_keeps_its_generation_admission_and_flags() {
        let top = u64::MAX >> GEN_SHIFT;
        for admission in [
            Admission::Closed,
            Admission::HalfOpen,
            Admission::Disabled,
            Admission::Shadow,
        ] {
            let t = Ticket::new(top, admission, 5);
            assert_eq!((t.generation(), t.admission()), (top, admission));
            assert!(!t.has_mode_flags() && !t.holds_slot() && !t.is_adaptive());
            assert_eq!(t.is_plain_closed(), admission == Admission::Closed);
            let both = t.holding_slot().adaptive();
            assert!(both.holds_slot() && both.is_adaptive() && both.has_mode_flags());
            assert!(!both.is_plain_closed());
            assert_eq!(
                (both.generation(), both.admission(), both.start),
                (top, admission, 5)
            );
        }
    }

    #[test]
    fn the_ramp_mark_is_a_closed_word_s_and_survives_the_dirty_bit() {
        assert_eq!(State::Closed.code(), 0);
        let closed = StateWord::new(State::Closed, 9, false);
        assert!(closed.admits_all() && !closed.ramping());
        let ramping = closed.with_ramping(true);
        assert!(!ramping.admits_all() && ramping.ramping());
        assert_eq!(ramping.state(), State::Closed);
        assert_eq!(ramping.in_flight(), 0);
        assert!(ramping.is_clean_closed(9));
        assert!(ramping.with_dirty(true).ramping());
        assert!(!ramping.with_dirty(true).is_clean_closed(9));
        assert!(!ramping.next(State::Open, false).ramping());
        assert!(!ramping.next(State::Closed, false).ramping());
        assert!(!StateWord::new(State::HalfOpen, 9, false)
            .with_in_flight(MAX_IN_FLIGHT)
            .ramping());
    }

    #[test]
    fn generation_wraps_without_touching_other_fields() {
        let top = u64::MAX >> GEN_SHIFT;
        let w = StateWord::new(State::HalfOpen, top, true).next(State::Closed, false);
        assert_eq!(w.generation(), 0);
        assert_eq!(w.state(), State::Closed);
    }
}
