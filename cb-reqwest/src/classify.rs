//! How a request's result counts: the rule (the default's or the user's)
//! and the server's hint of when to come back.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cb_runtime::{Classify, Outcome};
use reqwest::{Response, StatusCode};

/// A user's rule, as `.classify_with(f)` takes it.
pub(crate) type Rule = Arc<dyn Fn(&Result<Response, reqwest_middleware::Error>) -> Outcome + Send + Sync>;

/// The classifier of one request: the rule, and the hint read from the
/// response.
pub(crate) struct Judge<'a> {
    /// `None`: [`default_classify`](crate::default_classify).
    pub(crate) rule: Option<&'a Rule>,
}

impl Classify<Response, reqwest_middleware::Error> for Judge<'_> {
    fn classify(self, result: &Result<Response, reqwest_middleware::Error>) -> Outcome {
        match self.rule {
            Some(rule) => rule(result),
            None => crate::default_classify(result),
        }
    }

    /// The rule's outcome; for a response it calls throttled, or a 503 it
    /// calls a failure, the server's `retry-after-ms` or `Retry-After`.
    fn classify_with_retry_after(
        self,
        result: &Result<Response, reqwest_middleware::Error>,
    ) -> (Outcome, Option<Duration>) {
        let outcome = self.classify(result);
        let hint = match (outcome, result) {
            (Outcome::Throttled, Ok(response)) => retry_after(response, SystemTime::now()),
            (Outcome::Failure, Ok(response)) if response.status() == StatusCode::SERVICE_UNAVAILABLE => {
                retry_after(response, SystemTime::now())
            }
            _ => None,
        };
        (outcome, hint)
    }
}

/// How long `response` asks its caller to wait, from `now`: its
/// `retry-after-ms` (milliseconds, as OpenAI and Azure OpenAI send it) if it
/// has one, else its `Retry-After`, in seconds or as an HTTP date, read as
/// [`cb_runtime::tower::retry_after_header`] reads it. `None` when neither is
/// there, or readable, or in the future.
///
/// The breaker's `max_retry_after` field (5 minutes by default) caps what a
/// hint can hold the circuit open for.
///
/// ```
/// use std::time::{Duration, SystemTime};
///
/// let answer = |name: &str, value: &str| -> reqwest::Response {
///     http::Response::builder().status(429).header(name, value).body("").unwrap().into()
/// };
/// let now = SystemTime::now();
/// assert_eq!(cb_reqwest::retry_after(&answer("retry-after", "20"), now), Some(Duration::from_secs(20)));
/// assert_eq!(cb_reqwest::retry_after(&answer("retry-after-ms", "1500"), now), Some(Duration::from_millis(1500)));
/// assert_eq!(cb_reqwest::retry_after(&answer("retry-after", "soon"), now), None);
/// ```
pub fn retry_after(response: &Response, now: SystemTime) -> Option<Duration> {
    let headers = response.headers();
    let millis = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0);
    if let Some(ms) = millis {
        // Absurd values saturate; `max_retry_after` bounds them anyway.
        return Some(Duration::try_from_secs_f64(ms / 1000.0).unwrap_or(Duration::MAX));
    }
    cb_runtime::tower::retry_after_header(headers, now)
}
