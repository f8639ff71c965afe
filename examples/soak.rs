//! Soak and fault storm: many tasks on a multi-thread tokio runtime hammer
//! several breakers guarding a fake dependency that fails, slows down, hangs
//! and panics at random, then everything is reconciled.
//!
//! ```sh
//! cargo run --release --example soak          # 60 s
//! SOAK_SECS=600 cargo run --release --example soak
//! cargo run --release --example soak -- 5     # or the seconds as an argument
//! ```
//!
//! `tests/soak.rs` runs the same storm for a couple of seconds in CI.
//!
//! What it checks, and the pitfalls of `docs/pitfalls.md` it covers:
//!
//! * **Counts reconcile exactly.** Each task tallies what it saw (a success,
//!   its own error, an ignored error, a timeout, a cancellation, a refusal, a
//!   panic); at the end every breaker's totals equal the sums of the tallies,
//!   one for one (pitfall 4: a cancelled call counts only as cancelled).
//! * **No task hangs.** The storm runs under a global deadline; hung calls end
//!   at `call_timeout` (pitfall 6).
//! * **Every breaker ends in a legal state with no probe leaked.** Once the
//!   tasks are done, `half_open_in_flight` is 0, the counts in the window are
//!   within its size, and every breaker recovers to closed once the
//!   dependency is healthy: probes dropped, cancelled or panicking gave their
//!   slot back (pitfalls 1 and 3), and results admitted in an earlier state
//!   did not wedge it (pitfall 5).
//! * **Memory stays flat over 10^6 transitions** (pitfall 9): the resident set
//!   (`/proc/self/statm`) is read before and after driving one breaker through
//!   a million transitions, and sampled along the way.
//!
//! It prints a summary table; the process exits non-zero if a check fails.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cb_runtime::clock::ManualClock;
use cb_runtime::{Backoff, CallError, CircuitBreaker, Config, Outcome, State, Stats, Window};
use futures::FutureExt;

#[path = "../tests/support/mod.rs"]
mod support;

use support::{silence_deliberate_panics, DELIBERATE_PANIC};

/// What to run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long the storm lasts.
    pub duration: Duration,
    /// Concurrent caller tasks.
    pub tasks: usize,
    /// Worker threads of the runtime.
    pub workers: usize,
    /// Transitions to drive in the memory phase.
    pub transitions: u64,
    /// Seed of every random choice (the interleaving is still up to the OS).
    pub seed: u64,
}

/// The dependency's mood, changed at random by a chaos task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mood {
    Healthy,
    Flaky,
    Down,
}

/// A fake dependency: its mood decides how requests go.
#[derive(Debug)]
struct Dependency {
    mood: AtomicU8,
}

impl Dependency {
    fn mood(&self) -> Mood {
        match self.mood.load(Ordering::Relaxed) {
            0 => Mood::Healthy,
            1 => Mood::Flaky,
            _ => Mood::Down,
        }
    }

    fn set(&self, mood: Mood) {
        self.mood.store(mood as u8, Ordering::Relaxed);
    }
}

/// The dependency's error.
#[derive(Debug)]
enum DepError {
    /// The dependency failed: counts against it.
    Unavailable,
    /// The caller's fault: classified as ignored.
    BadRequest,
}

/// What one request will do, drawn from the dependency's mood.
#[derive(Clone, Copy, Debug)]
enum Plan {
    Reply { after_us: u64, ok: bool },
    BadRequest,
    Panic { after_us: u64 },
    Hang,
}

fn plan(mood: Mood, rng: &mut fastrand::Rng) -> Plan {
    let (fail, spike, hang, panic) = match mood {
        Mood::Healthy => (0.02, 0.01, 0.002, 0.002),
        Mood::Flaky => (0.25, 0.1, 0.02, 0.01),
        Mood::Down => (0.7, 0.2, 0.05, 0.01),
    };
    let x = rng.f64();
    let after_us = if rng.f64() < spike {
        rng.u64(5_000..40_000) // a latency spike, often past the timeout
    } else {
        rng.u64(0..1_500)
    };
    if x < hang {
        Plan::Hang
    } else if x < hang + panic {
        Plan::Panic { after_us }
    } else if x < hang + panic + 0.03 {
        Plan::BadRequest
    } else {
        Plan::Reply {
            after_us,
            ok: rng.f64() >= fail,
        }
    }
}

async fn request(plan: Plan) -> Result<u32, DepError> {
    let wait = |us| async move {
        if us > 0 {
            tokio::time::sleep(Duration::from_micros(us)).await;
        }
    };
    match plan {
        Plan::Reply { after_us, ok } => {
            wait(after_us).await;
            if ok {
                Ok(200)
            } else {
                Err(DepError::Unavailable)
            }
        }
        Plan::BadRequest => Err(DepError::BadRequest),
        Plan::Panic { after_us } => {
            wait(after_us).await;
            panic!("{}", DELIBERATE_PANIC)
        }
        Plan::Hang => std::future::pending().await,
    }
}

fn classify(r: &Result<u32, DepError>) -> Outcome {
    match r {
        Ok(_) => Outcome::Success,
        Err(DepError::Unavailable) => Outcome::Failure,
        Err(DepError::BadRequest) => Outcome::Ignored,
    }
}

/// What callers saw, per breaker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Calls that succeeded.
    pub successes: u64,
    /// Calls that failed with the dependency's error, or panicked.
    pub failures: u64,
    /// Calls abandoned at `call_timeout`.
    pub timeouts: u64,
    /// Calls whose error was classified as ignored.
    pub ignored: u64,
    /// Calls dropped before they finished.
    pub cancelled: u64,
    /// Calls refused.
    pub rejected: u64,
    /// Of the failures, how many were panics.
    pub panics: u64,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.successes += o.successes;
        self.failures += o.failures;
        self.timeouts += o.timeouts;
        self.ignored += o.ignored;
        self.cancelled += o.cancelled;
        self.rejected += o.rejected;
        self.panics += o.panics;
    }

    fn calls(&self) -> u64 {
        self.successes + self.failures + self.timeouts + self.ignored + self.cancelled + self.rejected
    }

    fn saw<T>(&mut self, r: &Result<T, CallError<DepError>>) {
        match r {
            Ok(_) => self.successes += 1,
            Err(e) if e.is_rejected() => self.rejected += 1,
            Err(e) if e.is_timeout() => self.timeouts += 1,
            Err(CallError::Inner(DepError::BadRequest)) => self.ignored += 1,
            Err(_) => self.failures += 1,
        }
    }
}

/// One breaker's end of the storm.
#[derive(Clone, Debug)]
pub struct BreakerReport {
    /// The breaker's name.
    pub name: String,
    /// What the callers saw, summed over tasks.
    pub tally: Tally,
    /// The breaker's stats once the tasks were done.
    pub stats: Stats,
    /// Transitions it went through during the storm.
    pub transitions: u64,
    /// How long it took to close again once the dependency was healthy.
    pub recovered_in: Option<Duration>,
}

/// Resident set size, sampled along the memory phase.
#[derive(Clone, Debug)]
pub struct MemoryReport {
    /// Transitions driven.
    pub transitions: u64,
    /// `(transitions so far, RSS in KiB)`, the first after a warm-up.
    pub samples: Vec<(u64, u64)>,
    /// How long the phase took.
    pub elapsed: Duration,
}

impl MemoryReport {
    /// RSS growth from the first sample to the last, in KiB (negative: shrank).
    pub fn growth_kib(&self) -> i64 {
        match (self.samples.first(), self.samples.last()) {
            (Some(a), Some(b)) => b.1 as i64 - a.1 as i64,
            _ => 0,
        }
    }
}

/// Everything a run found.
#[derive(Clone, Debug)]
pub struct Report {
    /// What was run.
    pub settings: Settings,
    /// Per breaker.
    pub breakers: Vec<BreakerReport>,
    /// How long the storm took, deadline to last task.
    pub storm: Duration,
    /// RSS (KiB) before and after the storm.
    pub storm_rss_kib: (u64, u64),
    /// The memory phase.
    pub memory: MemoryReport,
    /// Every failed check, in words; empty when all passed.
    pub failures: Vec<String>,
}

/// RSS in KiB from `/proc/self/statm` (0 where there is none).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The breakers of the storm: count and time windows, slow calls, backoff
/// with jitter, and one that a chaos task also drives by hand.
fn breakers() -> Vec<(CircuitBreaker, Option<u32>)> {
    let llm = Config::builder()
        .failure_threshold(3)
        .sliding_window(Window::Count(20))
        .minimum_calls(5)
        .slow_call_duration(ms(10))
        .slow_call_rate_threshold(0.8)
        .open_duration(ms(30))
        .half_open_max_calls(2)
        .success_threshold(2)
        .call_timeout(ms(25));
    let db = Config::builder()
        .failure_threshold(10)
        .sliding_window(Window::Count(50))
        .minimum_calls(10)
        .open_duration(ms(20))
        .open_backoff(Backoff::exponential(2.0, ms(200)).jitter(0.2))
        .half_open_max_calls(4)
        .success_threshold(3)
        .call_timeout(ms(15));
    let cache = Config::builder()
        .failure_threshold(8)
        .sliding_window(Window::Time(ms(500)))
        .minimum_calls(10)
        .slow_call_duration(ms(10))
        .slow_call_rate_threshold(0.5)
        .open_duration(ms(10))
        .half_open_max_calls(3)
        .success_threshold(2)
        .call_timeout(ms(8));
    let manual = cb_runtime::Preset::HttpApi
        .builder()
        .open_duration(ms(40))
        .slow_call_duration(ms(20))
        .call_timeout(ms(30));
    [
        ("soak-llm", llm, Some(20)),
        ("soak-db", db, Some(50)),
        ("soak-cache", cache, None),
        // The http_api preset's window: the last 200 calls.
        ("soak-manual", manual, Some(200)),
    ]
    .into_iter()
    .map(|(name, b, window)| {
        (
            CircuitBreaker::new(name, b.build().expect("a valid config")),
            window,
        )
    })
    .collect()
}

/// One caller: random calls on random breakers until `end`.
async fn caller(
    breakers: Arc<Vec<(CircuitBreaker, Option<u32>)>>,
    deps: Arc<Vec<Dependency>>,
    end: Instant,
    seed: u64,
) -> Vec<Tally> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut tally = vec![Tally::default(); breakers.len()];
    while Instant::now() < end {
        let i = rng.usize(..breakers.len());
        let (b, t) = (&breakers[i].0, &mut tally[i]);
        let p = plan(deps[i].mood(), &mut rng);
        let rejected = t.rejected;
        match rng.u32(0..100) {
            // A call, caught if it panics.
            0..=64 => match AssertUnwindSafe(b.call_with(request(p), classify))
                .catch_unwind()
                .await
            {
                Ok(r) => t.saw(&r),
                Err(_) => {
                    t.failures += 1;
                    t.panics += 1;
                }
            },
            // A caller that gives up first: cancelled, unless the call ended.
            65..=76 => {
                let patience = Duration::from_micros(rng.u64(100..20_000));
                let call = AssertUnwindSafe(b.call_with(request(p), classify)).catch_unwind();
                match tokio::time::timeout(patience, call).await {
                    Ok(Ok(r)) => t.saw(&r),
                    Ok(Err(_)) => {
                        t.failures += 1;
                        t.panics += 1;
                    }
                    Err(_) => t.cancelled += 1,
                }
            }
            // A call future dropped before its first poll: nothing at all.
            77..=79 => drop(b.call(async { Ok::<(), ()>(()) })),
            // A permit, held across an await, then ended somehow.
            _ => match b.try_acquire() {
                Err(_) => t.rejected += 1,
                Ok(permit) => {
                    tokio::time::sleep(Duration::from_micros(rng.u64(0..3_000))).await;
                    match rng.u32(0..10) {
                        0..=3 => {
                            permit.record(true);
                            t.successes += 1;
                        }
                        4..=6 => {
                            permit.record(false);
                            t.failures += 1;
                        }
                        7 => {
                            permit.record_outcome(Outcome::Ignored);
                            t.ignored += 1;
                        }
                        8 => {
                            drop(permit);
                            t.cancelled += 1;
                        }
                        _ => {
                            let unwound = std::panic::catch_unwind(AssertUnwindSafe(move || {
                                let _permit = permit;
                                panic!("{}", DELIBERATE_PANIC);
                            }));
                            assert!(unwound.is_err());
                            t.failures += 1;
                            t.panics += 1;
                        }
                    }
                }
            },
        }
        if t.rejected > rejected {
            // A refused caller backs off a little, as a real one would.
            tokio::time::sleep(Duration::from_micros(rng.u64(200..2_000))).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
    tally
}

/// Moods change at random, and the last breaker is driven by hand too.
async fn chaos(
    breakers: Arc<Vec<(CircuitBreaker, Option<u32>)>>,
    deps: Arc<Vec<Dependency>>,
    end: Instant,
    seed: u64,
) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let manual = &breakers[breakers.len() - 1].0;
    while Instant::now() < end {
        tokio::time::sleep(ms(rng.u64(20..150))).await;
        let dep = &deps[rng.usize(..deps.len())];
        dep.set([Mood::Healthy, Mood::Healthy, Mood::Flaky, Mood::Down][rng.usize(..4)]);
        match rng.u32(0..10) {
            0 => manual.force_open(),
            1 => manual.disable(),
            2 => {
                manual.open_for(ms(rng.u64(1..50)));
            }
            3..=5 => manual.reset(),
            _ => {}
        }
    }
}

/// Drives one breaker on a manual clock through `n` transitions (closed →
/// open → half-open → closed, over and over), sampling RSS.
pub fn memory_phase(n: u64) -> MemoryReport {
    let clock = ManualClock::new();
    let config = Config::builder()
        .failure_threshold(1)
        .open_duration(Duration::from_secs(1))
        .clock(clock.clock())
        .build()
        .expect("a valid config");
    let b = CircuitBreaker::new("soak-memory", config);
    let transitions = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&transitions);
    b.on_transition(move |_| {
        seen.fetch_add(1, Ordering::Relaxed);
    });
    let cycle = || {
        b.try_acquire().expect("closed").record(false); // closed → open
        clock.advance(Duration::from_secs(1));
        assert_eq!(b.state(), State::HalfOpen); // open → half-open
        b.try_acquire().expect("a probe").record(true); // half-open → closed
    };
    let warm_up = (n / 100).max(3);
    while transitions.load(Ordering::Relaxed) < warm_up {
        cycle();
    }
    let start = Instant::now();
    let first = transitions.load(Ordering::Relaxed);
    let step = (n / 10).max(1);
    let mut samples = vec![(0, rss_kib())];
    let mut next = step;
    loop {
        let done = transitions.load(Ordering::Relaxed) - first;
        if done >= next || done >= n {
            samples.push((done, rss_kib()));
            next += step;
        }
        if done >= n {
            break;
        }
        cycle();
    }
    MemoryReport {
        transitions: transitions.load(Ordering::Relaxed) - first,
        samples,
        elapsed: start.elapsed(),
    }
}

/// Runs the storm, the checks and the memory phase.
pub fn run(settings: Settings) -> Report {
    silence_deliberate_panics();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.workers)
        .enable_all()
        .build()
        .expect("a runtime");
    let mut failures = Vec::new();
    let breakers = Arc::new(breakers());
    let deps: Arc<Vec<Dependency>> = Arc::new(
        (0..breakers.len())
            .map(|_| Dependency {
                mood: AtomicU8::new(Mood::Healthy as u8),
            })
            .collect(),
    );
    let counters: Vec<Arc<AtomicU64>> = breakers
        .iter()
        .map(|(b, _)| {
            let n = Arc::new(AtomicU64::new(0));
            let seen = Arc::clone(&n);
            b.on_transition(move |_| {
                seen.fetch_add(1, Ordering::Relaxed);
            });
            n
        })
        .collect();

    let rss_before = rss_kib();
    let started = Instant::now();
    let end = started + settings.duration;
    // No task may outlive the storm by more than this.
    let grace = Duration::from_secs(10);
    let tallies: Vec<Tally> = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for t in 0..settings.tasks {
            let seed = settings.seed.wrapping_add(t as u64);
            set.spawn(caller(Arc::clone(&breakers), Arc::clone(&deps), end, seed));
        }
        let chaos = tokio::spawn(chaos(
            Arc::clone(&breakers),
            Arc::clone(&deps),
            end,
            settings.seed ^ 0xC4A05,
        ));
        let mut sums = vec![Tally::default(); breakers.len()];
        let joined = tokio::time::timeout(settings.duration + grace, async {
            while let Some(r) = set.join_next().await {
                for (sum, t) in sums.iter_mut().zip(r.expect("a caller task panicked")) {
                    sum.add(&t);
                }
            }
        })
        .await;
        if joined.is_err() {
            failures.push(format!(
                "{} caller tasks still running {grace:?} after the storm's end: a hang",
                set.len()
            ));
            set.abort_all();
        }
        let _ = tokio::time::timeout(grace, chaos).await;
        sums
    });
    let storm = started.elapsed();
    let rss_after = rss_kib();

    let mut reports = Vec::new();
    for (((b, window), tally), transitions) in breakers.iter().zip(&tallies).zip(&counters) {
        let s = b.stats();
        let name = b.name().to_owned();
        let totals = [
            ("successes", s.successes, tally.successes),
            ("failures", s.failures, tally.failures),
            ("timeouts", s.timeouts, tally.timeouts),
            ("ignored", s.ignored, tally.ignored),
            ("cancelled", s.cancelled, tally.cancelled),
            ("rejected", s.rejected, tally.rejected),
        ];
        for (field, stats, seen) in totals {
            if stats != seen {
                failures.push(format!("{name}: stats.{field} = {stats}, callers saw {seen}"));
            }
        }
        if s.half_open_in_flight != 0 {
            failures.push(format!(
                "{name}: {} probes leaked in half-open",
                s.half_open_in_flight
            ));
        }
        if let Some(n) = window {
            if s.calls_in_window > u64::from(*n) || s.failures_in_window > s.calls_in_window {
                failures.push(format!("{name}: window of {n} holds {s:?}"));
            }
        }
        if s.slow_calls > s.calls() - s.rejected - s.cancelled {
            failures.push(format!("{name}: more slow calls than finished calls: {s:?}"));
        }
        if name != "soak-manual" && !matches!(s.state, State::Closed | State::Open | State::HalfOpen) {
            failures.push(format!("{name}: ended {}, which no call can cause", s.state));
        }
        reports.push(BreakerReport {
            name,
            tally: *tally,
            stats: s,
            transitions: transitions.load(Ordering::Relaxed),
            recovered_in: None,
        });
    }

    // With a healthy dependency, every breaker closes again: no wedged half-open.
    for ((b, _), report) in breakers.iter().zip(&mut reports) {
        if b.state() != State::Closed && report.name == "soak-manual" {
            b.reset();
        }
        let t0 = Instant::now();
        let recovered = rt.block_on(async {
            while t0.elapsed() < Duration::from_secs(5) {
                let _ = b.call(async { Ok::<(), ()>(()) }).await;
                if b.state() == State::Closed {
                    return true;
                }
                tokio::time::sleep(ms(1)).await;
            }
            false
        });
        if recovered {
            report.recovered_in = Some(t0.elapsed());
        } else {
            failures.push(format!(
                "{}: still {} 5 s after the dependency recovered",
                report.name,
                b.state()
            ));
        }
    }
    drop(rt);

    let memory = memory_phase(settings.transitions);
    if memory.transitions < settings.transitions {
        failures.push(format!(
            "memory phase drove only {} transitions",
            memory.transitions
        ));
    }
    // A leak of even 8 bytes a transition would be 8 MB here.
    if memory.growth_kib() > 1024 {
        failures.push(format!(
            "RSS grew by {} KiB over {} transitions",
            memory.growth_kib(),
            memory.transitions
        ));
    }

    Report {
        settings,
        breakers: reports,
        storm,
        storm_rss_kib: (rss_before, rss_after),
        memory,
        failures,
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.settings;
        writeln!(
            f,
            "soak: {} tasks on {} workers for {:.1?} (seed {})",
            s.tasks, s.workers, self.storm, s.seed
        )?;
        writeln!(
            f,
            "{:<12} {:>9} {:>9} {:>9} {:>8} {:>8} {:>9} {:>9} {:>7} {:>8} {:>11} {:>10}",
            "breaker",
            "calls",
            "success",
            "failure",
            "timeout",
            "ignored",
            "cancelled",
            "rejected",
            "panics",
            "slow",
            "transitions",
            "recovered"
        )?;
        let mut total = Tally::default();
        for r in &self.breakers {
            let t = &r.tally;
            total.add(t);
            writeln!(
                f,
                "{:<12} {:>9} {:>9} {:>9} {:>8} {:>8} {:>9} {:>9} {:>7} {:>8} {:>11} {:>10}",
                r.name,
                t.calls(),
                t.successes,
                t.failures,
                t.timeouts,
                t.ignored,
                t.cancelled,
                t.rejected,
                t.panics,
                r.stats.slow_calls,
                r.transitions,
                r.recovered_in.map_or("never".to_owned(), |d| format!("{d:.1?}")),
            )?;
        }
        writeln!(
            f,
            "{:<12} {:>9} calls, {:.0} calls/s; every breaker's stats equal the callers' tallies: {}",
            "total",
            total.calls(),
            total.calls() as f64 / self.storm.as_secs_f64(),
            if self.failures.iter().any(|m| m.contains("callers saw")) {
                "NO"
            } else {
                "yes"
            },
        )?;
        writeln!(
            f,
            "RSS around the storm: {} KiB -> {} KiB",
            self.storm_rss_kib.0, self.storm_rss_kib.1
        )?;
        let m = &self.memory;
        let samples: Vec<String> = m.samples.iter().map(|(n, kib)| format!("{n}:{kib}")).collect();
        writeln!(
            f,
            "memory: {} transitions in {:.1?}; RSS KiB by transitions: {}; growth {} KiB",
            m.transitions,
            m.elapsed,
            samples.join(" "),
            m.growth_kib()
        )?;
        if self.failures.is_empty() {
            write!(f, "all checks passed")
        } else {
            writeln!(f, "{} checks FAILED:", self.failures.len())?;
            for msg in &self.failures {
                writeln!(f, "  - {msg}")?;
            }
            Ok(())
        }
    }
}

#[allow(dead_code)] // `tests/soak.rs` includes this file as a module.
fn main() {
    let secs = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("SOAK_SECS").ok())
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(60.0);
    let settings = Settings {
        duration: Duration::from_secs_f64(secs),
        tasks: 64,
        workers: 4,
        transitions: 1_000_000,
        seed: std::env::var("SOAK_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5EED),
    };
    let report = run(settings);
    println!("{report}");
    if !report.failures.is_empty() {
        std::process::exit(1);
    }
}
