//! An LLM gateway protected by `#[circuit_breaker]`, against a real HTTP server.
//!
//! Run with `cargo run --example llm_gateway`. It finishes by itself in about
//! eight seconds and needs no network beyond 127.0.0.1.
//!
//! * A fake LLM completion API (axum) listens on a random 127.0.0.1 port. It
//!   answers in ~40 ms, then returns 503s, then hangs, then recovers.
//! * The gateway's client calls it over HTTP with reqwest. Its `complete`
//!   method carries `#[circuit_breaker(preset = "llm", call_timeout = ...,
//!   fallback = ...)]`: a hung call is abandoned at the timeout, three failures
//!   open the circuit, and while it is open callers get a canned reply at once.
//! * The admin API (`cb_runtime::admin`) is served on another random port; the
//!   demo reads `/health` and `/metrics` from it and uses the bearer token to
//!   force the circuit open and reset it.
//!
//! The timeline shows each request's outcome and latency and each state
//! transition; the summary compares the fail-fast latency while open with the
//! timeouts callers sat through before the circuit opened.
//!
//! Then the gateway **streams** (`Result<impl Stream<...>, E>` under the same
//! attribute, `cb_runtime::stream`): the provider serves tokens as server-sent
//! events through axum's `Sse`, and the gateway reads them over HTTP. The
//! timeline shows each stream's time to first token (TTFT). A slow first token
//! under the timeout is counted slow; a stream that stalls mid-answer and one
//! whose first token never comes in time are both timeouts, and open the
//! circuit; while it is open, callers get a canned stream at once; after the
//! provider recovers, probes close it. The example exits non-zero if the
//! breaker does not react so, since CI runs it.
//!
//! Last, the gateway **routes by model** (`key = model`, `cb_runtime::Family`):
//! one annotated `complete(model, prompt)` gets one breaker per model. When
//! `gpt-4o` has an outage, its breaker opens and its callers get the fallback,
//! while `gpt-4o-mini` and `o3-mini` go on being served by the model. The
//! admin API lists the family with its keys, and `/metrics` has a `key` label.
//!
//! And the gateway **fails over by cause** (`fallback_with_cause`,
//! `fallback_on = "error"`): its fallback is told why it runs
//! (`cb_runtime::FallbackCause`). A 429 from `gpt-4o` is a rate limit, not an
//! outage: the call fails over to another provider at once, told the
//! provider's `Retry-After`, and the next call is refused for that long and
//! fails over too. A prompt longer than `gpt-4o-mini`'s context window (a 400
//! the breaker ignores) is routed to a model with a bigger one.
//!
//! Finally, **recovery** (`llm_gateway/recovery.rs`): a five-minute outage on a paused clock,
//! with and without a health check (`health_check`) and a ramp after closing (`ramp_up`):
//! how long after the provider's return the breaker closes, how many users were the probes
//! that failed, and the burst the provider takes when the circuit closes.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Query;
use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cb_runtime::admin::{router as admin_router, AdminAuth};
use cb_runtime::{circuit_breaker, registry, BreakerError, FallbackCause, FallbackReason, State};
use eventsource_stream::Eventsource;
use futures::stream::{self, Stream, StreamExt};
use serde::{Deserialize, Serialize};

#[path = "llm_gateway/recovery.rs"]
mod recovery;

/// The breaker's name, in the registry and the admin API.
const BREAKER: &str = "llm-gateway";
/// The streaming client's breaker.
const STREAM_BREAKER: &str = "llm-gateway-stream";
/// The call timeout and open duration given to the attribute below.
const CALL_TIMEOUT: Duration = Duration::from_millis(500);
const OPEN_DURATION: Duration = Duration::from_millis(1500);
/// The time between two requests while the provider is down.
const PACE: Duration = Duration::from_millis(250);
/// The admin API's token in this demo (take it from a secret store in real life).
const ADMIN_TOKEN: &str = "demo-admin-token";

// ---- the fake LLM provider --------------------------------------------------

/// What the fake provider does with the next request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    Healthy = 0,
    Failing = 1,
    Hanging = 2,
}

#[derive(Clone, Default)]
struct Provider {
    mode: Arc<AtomicU8>,
    served: Arc<AtomicU32>,
}

impl Provider {
    fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    fn mode(&self) -> Mode {
        match self.mode.load(Ordering::SeqCst) {
            0 => Mode::Healthy,
            1 => Mode::Failing,
            _ => Mode::Hanging,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct CompletionRequest {
    model: String,
    prompt: String,
}

#[derive(Serialize, Deserialize)]
struct CompletionResponse {
    id: u32,
    text: String,
}

/// `POST /v1/completions`, the way a provider behaves on a bad day.
async fn completions(
    AxumState(provider): AxumState<Provider>,
    Json(req): Json<CompletionRequest>,
) -> Response {
    let id = provider.served.fetch_add(1, Ordering::SeqCst) + 1;
    match provider.mode() {
        Mode::Healthy => {
            tokio::time::sleep(Duration::from_millis(40)).await; // "thinking"
            let text = format!(
                "{} says: {} has {} letters",
                req.model,
                req.prompt,
                req.prompt.len()
            );
            Json(CompletionResponse { id, text }).into_response()
        }
        Mode::Failing => (StatusCode::SERVICE_UNAVAILABLE, "overloaded, try later").into_response(),
        Mode::Hanging => {
            // Accepts the request and never answers, like a provider stuck on a GPU.
            std::future::pending::<()>().await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
    }
}

/// `GET /v1/stream?prompt=..&mode=..`: the answer as server-sent events, one
/// token each, the way a provider streams on a good day (`tokens`), with a
/// slow first token (`slow-first`, `very-slow-first`), or stalling halfway
/// (`stall`).
#[derive(Deserialize)]
struct StreamQuery {
    prompt: String,
    mode: String,
}

type Events = std::pin::Pin<Box<dyn Stream<Item = Result<Event, std::convert::Infallible>> + Send>>;

async fn stream_completion(Query(q): Query<StreamQuery>) -> Sse<Events> {
    let words: Vec<String> = format!("fake-gpt streams an answer to {}", q.prompt)
        .split(' ')
        .map(|w| format!("{w} "))
        .collect();
    let first_token_after = match q.mode.as_str() {
        "slow-first" => Duration::from_millis(300),
        "very-slow-first" => Duration::from_secs(30),
        _ => Duration::from_millis(20),
    };
    let stall_after = if q.mode == "stall" { 3 } else { usize::MAX };
    let tokens = stream::iter(words.into_iter().enumerate()).then(move |(i, word)| async move {
        let wait = if i == 0 {
            first_token_after
        } else {
            Duration::from_millis(15)
        };
        tokio::time::sleep(wait).await;
        if i >= stall_after {
            // Connection open, headers sent, tokens so far delivered: then nothing.
            std::future::pending::<()>().await;
        }
        Ok(Event::default().data(word))
    });
    Sse::new(Box::pin(tokens) as Events)
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

// ---- the gateway's client ---------------------------------------------------

#[derive(Debug)]
enum LlmError {
    /// The provider answered with an error status.
    Status(u16),
    /// The request did not get through (connection refused, reset, ...).
    Transport(String),
    /// The breaker refused the call or abandoned it at `call_timeout`.
    Breaker(BreakerError),
    /// HTTP 429, with the provider's `Retry-After` when it sent one.
    RateLimited(Option<Duration>),
    /// HTTP 400 `context_length_exceeded`: the prompt is longer than the model's window.
    ContextTooLong,
}

impl From<BreakerError> for LlmError {
    fn from(e: BreakerError) -> Self {
        LlmError::Breaker(e)
    }
}

impl fmt::Display for LlmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LlmError::Status(code) => write!(f, "provider answered {code}"),
            LlmError::Transport(e) => write!(f, "transport error: {e}"),
            LlmError::Breaker(e) => write!(f, "{e}"),
            LlmError::RateLimited(_) => write!(f, "provider answered 429"),
            LlmError::ContextTooLong => write!(f, "the prompt is longer than the model's context window"),
        }
    }
}

/// A 4xx other than 429 is the caller's fault (a prompt too long, a bad key):
/// it says nothing about the provider's health.
fn is_outage(e: &LlmError) -> bool {
    !matches!(e, LlmError::Status(code) if (400..500).contains(code) && *code != 429)
}

/// Who wrote the reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Model,
    Fallback,
}

struct Completion {
    text: String,
    source: Source,
}

struct LlmClient {
    http: reqwest::Client,
    url: String,
}

impl LlmClient {
    /// One line protects the call: the `llm` preset (3 timeouts in a row, or
    /// 3 errors once its window agrees, open the circuit; 2 probes close it),
    /// with the timeout and open
    /// duration shortened so the demo fits in a few seconds.
    #[circuit_breaker(
        name = "llm-gateway",
        preset = "llm",
        call_timeout = "500ms",
        open_duration = "1500ms",
        failure_if = is_outage,
        fallback = busy_reply
    )]
    async fn complete(&self, prompt: &str) -> Result<Completion, LlmError> {
        let request = CompletionRequest {
            model: "fake-gpt".into(),
            prompt: prompt.into(),
        };
        let reply = self
            .http
            .post(&self.url)
            .json(&request)
            .send()
            .await
            .map_err(|e| LlmError::Transport(e.to_string()))?;
        if !reply.status().is_success() {
            return Err(LlmError::Status(reply.status().as_u16()));
        }
        let body: CompletionResponse = reply
            .json()
            .await
            .map_err(|e| LlmError::Transport(e.to_string()))?;
        Ok(Completion {
            text: body.text,
            source: Source::Model,
        })
    }

    /// What callers get while the circuit is open: at once, without touching
    /// the network.
    async fn busy_reply(&self, _prompt: &str) -> Result<Completion, LlmError> {
        Ok(Completion {
            text: "The assistant is busy; please try again in a minute.".into(),
            source: Source::Fallback,
        })
    }
}

/// The streaming client: the same attribute on a function returning a stream.
/// The breaker judges the stream, not the response headers: time to first
/// token is the slow-call signal, `call_timeout` bounds the wait for the first
/// token and between tokens, and a stream cut or stalled halfway is a failure.
struct StreamClient {
    http: reqwest::Client,
    url: String,
}

type Tokens = std::pin::Pin<Box<dyn Stream<Item = Result<String, LlmError>> + Send>>;

impl StreamClient {
    #[circuit_breaker(
        name = "llm-gateway-stream",
        preset = "llm",
        call_timeout = "400ms",
        slow_call_duration = "200ms",
        failure_threshold = 2,
        // Any 2 errors in a row open it, even after a success: the demo trips
        // at once (the preset alone waits for its window to agree, issue 39).
        streak_failure_rate = 0,
        open_duration = "500ms",
        fallback = busy_stream
    )]
    async fn stream(
        &self,
        prompt: &str,
        mode: &str,
    ) -> Result<impl Stream<Item = Result<String, LlmError>>, LlmError> {
        let response = self
            .http
            .get(&self.url)
            .query(&[("prompt", prompt), ("mode", mode)])
            .send()
            .await
            .map_err(|e| LlmError::Transport(e.to_string()))?;
        if !response.status().is_success() {
            return Err(LlmError::Status(response.status().as_u16()));
        }
        Ok(sse_data(response))
    }

    /// While the circuit is open: a canned answer, streamed at once.
    async fn busy_stream(
        &self,
        _prompt: &str,
        _mode: &str,
    ) -> Result<impl Stream<Item = Result<String, LlmError>>, LlmError> {
        Ok(stream::iter(
            ["The assistant is busy; ", "please try again."].map(|t| Ok(t.to_string())),
        ))
    }
}

/// The `data` of each server-sent event of `response`, read over HTTP as it
/// arrives; a broken connection is an `Err` item.
fn sse_data(response: reqwest::Response) -> Tokens {
    let events = response.bytes_stream().eventsource().map(|event| {
        event
            .map(|event| event.data)
            .map_err(|e| LlmError::Transport(e.to_string()))
    });
    Box::pin(events)
}

/// How one streamed request went.
#[derive(Debug, Default)]
struct Streamed {
    tokens: usize,
    time_to_first_token: Option<Duration>,
    timed_out: bool,
    refused: bool,
    error: Option<String>,
}

/// Streams one answer through the gateway and prints it as it comes.
async fn ask_stream(t: &Timeline, client: &StreamClient, mode: &str) -> Streamed {
    let started = Instant::now();
    let mut out = Streamed::default();
    let breaker = registry().get(STREAM_BREAKER);
    let rejected_before = breaker.as_ref().map_or(0, |b| b.stats().rejected);
    match client.stream("streams", mode).await {
        Err(e) => {
            out.timed_out = matches!(&e, LlmError::Breaker(b) if b.is_timeout());
            out.error = Some(e.to_string());
        }
        Ok(tokens) => {
            let mut tokens = std::pin::pin!(tokens);
            let mut text = String::new();
            while let Some(token) = tokens.next().await {
                match token {
                    Ok(token) => {
                        out.time_to_first_token.get_or_insert(started.elapsed());
                        out.tokens += 1;
                        text.push_str(&token);
                    }
                    Err(e) => {
                        out.timed_out = matches!(&e, LlmError::Breaker(b) if b.is_timeout());
                        out.error = Some(e.to_string());
                    }
                }
            }
            if !text.is_empty() {
                println!("{}      {mode:<16} \"{}\"", t.at(), text.trim_end());
            }
        }
    }
    let rejected_after = registry().get(STREAM_BREAKER).map_or(0, |b| b.stats().rejected);
    out.refused = rejected_after > rejected_before;
    let ttft = out
        .time_to_first_token
        .map_or("no token".to_string(), |d| format!("TTFT {}", latency(d)));
    let verdict = if out.refused {
        "fallback, circuit open".to_string()
    } else if out.timed_out {
        format!(
            "TIMEOUT after {} tokens: {}",
            out.tokens,
            out.error.as_deref().unwrap_or("")
        )
    } else if let Some(e) = &out.error {
        format!("FAILED: {e}")
    } else {
        format!("{} tokens in {}", out.tokens, latency(started.elapsed()))
    };
    println!("{}  >> {mode:<16} {ttft:>16}  {verdict}", t.at());
    out
}

/// The streaming half of the demo; `Err` says what the breaker failed to do.
async fn streaming_demo(t: &mut Timeline, client: &StreamClient) -> Result<(), String> {
    println!("\n== streamed calls: breaker `{STREAM_BREAKER}` (call_timeout 400ms, slow_call_duration 200ms, 2 failures open it)\n");
    t.note("the provider streams tokens");
    let ok = ask_stream(t, client, "tokens").await;
    let breaker = registry()
        .get(STREAM_BREAKER)
        .ok_or("the attribute made no breaker")?;
    let opened = Arc::new(AtomicU32::new(0));
    let closed = Arc::new(AtomicU32::new(0));
    {
        let (opened, closed, start) = (Arc::clone(&opened), Arc::clone(&closed), t.start);
        breaker.on_transition(move |tr| {
            println!(
                "{:>6.2}s  ** breaker {} -> {} ({})",
                start.elapsed().as_secs_f64(),
                tr.from,
                tr.to,
                tr.reason
            );
            match tr.to {
                State::Open => opened.fetch_add(1, Ordering::SeqCst),
                State::Closed => closed.fetch_add(1, Ordering::SeqCst),
                _ => 0,
            };
        });
    }
    if ok.tokens == 0 || ok.error.is_some() {
        return Err(format!("a healthy stream did not come through: {ok:?}"));
    }

    t.note("a slow first token (300 ms), under the timeout: answered, and counted slow");
    let slow = ask_stream(t, client, "slow-first").await;
    if slow.error.is_some() || breaker.stats().slow_calls != 1 {
        return Err(format!(
            "the slow first token was not counted slow: {slow:?}, {:?}",
            breaker.stats()
        ));
    }

    t.note("the provider stalls mid-stream: tokens, then nothing");
    let stall = ask_stream(t, client, "stall").await;
    if !(stall.timed_out && stall.tokens > 0) {
        return Err(format!("the stall was not caught mid-stream: {stall:?}"));
    }

    t.note("the first token takes 30 s: abandoned at call_timeout, before any token");
    let very_slow = ask_stream(t, client, "very-slow-first").await;
    if !(very_slow.timed_out && very_slow.tokens == 0) {
        return Err(format!("the slow first token was not caught: {very_slow:?}"));
    }
    if breaker.state() != State::Open || opened.load(Ordering::SeqCst) != 1 {
        return Err(format!(
            "two stream timeouts did not open the circuit: {:?}",
            breaker.stats()
        ));
    }

    t.note("the circuit is open: a canned stream at once, the provider is not called");
    let refused = ask_stream(t, client, "tokens").await;
    if !refused.refused {
        return Err(format!("the open circuit let a stream through: {refused:?}"));
    }

    t.note("the provider recovers; after the open duration, probes close the circuit");
    tokio::time::sleep(Duration::from_millis(600)).await;
    for _ in 0..2 {
        ask_stream(t, client, "tokens").await;
    }
    if breaker.state() != State::Closed || closed.load(Ordering::SeqCst) != 1 {
        return Err(format!(
            "the circuit did not close after the provider recovered: {:?}",
            breaker.stats()
        ));
    }
    let s = breaker.stats();
    t.note(&format!(
        "stream breaker stats: {} successes, {} timeouts, {} rejected; {} slow calls (time to first token over 200 ms, timeouts included)",
        s.successes, s.timeouts, s.rejected, s.slow_calls
    ));
    Ok(())
}

// ---- failover by cause: a 429 and a too-long prompt -----------------------

/// The family of the failover-by-cause breakers.
const ROUTED_FAMILY: &str = "llm-gateway-routed";
/// `gpt-4o-mini`'s context window in this demo, in bytes of prompt.
const SMALL_CONTEXT: usize = 32;

/// `POST /v1/routed/completions`: `gpt-4o` is rate limited (429, `Retry-After: 2`) while
/// `throttled` is set; `gpt-4o-mini` refuses prompts over its small context window (400);
/// every other model answers.
async fn routed_completions(
    AxumState(throttled): AxumState<Arc<std::sync::atomic::AtomicBool>>,
    Json(req): Json<CompletionRequest>,
) -> Response {
    if req.model == "gpt-4o" && throttled.load(Ordering::SeqCst) {
        let headers = [("retry-after", "2")];
        return (StatusCode::TOO_MANY_REQUESTS, headers, "rate limit reached").into_response();
    }
    if req.model == "gpt-4o-mini" && req.prompt.len() > SMALL_CONTEXT {
        let body = r#"{"error": {"code": "context_length_exceeded"}}"#;
        return (StatusCode::BAD_REQUEST, body).into_response();
    }
    let text = format!("{} answers {:?}", req.model, req.prompt);
    Json(CompletionResponse { id: 0, text }).into_response()
}

fn is_rate_limited(e: &LlmError) -> bool {
    matches!(e, LlmError::RateLimited(_))
}

fn retry_after(e: &LlmError) -> Option<Duration> {
    match e {
        LlmError::RateLimited(after) => *after,
        _ => None,
    }
}

/// The caller's own mistakes say nothing of the provider's health.
fn is_callers_error(e: &LlmError) -> bool {
    matches!(e, LlmError::ContextTooLong) || !is_outage(e)
}

/// A gateway whose fallback writes its failover policy, told why it runs.
struct FailoverRouter {
    http: reqwest::Client,
    url: String,
}

impl FailoverRouter {
    #[circuit_breaker(
        name = "llm-gateway-routed",
        preset = "llm",
        key = model,
        throttle_if = is_rate_limited,
        retry_after = retry_after,
        ignore_if = is_callers_error,
        fallback_with_cause = reroute,
        fallback_on = "error"
    )]
    async fn complete(&self, model: &str, prompt: &str) -> Result<Completion, LlmError> {
        self.post(model, prompt).await
    }

    /// The failover policy: a rate limit or an outage goes to another provider, a prompt too
    /// long for the model to a model with a bigger context window; any other caller's error
    /// goes back to the caller.
    async fn reroute(
        &self,
        model: &str,
        prompt: &str,
        cause: FallbackCause<LlmError>,
    ) -> Result<Completion, LlmError> {
        let (to, why) = match (cause.reason(), cause.error()) {
            (FallbackReason::Error, Some(LlmError::ContextTooLong)) => {
                ("gpt-4.1", "context window exceeded".to_owned())
            }
            (FallbackReason::Error, _) => return Err(cause.into_error().unwrap_or(LlmError::Status(400))),
            (reason, _) => (
                "claude-sonnet-4",
                match cause.retry_after() {
                    Some(after) => format!("{reason}, retry after {:.1}s", after.as_secs_f64()),
                    None => reason.to_string(),
                },
            ),
        };
        let reply = self.post(to, prompt).await?;
        Ok(Completion {
            text: format!("{} [{model}: {why} -> {to}]", reply.text),
            source: Source::Fallback,
        })
    }

    /// One completion over HTTP: a 429 with its `Retry-After`, a 400
    /// `context_length_exceeded`, any other error status.
    async fn post(&self, model: &str, prompt: &str) -> Result<Completion, LlmError> {
        let request = CompletionRequest {
            model: model.into(),
            prompt: prompt.into(),
        };
        let transport = |e: reqwest::Error| LlmError::Transport(e.to_string());
        let reply = self
            .http
            .post(&self.url)
            .json(&request)
            .send()
            .await
            .map_err(transport)?;
        let status = reply.status().as_u16();
        match status {
            200..=299 => {
                let body: CompletionResponse = reply.json().await.map_err(transport)?;
                Ok(Completion {
                    text: body.text,
                    source: Source::Model,
                })
            }
            429 => {
                let hint = reply
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()?.parse().ok());
                Err(LlmError::RateLimited(hint.map(Duration::from_secs)))
            }
            400 if reply
                .text()
                .await
                .is_ok_and(|b| b.contains("context_length_exceeded")) =>
            {
                Err(LlmError::ContextTooLong)
            }
            _ => Err(LlmError::Status(status)),
        }
    }
}

/// The failover-by-cause part of the demo; `Err` says what went wrong.
async fn failover_demo(
    t: &Timeline,
    router: &FailoverRouter,
    throttled: &std::sync::atomic::AtomicBool,
) -> Result<(), String> {
    println!(
        "\n== failover by cause: family `{ROUTED_FAMILY}` (fallback_with_cause = reroute, fallback_on = \"error\")\n"
    );
    let ask = |model: &'static str, prompt: &'static str| async move {
        let reply = router
            .complete(model, prompt)
            .await
            .map_err(|e| format!("{model}: the gateway returned an error: {e}"))?;
        t.note(&format!("{model} {prompt:?} -> {}", reply.text));
        Ok::<String, String>(reply.text)
    };
    let expect = |text: &str, what: &str| {
        if text.contains(what) {
            Ok(())
        } else {
            Err(format!("expected {what:?} in {text:?}"))
        }
    };
    expect(&ask("gpt-4o", "hello").await?, "gpt-4o answers")?;

    t.note("gpt-4o answers 429 (Retry-After: 2): a rate limit fails over at once, with the provider's hint");
    throttled.store(true, Ordering::SeqCst);
    expect(
        &ask("gpt-4o", "hello").await?,
        "[gpt-4o: throttled, retry after 2.0s -> claude-sonnet-4]",
    )?;
    expect(
        &ask("gpt-4o", "hello again").await?,
        "[gpt-4o: refusal, retry after",
    )?;
    throttled.store(false, Ordering::SeqCst);

    t.note(&format!(
        "gpt-4o-mini's context window is {SMALL_CONTEXT} bytes: a longer prompt goes to gpt-4.1"
    ));
    expect(&ask("gpt-4o-mini", "short").await?, "gpt-4o-mini answers")?;
    let long = "a prompt longer than gpt-4o-mini's context window";
    expect(
        &ask("gpt-4o-mini", long).await?,
        "[gpt-4o-mini: context window exceeded -> gpt-4.1]",
    )?;

    let family = registry()
        .family(ROUTED_FAMILY)
        .ok_or("the attribute made no family")?;
    let on = |key: &str, reason| family.get(key).map_or(0, |b| b.stats().fallbacks_on(reason));
    let counted = (
        on("gpt-4o", FallbackReason::Throttled),
        on("gpt-4o", FallbackReason::Refusal),
        on("gpt-4o-mini", FallbackReason::Error),
    );
    t.note(&format!(
        "fallbacks_on: gpt-4o throttled {}, refusal {}; gpt-4o-mini error {}",
        counted.0, counted.1, counted.2
    ));
    if counted != (1, 1, 1) {
        return Err(format!("unexpected fallback counts {counted:?}"));
    }
    Ok(())
}

// ---- routing by model: one breaker per model ------------------------------

/// The family of the per-model breakers.
const MODELS_FAMILY: &str = "llm-gateway-models";
const MODELS: [&str; 3] = ["gpt-4o", "gpt-4o-mini", "o3-mini"];

/// The models a second fake provider is having an outage of.
#[derive(Clone, Default)]
struct ModelOutages(Arc<std::sync::Mutex<Vec<String>>>);

impl ModelOutages {
    fn set_down(&self, model: &str, down: bool) {
        let mut list = self.0.lock().unwrap();
        list.retain(|m| m != model);
        if down {
            list.push(model.to_owned());
        }
    }

    fn is_down(&self, model: &str) -> bool {
        self.0.lock().unwrap().iter().any(|m| m == model)
    }
}

/// `POST /v1/models/completions`: 503 for a model that is down, an answer otherwise.
async fn model_completions(
    AxumState(outages): AxumState<ModelOutages>,
    Json(req): Json<CompletionRequest>,
) -> Response {
    if outages.is_down(&req.model) {
        return (StatusCode::SERVICE_UNAVAILABLE, "model overloaded").into_response();
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    let text = format!("{} answers {}", req.model, req.prompt);
    Json(CompletionResponse { id: 0, text }).into_response()
}

/// One function for every model; `key = model` gives each model its own breaker.
struct ModelRouter {
    http: reqwest::Client,
    url: String,
}

impl ModelRouter {
    #[circuit_breaker(
        name = "llm-gateway-models",
        preset = "llm",
        key = model,
        failure_threshold = 2,
        // Any 2 errors in a row open it, even after a success: the demo trips
        // at once (the preset alone waits for its window to agree, issue 39).
        streak_failure_rate = 0,
        open_duration = "400ms",
        failure_if = is_outage,
        fallback = unavailable
    )]
    async fn complete(&self, model: &str, prompt: &str) -> Result<Completion, LlmError> {
        let request = CompletionRequest {
            model: model.into(),
            prompt: prompt.into(),
        };
        let reply = self
            .http
            .post(&self.url)
            .json(&request)
            .send()
            .await
            .map_err(|e| LlmError::Transport(e.to_string()))?;
        if !reply.status().is_success() {
            return Err(LlmError::Status(reply.status().as_u16()));
        }
        let body: CompletionResponse = reply
            .json()
            .await
            .map_err(|e| LlmError::Transport(e.to_string()))?;
        Ok(Completion {
            text: body.text,
            source: Source::Model,
        })
    }

    /// While a model's circuit is open: a reply naming the model, at once.
    async fn unavailable(&self, model: &str, _prompt: &str) -> Result<Completion, LlmError> {
        Ok(Completion {
            text: format!("{model} is unavailable; try another model"),
            source: Source::Fallback,
        })
    }
}

/// One round: every model asked once; what each answered, in one line.
async fn models_round(t: &Timeline, router: &ModelRouter) -> Vec<(&'static str, Kind)> {
    let mut line = String::new();
    let mut out = Vec::new();
    for model in MODELS {
        let kind = match router.complete(model, "ping").await {
            Ok(c) if c.source == Source::Model => Kind::Answered,
            Ok(_) => Kind::FellBack,
            Err(_) => Kind::Failed,
        };
        let word = match kind {
            Kind::Answered => "ok",
            Kind::FellBack => "fallback",
            _ => "FAILED",
        };
        let state = registry()
            .family(MODELS_FAMILY)
            .and_then(|f| f.get(model))
            .map_or(State::Closed, |b| b.state());
        let state = format!("({state})");
        line.push_str(&format!("  {model}: {word:<8} {state:<11}"));
        out.push((model, kind));
    }
    println!("{}  >>{line}", t.at());
    out
}

/// The routing-by-model half of the demo; `Err` says what went wrong.
async fn models_demo(
    t: &Timeline,
    router: &ModelRouter,
    outages: &ModelOutages,
    http: &reqwest::Client,
    admin: &str,
) -> Result<(), String> {
    println!(
        "\n== routing by model: family `{MODELS_FAMILY}`, one breaker per model (key = model; 2 failures open a model)\n"
    );
    t.note("every model is healthy");
    models_round(t, router).await;
    let family = registry()
        .family(MODELS_FAMILY)
        .ok_or("the attribute made no family")?;
    for model in MODELS {
        let start = t.start;
        let breaker = family.get(model).ok_or("a model has no breaker")?;
        breaker.on_transition(move |tr| {
            println!(
                "{:>6.2}s  ** breaker {} key {}: {} -> {} ({})",
                start.elapsed().as_secs_f64(),
                tr.name,
                tr.key.as_deref().unwrap_or("-"),
                tr.from,
                tr.to,
                tr.reason
            );
        });
    }

    t.note("gpt-4o has an outage: its breaker opens, the other models are still served");
    outages.set_down("gpt-4o", true);
    let mut isolated = false;
    for _ in 0..4 {
        let round = models_round(t, router).await;
        let others_served = round
            .iter()
            .filter(|(m, _)| *m != "gpt-4o")
            .all(|(_, k)| *k == Kind::Answered);
        if !others_served {
            return Err(format!("gpt-4o's outage reached another model: {round:?}"));
        }
        isolated |= round.contains(&("gpt-4o", Kind::FellBack));
    }
    let gpt = family.get("gpt-4o").ok_or("no gpt-4o breaker")?;
    if !isolated || gpt.state() != State::Open {
        return Err(format!("gpt-4o's breaker did not open: {:?}", gpt.stats()));
    }
    let list: serde_json::Value = http
        .get(format!("{admin}/families/{MODELS_FAMILY}"))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let keys: Vec<String> = list["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|k| {
            format!(
                "{} {}",
                k["key"].as_str().unwrap_or("?"),
                k["state"].as_str().unwrap_or("?")
            )
        })
        .collect();
    t.note(&format!(
        "admin GET /families/{MODELS_FAMILY} -> {} of {} keys open: {}",
        list["open_keys"],
        keys.len(),
        keys.join(", ")
    ));
    let metrics = http
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("circuit_breaker_state{") && l.contains(MODELS_FAMILY))
    {
        t.note(&format!("GET /metrics: {line}"));
    }

    t.note("gpt-4o recovers; after its open duration a probe closes its breaker");
    outages.set_down("gpt-4o", false);
    tokio::time::sleep(Duration::from_millis(450)).await;
    for _ in 0..3 {
        models_round(t, router).await;
    }
    if gpt.state() != State::Closed {
        return Err(format!("gpt-4o's breaker did not close again: {:?}", gpt.stats()));
    }
    let served: Vec<String> = MODELS
        .iter()
        .filter_map(|m| family.get(m))
        .map(|b| {
            let s = b.stats();
            format!(
                "{} {} ok / {} fallback",
                b.key().unwrap_or("?"),
                s.successes,
                s.rejected
            )
        })
        .collect();
    t.note(&format!("per-model stats: {}", served.join("; ")));
    Ok(())
}

// ---- the timeline -----------------------------------------------------------

/// How one request ended, for the summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Answered,
    Failed,
    TimedOut,
    FellBack,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Answered => "answered by the model",
            Kind::Failed => "error from the provider",
            Kind::TimedOut => "timed out (call_timeout)",
            Kind::FellBack => "fallback, circuit open",
        }
    }
}

struct Timeline {
    start: Instant,
    requests: Vec<(Kind, Duration)>,
}

impl Timeline {
    fn at(&self) -> String {
        format!("{:>6.2}s", self.start.elapsed().as_secs_f64())
    }

    fn note(&self, what: &str) {
        println!("{}  -- {what}", self.at());
    }

    /// Sends one prompt through the gateway and prints what happened.
    async fn ask(&mut self, client: &LlmClient, prompt: &str) -> Kind {
        let started = Instant::now();
        let result = client.complete(prompt).await;
        let took = started.elapsed();
        let (kind, what) = match &result {
            Ok(c) if c.source == Source::Model => (Kind::Answered, format!("\"{}\"", c.text)),
            Ok(c) => (Kind::FellBack, format!("\"{}\"", c.text)),
            Err(LlmError::Breaker(e)) if e.is_timeout() => (Kind::TimedOut, e.to_string()),
            Err(e) => (Kind::Failed, e.to_string()),
        };
        let tag = match kind {
            Kind::Answered => "ok      ",
            Kind::Failed => "FAILED  ",
            Kind::TimedOut => "TIMEOUT ",
            Kind::FellBack => "fallback",
        };
        let n = self.requests.len() + 1;
        println!("{}  #{n:02} {tag} {:>9}  {what}", self.at(), latency(took));
        self.requests.push((kind, took));
        kind
    }
}

fn latency(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.3} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    }
}

fn state() -> State {
    registry().get(BREAKER).map_or(State::Closed, |b| b.state())
}

// ---- the demo ---------------------------------------------------------------

#[tokio::main]
async fn main() {
    let provider = Provider::default();
    let llm_addr = serve(
        Router::new()
            .route("/v1/completions", post(completions))
            .route("/v1/stream", get(stream_completion))
            .with_state(provider.clone()),
    )
    .await;
    let models = ModelOutages::default();
    let models_addr = serve(
        Router::new()
            .route("/v1/models/completions", post(model_completions))
            .with_state(models.clone()),
    )
    .await;
    let throttled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let routed_addr = serve(
        Router::new()
            .route("/v1/routed/completions", post(routed_completions))
            .with_state(Arc::clone(&throttled)),
    )
    .await;
    let admin_addr = serve(admin_router(registry(), AdminAuth::bearer(ADMIN_TOKEN))).await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("HTTP client");
    let client = LlmClient {
        http: http.clone(),
        url: format!("http://{llm_addr}/v1/completions"),
    };
    let admin = format!("http://{admin_addr}");

    println!("fake LLM provider: http://{llm_addr}/v1/completions");
    println!("admin API:         {admin}/circuit-breakers, /health, /metrics");
    println!(
        "breaker `{BREAKER}`: preset llm, call_timeout {CALL_TIMEOUT:?}, open_duration {OPEN_DURATION:?}\n"
    );

    let mut t = Timeline {
        start: Instant::now(),
        requests: Vec::new(),
    };

    // The breaker exists after the first call; from then on every transition
    // is printed the moment it happens, and counted.
    t.note("the provider is healthy");
    t.ask(&client, "hello").await;
    let opens = Arc::new(AtomicU32::new(0));
    let transitions = Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let (opens, transitions, start) = (Arc::clone(&opens), Arc::clone(&transitions), t.start);
        let breaker = registry().get(BREAKER).expect("created by the first call");
        breaker.on_transition(move |tr| {
            let open_for = tr.open_for.map(|d| format!(", for {d:?}")).unwrap_or_default();
            println!(
                "{:>6.2}s  ** breaker {} -> {} ({}{open_for})",
                start.elapsed().as_secs_f64(),
                tr.from,
                tr.to,
                tr.reason
            );
            if tr.to == State::Open {
                opens.fetch_add(1, Ordering::SeqCst);
            }
            transitions
                .lock()
                .unwrap()
                .push(format!("{}->{}", tr.from, tr.to));
        });
    }
    for prompt in ["circuit", "breaker", "tower"] {
        t.ask(&client, prompt).await;
    }

    t.note("the provider starts failing with 503s");
    provider.set(Mode::Failing);
    for prompt in ["axum", "tokio"] {
        t.ask(&client, prompt).await;
    }

    t.note("the provider hangs: calls are abandoned at call_timeout");
    provider.set(Mode::Hanging);
    t.ask(&client, "hyper").await;

    t.note("the circuit is open: callers get the fallback at once");
    for _ in 0..2 {
        t.ask(&client, "are you there?").await;
        tokio::time::sleep(PACE).await;
    }
    let health = http
        .get(format!("{admin}/health"))
        .send()
        .await
        .expect("GET /health");
    let status = health.status();
    let body: serde_json::Value = health.json().await.expect("health JSON");
    t.note(&format!(
        "admin GET /health -> {status}: status {}, {} unhealthy of {}",
        body["status"], body["summary"]["unhealthy"], body["summary"]["total"]
    ));

    // Keep asking every 250 ms. After the open duration a probe goes through;
    // the provider still hangs, so the probe times out and the circuit opens
    // again. Then the provider recovers, and the next probes close it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut recovered = false;
    let mut answered_after = 0;
    while Instant::now() < deadline && answered_after < 3 {
        let kind = t.ask(&client, "still down?").await;
        if !recovered && opens.load(Ordering::SeqCst) >= 2 {
            recovered = true;
            provider.set(Mode::Healthy);
            t.note("the provider recovers; the circuit waits out its open duration before probing");
        }
        if recovered && kind == Kind::Answered && state() == State::Closed {
            answered_after += 1;
        }
        tokio::time::sleep(PACE).await;
    }

    t.note("an operator uses the admin API");
    let action = |action: &str, token: Option<&str>| {
        let mut request = http.post(format!("{admin}/circuit-breakers/{BREAKER}/{action}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            request
                .send()
                .await
                .map_or(StatusCode::BAD_GATEWAY, |r| r.status())
        }
    };
    let status = action("force-open", None).await;
    t.note(&format!("POST force-open without a token -> {status}"));
    let status = action("force-open", Some(ADMIN_TOKEN)).await;
    t.note(&format!("POST force-open with the token -> {status}"));
    t.ask(&client, "maintenance?").await;
    let status = action("reset", Some(ADMIN_TOKEN)).await;
    t.note(&format!("POST reset with the token -> {status}"));
    t.ask(&client, "back?").await;

    let metrics = http
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    let metrics = metrics.text().await.expect("metrics text");
    for line in metrics
        .lines()
        .filter(|l| l.contains(BREAKER) && !l.starts_with('#'))
    {
        if line.starts_with("circuit_breaker_state{") || line.starts_with("circuit_breaker_calls_total") {
            t.note(&format!("GET /metrics: {line}"));
        }
    }

    let transitions = transitions.lock().unwrap().clone();
    summary(&t, &transitions);

    let streamer = StreamClient {
        http: http.clone(),
        url: format!("http://{llm_addr}/v1/stream"),
    };
    if let Err(what) = streaming_demo(&mut t, &streamer).await {
        eprintln!("streamed calls: {what}");
        std::process::exit(1);
    }

    let router = ModelRouter {
        http: http.clone(),
        url: format!("http://{models_addr}/v1/models/completions"),
    };
    if let Err(what) = models_demo(&t, &router, &models, &http, &admin).await {
        eprintln!("routing by model: {what}");
        std::process::exit(1);
    }

    let failover = FailoverRouter {
        http: http.clone(),
        url: format!("http://{routed_addr}/v1/routed/completions"),
    };
    if let Err(what) = failover_demo(&t, &failover, &throttled).await {
        eprintln!("failover by cause: {what}");
    }
    if let Err(what) = recovery_demo() {
        eprintln!("recovery: {what}");
        std::process::exit(1);
    }

    // A smoke test in CI: the breaker must have protected the calls.
    let fell_back = t.requests.iter().any(|(k, _)| *k == Kind::FellBack);
    let cycled = ["closed->open", "half_open->closed"]
        .iter()
        .all(|w| transitions.iter().any(|t| t == w));
    if !(fell_back && cycled) {
        eprintln!("the breaker did not open, fail fast and close again as expected");
        std::process::exit(1);
    }
}

/// The recovery scenario, on a runtime of its own with a paused clock.
fn recovery_demo() -> Result<(), String> {
    let figures = std::thread::spawn(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .map(|rt| rt.block_on(recovery::run()))
    })
    .join()
    .map_err(|_| "the scenario panicked".to_owned())?
    .map_err(|e| e.to_string())?;
    println!("\n== recovery: a 5-minute outage, 100 clients, the llm preset (paused clock) ==");
    println!(
        "{:<38} {:>18} {:>16} {:>14} {:>16}",
        "gateway", "recovery -> closed", "refused once up", "users probed", "peak req/s"
    );
    for f in &figures {
        println!(
            "{:<38} {:>16.1} s {:>16} {:>14} {:>16}",
            f.label,
            f.to_closed.as_secs_f64(),
            f.refused_after_recovery,
            f.failed_after_open,
            f.peak_after_close
        );
    }
    println!(
        "(users probed: user requests that failed at the provider after the breaker opened; \
         peak req/s: the provider's peak rate in 100 ms buckets in the first second after the close, \
         against 100 a second steady)"
    );
    let [probes, checked, ramped, both, long_open] = &figures[..] else {
        return Err("five gateways expected".to_owned());
    };
    let ok = checked.closed_by == cb_runtime::Reason::HealthCheck
        && checked.to_closed <= Duration::from_secs(10)
        && long_open.closed_by == cb_runtime::Reason::HealthCheck
        && long_open.to_closed <= Duration::from_secs(10)
        && long_open.failed_after_open == 0
        && checked.refused_after_recovery < probes.refused_after_recovery
        && probes.to_closed > checked.to_closed
        && ramped.peak_after_close < probes.peak_after_close
        && both.peak_after_close < checked.peak_after_close;
    if ok {
        Ok(())
    } else {
        Err("health checks and the ramp did not recover as expected".to_owned())
    }
}

fn summary(t: &Timeline, transitions: &[String]) {
    println!("\n== summary after {:.1} s", t.start.elapsed().as_secs_f64());
    let mut kinds: Vec<Kind> = t.requests.iter().map(|(k, _)| *k).collect();
    kinds.sort();
    kinds.dedup();
    for kind in kinds {
        let mut took: Vec<Duration> = t
            .requests
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, d)| *d)
            .collect();
        took.sort();
        let total: Duration = took.iter().sum();
        let n = took.len();
        println!(
            "  {:<26} {n:>3} requests   median {:>9}   max {:>9}   avg {:>9}",
            kind.label(),
            latency(took[n / 2]),
            latency(took[n - 1]),
            latency(total / n as u32),
        );
    }
    println!("  transitions: {}", transitions.join(", "));
    if let Some(b) = registry().get(BREAKER) {
        let s = b.stats();
        println!(
            "  breaker stats: {} successes, {} failures, {} timeouts, {} rejected (served by the fallback)",
            s.successes, s.failures, s.timeouts, s.rejected
        );
    }

    let worst = |kind| {
        t.requests
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, d)| *d)
            .max()
    };
    if let (Some(fast), Some(slow)) = (worst(Kind::FellBack), worst(Kind::TimedOut)) {
        let under = if fast < Duration::from_millis(1) {
            "under 1 ms"
        } else {
            "NOT under 1 ms (a busy machine?)"
        };
        println!(
            "\n  While the circuit was open, every caller had its answer in at most {} ({under}),\n  \
             instead of waiting {} for a timeout as callers did before it opened.",
            latency(fast),
            latency(slow)
        );
    }
}
