//! Helpers shared by the root package's test binaries (`mod support;`).

/// The keyed-breaker tests' helpers.
#[allow(dead_code)]
pub mod keyed;

use std::future::Future;
use std::io::Write;
use std::pin::pin;
use std::sync::Once;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// Runs `f`, returning its result and everything logged on this thread
/// meanwhile, at DEBUG and above, as plain text.
///
/// The subscriber is the process's global one, installed on first use, and
/// writes to the buffer of the thread that logged, if that thread is
/// capturing. A subscriber scoped with `with_default` instead would race the
/// test binary's other threads: one that reaches a log line first, with no
/// subscriber of its own, can leave that callsite cached as disabled, and the
/// capture then comes back empty.
#[allow(dead_code)]
pub fn logs_of<R>(f: impl FnOnce() -> R) -> (R, String) {
    thread_local! {
        static CAPTURE: std::cell::RefCell<Option<Vec<u8>>> = const { std::cell::RefCell::new(None) };
    }
    struct ThisThread;
    impl Write for ThisThread {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            CAPTURE.with(|c| {
                if let Some(buf) = c.borrow_mut().as_mut() {
                    buf.extend_from_slice(bytes);
                }
            });
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    static GLOBAL: Once = Once::new();
    GLOBAL.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(|| ThisThread)
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("logs_of installs the test binary's only global subscriber");
    });
    CAPTURE.with(|c| *c.borrow_mut() = Some(Vec::new()));
    let out = f();
    let bytes = CAPTURE.with(|c| c.borrow_mut().take()).unwrap_or_default();
    (out, String::from_utf8(bytes).unwrap())
}

/// Polls `fut` once with a no-op waker: how the core's tests drive a call
/// without a runtime.
#[allow(dead_code)]
pub fn poll_once<F: Future>(fut: F) -> Poll<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    pin!(fut).poll(&mut cx)
}

/// `s` seconds.
#[allow(dead_code)]
pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The message of the panics tests and the soak raise on purpose, to check
/// that a panicking call counts as a failure.
#[allow(dead_code)]
pub const DELIBERATE_PANIC: &str = "deliberate panic (a test of panic handling)";

/// Keeps panics with message [`DELIBERATE_PANIC`] off stderr; every other
/// panic is reported as usual. Installs the hook once per process.
#[allow(dead_code)]
pub fn silence_deliberate_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
            if message != Some(DELIBERATE_PANIC) {
                default(info);
            }
        }));
    });
}

/// A builder on `clock` with only the consecutive-failures trigger in play
/// (the rate trigger needs a rate of 1) and a 10 s open duration.
#[allow(dead_code)]
pub fn manual(clock: &cb_runtime::clock::ManualClock) -> cb_runtime::ConfigBuilder {
    cb_runtime::Config::builder()
        .clock(clock.clock())
        .failure_rate_threshold(1.0)
        .open_duration(secs(10))
}

/// One call through `b` that succeeds with `1`, polled once.
#[allow(dead_code)]
pub fn succeed(b: &cb_runtime::CircuitBreaker) -> Result<u32, cb_runtime::CallError<&'static str>> {
    match poll_once(b.call(async { Ok(1) })) {
        Poll::Ready(r) => r,
        Poll::Pending => unreachable!("a ready future finishes on the first poll"),
    }
}

/// One call through `b` that fails with `"down"`, polled once.
#[allow(dead_code)]
pub fn fail(b: &cb_runtime::CircuitBreaker) -> Result<u32, cb_runtime::CallError<&'static str>> {
    match poll_once(b.call(async { Err("down") })) {
        Poll::Ready(r) => r,
        Poll::Pending => unreachable!("a ready future finishes on the first poll"),
    }
}

/// An HTTP client (reqwest) as a tower service: a URL in, an `http::Response`
/// with the body as text out, for the tower layer's tests.
#[allow(dead_code)]
pub fn http_client() -> impl tower::Service<
    String,
    Response = http::Response<String>,
    Error = reqwest::Error,
    Future = impl Future<Output = Result<http::Response<String>, reqwest::Error>> + Send,
> + Clone {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    tower::service_fn(move |url: String| {
        let client = client.clone();
        async move {
            let reply = client.get(url).send().await?;
            let mut response = http::Response::builder().status(reply.status());
            for (name, value) in reply.headers() {
                response = response.header(name, value);
            }
            Ok(response.body(reply.text().await?).unwrap())
        }
    })
}
