//! A failure of a call in flight across its key's eviction still counts for
//! the key.
//!
//! A call keeps its key's breaker while it runs, so a family may evict the
//! key meanwhile (it was closed when the family looked). When that call then
//! fails, its breaker counts the failure, and may open, but no call will see
//! that breaker again. So the failure is handed over to the key's breaker in
//! the family (made again if need be):
//!
//! * if the failure opened the evicted breaker, the key's breaker opens for
//!   the time that remains, with the same reason: a down model evicted by key
//!   churn is refused as it would have been;
//! * otherwise the key's breaker counts one failure, as if the call had been
//!   its own;
//! * unless the key's breaker is not closed: then it already knows, or it is
//!   probing on its own, and a result from before it existed is not a probe's
//!   (pitfall 5).

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Family;
use crate::home::Home;
use crate::outcome::CallEnd;
use crate::state::{Admission, State};
use crate::transition::Reason;

impl Home for Family {
    /// Hands the failure that just ended a call on the evicted breaker of
    /// `key` over to the key's breaker now.
    fn hand_over(&self, key: &str, opened: Option<(Duration, Reason)>) {
        let current = self.get_or_insert(key);
        if current
            .key_tag()
            .is_some_and(|t| t.detached || t.evicted.load(Ordering::Acquire))
            || current.state() != State::Closed
        {
            return;
        }
        tracing::debug!(
            target: "cb_runtime",
            breaker = self.name,
            key,
            "circuit breaker family `{}`: a failure of a call in flight when key `{key}` was evicted \
             is handed over to the key's breaker",
            self.name
        );
        match opened {
            Some((left, reason)) => {
                current.open_with_reason(left, reason);
            }
            None => {
                if let Ok(ticket) = current.admit() {
                    // Closed a moment ago: a probe's slot, if the state moved
                    // meanwhile, is given back unused.
                    let end = match ticket.admission() {
                        Admission::Closed => CallEnd::Failure,
                        _ => CallEnd::Cancelled,
                    };
                    current.finish(ticket, end);
                }
            }
        }
    }

    fn key_settled(&self) {
        self.settled.fetch_add(1, Ordering::Release);
    }
}
