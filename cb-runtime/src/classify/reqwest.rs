//! reqwest's errors (for code that turns statuses into errors with
//! `error_for_status`).

use crate::Outcome;

/// How a `reqwest::Error` (reqwest 0.13) counts (feature `reqwest`).
///
/// | error | outcome |
/// | --- | --- |
/// | a connection refused or failed, a timeout | failure |
/// | an error sending the request or reading the answer's body (a connection reset midway) | failure |
/// | a status from `error_for_status`: 429 | throttled (the error carries no `Retry-After`: the circuit opens for `throttle_duration`) |
/// | a status: 5xx | failure |
/// | a status: any other 4xx | ignored |
/// | a request reqwest could not build (a bad URL, a bad header), a redirect loop, a body that does not decode as asked (`.json()`) | ignored |
///
/// For responses as they come (not as errors), and `Retry-After`, the
/// `cb-reqwest` middleware reads each answer itself.
///
/// ```no_run
/// use cb_runtime::{circuit_breaker, CallError};
/// #[circuit_breaker(name = "billing", classify = cb_runtime::classify::reqwest)]
/// async fn invoice(http: &reqwest::Client, id: u64) -> Result<String, CallError<reqwest::Error>> {
///     http.get(format!("https://billing.internal/invoices/{id}")).send().await?.error_for_status()?.text().await
/// }
/// ```
pub fn reqwest(error: &reqwest::Error) -> Outcome {
    if let Some(status) = error.status() {
        return match status.as_u16() {
            429 => Outcome::Throttled,
            500..=599 => Outcome::Failure,
            400..=499 => Outcome::Ignored,
            // A status error is only made of a 4xx or 5xx; anything else is
            // not the server's failure.
            _ => Outcome::Ignored,
        };
    }
    if error.is_connect() || error.is_timeout() {
        return Outcome::Failure;
    }
    if error.is_builder() || error.is_redirect() || error.is_decode() {
        return Outcome::Ignored;
    }
    // Sending the request or reading the body failed (`is_request`, `is_body`).
    Outcome::Failure
}
