//! A provider whose methods each protect one service with `#[circuit_breaker]` and a preset
//! for that kind of service.
//!
//! The upstreams are simulated: the LLM goes down for a while, then recovers; the other
//! services answer. Run with `cargo run --example llm_provider`; it finishes in well under a
//! second and prints what each call did.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use cb_runtime::{circuit_breaker, registry, BreakerError};

/// Everything a provider call can fail with.
#[derive(Debug)]
enum ProviderError {
    /// The breaker refused the call, or it timed out.
    Breaker(BreakerError),
    /// The upstream answered with an HTTP status.
    Status(u16),
}

impl From<BreakerError> for ProviderError {
    fn from(e: BreakerError) -> Self {
        ProviderError::Breaker(e)
    }
}

impl std::fmt::Display for ProviderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProviderError::Breaker(e) => write!(f, "breaker: {e}"),
            ProviderError::Status(code) => write!(f, "upstream status {code}"),
        }
    }
}

/// A 4xx is the caller's fault (say, a prompt too long): it says nothing about the provider.
fn is_provider_fault(e: &ProviderError) -> bool {
    !matches!(e, ProviderError::Status(400..=499))
}

/// Talks to an LLM, an embedding API, a database, a cache and a notifier.
struct Provider {
    llm_up: AtomicBool,
    llm_calls: AtomicU32,
    cache: Mutex<HashMap<String, String>>,
}

impl Provider {
    /// Completes a prompt. When the LLM's breaker is open, the last answer for the prompt is
    /// served from the cache instead.
    #[circuit_breaker(
        name = "example-llm",
        preset = "llm",
        open_duration = "150ms",
        call_timeout = "20s",
        failure_if = is_provider_fault,
        fallback = cached_completion
    )]
    async fn complete(&self, prompt: &str) -> Result<String, ProviderError> {
        self.llm_calls.fetch_add(1, Ordering::SeqCst);
        if prompt.len() > 40 {
            return Err(ProviderError::Status(400));
        }
        if !self.llm_up.load(Ordering::SeqCst) {
            return Err(ProviderError::Status(503));
        }
        let answer = format!("a fresh answer to {prompt:?}");
        self.cache_put(prompt, &answer).await?;
        Ok(answer)
    }

    async fn cached_completion(&self, prompt: &str) -> Result<String, ProviderError> {
        match self.cache_get(prompt).await? {
            Some(answer) => Ok(format!("{answer} (from the cache)")),
            None => Ok("the assistant is busy; try again shortly".to_string()),
        }
    }

    /// Embeds a text through an HTTP API.
    #[circuit_breaker(name = "example-embeddings", preset = "http_api")]
    async fn embed(&self, text: &str) -> Result<Vec<f32>, ProviderError> {
        Ok(text.bytes().take(4).map(|b| f32::from(b) / 255.0).collect())
    }

    /// Saves a conversation turn.
    #[circuit_breaker(name = "example-database", preset = "database", call_timeout = "2s")]
    async fn save_turn(&self, prompt: &str, answer: &str) -> Result<u64, ProviderError> {
        Ok((prompt.len() + answer.len()) as u64)
    }

    /// Looks an answer up in the cache.
    #[circuit_breaker(name = "example-cache-get", preset = "cache")]
    async fn cache_get(&self, prompt: &str) -> Result<Option<String>, ProviderError> {
        Ok(self.cache.lock().unwrap().get(prompt).cloned())
    }

    /// Stores an answer in the cache.
    #[circuit_breaker(name = "example-cache-put", preset = "cache")]
    async fn cache_put(&self, prompt: &str, answer: &str) -> Result<(), ProviderError> {
        self.cache
            .lock()
            .unwrap()
            .insert(prompt.to_string(), answer.to_string());
        Ok(())
    }

    /// Tells the user an answer is ready.
    #[circuit_breaker(name = "example-notify", preset = "notification")]
    async fn notify(&self, user: &str) -> Result<(), ProviderError> {
        println!("    notified {user}");
        Ok(())
    }
}

async fn ask(provider: &Provider, prompt: &str) {
    match provider.complete(prompt).await {
        Ok(answer) => println!("  {prompt:?} -> {answer}"),
        Err(e) => println!("  {prompt:?} -> error: {e}"),
    }
}

fn report(name: &str) {
    let breaker = registry().get(name).expect("created on the first call");
    let stats = breaker.stats();
    println!(
        "  [{name}] state {}, {} ok, {} failed, {} rejected, {} ignored",
        stats.state, stats.successes, stats.failures, stats.rejected, stats.ignored
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), ProviderError> {
    let provider = Provider {
        llm_up: AtomicBool::new(true),
        llm_calls: AtomicU32::new(0),
        cache: Mutex::new(HashMap::new()),
    };
    println!(
        "before any call the LLM breaker exists: {}",
        registry().get("example-llm").is_some()
    );

    println!("1. the LLM is up:");
    ask(&provider, "capital of France?").await;
    let vector = provider.embed("capital of France?").await?;
    let saved = provider.save_turn("capital of France?", "Paris").await?;
    provider.notify("ada").await?;
    println!("    embedded into {} numbers, saved {saved} bytes", vector.len());

    println!("2. prompts that are too long are the caller's fault and do not count:");
    for _ in 0..5 {
        ask(&provider, "a prompt far too long for this model's context window").await;
    }
    report("example-llm");

    println!("3. the LLM goes down; the llm preset opens after 3 consecutive failures:");
    provider.llm_up.store(false, Ordering::SeqCst);
    for _ in 0..3 {
        ask(&provider, "capital of Italy?").await;
    }
    report("example-llm");

    println!("4. while open, the body is skipped and the fallback answers:");
    let before = provider.llm_calls.load(Ordering::SeqCst);
    ask(&provider, "capital of France?").await;
    ask(&provider, "capital of Spain?").await;
    println!(
        "    upstream calls while open: {}",
        provider.llm_calls.load(Ordering::SeqCst) - before
    );

    println!("5. the LLM recovers; after open_duration, probes close the circuit:");
    provider.llm_up.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    ask(&provider, "capital of Spain?").await;
    ask(&provider, "capital of Portugal?").await;
    report("example-llm");

    println!("breakers in the registry:");
    for name in registry().names() {
        if name.starts_with("example-") {
            report(&name);
        }
    }
    Ok(())
}
