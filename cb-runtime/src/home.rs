//! What a keyed breaker tells the family that made it, without depending on
//! the family (which depends on the breaker): a failure of a call in flight
//! across its key's eviction, and a probe that ended.

use std::time::Duration;

use crate::transition::Reason;

/// The family of a keyed breaker, as the breaker sees it.
pub(crate) trait Home: Send + Sync {
    /// A call on the evicted breaker of `key` failed; `opened` is the time
    /// left and the reason when that failure opened it. See the family's
    /// `handover` module.
    fn hand_over(&self, key: &str, opened: Option<(Duration, Reason)>);

    /// A key closed, half-opened or ended a probe: it may be evictable now.
    fn key_settled(&self);
}
