//! Why a fallback ran: the `on` label of `circuit_breaker_fallbacks_total`
//! and [`Stats::fallbacks_on`](crate::Stats::fallbacks_on).

use std::fmt;

/// Why a fallback answered instead of the protected call.
///
/// The attribute's `fallback_on` picks which of these run the fallback:
/// `"refusal"` (the default) [`Refusal`](Self::Refusal) only, `"breaker"`
/// also [`Timeout`](Self::Timeout), `"failure"` all three.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FallbackReason {
    /// The breaker refused the call (open, forced open, half-open full).
    Refusal,
    /// The call was abandoned at `call_timeout`.
    Timeout,
    /// The call returned an error the breaker counted as a failure.
    Failure,
}

impl FallbackReason {
    /// Every reason, in the order the metrics list them.
    pub const ALL: [FallbackReason; 3] = [
        FallbackReason::Refusal,
        FallbackReason::Timeout,
        FallbackReason::Failure,
    ];

    /// The word of the metric's `on` label: `refusal`, `timeout` or `failure`.
    pub fn as_str(self) -> &'static str {
        match self {
            FallbackReason::Refusal => "refusal",
            FallbackReason::Timeout => "timeout",
            FallbackReason::Failure => "failure",
        }
    }

    /// The reason's place in [`FallbackReason::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for FallbackReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
