//! Judging a streamed HTTP response by its body, not only its head (feature
//! `tower`, opt-in).
//!
//! [`CircuitBreakerLayer`](super::CircuitBreakerLayer) judges a call when the
//! response head arrives: an LLM provider that answers `200 OK` and then never
//! sends a token, or cuts the stream halfway, looks healthy to it.
//! [`BodyCircuitBreakerLayer`] judges the response as a
//! [streamed call](crate::stream) whose items are the body's
//! [`http_body::Body`] frames:
//!
//! * The head is classified first, by the same [`Classify`] (the
//!   [`HttpClassifier`] by default): a failing status (5xx) is a failure at
//!   once, a 429 is throttled at once (opening for its `Retry-After`, capped
//!   at the breaker's `max_retry_after`, or for `throttle_duration`), and a
//!   503's `Retry-After` is honoured as by the head-only layer. Any other
//!   status (a success, or an ignored one) is judged by its body.
//! * The body is judged like a stream: time to first frame is the slow-call
//!   signal; `call_timeout` bounds the wait for the head and the first frame
//!   (from admission) and for each next frame; a body error is a failure; the
//!   end of the body is a success; a body dropped before its first frame is
//!   cancelled, after it a success.
//! * A stalled body ends with a [`CallError::Timeout`] body error; a body
//!   error comes through as [`CallError::Inner`].
//!
//! A half-open probe holds its slot until its body is judged.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use ::tower::{Layer, Service};
use futures_core::Stream;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::HttpClassifier;
use crate::stream::BreakerStream;
use crate::{CallError, CircuitBreaker, Classify, ClassifyError, Outcome};

/// A [`Layer`] that judges each response by its body; see the
/// [module documentation](self).
#[derive(Clone)]
pub struct BodyCircuitBreakerLayer<C = HttpClassifier> {
    breaker: Arc<CircuitBreaker>,
    classifier: C,
}

impl BodyCircuitBreakerLayer<HttpClassifier> {
    /// A layer around `breaker`, with the [`HttpClassifier`] for the head.
    pub fn new(breaker: Arc<CircuitBreaker>) -> Self {
        BodyCircuitBreakerLayer {
            breaker,
            classifier: HttpClassifier::default(),
        }
    }
}

impl<C> BodyCircuitBreakerLayer<C> {
    /// The same layer with `classifier` deciding how a response head counts.
    pub fn classifier<C2>(self, classifier: C2) -> BodyCircuitBreakerLayer<C2> {
        BodyCircuitBreakerLayer {
            breaker: self.breaker,
            classifier,
        }
    }

    /// The layer's breaker.
    pub fn breaker(&self) -> &Arc<CircuitBreaker> {
        &self.breaker
    }
}

impl<C: fmt::Debug> fmt::Debug for BodyCircuitBreakerLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyCircuitBreakerLayer")
            .field("breaker", &self.breaker.name())
            .field("classifier", &self.classifier)
            .finish()
    }
}

impl<S, C: Clone> Layer<S> for BodyCircuitBreakerLayer<C> {
    type Service = BodyCircuitBreakerService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        BodyCircuitBreakerService {
            inner,
            breaker: Arc::clone(&self.breaker),
            classifier: self.classifier.clone(),
        }
    }
}

/// A service whose responses are judged by their bodies, made by
/// [`BodyCircuitBreakerLayer`].
#[derive(Clone)]
pub struct BodyCircuitBreakerService<S, C = HttpClassifier> {
    inner: S,
    breaker: Arc<CircuitBreaker>,
    classifier: C,
}

impl<S, C> BodyCircuitBreakerService<S, C> {
    /// The breaker the requests go through.
    pub fn breaker(&self) -> &Arc<CircuitBreaker> {
        &self.breaker
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: fmt::Debug, C: fmt::Debug> fmt::Debug for BodyCircuitBreakerService<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyCircuitBreakerService")
            .field("inner", &self.inner)
            .field("breaker", &self.breaker.name())
            .field("classifier", &self.classifier)
            .finish()
    }
}

/// What the opening of a response can fail with, or a frame error.
pub(crate) enum Failed<D, BE> {
    /// The body failed.
    Body(BE),
    /// The trailers say the call failed, was throttled or is to be ignored
    /// (a gRPC status): counted as `outcome` with `hint`, and handed to the
    /// caller as the frame it is.
    Trailers {
        frame: Frame<D>,
        outcome: Outcome,
        hint: Option<std::time::Duration>,
    },
    /// The head failed or was throttled (its status, or the service's
    /// error), counting as `outcome` with the `Retry-After` `hint`: the
    /// details wait in the service future's own slot.
    Head {
        outcome: Outcome,
        hint: Option<std::time::Duration>,
    },
}

/// Judges a [`Failed`]: a body error is a failure; a head or trailers as
/// they were classified.
#[derive(Clone, Copy)]
pub(crate) struct JudgeFailed;

impl<D, BE> ClassifyError<Failed<D, BE>> for JudgeFailed {
    fn classify_error(&mut self, error: &Failed<D, BE>) -> Outcome {
        self.classify_error_with_retry_after(error).0
    }

    fn classify_error_with_retry_after(
        &mut self,
        error: &Failed<D, BE>,
    ) -> (Outcome, Option<std::time::Duration>) {
        match error {
            Failed::Body(_) => (Outcome::Failure, None),
            Failed::Head { outcome, hint } | Failed::Trailers { outcome, hint, .. } => (*outcome, *hint),
        }
    }
}

/// How a response's trailers count, when they say: `None` for trailers (or
/// a head) that carry no verdict. The gRPC status is read this way.
pub(crate) type TrailersRule = fn(&http::HeaderMap) -> Option<(Outcome, Option<std::time::Duration>)>;

/// A [`TrailersRule`] with the layer's own bound on the hints it reads.
#[derive(Clone, Copy)]
pub(crate) struct Trailers {
    pub(crate) rule: TrailersRule,
    pub(crate) cap: super::LayerCap,
}

impl Trailers {
    /// The verdict of `headers`, its hint bounded as the layer bounds a head's.
    fn judge(self, headers: &http::HeaderMap) -> Option<(Outcome, Option<std::time::Duration>)> {
        (self.rule)(headers).map(|(outcome, hint)| (outcome, self.cap.bound(outcome, hint)))
    }
}

/// The response's body as a stream of frames; the head waits beside it until
/// the call is admitted and opened.
pub(crate) struct Frames<B> {
    head: Option<http::response::Parts>,
    body: Pin<Box<B>>,
    trailers: Option<Trailers>,
}

impl<B: Body> Stream for Frames<B> {
    type Item = Result<Frame<B::Data>, Failed<B::Data, B::Error>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let rule = self.trailers;
        self.body.as_mut().poll_frame(cx).map(|frame| {
            frame.map(|f| match f {
                Err(e) => Err(Failed::Body(e)),
                Ok(frame) => match (rule, frame.trailers_ref()) {
                    // Trailers that fail, throttle or ignore the call reach
                    // the caller as an "error" the breaker judges, turned
                    // back into the frame by `JudgedBody`.
                    (Some(rule), Some(trailers)) => match rule.judge(trailers) {
                        Some((outcome, hint)) if outcome != Outcome::Success => {
                            Err(Failed::Trailers { frame, outcome, hint })
                        }
                        _ => Ok(frame),
                    },
                    _ => Ok(frame),
                },
            })
        })
    }
}

/// Where a failing head waits for the service future.
type HeadSlot<B, E> = Arc<Mutex<Option<Result<Response<B>, E>>>>;

/// The response future of [`BodyCircuitBreakerService`].
pub type ResponseFuture<B, E> =
    Pin<Box<dyn Future<Output = Result<Response<JudgedBody<B>>, CallError<E>>> + Send>>;

impl<S, C, Req, B> Service<Req> for BodyCircuitBreakerService<S, C>
where
    S: Service<Req, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Send,
    C: Classify<Response<B>, S::Error> + Clone + Send + 'static,
{
    type Response = Response<JudgedBody<B>>;
    type Error = CallError<S::Error>;
    type Future = ResponseFuture<B, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(CallError::Inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        call_judged(&self.breaker, &mut self.inner, req, self.classifier.clone(), None)
    }
}

/// A request through `breaker`, its response judged by `classifier` (the
/// head), then by its body, and with `trailers` by its trailers too: what
/// [`BodyCircuitBreakerService`] does, and the gRPC classifier's service.
pub(crate) fn call_judged<S, C, Req, B>(
    breaker: &Arc<CircuitBreaker>,
    inner: &mut S,
    req: Req,
    classifier: C,
    trailers: Option<Trailers>,
) -> ResponseFuture<B, S::Error>
where
    S: Service<Req, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Send,
    C: Classify<Response<B>, S::Error> + Send + 'static,
{
    // Admission first: while open, the inner service never sees the request.
    let permit = match breaker.try_acquire_owned() {
        Ok(permit) => permit,
        Err(refusal) => return Box::pin(std::future::ready(Err(CallError::Rejected(refusal)))),
    };
    let fut = inner.call(req);
    // A failing head (its status, or the service's error), handed back to
    // the caller after the breaker has counted it. Never locked across an
    // `.await`.
    let head_failure: HeadSlot<B, S::Error> = Arc::default();
    let slot = Arc::clone(&head_failure);
    let open = async move {
        let result = fut.await;
        let (outcome, hint) = classifier.classify_with_retry_after(&result);
        // A head that carries the trailers' verdict (a gRPC
        // trailers-only answer) is judged by it alone, ignored included.
        let final_head = matches!(&result, Ok(response)
            if outcome == Outcome::Ignored && trailers.is_some_and(|rule| rule.judge(response.headers()).is_some()));
        match result {
            Ok(response) if !matches!(outcome, Outcome::Failure | Outcome::Throttled) && !final_head => {
                let (head, body) = response.into_parts();
                Ok(Frames {
                    head: Some(head),
                    body: Box::pin(body),
                    trailers,
                })
            }
            other => {
                *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(other);
                // A transport error is a failure whatever the rule says.
                let outcome = if outcome == Outcome::Success {
                    Outcome::Failure
                } else {
                    outcome
                };
                Err(Failed::Head { outcome, hint })
            }
        }
    };
    // Holds the permit from here: dropped unpolled, it gives it back.
    let call = permit.run_stream_with(open, JudgeFailed);
    Box::pin(async move {
        match call.await {
            Ok(mut stream) => {
                let head = Pin::new(&mut stream)
                    .inner_mut()
                    .and_then(|frames| frames.get_mut().head.take());
                let Some(head) = head else {
                    // Taken once, here, before any frame is polled.
                    unreachable!("a response's head is taken once");
                };
                Ok(Response::from_parts(head, JudgedBody::judged(stream)))
            }
            Err(CallError::Inner(_)) => {
                let failed = head_failure.lock().unwrap_or_else(PoisonError::into_inner).take();
                match failed {
                    // A failing status: counted, and handed back unchanged.
                    Some(Ok(response)) => Ok(response.map(JudgedBody::plain)),
                    Some(Err(error)) => Err(CallError::Inner(error)),
                    None => unreachable!("`open` fails only after filling the slot"),
                }
            }
            Err(CallError::Rejected(e)) => Err(CallError::Rejected(e)),
            Err(CallError::Timeout(e)) => Err(CallError::Timeout(e)),
        }
    })
}

pin_project! {
    /// A response body under the breaker's watch: its frames unchanged, its
    /// error as [`CallError::Inner`], a stall as [`CallError::Timeout`].
    pub struct JudgedBody<B: Body> {
        #[pin]
        inner: BodyState<B>,
    }
}

pin_project! {
    #[project = BodyStateProj]
    enum BodyState<B: Body> {
        // Judged by its frames.
        Judged { #[pin] stream: BreakerStream<'static, Frames<B>, JudgeFailed> },
        // Judged by its head already (a failing status).
        Plain { #[pin] body: B },
    }
}

impl<B: Body> JudgedBody<B> {
    fn judged(stream: BreakerStream<'static, Frames<B>, JudgeFailed>) -> Self {
        JudgedBody {
            inner: BodyState::Judged { stream },
        }
    }

    fn plain(body: B) -> Self {
        JudgedBody {
            inner: BodyState::Plain { body },
        }
    }
}

impl<B: Body> Body for JudgedBody<B> {
    type Data = B::Data;
    type Error = CallError<B::Error>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, Self::Error>>> {
        match self.project().inner.project() {
            BodyStateProj::Plain { body } => body
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(CallError::Inner))),
            BodyStateProj::Judged { stream } => stream.poll_next(cx).map(|item| {
                item.map(|r| {
                    r.or_else(|e| match e {
                        CallError::Inner(Failed::Body(e)) => Err(CallError::Inner(e)),
                        CallError::Inner(Failed::Trailers { frame, .. }) => Ok(frame),
                        CallError::Rejected(e) => Err(CallError::Rejected(e)),
                        CallError::Timeout(e) => Err(CallError::Timeout(e)),
                        CallError::Inner(Failed::Head { .. }) => {
                            unreachable!("frames carry body errors and trailers only")
                        }
                    })
                })
            }),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            BodyState::Plain { body } => body.size_hint(),
            BodyState::Judged { .. } => SizeHint::default(),
        }
    }
}

impl<B: Body> fmt::Debug for JudgedBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.inner {
            BodyState::Judged { .. } => "judged",
            BodyState::Plain { .. } => "plain",
        };
        f.debug_struct("JudgedBody").field("kind", &kind).finish()
    }
}
