//! The attribute in real services (issue 29): foreign error types through `CallError<E>`,
//! `failure_if` / `ignore_if` on streamed functions, `fallback_on`, and the fallbacks counted.
//! Every test uses its own breaker names: the registry is process-wide.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cb_runtime::{circuit_breaker, registry, BreakerError, CallError, FallbackReason, State};
use futures::stream::{self, Stream, StreamExt};

/// A foreign error type: `From<BreakerError>` cannot be implemented for it here.
type DbError = io::Error;

fn query_row(fail: bool) -> Result<u32, DbError> {
    if fail {
        Err(io::Error::other("server closed the connection"))
    } else {
        Ok(42)
    }
}

#[circuit_breaker(name = "svc-foreign", failure_threshold = 2, streak_failure_rate = 0)]
async fn find(fail: bool) -> Result<u32, CallError<DbError>> {
    // `?` on the foreign error, as written.
    let row = query_row(fail)?;
    Ok(row)
}

#[tokio::test]
async fn a_foreign_error_comes_back_as_call_error_and_refusals_as_rejected() {
    assert_eq!(find(false).await.unwrap(), 42);
    let inner = find(true).await.unwrap_err();
    assert!(matches!(&inner, CallError::Inner(e) if e.to_string() == "server closed the connection"));
    assert!(find(true).await.is_err());
    assert_eq!(registry().get("svc-foreign").unwrap().state(), State::Open);
    let refused = find(false).await.unwrap_err();
    assert!(refused.is_rejected(), "{refused:?}");
    assert_eq!(refused.breaker_error().unwrap().name(), "svc-foreign");
}

#[circuit_breaker(name = "svc-foreign-timeout", call_timeout = "100ms")]
async fn hangs() -> Result<u32, CallError<DbError>> {
    tokio::time::sleep(Duration::from_secs(10)).await;
    let row = query_row(false)?;
    Ok(row + 1)
}

#[tokio::test(start_paused = true)]
async fn a_timeout_of_a_foreign_error_function_is_call_error_timeout() {
    let error = hangs().await.unwrap_err();
    assert!(matches!(error, CallError::Timeout(_)), "{error:?}");
    assert_eq!(registry().get("svc-foreign-timeout").unwrap().stats().timeouts, 1);
}

#[circuit_breaker(name = "svc-foreign-stream", call_timeout = "100ms")]
async fn tokens(
    stall: bool,
) -> Result<impl Stream<Item = Result<u32, CallError<DbError>>>, CallError<DbError>> {
    let first = query_row(false)?;
    let rest = if stall {
        stream::pending().boxed()
    } else {
        stream::iter(vec![Err(io::Error::other("reset"))]).boxed()
    };
    Ok(stream::iter(vec![Ok(first)]).chain(rest))
}

#[tokio::test(start_paused = true)]
async fn a_streamed_foreign_error_function_yields_call_errors() {
    let items: Vec<_> = tokens(false).await.unwrap().collect().await;
    assert!(
        matches!(items[..], [Ok(42), Err(CallError::Inner(_))]),
        "{items:?}"
    );
    let items: Vec<_> = tokens(true).await.unwrap().collect().await;
    assert!(
        matches!(items[..], [Ok(42), Err(CallError::Timeout(_))]),
        "{items:?}"
    );
    let stats = registry().get("svc-foreign-stream").unwrap().stats();
    assert_eq!((stats.failures, stats.timeouts, stats.calls()), (1, 1, 2));
}

#[derive(Debug, PartialEq)]
enum LlmError {
    Breaker(bool),
    ContentFilter,
    Overloaded,
}

impl From<BreakerError> for LlmError {
    fn from(e: BreakerError) -> Self {
        LlmError::Breaker(e.is_rejected())
    }
}

fn is_content_filter(e: &LlmError) -> bool {
    *e == LlmError::ContentFilter
}

fn is_provider_fault(e: &LlmError) -> bool {
    *e == LlmError::Overloaded
}

type Tokens = Vec<Result<&'static str, LlmError>>;

#[circuit_breaker(name = "svc-stream-ignore", failure_threshold = 1, ignore_if = is_content_filter)]
async fn chat(items: Tokens) -> Result<impl Stream<Item = Result<&'static str, LlmError>>, LlmError> {
    Ok(stream::iter(items))
}

#[tokio::test]
async fn an_ignored_item_is_counted_as_ignored_and_still_reaches_the_consumer() {
    let items: Vec<_> = chat(vec![Ok("a"), Err(LlmError::ContentFilter), Ok("b")])
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(items, vec![Ok("a"), Err(LlmError::ContentFilter), Ok("b")]);
    let breaker = registry().get("svc-stream-ignore").unwrap();
    let stats = breaker.stats();
    assert_eq!((stats.ignored, stats.failures, stats.calls()), (1, 0, 1));
    assert_eq!(breaker.state(), State::Closed);

    // The stream stays under watch after an ignored item: a failure that follows is the verdict.
    let items: Vec<_> = chat(vec![
        Err(LlmError::ContentFilter),
        Err(LlmError::Overloaded),
        Ok("never"),
    ])
    .await
    .unwrap()
    .collect()
    .await;
    assert_eq!(
        items,
        vec![Err(LlmError::ContentFilter), Err(LlmError::Overloaded)]
    );
    let stats = breaker.stats();
    assert_eq!((stats.ignored, stats.failures, stats.calls()), (1, 1, 2));
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(chat(vec![]).await.err(), Some(LlmError::Breaker(true)));
}

#[circuit_breaker(name = "svc-stream-failure-if", failure_threshold = 1, streak_failure_rate = 0, failure_if = is_provider_fault)]
async fn complete(
    open_error: Option<LlmError>,
    items: Tokens,
) -> Result<impl Stream<Item = Result<&'static str, LlmError>>, LlmError> {
    if let Some(e) = open_error {
        return Err(e);
    }
    Ok(stream::iter(items))
}

#[tokio::test]
async fn an_error_failure_if_refuses_counts_as_a_success_on_open_and_on_items() {
    let breaker = || registry().get("svc-stream-failure-if").unwrap();
    assert_eq!(
        complete(Some(LlmError::ContentFilter), vec![]).await.err(),
        Some(LlmError::ContentFilter)
    );
    assert_eq!(breaker().stats().successes, 1);
    let items: Vec<_> = complete(None, vec![Err(LlmError::ContentFilter), Ok("x")])
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(items, vec![Err(LlmError::ContentFilter), Ok("x")]);
    let stats = breaker().stats();
    assert_eq!((stats.successes, stats.failures), (2, 0));
    assert_eq!(breaker().state(), State::Closed);

    // The error it calls a failure, at the opening, opens the circuit.
    assert_eq!(
        complete(Some(LlmError::Overloaded), vec![]).await.err(),
        Some(LlmError::Overloaded)
    );
    assert_eq!(breaker().state(), State::Open);
}

fn is_bad_request(e: &LlmError) -> bool {
    *e == LlmError::ContentFilter
}

fn is_counted(e: &LlmError) -> bool {
    *e != LlmError::Breaker(false)
}

#[circuit_breaker(name = "svc-both", failure_threshold = 2, ignore_if = is_bad_request, failure_if = is_counted)]
async fn both(error: LlmError) -> Result<(), LlmError> {
    Err(error)
}

#[tokio::test]
async fn ignore_if_is_asked_before_failure_if() {
    assert!(both(LlmError::ContentFilter).await.is_err());
    assert!(both(LlmError::Breaker(false)).await.is_err());
    let stats = registry().get("svc-both").unwrap().stats();
    assert_eq!((stats.ignored, stats.successes, stats.failures), (1, 1, 0));
    assert!(both(LlmError::Overloaded).await.is_err());
    assert_eq!(registry().get("svc-both").unwrap().stats().failures, 1);
}

static RUNS: AtomicU32 = AtomicU32::new(0);

/// The provider behind the three functions below: answers after `delay_ms`, or fails with
/// `error` (`"filter"`: the caller's fault; anything else: the provider's).
async fn provider(delay_ms: u32, error: &str) -> Result<String, LlmError> {
    tokio::time::sleep(Duration::from_millis(delay_ms.into())).await;
    match error {
        "" => Ok("fresh".to_owned()),
        "filter" => Err(LlmError::ContentFilter),
        _ => Err(LlmError::Overloaded),
    }
}

async fn canned(_: u32, _: &str) -> Result<String, LlmError> {
    RUNS.fetch_add(1, Ordering::SeqCst);
    Ok("canned".to_owned())
}

#[circuit_breaker(name = "svc-on-refusal", call_timeout = "100ms", failure_threshold = 100, fallback = canned)]
async fn on_refusal(delay_ms: u32, error: &str) -> Result<String, LlmError> {
    provider(delay_ms, error).await
}

#[circuit_breaker(
    name = "svc-on-breaker",
    call_timeout = "100ms",
    failure_threshold = 100,
    fallback = canned,
    fallback_on = "breaker"
)]
async fn on_breaker(delay_ms: u32, error: &str) -> Result<String, LlmError> {
    provider(delay_ms, error).await
}

#[circuit_breaker(
    name = "svc-on-failure",
    call_timeout = "100ms",
    failure_threshold = 100,
    ignore_if = is_content_filter,
    fallback = canned,
    fallback_on = "failure"
)]
async fn on_failure(delay_ms: u32, error: &str) -> Result<String, LlmError> {
    provider(delay_ms, error).await
}

/// Each level includes the ones above it; the fallbacks are counted by reason.
#[tokio::test(start_paused = true)]
async fn fallback_on_each_level_includes_the_ones_above() {
    // (timed out, failed, ignored error) answered by the fallback, for each level.
    async fn answers<F, Fut>(call: F) -> [bool; 3]
    where
        F: Fn(u32, &'static str) -> Fut,
        Fut: std::future::Future<Output = Result<String, LlmError>>,
    {
        assert_eq!(call(1, "").await.unwrap(), "fresh");
        let canned = |r: Result<String, LlmError>| r.as_deref() == Ok("canned");
        [
            canned(call(1000, "").await),
            canned(call(1, "down").await),
            canned(call(1, "filter").await),
        ]
    }
    assert_eq!(answers(on_refusal).await, [false, false, false]);
    assert_eq!(answers(on_breaker).await, [true, false, false]);
    assert_eq!(answers(on_failure).await, [true, true, false]);
    assert_eq!(RUNS.load(Ordering::SeqCst), 3);

    // A refusal runs the fallback at every level.
    for name in ["svc-on-refusal", "svc-on-breaker", "svc-on-failure"] {
        registry().get(name).unwrap().force_open();
    }
    assert_eq!(on_refusal(1, "").await.unwrap(), "canned");
    assert_eq!(on_breaker(1, "").await.unwrap(), "canned");
    assert_eq!(on_failure(1, "").await.unwrap(), "canned");

    let on = |name: &str| {
        let stats = registry().get(name).unwrap().stats();
        (
            stats.fallbacks,
            FallbackReason::ALL.map(|reason| stats.fallbacks_on(reason)),
        )
    };
    assert_eq!(on("svc-on-refusal"), (1, [1, 0, 0, 0, 0]));
    assert_eq!(on("svc-on-breaker"), (2, [1, 1, 0, 0, 0]));
    assert_eq!(on("svc-on-failure"), (3, [1, 1, 1, 0, 0]));
    // The body's own failure is still counted against the dependency.
    assert_eq!(registry().get("svc-on-failure").unwrap().stats().failures, 1);
}

async fn canned_stream(
    _: bool,
    _: bool,
) -> Result<impl Stream<Item = Result<&'static str, LlmError>>, LlmError> {
    Ok(stream::iter(vec![Ok("canned")]))
}

#[circuit_breaker(name = "svc-stream-fallback", failure_threshold = 100, fallback = canned_stream, fallback_on = "failure")]
async fn streamed(
    fail_open: bool,
    fail_item: bool,
) -> Result<impl Stream<Item = Result<&'static str, LlmError>>, LlmError> {
    if fail_open {
        return Err(LlmError::Overloaded);
    }
    let item = if fail_item {
        Err(LlmError::Overloaded)
    } else {
        Ok("fresh")
    };
    Ok(stream::iter(vec![item]))
}

#[tokio::test]
async fn a_streamed_fallback_runs_only_when_the_stream_could_not_be_opened() {
    let items: Vec<_> = streamed(true, false).await.unwrap().collect().await;
    assert_eq!(items, vec![Ok("canned")]);
    // Once the stream is returned, an item's error reaches the consumer.
    let items: Vec<_> = streamed(false, true).await.unwrap().collect().await;
    assert_eq!(items, vec![Err(LlmError::Overloaded)]);
    let stats = registry().get("svc-stream-fallback").unwrap().stats();
    assert_eq!((stats.failures, stats.fallbacks), (2, 1));
    assert_eq!(stats.fallbacks_on(FallbackReason::Failure), 1);
}

/// The classifier of a streamed call without the attribute: `call_stream_with`.
#[tokio::test]
async fn call_stream_with_classifies_the_opening_and_the_first_error_item() {
    use cb_runtime::{CircuitBreaker, Config, Outcome};
    let b = CircuitBreaker::new("svc-call-stream-with", Config::default());
    let judge = |e: &u16| {
        if *e < 500 {
            Outcome::Ignored
        } else {
            Outcome::Failure
        }
    };

    let items = vec![Ok::<_, u16>("a"), Err(404), Ok("b")];
    // `FnMut`: asked about each error.
    let stream = b
        .call_stream_with(async move { Ok::<_, u16>(stream::iter(items)) }, judge)
        .await
        .unwrap();
    let seen: Vec<_> = stream.map(|r| r.map_err(|e| e.into_inner())).collect().await;
    assert_eq!(seen, vec![Ok("a"), Err(Some(404)), Ok("b")]);
    let opened = b
        .call_stream_with(async { Err::<stream::Empty<Result<(), u16>>, u16>(503) }, judge)
        .await;
    assert_eq!(opened.err().and_then(|e| e.into_inner()), Some(503));
    let stats = b.stats();
    assert_eq!((stats.ignored, stats.failures, stats.calls()), (1, 1, 2));
}

#[circuit_breaker(name = "svc-stream-ignored-then", call_timeout = "100ms", ignore_if = is_content_filter)]
async fn then(stall: bool) -> Result<impl Stream<Item = Result<&'static str, LlmError>>, LlmError> {
    let rest = if stall {
        stream::pending().boxed()
    } else {
        stream::iter(vec![Ok("after")]).boxed()
    };
    Ok(stream::iter(vec![Err(LlmError::ContentFilter)]).chain(rest))
}

/// After an ignored item the call is judged by what follows: a clean end or a drop keeps it
/// ignored, a stall makes it a timeout.
#[tokio::test(start_paused = true)]
async fn after_an_ignored_item_a_stall_is_a_timeout_and_a_drop_stays_ignored() {
    let stats = || registry().get("svc-stream-ignored-then").unwrap().stats();
    let items: Vec<_> = then(false).await.unwrap().collect().await;
    assert_eq!(items, vec![Err(LlmError::ContentFilter), Ok("after")]);
    assert_eq!((stats().ignored, stats().calls()), (1, 1));

    let items: Vec<_> = then(true).await.unwrap().collect().await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[1], Err(LlmError::Breaker(false)), "the stall is a timeout");
    assert_eq!((stats().ignored, stats().timeouts, stats().calls()), (1, 1, 2));

    let mut stream = Box::pin(then(true).await.unwrap());
    assert_eq!(stream.next().await, Some(Err(LlmError::ContentFilter)));
    drop(stream);
    assert_eq!((stats().ignored, stats().cancelled, stats().calls()), (2, 0, 3));
}
