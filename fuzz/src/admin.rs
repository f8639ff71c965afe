//! Fuzz target `admin`: the admin API's request handling, against a model of
//! the breakers' states.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::body::Body;
use axum::Router;
use cb_runtime::admin::{router, AdminAuth};
use cb_runtime::{Config, Registry};
use http::header::{ALLOW, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use serde_json::Value;
use tower::ServiceExt as _;

/// The token the mutations need.
const TOKEN: &str = "s3cret";

/// The breakers behind the API: plain names and names that need
/// percent-encoding in a path.
const NAMES: [&str; 6] = ["db", "openai", "with space", "ünïcödé", "slash/name", "100%"];

/// Requests per input, at most.
const MAX_REQUESTS: usize = 16;

struct Api {
    runtime: tokio::runtime::Runtime,
    registry: &'static Registry,
    router: Router,
}

fn api() -> &'static Api {
    static API: OnceLock<Api> = OnceLock::new();
    API.get_or_init(|| {
        let registry: &'static Registry = Box::leak(Box::new(Registry::with_env(Vec::new)));
        for name in NAMES {
            registry.get_or_insert(name, Config::default);
        }
        Api {
            runtime: tokio::runtime::Builder::new_current_thread().build().unwrap(),
            registry,
            router: router(registry, AdminAuth::bearer(TOKEN)),
        }
    })
}

/// One request from one block of the input: `METHOD URI` on the first line,
/// then `name: value` header lines. Blocks that no HTTP server would pass on
/// (a bad method or URI) are skipped, as are bad header lines.
fn request(block: &[u8]) -> Option<Request<Body>> {
    let mut lines = block.split(|b| *b == b'\n');
    let first = lines.next()?;
    let space = first.iter().position(|b| *b == b' ')?;
    let method = Method::from_bytes(&first[..space]).ok()?;
    let uri = Uri::try_from(&first[space + 1..]).ok()?;
    let mut request = Request::builder().method(method).uri(uri);
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(line[..colon].trim_ascii()),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        request = request.header(name, value);
    }
    request.body(Body::empty()).ok()
}

/// Checks, for any sequence of requests (blocks separated by a `0xFF` byte,
/// which no HTTP request holds):
///
/// - every answer is 200, 400, 401, 403, 404, 405 or 503, never a 5xx of the
///   server's own making, and nothing panics;
/// - every error is the JSON `{"error": {"status", "code", "message"}}` with
///   the same status; a 401 says `WWW-Authenticate`, a 405 says `Allow`;
/// - a mutation succeeds only with the token, and then moves the breaker as
///   the model says (reset: closed, force-open: forced_open, disable:
///   disabled), reporting the state before and after; anything else moves
///   no breaker;
/// - reads agree with the model: one breaker, the list, and `/health`, which
///   is 503 exactly when some breaker is forced open.
pub fn admin(data: &[u8]) {
    let api = api();
    api.registry.reset_all();
    let mut model: BTreeMap<&str, &str> = NAMES.iter().map(|n| (*n, "closed")).collect();
    for block in data.split(|b| *b == 0xff).take(MAX_REQUESTS) {
        let Some(request) = request(block) else {
            continue;
        };
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let authorised = request
            .headers()
            .get_all(AUTHORIZATION)
            .iter()
            .any(|v| v.as_bytes().windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()));
        let response = api
            .runtime
            .block_on(api.router.clone().oneshot(request))
            .unwrap_or_else(|never| match never {});
        let status = response.status();
        let headers = response.headers().clone();
        let body = api
            .runtime
            .block_on(axum::body::to_bytes(response.into_body(), 1 << 20))
            .expect("an answer's body");
        let what = format!("{method} {path} -> {status}");
        assert!(
            [200, 400, 401, 403, 404, 405, 503].contains(&status.as_u16()),
            "{what}: {}",
            String::from_utf8_lossy(&body)
        );
        if method == Method::HEAD && body.is_empty() {
            continue;
        }
        let json = || -> Value {
            assert_eq!(
                headers.get(CONTENT_TYPE).map(HeaderValue::as_bytes),
                Some(&b"application/json"[..]),
                "{what}"
            );
            serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{what}: not JSON ({e})"))
        };
        let unhealthy = model.values().any(|s| *s == "forced_open");
        match status {
            StatusCode::OK if method == Method::POST => {
                assert!(authorised, "{what} without the token");
                let answer = json();
                let name = answer["name"].as_str().expect("a name");
                let (name, state) = model
                    .iter_mut()
                    .find(|(n, _)| **n == name)
                    .expect("a known breaker");
                let after = match answer["action"].as_str() {
                    Some("reset") => "closed",
                    Some("force-open") => "forced_open",
                    Some("disable") => "disabled",
                    other => panic!("{what}: action {other:?}"),
                };
                assert_eq!(answer["previous_state"], *state, "{what}: {name}");
                assert_eq!(answer["state"], after, "{what}: {name}");
                *state = after;
            }
            StatusCode::OK if path == "/health" => {
                assert!(!unhealthy, "{what} with a breaker forced open");
                assert_eq!(json()["status"], "healthy", "{what}");
            }
            StatusCode::OK if path.starts_with("/circuit-breakers/") => {
                let answer = json();
                let name = answer["name"].as_str().expect("a name");
                assert_eq!(answer["state"], model[name], "{what}");
            }
            StatusCode::OK if path == "/circuit-breakers" => {
                let answer = json();
                assert_eq!(answer["total"], NAMES.len(), "{what}");
                for view in answer["circuit_breakers"].as_array().expect("a list") {
                    let name = view["name"].as_str().expect("a name");
                    assert_eq!(view["state"], model[name], "{what}: {name}");
                }
            }
            StatusCode::OK => {}
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(path == "/health" && unhealthy, "{what}");
                assert_eq!(json()["status"], "degraded", "{what}");
            }
            error => {
                let answer = json();
                assert_eq!(answer["error"]["status"], error.as_u16(), "{what}");
                for part in ["code", "message"] {
                    assert!(
                        answer["error"][part].as_str().is_some_and(|s| !s.is_empty()),
                        "{what}: {answer}"
                    );
                }
                if error == StatusCode::UNAUTHORIZED {
                    assert!(headers.contains_key(WWW_AUTHENTICATE), "{what}");
                }
                if error == StatusCode::METHOD_NOT_ALLOWED {
                    assert!(headers.contains_key(ALLOW), "{what}");
                }
            }
        }
    }
    for (name, state) in model {
        let breaker = api.registry.get(name).expect("the breakers stay");
        assert_eq!(
            breaker.state().as_str(),
            state,
            "{name} moved without a successful mutation"
        );
    }
}
