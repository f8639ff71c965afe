//! Recovery, measured: a five-minute scenario on a paused tokio clock (it runs in
//! milliseconds), with the `llm` preset's numbers.
//!
//! A provider is down from the start and comes back after five minutes. 100 impatient clients each
//! send a request a second, and retry every 100 ms while refused. Five gateways differ
//! only in recovery: no health check or one (`health_check_interval` 10 s, the preset's),
//! and no ramp or `ramp_up = 30s`; the fifth has a check and `open_duration = 30m`, since
//! with a check the open period only bounds how long a broken check could hide a
//! recovery. For each, the figures the guide's "Recovery" chapter
//! quotes: the time from the provider's recovery to a closed breaker, the user requests
//! that reached the provider and failed while it was down after the breaker had opened
//! (the users used as probes), and the peak rate the provider sees, in 100 ms buckets,
//! in the first second after the close.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cb_runtime::{CircuitBreaker, Clock, Preset, Reason, State};
use tokio::time::Instant;

const CLIENTS: u64 = 100;
const RECOVERY_AT: Duration = Duration::from_secs(300);
/// How long the scenario goes on after the close.
const AFTER_CLOSE: Duration = Duration::from_secs(5);

/// What one gateway measured.
pub struct Figures {
    pub label: &'static str,
    /// From the provider's recovery to the close.
    pub to_closed: Duration,
    /// The close's reason.
    pub closed_by: Reason,
    /// User requests that failed at the provider after the breaker first opened: the
    /// users who were the probes while it was still down.
    pub failed_after_open: u64,
    /// Requests refused, as if the provider were still down, after it was back and before
    /// the circuit closed.
    pub refused_after_recovery: u64,
    /// The peak provider rate (requests a second, over 100 ms buckets) in the first second
    /// after the close; the clients' steady rate is 100 a second.
    pub peak_after_close: u64,
}

struct Provider {
    up: AtomicBool,
    /// Requests received, by 100 ms bucket since the start.
    buckets: Mutex<Vec<u64>>,
    failed_after_open: AtomicU64,
    refused_after_recovery: AtomicU64,
    closed: AtomicBool,
    start: Instant,
}

impl Provider {
    async fn complete(&self, opened: bool) -> Result<(), &'static str> {
        let bucket = (self.start.elapsed().as_millis() / 100) as usize;
        {
            let mut buckets = self.buckets.lock().unwrap();
            if buckets.len() <= bucket {
                buckets.resize(bucket + 1, 0);
            }
            buckets[bucket] += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        if self.up.load(Ordering::Relaxed) {
            Ok(())
        } else {
            if opened {
                self.failed_after_open.fetch_add(1, Ordering::Relaxed);
            }
            Err("503")
        }
    }
}

/// Runs one gateway through the scenario.
pub async fn measure(
    label: &'static str,
    health_check: bool,
    ramp_up: Duration,
    open_duration: Option<Duration>,
) -> Figures {
    let mut config = Preset::Llm.builder().clock(Clock::tokio()).ramp_up(ramp_up);
    if let Some(open) = open_duration {
        config = config.open_duration(open);
    }
    let config = config.build().expect("the llm preset with a ramp");
    let breaker = Arc::new(CircuitBreaker::new(label, config));
    let provider = Arc::new(Provider {
        up: AtomicBool::new(false),
        buckets: Mutex::new(Vec::new()),
        failed_after_open: AtomicU64::new(0),
        refused_after_recovery: AtomicU64::new(0),
        closed: AtomicBool::new(false),
        start: Instant::now(),
    });
    if health_check {
        let p = Arc::clone(&provider);
        // A cheap request the provider answers when it is back (a model list).
        breaker.set_health_check(move || {
            let up = p.up.load(Ordering::Relaxed);
            async move { up }
        });
    }
    let opened = Arc::new(AtomicBool::new(false));
    let closed_at = Arc::new(Mutex::new(None::<(Duration, Reason)>));
    {
        let (opened, closed_at, p) = (Arc::clone(&opened), Arc::clone(&closed_at), Arc::clone(&provider));
        breaker.on_transition(move |t| {
            if t.to == State::Open {
                opened.store(true, Ordering::Relaxed);
            }
            if t.to == State::Closed && p.up.load(Ordering::Relaxed) {
                p.closed.store(true, Ordering::Relaxed);
                closed_at
                    .lock()
                    .unwrap()
                    .get_or_insert((p.start.elapsed(), t.reason));
            }
        });
    }
    {
        let p = Arc::clone(&provider);
        tokio::spawn(async move {
            tokio::time::sleep(RECOVERY_AT).await;
            p.up.store(true, Ordering::Relaxed);
        });
    }
    let done = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let (b, p, opened, done) = (
            Arc::clone(&breaker),
            Arc::clone(&provider),
            Arc::clone(&opened),
            Arc::clone(&done),
        );
        clients.push(tokio::spawn(async move {
            // Spread the clients over the first second.
            tokio::time::sleep(Duration::from_millis(i * 1000 / CLIENTS)).await;
            while !done.load(Ordering::Relaxed) {
                let was_open = opened.load(Ordering::Relaxed);
                match b.call(p.complete(was_open)).await {
                    Err(e) if e.is_rejected() => {
                        if p.up.load(Ordering::Relaxed) && !p.closed.load(Ordering::Relaxed) {
                            p.refused_after_recovery.fetch_add(1, Ordering::Relaxed);
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await
                    }
                    _ => tokio::time::sleep(Duration::from_secs(1)).await,
                }
            }
        }));
    }
    // The breaker's state is read every 10 ms, as a metrics scrape or the admin API would
    // (a breaker of one's own applies a health check's verdict when read; one the registry
    // made is closed by the check at once).
    loop {
        let _ = breaker.state();
        let closed = closed_at.lock().unwrap().map(|(at, _)| at);
        if closed.is_some_and(|at| provider.start.elapsed() >= at + AFTER_CLOSE) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    let (closed, closed_by) = closed_at.lock().unwrap().expect("the breaker closed");
    let buckets = provider.buckets.lock().unwrap();
    let first = (closed.as_millis() / 100) as usize;
    let peak = buckets[first..(first + 10).min(buckets.len())]
        .iter()
        .max()
        .copied()
        .unwrap_or(0);
    Figures {
        label,
        to_closed: closed.saturating_sub(RECOVERY_AT),
        closed_by,
        failed_after_open: provider.failed_after_open.load(Ordering::Relaxed),
        refused_after_recovery: provider.refused_after_recovery.load(Ordering::Relaxed),
        peak_after_close: peak * 10,
    }
}

/// The five gateways, in the order the guide's table lists them.
pub async fn run() -> Vec<Figures> {
    let ramp = Duration::from_secs(30);
    let mut all = Vec::new();
    for (label, check, ramp, open) in [
        ("recovery: probes only", false, Duration::ZERO, None),
        ("recovery: health check", true, Duration::ZERO, None),
        ("recovery: probes, ramp_up 30s", false, ramp, None),
        ("recovery: health check, ramp_up 30s", true, ramp, None),
        (
            "recovery: health check, open 30m",
            true,
            Duration::ZERO,
            Some(Duration::from_secs(1800)),
        ),
    ] {
        all.push(measure(label, check, ramp, open).await);
    }
    all
}
