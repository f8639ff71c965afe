//! What a [`Registry`](crate::Registry) tells the parts that plug into it:
//! each breaker as it joins, and each name as it leaves. The metrics'
//! histograms and the fleet's coordinators are hooks; the registry itself
//! knows neither.

use std::any::Any;
use std::sync::Arc;

use crate::breaker::CircuitBreaker;

/// A part that follows every breaker of a registry.
pub(crate) trait Hook: Send + Sync + 'static {
    /// Called once per breaker: for every breaker present when the hook is
    /// added, and for each one that joins later.
    fn attach(&self, breaker: &Arc<CircuitBreaker>);

    /// Called when the breaker named `name` leaves the registry.
    fn detach(&self, name: &str) {
        let _ = name;
    }

    /// Called when a keyed breaker leaves its family (evicted).
    fn detach_key(&self, breaker: &Arc<CircuitBreaker>) {
        let _ = breaker;
    }

    /// The hook itself, for [`Registry::hook`](crate::Registry) to find it by type.
    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}
