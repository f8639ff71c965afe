//! Rate limits are not outages: an OpenAI-style client whose 429s open the breaker for the
//! provider's own `Retry-After`, without counting a failure.
//!
//! The provider is simulated in-process: it throttles the first request, with the hint in its
//! headers or only in its error body, as OpenAI does ("... Please try again in 300ms."), then
//! answers. Run with `cargo run --example rate_limits`; it finishes in about a second.

use std::time::Duration;

use cb_runtime::{circuit_breaker, parse_duration, registry, BreakerError};

/// An OpenAI-style API error: the HTTP status, the rate-limit headers and the error body.
#[derive(Debug)]
pub enum OpenAiError {
    /// The breaker refused the call (open, or throttled: see `BreakerError::is_throttled`).
    Breaker(BreakerError),
    /// The API answered with an error.
    Api {
        /// The HTTP status: 429 for a rate limit or an exhausted quota.
        status: u16,
        /// The `retry-after-ms` header (OpenAI, Azure OpenAI), in milliseconds.
        retry_after_ms: Option<String>,
        /// The `retry-after` header, in seconds.
        retry_after: Option<String>,
        /// The error body's `error.code`: `rate_limit_exceeded`, `insufficient_quota`, ...
        code: Option<String>,
        /// The error body's `error.message`.
        message: String,
    },
}

impl From<BreakerError> for OpenAiError {
    fn from(e: BreakerError) -> Self {
        OpenAiError::Breaker(e)
    }
}

impl std::fmt::Display for OpenAiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenAiError::Breaker(e) => write!(f, "{e}"),
            OpenAiError::Api { status, message, .. } => write!(f, "HTTP {status}: {message}"),
        }
    }
}

/// A 429 is a rate limit (requests or tokens per minute) or an exhausted quota: the provider
/// is up and asks callers to wait. Other errors are judged as usual.
pub fn is_rate_limited(e: &OpenAiError) -> bool {
    matches!(e, OpenAiError::Api { status: 429, .. })
}

/// The wait the provider asked for: `retry-after-ms`, else `retry-after` (seconds), else the
/// "try again in 1.5s" of the error body. `None` leaves it to the breaker's
/// `throttle_duration`; a hint longer than `max_retry_after` is cut to it.
pub fn retry_after(e: &OpenAiError) -> Option<Duration> {
    let OpenAiError::Api {
        retry_after_ms,
        retry_after,
        message,
        ..
    } = e
    else {
        return None;
    };
    let header_ms = retry_after_ms.as_deref().and_then(|ms| ms.trim().parse().ok());
    let header_secs = retry_after.as_deref().and_then(|s| s.trim().parse().ok());
    header_ms
        .map(Duration::from_millis)
        .or(header_secs.map(Duration::from_secs))
        .or_else(|| hint_in_message(message))
}

/// "Rate limit reached for gpt-4o ... Please try again in 1.5s." -> 1.5 s.
fn hint_in_message(message: &str) -> Option<Duration> {
    let (_, rest) = message.split_once("try again in ")?;
    let word = rest.split_whitespace().next()?.trim_end_matches(['.', ',']);
    parse_duration(word).ok()
}

/// The simulated provider: throttles the first request of each kind, then answers.
mod provider {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::OpenAiError;

    static REQUESTS: AtomicU32 = AtomicU32::new(0);

    pub fn requests() -> u32 {
        REQUESTS.load(Ordering::SeqCst)
    }

    pub async fn chat(prompt: &str, hint_in_body_only: bool) -> Result<String, OpenAiError> {
        if REQUESTS.fetch_add(1, Ordering::SeqCst) % 2 == 0 {
            return Err(OpenAiError::Api {
                status: 429,
                retry_after_ms: (!hint_in_body_only).then(|| "300".to_owned()),
                retry_after: None,
                code: Some("rate_limit_exceeded".to_owned()),
                message: "Rate limit reached for gpt-4o in organization org-demo on tokens per min (TPM): \
                          Limit 30000, Used 29500, Requested 800. Please try again in 300ms."
                    .to_owned(),
            });
        }
        Ok(format!("echo: {prompt}"))
    }
}

/// One chat completion, behind the `llm` preset's breaker; 429s are rate limits.
#[circuit_breaker(
    name = "example-openai-chat",
    preset = "llm",
    throttle_if = is_rate_limited,
    retry_after = retry_after
)]
async fn chat(prompt: &str, hint_in_body_only: bool) -> Result<String, OpenAiError> {
    provider::chat(prompt, hint_in_body_only).await
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    for hint_in_body_only in [false, true] {
        let source = if hint_in_body_only {
            "the error body"
        } else {
            "the retry-after-ms header"
        };
        // The provider throttles: the 429 comes back, and the breaker opens for its hint.
        let first = chat("hello", hint_in_body_only).await;
        println!("first call: {}", first.as_ref().unwrap_err());

        // Refused at once, without a request, for the time left of the provider's 300 ms.
        let wait = match chat("hello", hint_in_body_only).await {
            Err(OpenAiError::Breaker(e)) if e.is_throttled() => e.retry_after().unwrap(),
            other => panic!("expected a throttled refusal, got {other:?}"),
        };
        println!("refused while throttled (hint from {source}); retry in {wait:?}");
        assert!(wait <= Duration::from_millis(300) && wait > Duration::from_millis(200));

        // After the hint, not the llm preset's 120 s open_duration, one probe goes through.
        tokio::time::sleep(wait + Duration::from_millis(20)).await;
        let answer = chat("hello", hint_in_body_only).await.unwrap();
        println!("after {wait:?}: {answer}");
    }

    let stats = registry().get("example-openai-chat").unwrap().stats();
    println!(
        "throttled {}, failures {}, successes {}, rejected {}; {} requests reached the provider",
        stats.throttled,
        stats.failures,
        stats.successes,
        stats.rejected,
        provider::requests()
    );
    assert_eq!((stats.throttled, stats.failures, stats.successes), (2, 0, 2));
    assert_eq!(provider::requests(), 4);
}
