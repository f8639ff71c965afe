//! A tower [`Layer`] that puts a circuit breaker around any
//! [`Service`] (feature `tower`).
//!
//! [`CircuitBreakerLayer`] wraps a service so that every request goes through
//! one breaker:
//!
//! * **Admission happens in [`Service::call`]**, before the inner service is
//!   called: while the circuit is open the inner service never sees the
//!   request, and the returned future is already complete with
//!   [`CallError::Rejected`] holding the [`BreakerError`] (no allocation, no
//!   timer, no I/O).
//! * **Classification**: for HTTP services (`Response = http::Response<B>`)
//!   the default [`HttpClassifier`] counts 5xx as failures, 429 as
//!   [`Outcome::Throttled`] (a rate limit, not an outage), and every other
//!   status as a success; a transport error (the inner service's `Err`) is a
//!   failure. Pass your own with [`CircuitBreakerLayer::classifier`]:
//!   [`HttpClassifier::with`] for another status rule, [`ErrIsFailure`](crate::ErrIsFailure) for a
//!   service that is not HTTP, or any [`Classify`], such as a closure
//!   `Fn(&Result<S::Response, S::Error>) -> Outcome + Clone`.
//! * **`Retry-After`**: a 429 or 503 response whose `Retry-After` header says
//!   when to come back (in seconds, or as an HTTP date) opens the circuit for
//!   that long, bounded by the breaker's `max_retry_after` field (5 minutes by
//!   default; `"0s"` ignores hints). A throttled 429 opens with
//!   [`Reason::Throttled`](crate::Reason::Throttled) and counts no failure; a
//!   429 without the header opens for the breaker's `throttle_duration`. A
//!   503's hint opens the circuit as [`CircuitBreaker::open_for`] would. LLM
//!   providers send this hint when they throttle; calling them before it has
//!   passed only earns more 429s. A hint is honoured only from a response
//!   that counts as a failure or throttled (one your classifier marks
//!   [`Outcome::Ignored`] opens nothing), from a request admitted since the
//!   circuit last changed state (a late answer to a request sent before the
//!   circuit opened is ignored), and it never shortens an open period that
//!   is already running. The layer has no cap of its own unless
//!   [`max_retry_after`](CircuitBreakerLayer::max_retry_after) sets one (then
//!   the lower of the two applies).
//! * The breaker's `call_timeout` applies to the inner future; a timed-out
//!   request is dropped and ends with [`CallError::Timeout`]. Dropping the
//!   response future gives the permit back and records nothing.
//!
//! * **gRPC**: with [`GrpcClassifier`], the `grpc-status` decides, read from
//!   the response head (a trailers-only answer) or from the trailers of the
//!   body, the permit held until they come; see [`GrpcClassifier`].
//!
//! The service's error is [`CallError<S::Error>`](CallError): `Rejected` or
//! `Timeout` from the breaker, `Inner` from the wrapped service.
//!
//! ```
//! use std::convert::Infallible;
//! use cb_runtime::tower::CircuitBreakerLayer;
//! use cb_runtime::Preset;
//! use http::{Request, Response, StatusCode};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # tokio_test::block_on(async {
//! // A dependency that is down: every answer is a 503.
//! let upstream = service_fn(|_req: Request<()>| async {
//!     Ok::<_, Infallible>(Response::builder().status(StatusCode::SERVICE_UNAVAILABLE).body(()).unwrap())
//! });
//! let layer = CircuitBreakerLayer::named("tower-doc", Preset::Llm); // opens after 3 failures
//! let service = layer.layer(upstream);
//!
//! for _ in 0..3 {
//!     let response = service.clone().oneshot(Request::new(())).await.unwrap();
//!     assert_eq!(response.status(), 503); // the response comes back, and counts as a failure
//! }
//! let refused = service.clone().oneshot(Request::new(())).await.unwrap_err();
//! assert!(refused.is_rejected()); // the fourth request never reached the upstream
//! # });
//! ```

pub mod body;
mod grpc;

pub use grpc::GrpcClassifier;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use ::tower::{Layer, Service};
use http::{header::RETRY_AFTER, HeaderMap, Response, StatusCode};

use pin_project_lite::pin_project;

use crate::{registry, BreakerError, Call, CallError, CircuitBreaker, Classify, Outcome, Preset, Registry};

/// The default of the breaker's `max_retry_after` field, the longest
/// `Retry-After` honoured; the field (builder, presets, file, environment)
/// is what bounds a hint, and the layer adds no cap of its own unless
/// [`max_retry_after`](CircuitBreakerLayer::max_retry_after) sets one.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Where a layer made from a name registers its breaker from, for the
/// registry's warning about two configurations of one name: the layer and
/// the user's call site.
fn origin(at: &'static std::panic::Location<'static>) -> &'static str {
    crate::intern::intern(format!("cb_runtime::tower::CircuitBreakerLayer at {at}"))
}

/// The classifier for HTTP services: a status rule (by default
/// [`HttpClassifier::default_rule`]: 5xx are failures, 429 is throttled),
/// transport errors are failures, and `Retry-After` on a 429 or 503 is read.
#[derive(Clone, Copy)]
pub struct HttpClassifier {
    rule: fn(StatusCode) -> Outcome,
}

impl HttpClassifier {
    /// A classifier with `rule` deciding how each status counts; the inner
    /// service's errors still count as failures and `Retry-After` is still read.
    ///
    /// ```
    /// use cb_runtime::tower::HttpClassifier;
    /// use cb_runtime::Outcome;
    /// use http::StatusCode;
    ///
    /// // 5xx are failures; a 429 here is the caller's own per-user quota, not
    /// // the provider's: ignored. An ignored response does not open the
    /// // circuit through its `Retry-After` either: only failures' and
    /// // throttled answers' hints are honoured.
    /// let classifier = HttpClassifier::with(|status| match status {
    ///     s if s.is_server_error() => Outcome::Failure,
    ///     StatusCode::TOO_MANY_REQUESTS => Outcome::Ignored,
    ///     _ => Outcome::Success,
    /// });
    /// # let _ = classifier;
    /// ```
    pub fn with(rule: fn(StatusCode) -> Outcome) -> Self {
        HttpClassifier { rule }
    }

    /// The default rule: 5xx are failures, 429 Too Many Requests is
    /// [`Outcome::Throttled`] (the provider is rate limiting, not down), every
    /// other status a success.
    ///
    /// ```
    /// use cb_runtime::tower::HttpClassifier;
    /// use cb_runtime::Outcome;
    /// use http::StatusCode;
    ///
    /// assert_eq!(HttpClassifier::default_rule(StatusCode::TOO_MANY_REQUESTS), Outcome::Throttled);
    /// assert_eq!(HttpClassifier::default_rule(StatusCode::BAD_GATEWAY), Outcome::Failure);
    /// assert_eq!(HttpClassifier::default_rule(StatusCode::NOT_FOUND), Outcome::Success);
    /// ```
    pub fn default_rule(status: StatusCode) -> Outcome {
        if status == StatusCode::TOO_MANY_REQUESTS {
            Outcome::Throttled
        } else if status.is_server_error() {
            Outcome::Failure
        } else {
            Outcome::Success
        }
    }

    /// How `status` counts under this classifier's rule.
    pub fn classify_status(&self, status: StatusCode) -> Outcome {
        (self.rule)(status)
    }
}

impl Default for HttpClassifier {
    fn default() -> Self {
        HttpClassifier::with(HttpClassifier::default_rule)
    }
}

impl fmt::Debug for HttpClassifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClassifier").finish_non_exhaustive()
    }
}

impl<B, E> Classify<Response<B>, E> for HttpClassifier {
    fn classify(self, result: &Result<Response<B>, E>) -> Outcome {
        match result {
            Ok(response) => self.classify_status(response.status()),
            Err(_) => Outcome::Failure,
        }
    }

    /// The status's outcome, and the `Retry-After` of a 429 or 503.
    fn classify_with_retry_after(self, result: &Result<Response<B>, E>) -> (Outcome, Option<Duration>) {
        let outcome = Classify::<Response<B>, E>::classify(self, result);
        let hint = match result {
            Ok(response)
                if matches!(
                    response.status(),
                    StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
                ) =>
            {
                retry_after_header(response.headers(), SystemTime::now())
            }
            _ => None,
        };
        (outcome, hint)
    }
}

/// The `Retry-After` of `headers` as a duration from `now`: delay-seconds
/// (`"120"`) or an HTTP date (`"Wed, 21 Oct 2015 07:28:00 GMT"`). `None` when
/// the header is absent or malformed, or the date has passed.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use cb_runtime::tower::retry_after_header;
/// use http::{header::RETRY_AFTER, HeaderMap};
///
/// let mut headers = HeaderMap::new();
/// headers.insert(RETRY_AFTER, "120".parse().unwrap());
/// assert_eq!(retry_after_header(&headers, SystemTime::now()), Some(Duration::from_secs(120)));
///
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_460); // 07:27:40
/// headers.insert(RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
/// assert_eq!(retry_after_header(&headers, now), Some(Duration::from_secs(20)));
/// ```
pub fn retry_after_header(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly long delays saturate; the layer's maximum bounds them anyway.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    at.duration_since(now).ok()
}

/// A [`Layer`] that puts one [`CircuitBreaker`] around a service; see the
/// [module documentation](self).
///
/// Every service it makes shares the layer's breaker.
#[derive(Clone)]
pub struct CircuitBreakerLayer<C = HttpClassifier> {
    breaker: Arc<CircuitBreaker>,
    classifier: C,
    max_retry_after: LayerCap,
}

/// The layer's own bound on `Retry-After`, beneath the breaker's
/// `max_retry_after`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LayerCap {
    /// None of its own: the breaker's field decides.
    Breaker,
    /// At most this long (and at most the breaker's field).
    At(Duration),
    /// Hints are ignored.
    Ignore,
}

impl CircuitBreakerLayer<HttpClassifier> {
    /// A layer around `breaker`, with the [`HttpClassifier`].
    pub fn new(breaker: Arc<CircuitBreaker>) -> Self {
        CircuitBreakerLayer {
            breaker,
            classifier: HttpClassifier::default(),
            max_retry_after: LayerCap::Breaker,
        }
    }

    /// A layer around the breaker `name` of the global [`registry()`],
    /// created from `preset` (then the config file and the environment) if it
    /// does not exist yet. When `name` exists already with another
    /// configuration, the registry warns, naming both call sites.
    #[track_caller]
    pub fn named(name: &str, preset: Preset) -> Self {
        CircuitBreakerLayer::in_registry(registry(), name, preset)
    }

    /// Like [`named`](Self::named), in `registry`.
    #[track_caller]
    pub fn in_registry(registry: &Registry, name: &str, preset: Preset) -> Self {
        let origin = origin(std::panic::Location::caller());
        CircuitBreakerLayer::new(
            registry.get_or_insert_from(name, Some(origin), Some(preset), || preset.config()),
        )
    }
}

impl<C> CircuitBreakerLayer<C> {
    /// The same layer with `classifier` deciding how responses count.
    pub fn classifier<C2>(self, classifier: C2) -> CircuitBreakerLayer<C2> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            classifier,
            max_retry_after: self.max_retry_after,
        }
    }

    /// A cap of this layer's own on `Retry-After`, beneath the breaker's
    /// `max_retry_after` field (which gives every layer of the breaker its
    /// bound, and is the one to set): a hint opens the circuit for at most
    /// the lower of the two. `Duration::ZERO` ignores hints, as
    /// [`ignore_retry_after`](Self::ignore_retry_after) does.
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = if max.is_zero() {
            LayerCap::Ignore
        } else {
            LayerCap::At(max)
        };
        self
    }

    /// Ignore `Retry-After` in this layer: a 429 then opens for the breaker's
    /// `throttle_duration`, and a 503 counts as a failure only.
    pub fn ignore_retry_after(mut self) -> Self {
        self.max_retry_after = LayerCap::Ignore;
        self
    }

    /// The layer's breaker.
    pub fn breaker(&self) -> &Arc<CircuitBreaker> {
        &self.breaker
    }
}

impl<C: fmt::Debug> fmt::Debug for CircuitBreakerLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("breaker", &self.breaker.name())
            .field("classifier", &self.classifier)
            .field("max_retry_after", &self.max_retry_after)
            .finish()
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreakerService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService {
            inner,
            breaker: Arc::clone(&self.breaker),
            classifier: self.classifier.clone(),
            max_retry_after: self.max_retry_after,
        }
    }
}

/// A service behind a circuit breaker, made by [`CircuitBreakerLayer`].
#[derive(Clone)]
pub struct CircuitBreakerService<S, C = HttpClassifier> {
    inner: S,
    breaker: Arc<CircuitBreaker>,
    classifier: C,
    max_retry_after: LayerCap,
}

impl<S, C> CircuitBreakerService<S, C> {
    /// The breaker the requests go through.
    pub fn breaker(&self) -> &Arc<CircuitBreaker> {
        &self.breaker
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug, C: fmt::Debug> fmt::Debug for CircuitBreakerService<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerService")
            .field("inner", &self.inner)
            .field("breaker", &self.breaker.name())
            .field("classifier", &self.classifier)
            .field("max_retry_after", &self.max_retry_after)
            .finish()
    }
}

impl<S, C, Req> Service<Req> for CircuitBreakerService<S, C>
where
    S: Service<Req>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = CallError<S::Error>;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(CallError::Inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let permit = match self.breaker.try_acquire_owned() {
            Ok(permit) => permit,
            Err(refusal) => {
                return ResponseFuture {
                    state: ResponseState::Refused {
                        refusal: Some(refusal),
                    },
                }
            }
        };
        // A panic in the inner `call` drops the permit while unwinding: a
        // failure, and the permit given back.
        let fut = self.inner.call(req);
        let classify = WithRetryAfter {
            classifier: self.classifier.clone(),
            max_retry_after: self.max_retry_after,
        };
        ResponseFuture {
            state: ResponseState::Admitted {
                call: permit.run_classified(fut, classify),
            },
        }
    }
}

/// A layer's classifier with its `Retry-After` bound, as the [`Call`]'s
/// classifier: the breaker then weighs each hint against the call's
/// generation (see [`Classify::classify_with_retry_after`]).
#[derive(Clone, Debug)]
pub(crate) struct WithRetryAfter<C> {
    classifier: C,
    max_retry_after: LayerCap,
}

impl<Res, E, C: Classify<Res, E>> Classify<Res, E> for WithRetryAfter<C> {
    fn classify(self, result: &Result<Res, E>) -> Outcome {
        self.classifier.classify(result)
    }

    fn classify_with_retry_after(self, result: &Result<Res, E>) -> (Outcome, Option<Duration>) {
        let (outcome, hint) = self.classifier.classify_with_retry_after(result);
        (outcome, self.max_retry_after.bound(outcome, hint))
    }
}

impl LayerCap {
    /// The hint the layer lets through for `outcome`: a failure's or a
    /// throttled answer's, at most this cap; none for any other outcome.
    pub(crate) fn bound(self, outcome: Outcome, hint: Option<Duration>) -> Option<Duration> {
        match (outcome, self) {
            (Outcome::Failure | Outcome::Throttled, LayerCap::Breaker) => hint,
            (Outcome::Failure | Outcome::Throttled, LayerCap::At(max)) => hint.map(|h| h.min(max)),
            _ => None,
        }
    }
}

pin_project! {
    /// The response future of [`CircuitBreakerService`]: the inner service's
    /// future under the breaker's permit, unboxed.
    ///
    /// A refused request's future is complete from the start. An admitted one
    /// is a [`Call`] on an [`OwnedPermit`](crate::OwnedPermit): it is `Send`
    /// when the inner future and the classifier are, and needs nothing else of
    /// them.
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<F, C> {
        #[pin]
        state: ResponseState<F, C>,
    }
}

pin_project! {
    /// Whether the request was refused or admitted.
    #[project = ResponseStateProj]
    enum ResponseState<F, C> {
        Refused { refusal: Option<BreakerError> },
        Admitted { #[pin] call: Call<'static, F, WithRetryAfter<C>> },
    }
}

impl<F, C, Res, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<Res, E>>,
    C: Classify<Res, E>,
{
    type Output = Result<Res, CallError<E>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            ResponseStateProj::Refused { refusal } => match refusal.take() {
                Some(refusal) => Poll::Ready(Err(CallError::Rejected(refusal))),
                None => panic!("`ResponseFuture` polled after completion"),
            },
            ResponseStateProj::Admitted { call } => call.poll(cx),
        }
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            ResponseState::Refused { .. } => "refused",
            ResponseState::Admitted { .. } => "admitted",
        };
        f.debug_struct("ResponseFuture").field("state", &state).finish()
    }
}
