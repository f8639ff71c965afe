//! Calling an OpenAI-style chat API through the circuit breaker middleware.
//!
//! A fake provider runs on 127.0.0.1 (no network, no key): it answers, then
//! has an outage (503s), then rate-limits (429 with `retry-after-ms`). The
//! client is a `reqwest_middleware` client with `CircuitBreakerMiddleware`;
//! watch the breaker open, refuse without sending, and tell a rate limit from
//! an outage.
//!
//! ```text
//! cargo run -p cb-reqwest --example openai
//! ```

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use cb_reqwest::CircuitBreakerMiddleware;
use cb_runtime::Preset;
use serde_json::{json, Value};

/// What the fake provider does now.
const HEALTHY: u32 = 0;
const DOWN: u32 = 1;
const RATE_LIMITED: u32 = 2;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mode = Arc::new(AtomicU32::new(HEALTHY));
    let served = Arc::new(AtomicUsize::new(0));
    let base = fake_provider(Arc::clone(&mode), Arc::clone(&served)).await?;

    // The three lines: a client, the middleware, built.
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(
            CircuitBreakerMiddleware::new("openai").config(
                // The LLM preset, with a short open period for the demo, and
                // opening on its 3 errors in a row even after a success (the
                // preset asks the window to agree first: see the guide's
                // "Choosing a preset").
                Preset::Llm
                    .builder()
                    .open_duration(Duration::from_millis(300))
                    .streak_failure_rate(0.0)
                    .build()?,
            ),
        )
        .build();

    let ask = |prompt: &str| {
        client
            .post(format!("{base}/v1/chat/completions"))
            .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]}))
            .send()
    };
    let report = |what: &str, result: &reqwest_middleware::Result<reqwest::Response>| match result {
        Ok(response) => println!("{what:<28} -> HTTP {}", response.status()),
        Err(e) => match cb_reqwest::refusal(e) {
            Some(refusal) => println!("{what:<28} -> not sent: {refusal}"),
            None => println!("{what:<28} -> error: {e}"),
        },
    };

    let answer: Value = ask("Say hello").await?.json().await?;
    println!(
        "healthy                      -> {}",
        answer["choices"][0]["message"]["content"]
    );

    mode.store(DOWN, Ordering::SeqCst);
    for i in 1..=5 {
        report(&format!("outage, request {i}"), &ask("hello?").await);
    }
    let family = cb_runtime::registry()
        .family("openai")
        .expect("made on the first request");
    let breaker = &family.breakers()[0];
    println!(
        "breaker {}[{}]: {:?}, {} failures, {} refused; the provider saw {} requests",
        breaker.name(),
        breaker.key().unwrap_or("-"),
        breaker.state(),
        breaker.stats().failures,
        breaker.stats().rejected,
        served.load(Ordering::SeqCst)
    );
    assert_eq!(breaker.stats().rejected, 2, "the last two were never sent");

    // The provider recovers; after the open period a probe goes through.
    mode.store(HEALTHY, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(350)).await;
    report("recovered, probe", &ask("hello again").await);

    // A rate limit is not an outage: throttled, no failure counted.
    mode.store(RATE_LIMITED, Ordering::SeqCst);
    report("rate limited", &ask("one more").await);
    report("while throttled", &ask("and another").await);
    let stats = breaker.stats();
    println!(
        "throttled {} time(s); failures still {}; state {:?}",
        stats.throttled, stats.failures, stats.state
    );
    assert_eq!(stats.throttled, 1);
    Ok(())
}

/// An OpenAI-style `/v1/chat/completions` on 127.0.0.1; its base URL.
async fn fake_provider(mode: Arc<AtomicU32>, served: Arc<AtomicUsize>) -> std::io::Result<String> {
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |Json(request): Json<Value>| async move {
            served.fetch_add(1, Ordering::SeqCst);
            let response: Response = match mode.load(Ordering::SeqCst) {
                DOWN => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(json!({"error": {"message": "The server is overloaded", "type": "server_error"}})),
                )
                    .into_response(),
                RATE_LIMITED => (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after-ms", "20000")],
                    Json(json!({"error": {"message": "Rate limit reached", "type": "requests"}})),
                )
                    .into_response(),
                _ => Json(json!({
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "model": request["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"}, "finish_reason": "stop"}]
                }))
                .into_response(),
            };
            response
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}"))
}
