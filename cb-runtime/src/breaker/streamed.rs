//! How a streamed call (an LLM's token stream) is judged: its slowness is
//! its time to first item, not the whole stream's length, and the time to
//! first item has observers of its own (the metrics' histogram).

use std::time::Duration;

use super::{CircuitBreaker, DurationObserver, TIMED};
use crate::outcome::CallEnd;
use crate::state::Ticket;
use crate::sync::Ordering;

impl CircuitBreaker {
    /// Records how a streamed call ended. Its slowness is its time to first
    /// item, `to_first_item` nanoseconds from admission, or the whole call's
    /// when it ended before any item (with `None`, it records any call's end
    /// as [`finish`](Self::finish) does, without the closed fast path); the
    /// duration observer is told the whole call's duration either way.
    pub(crate) fn finish_stream(&self, ticket: Ticket, finish: CallEnd, to_first_item: Option<u64>) {
        let slow = self.stream_slow(ticket, finish, to_first_item);
        self.finish_slow(ticket, finish, slow);
    }

    /// Whether a streamed call was slow (see [`finish_stream`](Self::finish_stream)),
    /// telling the duration observer the whole call's duration.
    fn stream_slow(&self, ticket: Ticket, finish: CallEnd, to_first_item: Option<u64>) -> bool {
        let whole_slow = ticket.start != Ticket::NO_START && self.measure(ticket, finish);
        match to_first_item {
            Some(nanos) => {
                let limit = self.slow_nanos.load(Ordering::Relaxed);
                limit != 0 && nanos > limit
            }
            None => whole_slow,
        }
    }

    /// [`finish_stream`](Self::finish_stream) for an end a classifier judged,
    /// with the hint it read: a throttled end opens for it (as
    /// [`finish_with_hint`](Self::finish_with_hint) says), a failure's hint
    /// is honoured as there.
    pub(crate) fn finish_stream_with_hint(
        &self,
        ticket: Ticket,
        finish: CallEnd,
        to_first_item: Option<u64>,
        hint: Option<Duration>,
    ) {
        if finish != CallEnd::Throttled && hint.is_none_or(|h| h.is_zero()) {
            return self.finish_stream(ticket, finish, to_first_item);
        }
        let slow = self.stream_slow(ticket, finish, to_first_item);
        if finish == CallEnd::Throttled {
            self.finish_throttled(ticket, slow, hint);
            return;
        }
        let moved = self.finish_slow(ticket, finish, slow);
        if let Some(hint) = hint {
            self.honour_failure_hint(ticket, finish, moved, hint);
        }
    }

    /// A streamed call's first item: the nanoseconds since admission, told
    /// to the time-to-first-item observer if any; `None` when the call is
    /// not timed.
    pub(crate) fn first_item(&self, ticket: Ticket) -> Option<u64> {
        if ticket.start == Ticket::NO_START {
            return None;
        }
        let elapsed = self.clock.now_nanos().saturating_sub(ticket.start);
        self.first_items.notify(Duration::from_nanos(elapsed));
        Some(elapsed)
    }

    /// Times every call from now on, telling `observe` each streamed call's
    /// time to first item, after the observers added before it.
    pub(crate) fn observe_time_to_first_item(&self, observe: DurationObserver) {
        self.first_items.add(observe);
        self.probes_and_timed.fetch_or(TIMED, Ordering::AcqRel);
    }
}
