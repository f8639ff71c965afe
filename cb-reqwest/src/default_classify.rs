//! The default rule: what a response or an error says about the server.

use cb_runtime::Outcome;
use reqwest::{Response, StatusCode};

/// The status 529 "Overloaded" (Anthropic's API), which `http` does not name.
const OVERLOADED: u16 = 529;

/// How a request's result counts by default:
///
/// | result | outcome |
/// | --- | --- |
/// | 429 Too Many Requests | [`Outcome::Throttled`], for its `Retry-After` or `retry-after-ms` |
/// | 500, 502, 503, 504, 529 | [`Outcome::Failure`] (a 503's `Retry-After` opens the circuit for that long) |
/// | any other 4xx | [`Outcome::Ignored`]: the caller's mistake |
/// | any other status | [`Outcome::Success`] |
/// | a connection error, a timeout, an error sending the request or reading its answer | [`Outcome::Failure`] |
/// | a request reqwest could not build (a bad URL, a bad header), a redirect loop | [`Outcome::Ignored`] |
/// | an error of a middleware after this one | [`Outcome::Ignored`]: it says nothing of the server |
///
/// ```
/// use cb_reqwest::default_classify;
/// use cb_runtime::Outcome;
///
/// let answer = |status: u16| -> Result<reqwest::Response, reqwest_middleware::Error> {
///     Ok(http::Response::builder().status(status).body("").unwrap().into())
/// };
/// assert_eq!(default_classify(&answer(200)), Outcome::Success);
/// assert_eq!(default_classify(&answer(429)), Outcome::Throttled);
/// assert_eq!(default_classify(&answer(529)), Outcome::Failure);
/// assert_eq!(default_classify(&answer(404)), Outcome::Ignored);
/// ```
pub fn default_classify(result: &Result<Response, reqwest_middleware::Error>) -> Outcome {
    match result {
        Ok(response) => default_classify_status(response.status()),
        Err(reqwest_middleware::Error::Reqwest(error)) => {
            if error.is_builder() || error.is_redirect() {
                Outcome::Ignored
            } else {
                Outcome::Failure
            }
        }
        Err(reqwest_middleware::Error::Middleware(_)) => Outcome::Ignored,
    }
}

/// How a response's status counts by default: the statuses' rows of
/// [`default_classify`].
///
/// ```
/// use cb_reqwest::default_classify_status;
/// use cb_runtime::Outcome;
/// use reqwest::StatusCode;
///
/// assert_eq!(default_classify_status(StatusCode::SERVICE_UNAVAILABLE), Outcome::Failure);
/// assert_eq!(default_classify_status(StatusCode::BAD_REQUEST), Outcome::Ignored);
/// assert_eq!(default_classify_status(StatusCode::NOT_IMPLEMENTED), Outcome::Success);
/// ```
pub fn default_classify_status(status: StatusCode) -> Outcome {
    match status.as_u16() {
        429 => Outcome::Throttled,
        500 | 502 | 503 | 504 | OVERLOADED => Outcome::Failure,
        400..=499 => Outcome::Ignored,
        _ => Outcome::Success,
    }
}
