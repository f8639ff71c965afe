//! Fuzz target `stream`: streamed calls (`CircuitBreaker::call_stream`,
//! `Permit::run_stream`, `BreakerStream`), driven by a script on tokio's
//! paused clock and polled by hand with a no-op waker.
//!
//! The first six bytes choose the configuration; then one operation per byte
//! (low nibble: what, high nibble: an argument): start a streamed call
//! (through `call_stream` or `try_acquire` + `run_stream`; with or without
//! `judge_at_first_item`; its `open` ready, pending, failing or panicking),
//! poll one call or all of them, queue an item, an error, the end or a panic
//! on a call's stream, let a pending `open` resolve, drop a call, advance the
//! clock, reset / force open / disable the breaker, read its state.
//!
//! A model written from the rules of `cb_runtime::stream` predicts exactly
//! what every poll yields and how every call is counted.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex, Once};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use cb_runtime::{BreakerStream, CallError, CallStream, CircuitBreaker, Clock, Config, State, Window};
use futures::Stream;

/// Streamed calls alive at once, at most.
const MAX_CALLS: usize = 6;

/// The payload of the panics the script raises on purpose.
struct Deliberate;

/// Keeps the script's own panics off stderr (and away from a fuzzer's hook
/// that aborts on any panic); every other panic goes to the hook installed
/// before, as usual.
fn quiet_deliberate_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let next = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.payload().is::<Deliberate>() {
                next(info);
            }
        }));
    });
}

/// Runs `f`; `None` if it raised the script's panic. Any other panic goes on.
fn unless_deliberate<R>(f: impl FnOnce() -> R) -> Option<R> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => Some(r),
        Err(payload) if payload.is::<Deliberate>() => None,
        Err(payload) => resume_unwind(payload),
    }
}

/// What a scripted stream does when polled next.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Event {
    Item,
    Error,
    End,
    Panic,
}

/// The script of one call's stream, shared with the stream itself.
#[derive(Debug, Default)]
struct Script {
    events: VecDeque<Event>,
    items: u32,
    /// It returned its end or an error, or panicked: never to be polled again.
    over: bool,
    dropped: bool,
}

/// The inner stream: plays its script; pending while the script is empty.
struct Inner(Rc<RefCell<Script>>);

impl Stream for Inner {
    type Item = Result<u32, u8>;

    fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut s = self.0.borrow_mut();
        assert!(!s.over, "the inner stream was polled after it ended");
        match s.events.pop_front() {
            None => Poll::Pending,
            Some(Event::Item) => {
                s.items += 1;
                Poll::Ready(Some(Ok(s.items)))
            }
            Some(Event::Error) => {
                s.over = true;
                Poll::Ready(Some(Err(7)))
            }
            Some(Event::End) => {
                s.over = true;
                Poll::Ready(None)
            }
            Some(Event::Panic) => {
                s.over = true;
                drop(s);
                std::panic::panic_any(Deliberate)
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.0.borrow_mut().dropped = true;
    }
}

/// How a call's `open` future resolves.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Plan {
    Ready,
    Pending,
    Fail,
    Panic,
}

/// The future that opens the stream: follows its plan, which the script may
/// change from `Pending` to `Ready` or `Fail`.
struct Open {
    plan: Rc<Cell<Plan>>,
    polled: Rc<Cell<bool>>,
    stream: Option<Inner>,
}

impl Future for Open {
    type Output = Result<Inner, u8>;

    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        self.polled.set(true);
        match self.plan.get() {
            Plan::Ready => Poll::Ready(Ok(self.stream.take().expect("`open` polled after it resolved"))),
            Plan::Pending => Poll::Pending,
            Plan::Fail => Poll::Ready(Err(3)),
            Plan::Panic => std::panic::panic_any(Deliberate),
        }
    }
}

/// How a call was counted, in the model.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Judged {
    Success,
    Failure,
    Timeout,
    Cancelled,
}

/// What the callers saw, to check the breaker's totals against.
#[derive(Debug, Default, PartialEq)]
struct Tally {
    successes: u64,
    failures: u64,
    timeouts: u64,
    cancelled: u64,
    rejected: u64,
    slow_calls: u64,
}

/// What the consumer holds of one streamed call.
enum Live<'a> {
    Opening(Pin<Box<CallStream<'a, Open>>>),
    Streaming(Pin<Box<BreakerStream<'a, Inner>>>),
    /// Refused, failed to open, or panicked while opening.
    Over,
}

/// One streamed call: what the consumer holds, and the model's view of it.
struct Call<'a> {
    live: Live<'a>,
    track: Track,
}

/// The model's view of one call.
struct Track {
    plan: Rc<Cell<Plan>>,
    polled: Rc<Cell<bool>>,
    script: Rc<RefCell<Script>>,
    judge_at_first_item: bool,
    /// Admitted (holding a permit), and when, on the model's clock.
    admitted_at: Option<Duration>,
    /// When the current `call_timeout` period began: admission, then each item.
    since: Duration,
    first_item_at: Option<Duration>,
    /// The consumer saw the stream end (its end, an error, a timeout, a panic).
    ended: bool,
    judged: bool,
}

/// The breaker's configuration and the model's running state.
struct Model {
    call_timeout: Option<Duration>,
    slow: Option<Duration>,
    now: Duration,
    tally: Tally,
}

impl Model {
    /// Counts `call` as `how`, once; slow by its time to first item if it
    /// had one, else by its whole length.
    fn judge(&mut self, call: &mut Track, how: Judged) {
        if call.judged {
            return;
        }
        call.judged = true;
        let admitted = call.admitted_at.expect("only an admitted call is judged");
        match how {
            Judged::Success => self.tally.successes += 1,
            Judged::Failure => self.tally.failures += 1,
            Judged::Timeout => self.tally.timeouts += 1,
            Judged::Cancelled => {
                self.tally.cancelled += 1;
                return;
            }
        }
        let took = match call.first_item_at {
            Some(at) => at - admitted,
            None => self.now - admitted,
        };
        if self.slow.is_some_and(|limit| took > limit) {
            self.tally.slow_calls += 1;
        }
    }

    /// Whether `call`'s timeout has passed (while nothing else is ready).
    fn timed_out(&self, call: &Track) -> bool {
        self.call_timeout.is_some_and(|d| self.now - call.since >= d)
    }
}

/// A configuration from the first six bytes; `None` if `build` refuses it.
fn config(b: &[u8; 6]) -> Option<Config> {
    let window = if b[0] & 0x80 == 0 {
        Window::Count(1 + u32::from(b[0] >> 2) % 8)
    } else {
        Window::Time(Duration::from_millis(100 * (1 + u64::from(b[0] >> 2) % 4)))
    };
    let mut builder = Config::builder()
        .clock(Clock::tokio())
        .failure_threshold(1 + u32::from(b[0] % 4))
        .sliding_window(window)
        .half_open_max_calls(1 + u32::from(b[1] % 3))
        .success_threshold(1 + u32::from(b[1] / 4 % 3))
        .minimum_calls(1 + u32::from(b[1] / 16))
        .failure_rate_threshold(f64::from(b[4]) / 255.0)
        .open_duration(Duration::from_millis(1 + u64::from(b[5])));
    if b[2] % 4 != 0 {
        builder = builder.call_timeout(Duration::from_millis(1 + u64::from(b[2] / 4)));
    }
    builder = match b[3] % 3 {
        0 => builder.no_slow_call_detection(),
        _ => builder
            .slow_call_duration(Duration::from_millis(1 + u64::from(b[3] / 3)))
            .slow_call_rate_threshold(f64::from(b[4] % 128 + 1) / 128.0),
    };
    builder.build().ok()
}

/// Checks, for any configuration and any script of streamed calls:
///
/// - every poll yields exactly what the rules say: a refusal only when the
///   circuit is not closed or disabled (and never polling `open`), the
///   inner stream's items, errors and end unchanged, one
///   `CallError::Timeout` when nothing came within `call_timeout` (of
///   admission, then of the last item) and never earlier, nothing after the
///   end; the inner stream is dropped at once after an error, its end or a
///   timeout, and never polled after it ended;
/// - only the script's own panics escape a poll, and they propagate;
/// - every call is judged exactly once, as the rules say: the totals
///   (successes, failures, timeouts, cancelled, rejected, slow calls) equal
///   the model's after every operation, and `is_pending_judgement` agrees;
/// - every transition is legal (the `breaker` target's rules);
/// - probes in flight never exceed `half_open_max_calls`, no probe slot is
///   taken while no admitted call waits for its judgement (so none is
///   left once every stream is dropped), and a half-open breaker with no
///   call waiting admits.
pub fn stream(data: &[u8]) {
    let Some((head, ops)) = data.split_first_chunk::<6>() else {
        return;
    };
    quiet_deliberate_panics();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    runtime.block_on(run(head, ops));
}

async fn run(head: &[u8; 6], ops: &[u8]) {
    let Some(config) = config(head) else {
        return;
    };
    let max_probes = u64::from(config.half_open_max_calls());
    let mut model = Model {
        call_timeout: config.call_timeout(),
        slow: config.slow_call_duration(),
        now: Duration::ZERO,
        tally: Tally::default(),
    };
    let b = CircuitBreaker::new("fuzz-stream", config);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    b.on_transition(move |t| log.lock().unwrap().push((t.from, t.to, t.reason)));

    let mut calls: Vec<Call<'_>> = Vec::new();
    let mut state = State::Closed;
    for &byte in ops.iter().take(512) {
        let arg = usize::from(byte >> 4);
        let pick = |calls: &Vec<Call<'_>>| (!calls.is_empty()).then(|| arg % calls.len());
        let mut manual = false;
        match byte & 0x0f {
            op @ (0 | 1) if calls.len() < MAX_CALLS => {
                if let Some(call) = start(&b, &mut model, &calls, op == 1, arg) {
                    calls.push(call);
                }
            }
            0 | 1 => {}
            2 | 14 | 15 => {
                if let Some(i) = pick(&calls) {
                    poll(&b, &mut model, &mut calls, i);
                }
            }
            11 => {
                for i in 0..calls.len() {
                    poll(&b, &mut model, &mut calls, i);
                }
            }
            op @ 3..=6 => {
                if let Some(i) = pick(&calls) {
                    let event = [Event::Item, Event::Error, Event::End, Event::Panic][usize::from(op - 3)];
                    calls[i].track.script.borrow_mut().events.push_back(event);
                }
            }
            7 | 13 => {
                let by = match byte & 0x0f {
                    7 => Duration::from_millis(1 << (arg % 8)),
                    _ => model.call_timeout.unwrap_or(Duration::from_millis(1)),
                };
                tokio::time::advance(by).await;
                model.now += by;
            }
            8 => {
                if let Some(i) = pick(&calls) {
                    let plan = &calls[i].track.plan;
                    if plan.get() == Plan::Pending {
                        plan.set(if arg >= 8 { Plan::Fail } else { Plan::Ready });
                    }
                }
            }
            9 => {
                if let Some(i) = pick(&calls) {
                    let mut call = calls.remove(i);
                    drop_call(&mut model, &mut call);
                }
            }
            10 => {
                manual = true;
                match arg % 3 {
                    0 => b.reset(),
                    1 => b.force_open(),
                    _ => b.disable(),
                }
            }
            _ => {
                b.state();
            }
        }
        state = check(&b, &seen, &calls, &model, state, manual, max_probes);
    }
    while let Some(mut call) = calls.pop() {
        drop_call(&mut model, &mut call);
    }
    check(&b, &seen, &calls, &model, state, false, max_probes);
    assert_eq!(b.stats().half_open_in_flight, 0, "a probe slot leaked");
}

/// Starts a streamed call (`run_stream` after `try_acquire` if `permit`);
/// `None` if `try_acquire` refused it.
fn start<'a>(
    b: &'a CircuitBreaker,
    model: &mut Model,
    calls: &[Call<'a>],
    permit: bool,
    arg: usize,
) -> Option<Call<'a>> {
    let plan = Rc::new(Cell::new(
        [Plan::Ready, Plan::Pending, Plan::Fail, Plan::Panic][arg >> 2],
    ));
    let polled = Rc::new(Cell::new(false));
    let script = Rc::new(RefCell::new(Script::default()));
    let open = Open {
        plan: Rc::clone(&plan),
        polled: Rc::clone(&polled),
        stream: Some(Inner(Rc::clone(&script))),
    };
    let judge_at_first_item = arg & 1 != 0;
    let mut admitted_at = None;
    let mut future = if permit {
        let before = b.state();
        match b.try_acquire() {
            Ok(p) => {
                admitted_at = Some(model.now);
                p.run_stream(open)
            }
            Err(_) => {
                refused(before, calls.iter().any(waits));
                model.tally.rejected += 1;
                return None;
            }
        }
    } else {
        b.call_stream(open)
    };
    if judge_at_first_item {
        future = future.judge_at_first_item();
    }
    Some(Call {
        live: Live::Opening(Box::pin(future)),
        track: Track {
            plan,
            polled,
            script,
            judge_at_first_item,
            admitted_at,
            since: model.now,
            first_item_at: None,
            ended: false,
            judged: false,
        },
    })
}

/// Checks a refusal by a breaker that was in state `before`, with a call
/// `waiting` for its judgement or not.
fn refused(before: State, waiting: bool) {
    assert!(
        !matches!(before, State::Closed | State::Disabled),
        "a {before} breaker refused a call"
    );
    assert!(
        before != State::HalfOpen || waiting,
        "half-open with no call waiting for its judgement, yet refusing: wedged"
    );
}

/// Whether `call` holds a permit and waits for its judgement.
fn waits(call: &Call<'_>) -> bool {
    let call = &call.track;
    call.admitted_at.is_some() && !call.judged
}

/// Polls call `i` once and checks what it yields against the model.
fn poll(b: &CircuitBreaker, model: &mut Model, calls: &mut [Call<'_>], i: usize) {
    let mut cx = Context::from_waker(Waker::noop());
    let before = b.state();
    let waiting = calls.iter().any(waits);
    let Call { live, track: call } = &mut calls[i];
    match live {
        Live::Over => {}
        Live::Opening(future) => {
            let first = call.admitted_at.is_none();
            let polled = unless_deliberate(|| future.as_mut().poll(&mut cx));
            if first {
                if let Some(Poll::Ready(Err(CallError::Rejected(_)))) = polled {
                    assert!(!call.polled.get(), "a refused call polled `open`");
                    refused(before, waiting);
                    model.tally.rejected += 1;
                    *live = Live::Over;
                    return;
                }
                assert_ne!(before, State::ForcedOpen, "a forced-open breaker admitted a call");
                call.admitted_at = Some(model.now);
                call.since = model.now;
            }
            match (call.plan.get(), polled) {
                (Plan::Panic, None) => {
                    model.judge(call, Judged::Failure);
                    *live = Live::Over;
                }
                (Plan::Fail, Some(Poll::Ready(Err(CallError::Inner(3))))) => {
                    model.judge(call, Judged::Failure);
                    *live = Live::Over;
                }
                (Plan::Pending, Some(Poll::Ready(Err(CallError::Timeout(_))))) if model.timed_out(call) => {
                    model.judge(call, Judged::Timeout);
                    *live = Live::Over;
                }
                (Plan::Pending, Some(Poll::Pending)) if !model.timed_out(call) => {}
                (Plan::Ready, Some(Poll::Ready(Ok(stream)))) => {
                    assert!(stream.is_pending_judgement());
                    *live = Live::Streaming(Box::pin(stream));
                }
                (plan, Some(Poll::Ready(Ok(_)))) => {
                    panic!("`open` planned {plan:?}, the call opened its stream")
                }
                (plan, Some(Poll::Ready(Err(e)))) => panic!("`open` planned {plan:?}, the call failed: {e}"),
                (plan, Some(Poll::Pending)) => panic!("`open` planned {plan:?}, the call is pending"),
                (plan, None) => panic!("`open` planned {plan:?}, the call panicked"),
            }
        }
        Live::Streaming(stream) => {
            let next = call.script.borrow().events.front().copied();
            let polled = unless_deliberate(|| stream.as_mut().poll_next(&mut cx));
            if call.ended {
                assert!(
                    matches!(polled, Some(Poll::Ready(None))),
                    "a stream yielded after its end"
                );
                return;
            }
            match (next, polled) {
                (Some(Event::Item), Some(Poll::Ready(Some(Ok(n))))) => {
                    assert_eq!(n, call.script.borrow().items, "an item changed on its way");
                    call.since = model.now;
                    if call.first_item_at.is_none() {
                        call.first_item_at = Some(model.now);
                        if call.judge_at_first_item {
                            model.judge(call, Judged::Success);
                        }
                    }
                }
                (Some(Event::Error), Some(Poll::Ready(Some(Err(CallError::Inner(7)))))) => {
                    model.judge(call, Judged::Failure);
                    call.ended = true;
                }
                (Some(Event::End), Some(Poll::Ready(None))) => {
                    model.judge(call, Judged::Success);
                    call.ended = true;
                }
                (Some(Event::Panic), None) => {
                    model.judge(call, Judged::Failure);
                    call.ended = true;
                }
                (None, Some(Poll::Ready(Some(Err(CallError::Timeout(_)))))) if model.timed_out(call) => {
                    model.judge(call, Judged::Timeout);
                    call.ended = true;
                }
                (None, Some(Poll::Pending)) if !model.timed_out(call) => {}
                (next, Some(Poll::Ready(item))) => panic!("script {next:?}, the stream yielded {item:?}"),
                (next, Some(Poll::Pending)) => panic!("script {next:?}, the stream is pending"),
                (next, None) => panic!("script {next:?}, the stream panicked"),
            }
            let script = call.script.borrow();
            if call.ended && next != Some(Event::Panic) {
                assert!(script.dropped, "the inner stream outlived its end");
            }
            assert_eq!(
                stream.is_pending_judgement(),
                !call.judged && !call.ended,
                "is_pending_judgement"
            );
        }
    }
}

/// Drops `call` and counts what the rules say a drop counts.
fn drop_call(model: &mut Model, call: &mut Call<'_>) {
    let live = std::mem::replace(&mut call.live, Live::Over);
    let call = &mut call.track;
    match live {
        Live::Over => {}
        Live::Opening(future) => {
            drop(future);
            if call.admitted_at.is_some() {
                model.judge(call, Judged::Cancelled);
            }
        }
        Live::Streaming(stream) => {
            drop(stream);
            let how = if call.first_item_at.is_some() {
                Judged::Success
            } else {
                Judged::Cancelled
            };
            model.judge(call, how);
            assert!(call.script.borrow().dropped, "the inner stream outlived its call");
        }
    }
}

/// Checks the breaker against the model after an operation; returns the
/// state the last transition entered.
fn check(
    b: &CircuitBreaker,
    seen: &Mutex<Vec<(State, State, cb_runtime::Reason)>>,
    calls: &[Call<'_>],
    model: &Model,
    mut state: State,
    manual: bool,
    max_probes: u64,
) -> State {
    for (from, to, reason) in seen.lock().unwrap().drain(..) {
        state = super::breaker::check_transition(state, from, to, reason, manual);
    }
    let s = b.stats();
    let totals = Tally {
        successes: s.successes,
        failures: s.failures,
        timeouts: s.timeouts,
        cancelled: s.cancelled,
        rejected: s.rejected,
        slow_calls: s.slow_calls,
    };
    assert_eq!(totals, model.tally, "the totals are not what the rules say");
    assert_eq!(s.ignored, 0);
    assert!(
        s.half_open_in_flight <= max_probes,
        "{} probes in flight",
        s.half_open_in_flight
    );
    if !calls.iter().any(waits) {
        assert_eq!(
            s.half_open_in_flight, 0,
            "a probe slot is taken with no call waiting"
        );
    }
    state
}
