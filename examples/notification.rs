//! A notification sender behind the `notification` preset: when the chat
//! webhook goes down, messages wait in an outbox instead of piling up retries,
//! the on-call is paged through another channel, and the outbox is flushed the
//! moment the breaker closes again, all driven by the registry's events.
//!
//! Run with `cargo run --example notification`. It finishes by itself in about
//! two seconds.
//!
//! The webhook is an in-process stand-in that answers in 5 ms, or, while it is
//! down, fails with a 502 after 20 ms.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cb_runtime::{circuit_breaker, registry, BreakerError, State};

const BREAKER: &str = "chat-webhook";

#[derive(Debug)]
enum SendError {
    /// The webhook answered with an error status.
    Status(#[allow(dead_code)] u16),
    /// The breaker refused the send or abandoned it at `call_timeout`.
    Breaker(#[allow(dead_code)] BreakerError),
}

impl From<BreakerError> for SendError {
    fn from(e: BreakerError) -> Self {
        SendError::Breaker(e)
    }
}

/// How a message left.
#[derive(Debug, PartialEq, Eq)]
enum Delivery {
    Sent,
    Queued,
}

struct Notifier {
    webhook_up: AtomicBool,
    delivered: AtomicU32,
    outbox: Mutex<Vec<String>>,
}

impl Notifier {
    /// Posts a message to the chat webhook. Three failures open the circuit
    /// here (the preset waits for ten, and stays open for a minute).
    #[circuit_breaker(
        name = "chat-webhook",
        preset = "notification",
        failure_threshold = 3,
        open_duration = "400ms",
        call_timeout = "200ms",
        fallback = queue
    )]
    async fn send(&self, message: &str) -> Result<Delivery, SendError> {
        if !self.webhook_up.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            return Err(SendError::Status(502));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.delivered.fetch_add(1, Ordering::SeqCst);
        Ok(Delivery::Sent)
    }

    /// While the circuit is open: keep the message for later.
    async fn queue(&self, message: &str) -> Result<Delivery, SendError> {
        self.outbox.lock().unwrap().push(message.to_owned());
        Ok(Delivery::Queued)
    }

    /// Sends what waited in the outbox; what fails again goes back in it.
    async fn flush(&self) -> usize {
        let waiting = std::mem::take(&mut *self.outbox.lock().unwrap());
        let mut sent = 0;
        for message in waiting {
            match self.send(&message).await {
                Ok(Delivery::Sent) => sent += 1,
                Ok(Delivery::Queued) => {}
                Err(_) => self.outbox.lock().unwrap().push(message),
            }
        }
        sent
    }
}

#[tokio::main]
async fn main() {
    let notifier = Arc::new(Notifier {
        webhook_up: AtomicBool::new(true),
        delivered: AtomicU32::new(0),
        outbox: Mutex::new(Vec::new()),
    });
    let started = Instant::now();
    let at = move || format!("{:>5.2}s", started.elapsed().as_secs_f64());

    // Alerting and recovery, from the registry's event stream.
    let mut events = registry().subscribe();
    let outbox = Arc::clone(&notifier);
    let watcher = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if event.name != BREAKER {
                continue;
            }
            println!(
                "{}  ** event: {} -> {} ({})",
                at(),
                event.from,
                event.to,
                event.transition.reason
            );
            match event.to {
                State::Open if event.from == State::Closed => println!(
                    "{}  !! PAGE on-call by SMS: `{BREAKER}` opened after {} failures; messages are being queued",
                    at(),
                    event.transition.failures_in_window
                ),
                State::Closed => {
                    println!("{}  !! resolve the page: `{BREAKER}` is closed again", at());
                    let sent = outbox.flush().await;
                    println!("{}  -- flushed the outbox: {sent} queued messages sent", at());
                    return;
                }
                _ => {}
            }
        }
    });

    let mut queued_latency = Duration::ZERO;
    let mut n = 0;
    let mut send = |notifier: Arc<Notifier>| {
        n += 1;
        let message = format!("deploy #{n} finished");
        async move {
            let t = Instant::now();
            let result = notifier.send(&message).await;
            (message, result, t.elapsed())
        }
    };

    for step in 0..18 {
        if step == 3 {
            println!("{}  -- the chat webhook starts failing with 502", at());
            notifier.webhook_up.store(false, Ordering::SeqCst);
        }
        if step == 12 {
            println!("{}  -- the chat webhook is back", at());
            notifier.webhook_up.store(true, Ordering::SeqCst);
        }
        let (message, result, took) = send(Arc::clone(&notifier)).await;
        let what = match &result {
            Ok(Delivery::Sent) => "sent".to_owned(),
            Ok(Delivery::Queued) => {
                queued_latency = queued_latency.max(took);
                "queued in the outbox (circuit open)".to_owned()
            }
            Err(e) => format!("failed: {e:?}"),
        };
        println!(
            "{}  {message:<22} {what:<38} {:>8.3} ms",
            at(),
            took.as_secs_f64() * 1e3
        );
        tokio::time::sleep(Duration::from_millis(60)).await;
    }

    // The watcher flushed the outbox when the breaker closed; give up after 2 s.
    if tokio::time::timeout(Duration::from_secs(2), watcher)
        .await
        .is_err()
    {
        println!("the breaker did not close in time; messages stay in the outbox");
    }

    let stats = registry()
        .get(BREAKER)
        .expect("created by the first send")
        .stats();
    println!("\n== summary");
    println!(
        "  {} messages delivered, {} still in the outbox; the webhook saw {} failed posts, not {}",
        notifier.delivered.load(Ordering::SeqCst),
        notifier.outbox.lock().unwrap().len(),
        stats.failures,
        stats.failures + stats.rejected
    );
    println!(
        "  queuing a message while open took at most {:.3} ms",
        queued_latency.as_secs_f64() * 1e3
    );
}
