//! `GrpcClassifier` with the tower layer, against a real tonic server and a
//! real tonic client on loopback: unary calls (whose errors come as
//! trailers-only answers) and server-streaming calls (whose status comes in
//! the trailers after the messages).
//!
//! The service is written by hand, as tonic's generated code would be, over
//! a codec of UTF-8 strings: no protoc at build time. Each request says what
//! the server answers: `ok`, `code:<n>` (that gRPC status), `code:<n>:<ms>`
//! (with `grpc-retry-pushback-ms`), and for the stream `<count>` or
//! `<count>:<n>` (messages, then that status).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut};
use cb_runtime::clock::ManualClock;
use cb_runtime::tower::{CircuitBreakerLayer, CircuitBreakerService, GrpcClassifier};
use cb_runtime::{CallError, CircuitBreaker, Config, Outcome, State};
use futures::Stream;
use http::uri::PathAndQuery;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tower::{Layer, Service};

/// Messages are UTF-8 strings, framed by gRPC.
#[derive(Clone, Copy, Default)]
struct StringCodec;

impl Codec for StringCodec {
    type Encode = String;
    type Decode = String;
    type Encoder = StringCodec;
    type Decoder = StringCodec;

    fn encoder(&mut self) -> StringCodec {
        StringCodec
    }

    fn decoder(&mut self) -> StringCodec {
        StringCodec
    }
}

impl Encoder for StringCodec {
    type Item = String;
    type Error = Status;

    fn encode(&mut self, item: String, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(item.as_bytes());
        Ok(())
    }
}

impl Decoder for StringCodec {
    type Item = String;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<String>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

/// The status a command asks for: `code:<n>[:<pushback ms>]`.
fn status_of(command: &str) -> Option<Status> {
    let mut parts = command.strip_prefix("code:")?.split(':');
    let code = Code::from_i32(parts.next()?.parse().ok()?);
    let mut metadata = MetadataMap::new();
    if let Some(ms) = parts.next() {
        metadata.insert("grpc-retry-pushback-ms", ms.parse().unwrap());
    }
    Some(Status::with_metadata(code, "as the test asked", metadata))
}

type Messages = Pin<Box<dyn Stream<Item = Result<String, Status>> + Send>>;

/// `/test.Echo/Say`: answers `ok`, or the status asked for.
async fn say(request: tonic::Request<String>) -> Result<tonic::Response<String>, Status> {
    let command = request.into_inner();
    match status_of(&command) {
        Some(status) => Err(status),
        None => Ok(tonic::Response::new(command)),
    }
}

/// `/test.Echo/Count`: `<count>[:<code>]` messages, then that status.
async fn count(request: tonic::Request<String>) -> Result<tonic::Response<Messages>, Status> {
    let command = request.into_inner();
    let (count, code) = command.split_once(':').unwrap_or((&command, "0"));
    let mut items: Vec<Result<String, Status>> =
        (0..count.parse().unwrap()).map(|i| Ok(format!("#{i}"))).collect();
    if code != "0" {
        items.push(Err(status_of(&format!("code:{code}")).unwrap()));
    }
    Ok(tonic::Response::new(Box::pin(futures::stream::iter(items))))
}

/// The hand-written server: what tonic-build would generate for
/// `service Echo { rpc Say(string) returns (string); rpc Count(string) returns (stream string); }`.
#[derive(Clone)]
struct Echo {
    hits: Arc<AtomicUsize>,
}

impl Service<http::Request<tonic::body::Body>> for Echo {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        self.hits.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(StringCodec);
            Ok(match request.uri().path() {
                "/test.Echo/Say" => grpc.unary(tower::service_fn(say), request).await,
                "/test.Echo/Count" => grpc.server_streaming(tower::service_fn(count), request).await,
                _ => Status::unimplemented("no such method").into_http(),
            })
        })
    }
}

/// A tonic server on 127.0.0.1, and the count of requests it received.
async fn server() -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let echo = Echo {
        hits: Arc::clone(&hits),
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .serve_with_incoming(echo, tonic::transport::server::TcpIncoming::from(listener)),
    );
    (addr, hits)
}

type Client = tonic::client::Grpc<CircuitBreakerService<Channel, GrpcClassifier>>;

/// A tonic client of `addr` through a breaker with `GrpcClassifier`.
fn client(addr: SocketAddr, breaker: &Arc<CircuitBreaker>) -> Client {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    let layer = CircuitBreakerLayer::new(Arc::clone(breaker)).classifier(GrpcClassifier::default());
    tonic::client::Grpc::new(layer.layer(channel))
}

async fn say_through(client: &mut Client, command: &str) -> Result<String, Status> {
    client.ready().await.map_err(|e| Status::unknown(e.to_string()))?;
    let path = PathAndQuery::from_static("/test.Echo/Say");
    let response = client
        .unary(tonic::Request::new(command.to_owned()), path, StringCodec)
        .await?;
    Ok(response.into_inner())
}

/// The messages of a streamed call, then its end: `Ok` or the status.
async fn count_through(client: &mut Client, command: &str) -> (Vec<String>, Result<(), Status>) {
    client.ready().await.unwrap();
    let path = PathAndQuery::from_static("/test.Echo/Count");
    let mut stream = match client
        .server_streaming(tonic::Request::new(command.to_owned()), path, StringCodec)
        .await
    {
        Ok(response) => response.into_inner(),
        Err(status) => return (Vec::new(), Err(status)),
    };
    let mut messages = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(message)) => messages.push(message),
            Ok(None) => return (messages, Ok(())),
            Err(status) => return (messages, Err(status)),
        }
    }
}

fn breaker(name: &str, clock: &ManualClock) -> Arc<CircuitBreaker> {
    let config = Config::builder()
        .failure_threshold(100)
        .no_slow_call_detection()
        .throttle_duration(Duration::from_secs(5))
        .clock(clock.clock())
        .build()
        .unwrap();
    Arc::new(CircuitBreaker::new(name, config))
}

/// The breaker's refusal, from the status a tonic client hands back.
fn refusal(status: &Status) -> Option<&cb_runtime::BreakerError> {
    let source = std::error::Error::source(status)?;
    source
        .downcast_ref::<CallError<tonic::transport::Error>>()?
        .breaker_error()
}

#[tokio::test]
async fn unary_statuses_count_as_the_table_says() {
    let (addr, _) = server().await;
    let clock = ManualClock::new();
    let b = breaker("grpc-unary", &clock);
    let mut client = client(addr, &b);

    assert_eq!(say_through(&mut client, "ok").await.unwrap(), "ok");
    assert_eq!(b.stats().successes, 1);

    for code in [14, 4, 13, 2, 15] {
        let status = say_through(&mut client, &format!("code:{code}"))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::from_i32(code),
            "the status reaches the client unchanged"
        );
    }
    assert_eq!(
        b.stats().failures,
        5,
        "UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, UNKNOWN, DATA_LOSS"
    );

    for code in [1, 3, 5, 6, 7, 9, 10, 11, 12, 16] {
        let status = say_through(&mut client, &format!("code:{code}"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::from_i32(code));
    }
    let stats = b.stats();
    assert_eq!((stats.ignored, stats.failures, stats.successes), (10, 5, 1));
    assert_eq!(stats.state, State::Closed);
}

#[tokio::test]
async fn resource_exhausted_is_throttled_for_its_pushback() {
    let (addr, hits) = server().await;
    let clock = ManualClock::new();
    let b = breaker("grpc-throttled", &clock);
    let mut client = client(addr, &b);

    let status = say_through(&mut client, "code:8:2500").await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    let stats = b.stats();
    assert_eq!(
        (stats.throttled, stats.failures, stats.state),
        (1, 0, State::Open)
    );

    // Refused, never sent; the refusal tells how long is left.
    let refused = say_through(&mut client, "ok").await.unwrap_err();
    let e = refusal(&refused).expect("the refusal is the status's source");
    assert!(e.is_throttled());
    assert_eq!(e.retry_after(), Some(Duration::from_millis(2500)));
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // Without pushback: the breaker's throttle_duration.
    clock.advance(Duration::from_millis(2500));
    say_through(&mut client, "code:8").await.unwrap_err();
    let e = b.try_acquire().unwrap_err();
    assert_eq!(e.retry_after(), Some(Duration::from_secs(5)));
}

#[tokio::test]
async fn failures_open_the_circuit_and_refusals_are_not_sent() {
    let (addr, hits) = server().await;
    let clock = ManualClock::new();
    let config = Config::builder()
        .failure_threshold(2)
        .no_slow_call_detection()
        .open_duration(Duration::from_secs(30))
        .clock(clock.clock())
        .build()
        .unwrap();
    let b = Arc::new(CircuitBreaker::new("grpc-open", config));
    let mut client = client(addr, &b);

    for _ in 0..2 {
        say_through(&mut client, "code:14").await.unwrap_err();
    }
    assert_eq!(b.state(), State::Open);
    let refused = say_through(&mut client, "ok").await.unwrap_err();
    assert!(refusal(&refused).unwrap().is_rejected(), "{refused:?}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "the refused call never reached the server"
    );

    // A failure's pushback opens the circuit for that long, as a 503's Retry-After does.
    clock.advance(Duration::from_secs(30));
    say_through(&mut client, "code:14:45000").await.unwrap_err();
    assert_eq!(
        b.try_acquire().unwrap_err().retry_after(),
        Some(Duration::from_secs(45))
    );
}

#[tokio::test]
async fn a_streams_status_is_read_from_its_trailers() {
    let (addr, _) = server().await;
    let clock = ManualClock::new();
    let b = breaker("grpc-stream", &clock);
    let mut client = client(addr, &b);

    let (messages, end) = count_through(&mut client, "3").await;
    assert_eq!((messages.len(), end.is_ok()), (3, true));
    assert_eq!((b.stats().successes, b.stats().failures), (1, 0));

    // Three messages, then UNAVAILABLE in the trailers: a failure, though
    // the head said 200 and the messages came.
    let (messages, end) = count_through(&mut client, "3:14").await;
    assert_eq!(messages, ["#0", "#1", "#2"]);
    assert_eq!(
        end.unwrap_err().code(),
        Code::Unavailable,
        "the trailers reach the client"
    );
    assert_eq!((b.stats().successes, b.stats().failures), (1, 1));

    // NOT_FOUND after two messages: ignored.
    let (messages, end) = count_through(&mut client, "2:5").await;
    assert_eq!((messages.len(), end.unwrap_err().code()), (2, Code::NotFound));
    assert_eq!(b.stats().ignored, 1);

    // No message at all, then DATA_LOSS.
    let (messages, end) = count_through(&mut client, "0:15").await;
    assert_eq!((messages.len(), end.unwrap_err().code()), (0, Code::DataLoss));
    assert_eq!(b.stats().failures, 2);

    // RESOURCE_EXHAUSTED after a message: throttled.
    let (_, end) = count_through(&mut client, "1:8").await;
    assert_eq!(end.unwrap_err().code(), Code::ResourceExhausted);
    assert_eq!((b.stats().throttled, b.state()), (1, State::Open));
    assert_eq!(
        b.try_acquire().unwrap_err().retry_after(),
        Some(Duration::from_secs(5))
    );
}

#[tokio::test]
async fn a_pushback_in_the_trailers_is_bounded_as_the_layer_bounds_hints() {
    let (addr, _) = server().await;
    let clock = ManualClock::new();
    let b = breaker("grpc-stream-pushback", &clock);
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    let layer = CircuitBreakerLayer::new(Arc::clone(&b))
        .max_retry_after(Duration::from_secs(2))
        .classifier(GrpcClassifier::default());
    let mut client = tonic::client::Grpc::new(layer.layer(channel));

    // Two messages, then RESOURCE_EXHAUSTED with a pushback of 30 s in the trailers.
    let (messages, end) = count_through(&mut client, "2:8:30000").await;
    assert_eq!(
        (messages.len(), end.unwrap_err().code()),
        (2, Code::ResourceExhausted)
    );
    let e = b.try_acquire().unwrap_err();
    assert!(e.is_throttled());
    assert_eq!(e.retry_after(), Some(Duration::from_secs(2)), "the layer's cap");
}

#[tokio::test]
async fn a_transport_error_is_a_failure() {
    // A port nothing listens on.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let clock = ManualClock::new();
    let b = breaker("grpc-transport", &clock);
    let mut client = client(addr, &b);

    let status = say_through(&mut client, "ok").await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(b.stats().failures, 1);
}

#[test]
fn the_classifier_reads_heads_as_grpc_does() {
    use cb_runtime::Classify;

    let head = |status: u16, grpc: Option<&str>| -> Result<http::Response<()>, ()> {
        let mut response = http::Response::builder().status(status);
        if let Some(code) = grpc {
            response = response.header("grpc-status", code);
        }
        Ok(response.body(()).unwrap())
    };
    let classify = |r: &Result<http::Response<()>, ()>| GrpcClassifier::default().classify(r);
    assert_eq!(
        classify(&head(200, None)),
        Outcome::Success,
        "the trailers will decide"
    );
    assert_eq!(classify(&head(200, Some("14"))), Outcome::Failure);
    assert_eq!(
        classify(&head(200, Some("not a code"))),
        Outcome::Failure,
        "read as UNKNOWN"
    );
    // A proxy's answer without grpc-status, read as gRPC reads it.
    assert_eq!(classify(&head(503, None)), Outcome::Failure);
    assert_eq!(classify(&head(404, None)), Outcome::Ignored);
    assert_eq!(classify(&Err(())), Outcome::Failure);
}
