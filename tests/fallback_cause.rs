//! The fallback that knows why (issue 41), through the attribute: `fallback_with_cause` on
//! every kind of function, the `"failure"` level failing over on a rate limit, the `"error"`
//! level, the fallbacks counted by reason, and a failover chain whose last fallback sees the
//! smallest time left. Every test uses its own breaker names: the registry is process-wide.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cb_runtime::{circuit_breaker, registry, BreakerError, CallError, FallbackCause, FallbackReason, State};
use futures::stream::{self, Stream, StreamExt};

#[derive(Debug, Clone, PartialEq)]
enum LlmError {
    /// HTTP 429, with the provider's `Retry-After` when it sent one.
    RateLimited(Option<Duration>),
    /// HTTP 400: the prompt is longer than the model's context window.
    ContextTooLong,
    /// HTTP 5xx.
    Server(u16),
    /// The breaker refused or abandoned the call.
    Breaker(String),
}

impl From<BreakerError> for LlmError {
    fn from(e: BreakerError) -> Self {
        LlmError::Breaker(e.to_string())
    }
}

fn is_rate_limited(e: &LlmError) -> bool {
    matches!(e, LlmError::RateLimited(_))
}

fn hint(e: &LlmError) -> Option<Duration> {
    match e {
        LlmError::RateLimited(after) => *after,
        _ => None,
    }
}

fn is_callers_error(e: &LlmError) -> bool {
    matches!(e, LlmError::ContextTooLong)
}

/// What a fallback saw, as plain data.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    reason: FallbackReason,
    error: Option<LlmError>,
    refused_by: Option<String>,
    retry_after: Option<Duration>,
    key: Option<String>,
}

fn seen(cause: &FallbackCause<LlmError>) -> Seen {
    Seen {
        reason: cause.reason(),
        error: cause.error().cloned(),
        refused_by: cause.breaker_error().map(|e| e.name().to_owned()),
        retry_after: cause.retry_after(),
        key: cause.key().map(str::to_owned),
    }
}

fn answer(cause: &FallbackCause<LlmError>) -> String {
    format!("{:?}", seen(cause))
}

fn open(name: &str, for_: Duration) {
    let breaker = registry()
        .get(name)
        .expect("the breaker exists after its first call");
    assert!(breaker.open_for(for_));
}

/// `true` when `d` is `expected` less the few milliseconds a test takes.
fn about(d: Option<Duration>, expected: Duration) -> bool {
    d.is_some_and(|d| d <= expected && d + Duration::from_secs(1) > expected)
}

// ---------------------------------------------------------------------------------------------
// Every reason, on a plain function.

#[circuit_breaker(name = "cause-plain", failure_threshold = 100,
                  throttle_if = is_rate_limited, retry_after = hint, ignore_if = is_callers_error,
                  fallback_with_cause = plain_fallback, fallback_on = "error")]
async fn plain(answer: Result<u32, LlmError>) -> Result<u32, LlmError> {
    // The fallback gets the arguments after the body: the body borrows them.
    answer.clone()
}

static PLAIN: std::sync::Mutex<Vec<Seen>> = std::sync::Mutex::new(Vec::new());

async fn plain_fallback(
    _answer: Result<u32, LlmError>,
    cause: FallbackCause<LlmError>,
) -> Result<u32, LlmError> {
    PLAIN.lock().unwrap().push(seen(&cause));
    match cause.reason() {
        FallbackReason::Error => Err(cause.into_error().unwrap()),
        _ => Ok(0),
    }
}

#[tokio::test]
async fn the_cause_says_why_for_every_reason() {
    assert_eq!(plain(Ok(7)).await, Ok(7));
    assert!(PLAIN.lock().unwrap().is_empty(), "a success runs no fallback");

    // A failure: the error, no wait.
    assert_eq!(plain(Err(LlmError::Server(500))).await, Ok(0));
    // A rate limit fails over, with the provider's hint exactly as it sent it.
    assert_eq!(
        plain(Err(LlmError::RateLimited(Some(Duration::from_secs(20))))).await,
        Ok(0)
    );
    let b = registry().get("cause-plain").unwrap();
    assert_eq!(b.state(), State::Open, "the rate limit opened the circuit");
    // A refusal: the breaker's error and its time left.
    assert_eq!(plain(Ok(1)).await, Ok(0));
    b.reset();
    // An error the classifier ignores reaches the fallback at "error", which gives it back.
    assert_eq!(
        plain(Err(LlmError::ContextTooLong)).await,
        Err(LlmError::ContextTooLong)
    );

    let seen = PLAIN.lock().unwrap().clone();
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert_eq!(
        seen[0],
        Seen {
            reason: FallbackReason::Failure,
            error: Some(LlmError::Server(500)),
            refused_by: None,
            retry_after: None,
            key: None
        }
    );
    assert_eq!(
        seen[1],
        Seen {
            reason: FallbackReason::Throttled,
            error: Some(LlmError::RateLimited(Some(Duration::from_secs(20)))),
            refused_by: None,
            retry_after: Some(Duration::from_secs(20)),
            key: None
        }
    );
    assert_eq!(seen[2].reason, FallbackReason::Refusal);
    assert_eq!(seen[2].error, None);
    assert_eq!(seen[2].refused_by.as_deref(), Some("cause-plain"));
    assert!(
        about(seen[2].retry_after, Duration::from_secs(20)),
        "{:?}",
        seen[2]
    );
    assert_eq!(seen[3].reason, FallbackReason::Error);
    assert_eq!(seen[3].error, Some(LlmError::ContextTooLong));

    let stats = b.stats();
    assert_eq!(stats.fallbacks, 4);
    assert_eq!(
        FallbackReason::ALL.map(|r| stats.fallbacks_on(r)),
        [1, 0, 1, 1, 1],
        "refusal, timeout, failure, throttled, error"
    );
    // The body's outcomes are counted as the classifier said, fallback or not.
    assert_eq!((stats.failures, stats.throttled, stats.ignored), (1, 1, 1));
}

// ---------------------------------------------------------------------------------------------
// The levels.

#[circuit_breaker(name = "cause-level-failure", failure_threshold = 100,
                  throttle_if = is_rate_limited, retry_after = hint, ignore_if = is_callers_error,
                  fallback = canned, fallback_on = "failure")]
async fn on_failure(answer: Result<u32, LlmError>) -> Result<u32, LlmError> {
    // The fallback gets the arguments after the body: the body borrows them.
    answer.clone()
}

#[circuit_breaker(name = "cause-level-error-counted", failure_threshold = 100,
                  fallback_with_cause = reason_as_answer, fallback_on = "error")]
async fn on_error_counted(answer: Result<u32, LlmError>) -> Result<u32, LlmError> {
    // The fallback gets the arguments after the body: the body borrows them.
    answer.clone()
}

fn is_server_error(e: &LlmError) -> bool {
    matches!(e, LlmError::Server(_))
}

#[circuit_breaker(name = "cause-level-failure-if", failure_threshold = 100, failure_if = is_server_error,
                  fallback_with_cause = reason_as_answer, fallback_on = "error")]
async fn on_error_failure_if(answer: Result<u32, LlmError>) -> Result<u32, LlmError> {
    // The fallback gets the arguments after the body: the body borrows them.
    answer.clone()
}

async fn canned(_answer: Result<u32, LlmError>) -> Result<u32, LlmError> {
    Ok(0)
}

async fn reason_as_answer(
    _answer: Result<u32, LlmError>,
    cause: FallbackCause<LlmError>,
) -> Result<u32, LlmError> {
    Ok(FallbackReason::ALL
        .iter()
        .position(|r| *r == cause.reason())
        .unwrap() as u32
        + 100)
}

#[tokio::test]
async fn failure_includes_rate_limits_and_error_includes_everything() {
    // "failure": a 429 fails over (with a plain `fallback` too), a caller's error does not.
    assert_eq!(on_failure(Err(LlmError::RateLimited(None))).await, Ok(0));
    registry().get("cause-level-failure").unwrap().reset();
    assert_eq!(
        on_failure(Err(LlmError::ContextTooLong)).await,
        Err(LlmError::ContextTooLong)
    );
    let stats = registry().get("cause-level-failure").unwrap().stats();
    assert_eq!(stats.fallbacks_on(FallbackReason::Throttled), 1);
    assert_eq!(stats.fallbacks_on(FallbackReason::Error), 0);

    // "error": an error counted as a failure is still `Failure`.
    let failure = 102;
    let error = 104;
    assert_eq!(on_error_counted(Err(LlmError::Server(503))).await, Ok(failure));
    // An error `failure_if` excuses (a success for the breaker) is `Error`.
    assert_eq!(
        on_error_failure_if(Err(LlmError::ContextTooLong)).await,
        Ok(error)
    );
    assert_eq!(on_error_failure_if(Err(LlmError::Server(502))).await, Ok(failure));
    let stats = registry().get("cause-level-failure-if").unwrap().stats();
    assert_eq!((stats.successes, stats.failures), (1, 1));
}

// ---------------------------------------------------------------------------------------------
// Timeouts, methods, generic functions, patterns.

#[circuit_breaker(name = "cause-timeout", call_timeout = "100ms",
                  fallback_with_cause = reason_only, fallback_on = "breaker")]
async fn hangs(id: u32) -> Result<String, LlmError> {
    tokio::time::sleep(Duration::from_secs(10)).await;
    Ok(id.to_string())
}

async fn reason_only(_id: u32, cause: FallbackCause<LlmError>) -> Result<String, LlmError> {
    Ok(answer(&cause))
}

#[tokio::test(start_paused = true)]
async fn a_timeout_is_told_as_such_with_no_wait() {
    let seen = hangs(1).await.unwrap();
    assert!(
        seen.starts_with(
            "Seen { reason: Timeout, error: None, refused_by: Some(\"cause-timeout\"), retry_after: None"
        ),
        "{seen}"
    );
}

struct Provider {
    name: &'static str,
    tenant: String,
}

impl Provider {
    #[circuit_breaker(name = "cause-method", failure_threshold = 100, key = self.tenant,
                      fallback_with_cause = failover, fallback_on = "failure")]
    async fn complete(&self, prompt: &str) -> Result<String, LlmError> {
        if prompt.is_empty() {
            return Err(LlmError::Server(500));
        }
        Ok(format!("{}: {prompt}", self.name))
    }

    async fn failover(&self, prompt: &str, cause: FallbackCause<LlmError>) -> Result<String, LlmError> {
        Ok(format!(
            "{} failed over for {prompt:?} ({:?}, key {:?})",
            self.name,
            cause.reason(),
            cause.key()
        ))
    }

    #[circuit_breaker(name = "cause-method-mut", failure_threshold = 100,
                      fallback_with_cause = Self::recover, fallback_on = "failure")]
    async fn bump(&mut self, by: u32) -> Result<u32, LlmError> {
        self.tenant.push('!');
        if by == 0 {
            return Err(LlmError::Server(500));
        }
        Ok(by)
    }

    async fn recover(&mut self, by: u32, cause: FallbackCause<LlmError>) -> Result<u32, LlmError> {
        assert_eq!(cause.reason(), FallbackReason::Failure);
        self.tenant.push('?');
        Ok(by + 1000)
    }
}

#[tokio::test]
async fn methods_get_the_receiver_the_arguments_and_the_cause() {
    let provider = Provider {
        name: "openai",
        tenant: "acme".to_owned(),
    };
    assert_eq!(provider.complete("hi").await.unwrap(), "openai: hi");
    assert_eq!(
        provider.complete("").await.unwrap(),
        "openai failed over for \"\" (Failure, key Some(\"acme\"))"
    );
    let mut provider = provider;
    assert_eq!(provider.bump(0).await, Ok(1000));
    assert_eq!(provider.tenant, "acme!?");
}

#[circuit_breaker(name = "cause-generic", failure_threshold = 100,
                  fallback_with_cause = generic_fallback, fallback_on = "failure")]
async fn generic<T: std::fmt::Display + Send>(
    value: T,
    (fail, times): (bool, u32),
) -> Result<String, LlmError> {
    if fail {
        return Err(LlmError::Server(500));
    }
    Ok(value.to_string().repeat(times as usize))
}

async fn generic_fallback<T: std::fmt::Display + Send>(
    value: T,
    (_, times): (bool, u32),
    cause: FallbackCause<LlmError>,
) -> Result<String, LlmError> {
    Ok(format!("{value}x{times} after {}", cause.reason()))
}

#[tokio::test]
async fn generic_functions_and_patterns_take_the_cause_too() {
    assert_eq!(generic(4, (false, 2)).await.unwrap(), "44");
    assert_eq!(generic("a", (true, 3)).await.unwrap(), "ax3 after failure");
}

// ---------------------------------------------------------------------------------------------
// `CallError<E>` functions, keyed functions, streamed functions.

type DbError = std::io::Error;

#[circuit_breaker(name = "cause-foreign", failure_threshold = 1, streak_failure_rate = 0,
                  fallback_with_cause = replica, fallback_on = "failure")]
async fn primary(id: u32) -> Result<u32, CallError<DbError>> {
    if id == 0 {
        return Err(std::io::Error::other("connection reset"));
    }
    Ok(id)
}

async fn replica(id: u32, cause: FallbackCause<DbError>) -> Result<u32, CallError<DbError>> {
    if id == 13 {
        // The fallback cannot help: the call's own error goes back.
        return Err(cause.into_call_error());
    }
    Ok(id + 1000)
}

#[tokio::test]
async fn a_call_error_function_gets_the_body_error_type_in_its_cause() {
    assert_eq!(primary(1).await.unwrap(), 1);
    assert_eq!(primary(0).await.unwrap(), 1000);
    // Open now: the refusal comes back as `CallError::Rejected` when the fallback gives up.
    let refused = primary(13).await.unwrap_err();
    assert!(refused.is_rejected(), "{refused:?}");
}

#[circuit_breaker(name = "cause-keyed", failure_threshold = 100, key = model.to_string(),
                  fallback_with_cause = keyed_fallback)]
async fn keyed(model: &str, prompt: &str) -> Result<String, LlmError> {
    Ok(format!("{model}: {prompt}"))
}

async fn keyed_fallback(
    _model: &str,
    _prompt: &str,
    cause: FallbackCause<LlmError>,
) -> Result<String, LlmError> {
    Ok(answer(&cause))
}

#[tokio::test]
async fn a_keyed_cause_names_the_key_and_the_refusal_names_the_breaker() {
    assert_eq!(keyed("gpt-4o", "hi").await.unwrap(), "gpt-4o: hi");
    let family = registry().family("cause-keyed").unwrap();
    family.get("gpt-4o").unwrap().force_open();
    let seen = keyed("gpt-4o", "hi").await.unwrap();
    assert!(
        seen.contains("reason: Refusal")
            && seen.contains("refused_by: Some(\"cause-keyed\")")
            && seen.contains("key: Some(\"gpt-4o\")"),
        "{seen}"
    );
    // Forced open: no end but a reset, so no time to wait.
    assert!(seen.contains("retry_after: None"), "{seen}");
    assert_eq!(keyed("gpt-4o-mini", "hi").await.unwrap(), "gpt-4o-mini: hi");
}

#[circuit_breaker(name = "cause-stream", failure_threshold = 100,
                  throttle_if = is_rate_limited, retry_after = hint,
                  fallback_with_cause = stream_fallback, fallback_on = "failure")]
async fn tokens(
    open: Result<(), LlmError>,
) -> Result<impl Stream<Item = Result<String, LlmError>>, LlmError> {
    open.clone()?;
    Ok(stream::iter(vec![Ok("body".to_owned())]))
}

async fn stream_fallback(
    _open: Result<(), LlmError>,
    cause: FallbackCause<LlmError>,
) -> Result<impl Stream<Item = Result<String, LlmError>>, LlmError> {
    Ok(stream::iter(vec![
        Ok(format!("{}", cause.reason())),
        Ok(format!("{:?}", cause.retry_after())),
    ]))
}

#[tokio::test]
async fn a_streamed_function_gets_the_cause_when_its_stream_could_not_be_opened() {
    let items: Vec<_> = tokens(Ok(())).await.unwrap().collect().await;
    assert_eq!(items, [Ok("body".to_owned())]);
    let items: Vec<_> = tokens(Err(LlmError::RateLimited(Some(Duration::from_secs(9)))))
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(items, [Ok("throttled".to_owned()), Ok("Some(9s)".to_owned())]);
    let items: Vec<_> = tokens(Ok(())).await.unwrap().collect().await;
    assert_eq!(
        items[0],
        Ok("refusal".to_owned()),
        "open for the rate limit's 9 s"
    );
}

// ---------------------------------------------------------------------------------------------
// A failover chain: openai (keyed) -> anthropic (a plain `fallback`) -> mistral -> a last word.

#[circuit_breaker(name = "chain-openai", preset = "llm", key = model, max_retry_after = "1h",
                  throttle_if = is_rate_limited, retry_after = hint,
                  fallback = chain_anthropic, fallback_on = "failure")]
async fn chain_openai(model: &str, prompt: &str) -> Result<String, LlmError> {
    let _ = prompt;
    Ok(format!("openai {model}"))
}

#[circuit_breaker(name = "chain-anthropic", preset = "llm", max_retry_after = "1h",
                  throttle_if = is_rate_limited, retry_after = hint,
                  fallback_with_cause = chain_mistral, fallback_on = "failure")]
async fn chain_anthropic(model: &str, prompt: &str) -> Result<String, LlmError> {
    let _ = (model, prompt);
    match ANTHROPIC_ANSWERS.fetch_add(1, Ordering::SeqCst) {
        0 => Err(LlmError::RateLimited(Some(Duration::from_secs(600)))),
        _ => Err(LlmError::Server(503)),
    }
}

static ANTHROPIC_ANSWERS: AtomicU32 = AtomicU32::new(0);

#[circuit_breaker(name = "chain-mistral", preset = "llm", max_retry_after = "1h",
                  fallback_with_cause = chain_last_word, fallback_on = "failure")]
async fn chain_mistral(
    model: &str,
    prompt: &str,
    cause: FallbackCause<LlmError>,
) -> Result<String, LlmError> {
    let _ = (model, prompt);
    Ok(format!("mistral, after anthropic's {}", cause.reason()))
}

async fn chain_last_word(
    _model: &str,
    _prompt: &str,
    _anthropic: FallbackCause<LlmError>,
    mistral: FallbackCause<LlmError>,
) -> Result<String, LlmError> {
    Err(LlmError::Breaker(format!(
        "every provider refused; Retry-After: {}",
        mistral.retry_after().map_or(0, |d| d.as_secs_f64().ceil() as u64)
    )))
}

#[tokio::test]
async fn the_last_fallback_of_a_chain_sees_the_smallest_time_left() {
    assert_eq!(chain_openai("gpt-4o", "hi").await.unwrap(), "openai gpt-4o");
    // anthropic's first answer is a 429 (10 min): it fails over to mistral.
    registry()
        .family("chain-openai")
        .unwrap()
        .get("gpt-4o")
        .unwrap()
        .open_for(Duration::from_secs(300));
    assert_eq!(
        chain_openai("gpt-4o", "hi").await.unwrap(),
        "mistral, after anthropic's throttled"
    );

    // Every member refuses: openai's key for 5 min, anthropic for the rest of its 10,
    // mistral for 20. The last word is the soonest: openai's 5 minutes.
    open("chain-mistral", Duration::from_secs(1200));
    let refused = chain_openai("gpt-4o", "hi").await.unwrap_err();
    assert_eq!(
        refused,
        LlmError::Breaker("every provider refused; Retry-After: 300".to_owned())
    );

    // Only a member that gave a time counts: with openai's key closed and anthropic failing
    // (a 503 gives no time), the soonest is mistral's.
    registry()
        .family("chain-openai")
        .unwrap()
        .get("gpt-4o")
        .unwrap()
        .reset();
    registry()
        .family("chain-openai")
        .unwrap()
        .get("gpt-4o")
        .unwrap()
        .force_open();
    registry().get("chain-anthropic").unwrap().reset();
    let refused = chain_openai("gpt-4o", "hi").await.unwrap_err();
    assert_eq!(
        refused,
        LlmError::Breaker("every provider refused; Retry-After: 1200".to_owned())
    );
}

// ---------------------------------------------------------------------------------------------
// Open durations by failure type (the guide's recipe): the hint `retry_after` reads from a
// failure opens the circuit for that long, and `UNTIL_RESET` until an operator resets it.

#[derive(Debug, Clone, PartialEq)]
struct ApiError {
    status: u16,
    body: String,
    /// The `Retry-After` header, when the provider sent one.
    retry_after: Option<Duration>,
}

impl From<BreakerError> for ApiError {
    fn from(e: BreakerError) -> Self {
        ApiError {
            status: 503,
            body: e.to_string(),
            retry_after: e.retry_after(),
        }
    }
}

const HOUR: Duration = Duration::from_secs(3600);

fn quota_exhausted(e: &ApiError) -> bool {
    e.status == 402 || e.body.contains("insufficient_quota")
}

/// A rate limit: a 429 (Gemini's `RESOURCE_EXHAUSTED` too), but not a spent quota, which
/// does not come back in seconds.
fn rate_limited(e: &ApiError) -> bool {
    e.status == 429 && !quota_exhausted(e)
}

/// The caller's own mistakes: another provider would refuse them too.
fn callers_mistake(e: &ApiError) -> bool {
    matches!(e.status, 400 | 404 | 413 | 422)
}

/// How long the provider stays useless after `e`.
fn open_for(e: &ApiError) -> Option<Duration> {
    match e.status {
        _ if quota_exhausted(e) => Some(HOUR),
        401 => Some(cb_runtime::UNTIL_RESET),
        _ => e.retry_after.or_else(|| gemini_retry_delay(&e.body)),
    }
}

/// Gemini puts its hint in the error body: `"retryDelay": "37s"`.
fn gemini_retry_delay(body: &str) -> Option<Duration> {
    let after = body.split("\"retryDelay\"").nth(1)?;
    let value = after
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    let seconds: f64 = value.split('s').next()?.parse().ok()?;
    Duration::try_from_secs_f64(seconds).ok()
}

#[circuit_breaker(name = "recipe-openai", preset = "llm", key = model, max_retry_after = "1h",
                  throttle_if = rate_limited, ignore_if = callers_mistake, retry_after = open_for,
                  fallback_with_cause = recipe_failover, fallback_on = "failure")]
async fn recipe(model: &str, answer: &Result<String, ApiError>) -> Result<String, ApiError> {
    answer.clone()
}

async fn recipe_failover(
    _model: &str,
    _answer: &Result<String, ApiError>,
    cause: FallbackCause<ApiError>,
) -> Result<String, ApiError> {
    Ok(format!(
        "anthropic, after {} ({:?})",
        cause.reason(),
        cause.retry_after()
    ))
}

fn status(status: u16, body: &str) -> Result<String, ApiError> {
    Err(ApiError {
        status,
        body: body.to_owned(),
        retry_after: None,
    })
}

#[tokio::test]
async fn open_durations_follow_the_failure_type() {
    let family = || registry().family("recipe-openai").unwrap();
    let open_remaining = |key: &str| family().get(key).unwrap().open_remaining();

    // A spent quota (OpenAI's 429 `insufficient_quota`, or a 402): fails over at once, and the
    // key's circuit opens for an hour.
    let quota = status(429, r#"{"error": {"code": "insufficient_quota"}}"#);
    assert_eq!(
        recipe("gpt-4o", &quota).await.unwrap(),
        "anthropic, after failure (None)"
    );
    assert!(open_remaining("gpt-4o").unwrap() > HOUR - Duration::from_secs(60));
    assert!(recipe("gpt-4o", &Ok("hi".into()))
        .await
        .unwrap()
        .starts_with("anthropic, after refusal"));
    assert_eq!(
        recipe("o3", &status(402, "payment required")).await.unwrap(),
        "anthropic, after failure (None)"
    );
    assert!(open_remaining("o3").unwrap() > HOUR - Duration::from_secs(60));

    // A revoked key (401): open until someone resets it.
    assert_eq!(
        recipe("gpt-4.1", &status(401, "invalid_api_key")).await.unwrap(),
        "anthropic, after failure (None)"
    );
    let revoked = family().get("gpt-4.1").unwrap();
    assert_eq!(revoked.state(), State::ForcedOpen);
    revoked.reset();
    assert_eq!(recipe("gpt-4.1", &Ok("back".into())).await.unwrap(), "back");

    // An overload (503, Anthropic's 529): an ordinary failure, one of `failure_threshold`.
    for code in [503, 529] {
        assert_eq!(
            recipe("gpt-4o-mini", &status(code, "overloaded")).await.unwrap(),
            "anthropic, after failure (None)"
        );
    }
    let overloaded = family().get("gpt-4o-mini").unwrap();
    assert_eq!(
        (overloaded.state(), overloaded.stats().failures),
        (State::Closed, 2)
    );

    // Gemini's 429 with `retryDelay` in its body: a rate limit for that long.
    let gemini = status(
        429,
        r#"{"error": {"status": "RESOURCE_EXHAUSTED", "details": [{"retryDelay": "37s"}]}}"#,
    );
    assert_eq!(
        recipe("gemini-2.5-pro", &gemini).await.unwrap(),
        "anthropic, after throttled (Some(37s))"
    );
    let throttled = family().get("gemini-2.5-pro").unwrap();
    assert!(throttled.is_throttled());
    assert!(open_remaining("gemini-2.5-pro").unwrap() <= Duration::from_secs(37));

    // The caller's own mistake goes back to the caller, and opens nothing.
    assert_eq!(
        recipe("gpt-4o-mini", &status(400, "context_length_exceeded")).await,
        status(400, "context_length_exceeded")
    );
    assert_eq!(overloaded.stats().ignored, 1);
}

#[test]
fn gemini_retry_delay_is_read_from_the_body() {
    assert_eq!(
        gemini_retry_delay(r#"{"retryDelay": "37s"}"#),
        Some(Duration::from_secs(37))
    );
    assert_eq!(
        gemini_retry_delay(r#"{"retryDelay":"1.5s"}"#),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(gemini_retry_delay(r#"{"retryDelay": "soon"}"#), None);
    assert_eq!(gemini_retry_delay("overloaded"), None);
}
