//! gRPC statuses for the tower layer (feature `tower`): [`GrpcClassifier`].
//!
//! A gRPC call answers HTTP 200 whether it worked or not: its outcome is the
//! `grpc-status` of the response head (a "trailers-only" answer, which is
//! how a server answers an error before any message) or of the body's
//! trailers (after the messages of a unary or streamed answer). The
//! [`HttpClassifier`](super::HttpClassifier) sees only the 200, so every
//! gRPC failure would count as a success. With [`GrpcClassifier`], a
//! [`CircuitBreakerLayer`] judges the head and, when it carries no status,
//! watches the body for its trailers, holding the permit until they come.

use std::fmt;
use std::time::Duration;

use ::tower::{Layer, Service};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Body;

use super::body::{self, JudgedBody};
use super::{CircuitBreakerLayer, CircuitBreakerService, WithRetryAfter};
use crate::{CallError, Classify, Outcome};

/// The classifier of gRPC answers, for [`CircuitBreakerLayer`]:
///
/// | `grpc-status` | outcome |
/// | --- | --- |
/// | 0 OK | [`Outcome::Success`] |
/// | 14 UNAVAILABLE, 4 DEADLINE_EXCEEDED, 13 INTERNAL, 2 UNKNOWN, 15 DATA_LOSS, and any code gRPC does not define (read as UNKNOWN) | [`Outcome::Failure`] |
/// | 8 RESOURCE_EXHAUSTED | [`Outcome::Throttled`], for its `grpc-retry-pushback-ms` if it has one, else the breaker's `throttle_duration` |
/// | every other status (CANCELLED, INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED, FAILED_PRECONDITION, ABORTED, OUT_OF_RANGE, UNIMPLEMENTED, UNAUTHENTICATED) | [`Outcome::Ignored`]: the caller's doing |
///
/// * The status is read from the response head (a trailers-only answer);
///   a head without `grpc-status` is a success so far, and the body's
///   trailers decide: the layer holds the call's permit until they arrive,
///   and their status counts as the table says. The answer reaches the
///   client unchanged (the body as [`JudgedBody`]).
/// * A failure's `grpc-retry-pushback-ms` opens the circuit for that long, as
///   a 503's `Retry-After` does over HTTP; both are capped by the breaker's
///   `max_retry_after` (and the layer's
///   [`max_retry_after`](CircuitBreakerLayer::max_retry_after), if set).
/// * The inner service's error (the transport's) is a failure. A head whose
///   HTTP status is not 200 and has no `grpc-status` (a proxy's answer) is
///   read as gRPC reads it: 429, 502, 503 and 504 are UNAVAILABLE, 400
///   INTERNAL, 401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 404
///   UNIMPLEMENTED, any other UNKNOWN.
/// * A body that ends without trailers after a 200 counts as a success; a
///   body error is a failure; a body dropped before its first frame counts
///   nothing (a cancelled call), after it a success. The breaker's
///   `call_timeout` bounds the wait for the head and each next frame, as
///   [`BodyCircuitBreakerLayer`](super::body::BodyCircuitBreakerLayer)'s:
///   leave it unset for streams that stay quiet for long.
///
/// `GrpcClassifier` is not `Clone`: the layer tells it apart from every
/// other classifier by its type, to watch the body. Make another with
/// [`GrpcClassifier::default`].
///
/// ```
/// use cb_runtime::tower::{CircuitBreakerLayer, GrpcClassifier};
/// use cb_runtime::Preset;
///
/// let layer = CircuitBreakerLayer::named("inventory-grpc", Preset::HttpApi).classifier(GrpcClassifier::default());
/// // tower::ServiceBuilder::new().layer(layer).service(channel), then
/// // InventoryClient::new(service) with tonic.
/// # let _ = layer;
/// ```
#[derive(Default)]
pub struct GrpcClassifier {
    _private: (),
}

impl GrpcClassifier {
    /// How the gRPC status `code` counts (the table above).
    ///
    /// ```
    /// use cb_runtime::tower::GrpcClassifier;
    /// use cb_runtime::Outcome;
    ///
    /// assert_eq!(GrpcClassifier::classify_code(0), Outcome::Success);
    /// assert_eq!(GrpcClassifier::classify_code(14), Outcome::Failure); // UNAVAILABLE
    /// assert_eq!(GrpcClassifier::classify_code(8), Outcome::Throttled); // RESOURCE_EXHAUSTED
    /// assert_eq!(GrpcClassifier::classify_code(5), Outcome::Ignored); // NOT_FOUND
    /// assert_eq!(GrpcClassifier::classify_code(99), Outcome::Failure); // read as UNKNOWN
    /// ```
    pub fn classify_code(code: i32) -> Outcome {
        match code {
            0 => Outcome::Success,
            8 => Outcome::Throttled,
            // CANCELLED, INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS,
            // PERMISSION_DENIED, FAILED_PRECONDITION, ABORTED, OUT_OF_RANGE,
            // UNIMPLEMENTED, UNAUTHENTICATED.
            1 | 3 | 5 | 6 | 7 | 9 | 10 | 11 | 12 | 16 => Outcome::Ignored,
            // UNKNOWN, DEADLINE_EXCEEDED, INTERNAL, UNAVAILABLE, DATA_LOSS,
            // and codes gRPC does not define, which it reads as UNKNOWN.
            _ => Outcome::Failure,
        }
    }
}

impl fmt::Debug for GrpcClassifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GrpcClassifier")
    }
}

/// The verdict of a head or trailers that carry `grpc-status`, with the
/// `grpc-retry-pushback-ms` hint; `None` without a status.
fn verdict(headers: &HeaderMap) -> Option<(Outcome, Option<Duration>)> {
    let status = headers.get("grpc-status")?;
    // A status that is not a number is read as UNKNOWN, as gRPC reads it.
    let code = status
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(2);
    let outcome = GrpcClassifier::classify_code(code);
    Some((outcome, pushback(headers)))
}

/// `grpc-retry-pushback-ms`: a non-negative number of milliseconds; a
/// negative or unreadable one asks not to retry, and gives no hint here.
fn pushback(headers: &HeaderMap) -> Option<Duration> {
    let ms: u64 = headers
        .get("grpc-retry-pushback-ms")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_millis(ms))
}

/// The gRPC code of an HTTP status in a head without `grpc-status`.
fn code_of_http(status: StatusCode) -> i32 {
    match status.as_u16() {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    }
}

impl<B, E> Classify<Response<B>, E> for GrpcClassifier {
    fn classify(self, result: &Result<Response<B>, E>) -> Outcome {
        self.classify_with_retry_after(result).0
    }

    /// The head's verdict: its `grpc-status` with its pushback, or its HTTP
    /// status read as gRPC reads it, or (a 200 without a status) a success
    /// that the trailers may overturn.
    fn classify_with_retry_after(self, result: &Result<Response<B>, E>) -> (Outcome, Option<Duration>) {
        match result {
            Err(_) => (Outcome::Failure, None),
            Ok(response) => match verdict(response.headers()) {
                Some(verdict) => verdict,
                None if response.status() == StatusCode::OK => (Outcome::Success, None),
                None => (
                    GrpcClassifier::classify_code(code_of_http(response.status())),
                    None,
                ),
            },
        }
    }
}

impl Clone for CircuitBreakerLayer<GrpcClassifier> {
    fn clone(&self) -> Self {
        CircuitBreakerLayer {
            breaker: self.breaker.clone(),
            classifier: GrpcClassifier::default(),
            max_retry_after: self.max_retry_after,
        }
    }
}

impl<S> Layer<S> for CircuitBreakerLayer<GrpcClassifier> {
    type Service = CircuitBreakerService<S, GrpcClassifier>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService {
            inner,
            breaker: self.breaker.clone(),
            classifier: GrpcClassifier::default(),
            max_retry_after: self.max_retry_after,
        }
    }
}

impl<S: Clone> Clone for CircuitBreakerService<S, GrpcClassifier> {
    fn clone(&self) -> Self {
        CircuitBreakerService {
            inner: self.inner.clone(),
            breaker: self.breaker.clone(),
            classifier: GrpcClassifier::default(),
            max_retry_after: self.max_retry_after,
        }
    }
}

/// A gRPC service behind the breaker: the head judged by its status, then
/// the body by its trailers.
impl<S, ReqBody, B> Service<Request<ReqBody>> for CircuitBreakerService<S, GrpcClassifier>
where
    S: Service<Request<ReqBody>, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Send,
{
    type Response = Response<JudgedBody<B>>;
    type Error = CallError<S::Error>;
    type Future = body::ResponseFuture<B, S::Error>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(CallError::Inner)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let classifier = WithRetryAfter {
            classifier: GrpcClassifier::default(),
            max_retry_after: self.max_retry_after,
        };
        let trailers = body::Trailers {
            rule: verdict,
            cap: self.max_retry_after,
        };
        body::call_judged(&self.breaker, &mut self.inner, req, classifier, Some(trailers))
    }
}
