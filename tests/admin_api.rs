//! The admin API over real TCP on 127.0.0.1, with a real HTTP client: every
//! route, and every status code it answers.

use std::net::SocketAddr;
use std::sync::Arc;

use cb_runtime::admin::{router, AdminAuth};
use cb_runtime::{CircuitBreaker, Config, Preset, Registry, State};
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::Value;

const TOKEN: &str = "correct horse battery staple";

struct Admin {
    base: String,
    http: Client,
    registry: &'static Registry,
}

/// A fresh registry holding `openai` (llm) and `postgres` (database),
/// served by the admin router on a random port.
async fn admin(auth: AdminAuth) -> Admin {
    let registry: &'static Registry = Box::leak(Box::new(Registry::with_env(Vec::new)));
    registry.get_or_insert("openai", || Preset::Llm.config());
    registry.get_or_insert("postgres", || Preset::Database.config());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(registry, auth)).await.unwrap() });
    Admin {
        base: format!("http://{addr}"),
        http: Client::builder().no_proxy().build().unwrap(),
        registry,
    }
}

impl Admin {
    async fn send(&self, method: Method, path: &str, token: Option<&str>) -> Response {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("authorization", token);
        }
        request.send().await.unwrap()
    }

    async fn get(&self, path: &str) -> Response {
        self.send(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, authorization: Option<&str>) -> Response {
        self.send(Method::POST, path, authorization).await
    }

    fn breaker(&self, name: &str) -> Arc<CircuitBreaker> {
        self.registry.get(name).unwrap()
    }
}

fn bearer() -> Option<&'static str> {
    Some("Bearer correct horse battery staple")
}

/// The status, and the body as JSON.
async fn json(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{status}: {content_type}"
    );
    (status, response.json().await.unwrap())
}

/// Asserts a JSON error with `status` and `code`.
async fn error(response: Response, status: u16, code: &str) -> Value {
    let (got, body) = json(response).await;
    assert_eq!(got.as_u16(), status, "{body}");
    assert_eq!(body["error"]["status"], status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    body
}

#[tokio::test]
async fn list_every_breaker_with_stats_and_config() {
    let admin = admin(AdminAuth::bearer(TOKEN)).await;
    let (status, body) = json(admin.get("/circuit-breakers").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["total"], 2);
    let names: Vec<&str> = body["circuit_breakers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["openai", "postgres"]);
    let openai = &body["circuit_breakers"][0];
    assert_eq!(openai["state"], "closed");
    assert_eq!(openai["stats"]["failures"], 0);
    assert_eq!(openai["config"]["failure_threshold"], 3);
    assert_eq!(openai["config"]["open_duration_ms"], 120_000);
}

#[tokio::test]
async fn one_breaker_counts_what_happened() {
    let admin = admin(AdminAuth::disabled()).await;
    let openai = admin.breaker("openai");
    let _ = openai.call(async { Err::<(), _>("503") }).await;
    let _ = openai.call(async { Ok::<_, ()>(()) }).await;
    openai.record_fallback(cb_runtime::FallbackReason::Refusal);
    openai.record_fallback(cb_runtime::FallbackReason::Throttled);
    openai.record_fallback(cb_runtime::FallbackReason::Error);
    openai.record_fallback(cb_runtime::FallbackReason::Error);

    let (status, body) = json(admin.get("/circuit-breakers/openai").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["name"], "openai");
    assert_eq!(body["stats"]["successes"], 1);
    assert_eq!(body["stats"]["failures"], 1);
    assert_eq!(body["stats"]["calls"], 2);
    assert_eq!(
        body["stats"]["fallbacks"],
        serde_json::json!({"refusal": 1, "timeout": 0, "failure": 0, "throttled": 1, "error": 2})
    );
    assert_eq!(body["config"]["half_open_max_calls"], 2);
}

#[tokio::test]
async fn unknown_breaker_is_404() {
    let admin = admin(AdminAuth::bearer(TOKEN)).await;
    let body = error(admin.get("/circuit-breakers/nope").await, 404, "not_found").await;
    assert!(body["error"]["message"].as_str().unwrap().contains("nope"));
    error(
        admin.post("/circuit-breakers/nope/reset", bearer()).await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn malformed_names_are_400() {
    let admin = admin(AdminAuth::bearer(TOKEN)).await;
    let long = "x".repeat(300);
    for path in ["%FF%FE", "a%00b", "tab%09", long.as_str(), "%20%0A"] {
        error(
            admin.get(&format!("/circuit-breakers/{path}")).await,
            400,
            "bad_name",
        )
        .await;
        let reset = format!("/circuit-breakers/{path}/reset");
        error(admin.post(&reset, bearer()).await, 400, "bad_name").await;
    }
}

#[tokio::test]
async fn mutations_need_the_token_401() {
    let admin = admin(AdminAuth::bearer(TOKEN)).await;
    for action in ["reset", "force-open", "disable"] {
        let path = format!("/circuit-breakers/openai/{action}");
        for authorization in [
            None,
            Some("Bearer wrong"),
            Some("Bearer correct horse battery stapl"),
            Some("Bearer correct horse battery staple!"),
            Some("Bearer "),
            Some("Basic Y29ycmVjdDpob3JzZQ=="),
            Some("correct horse battery staple"),
        ] {
            let response = admin.post(&path, authorization).await;
            assert_eq!(
                response.headers()["www-authenticate"],
                "Bearer realm=\"cb-admin\"",
                "{authorization:?}"
            );
            error(response, 401, "unauthorized").await;
        }
    }
    assert_eq!(admin.breaker("openai").state(), State::Closed, "nothing changed");
}

#[tokio::test]
async fn authentication_comes_before_the_name() {
    let admin = admin(AdminAuth::bearer(TOKEN)).await;
    // Unauthenticated callers learn nothing about which breakers exist.
    error(
        admin.post("/circuit-breakers/nope/force-open", None).await,
        401,
        "unauthorized",
    )
    .await;
    error(
        admin.post("/circuit-breakers/%FF/force-open", None).await,
        401,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn no_token_configured_means_mutations_are_off_403() {
    for auth in [AdminAuth::disabled(), AdminAuth::bearer("")] {
        assert!(!auth.mutations_enabled());
        let admin = admin(auth).await;
        for authorization in [None, bearer(), Some("Bearer "), Some("Bearer anything")] {
            let response = admin
                .post("/circuit-breakers/openai/force-open", authorization)
                .await;
            error(response, 403, "forbidden").await;
        }
        assert_eq!(admin.breaker("openai").state(), State::Closed);
        // Reading still works.
        assert_eq!(
            admin.get("/circuit-breakers/openai").await.status(),
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn force_open_disable_and_reset_with_the_token() {
    let admin = admin(AdminAuth::bearer(TOKEN)).await;
    let steps = [
        ("force-open", "closed", "forced_open"),
        ("disable", "forced_open", "disabled"),
        ("reset", "disabled", "closed"),
    ];
    for (action, before, after) in steps {
        let (status, body) = json(
            admin
                .post(&format!("/circuit-breakers/openai/{action}"), bearer())
                .await,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["name"], "openai");
        assert_eq!(body["action"], action);
        assert_eq!(body["previous_state"], before);
        assert_eq!(body["state"], after);
        assert_eq!(admin.breaker("openai").state().as_str(), after);
    }
    // A lower-case scheme is accepted too.
    let lower = admin.post(
        "/circuit-breakers/postgres/force-open",
        Some("bearer correct horse battery staple"),
    );
    assert_eq!(lower.await.status(), StatusCode::OK);
    assert_eq!(admin.breaker("postgres").state(), State::ForcedOpen);
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let admin = admin(AdminAuth::bearer(TOKEN)).await;
    let cases = [
        (Method::GET, "/circuit-breakers/openai/reset", "POST"),
        (Method::PUT, "/circuit-breakers/openai/force-open", "POST"),
        (Method::DELETE, "/circuit-breakers/openai", "GET, HEAD"),
        (Method::POST, "/circuit-breakers", "GET, HEAD"),
        (Method::POST, "/health", "GET, HEAD"),
        (Method::PATCH, "/metrics", "GET, HEAD"),
    ];
    for (method, path, allow) in cases {
        let response = admin.send(method.clone(), path, bearer()).await;
        assert_eq!(response.headers()["allow"], allow, "{method} {path}");
        error(response, 405, "method_not_allowed").await;
    }
    assert_eq!(admin.breaker("openai").state(), State::Closed);
}

#[tokio::test]
async fn unknown_route_is_a_json_404() {
    let admin = admin(AdminAuth::bearer(TOKEN)).await;
    for path in [
        "/nope",
        "/circuit-breakers/openai/explode",
        "/circuit-breakers/openai/reset/again",
    ] {
        error(admin.get(path).await, 404, "not_found").await;
    }
    error(
        admin.post("/circuit-breakers/openai/explode", bearer()).await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn health_is_200_healthy_or_503_degraded_with_counts() {
    let admin = admin(AdminAuth::bearer(TOKEN)).await;
    let (status, body) = json(admin.get("/health").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["healthy"], true);
    assert_eq!(body["summary"]["total"], 2);
    assert_eq!(body["summary"]["healthy"], 2);
    assert_eq!(body["circuit_breakers"]["openai"], "healthy");

    admin.breaker("openai").force_open();
    admin.breaker("postgres").disable();
    let (status, body) = json(admin.get("/health").await).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["healthy"], false);
    assert_eq!(body["circuit_breakers"]["openai"], "unhealthy");
    assert_eq!(body["circuit_breakers"]["postgres"], "healthy");
    let summary = &body["summary"];
    assert_eq!(
        (
            &summary["unhealthy"],
            &summary["forced_open"],
            &summary["disabled"],
            &summary["closed"]
        ),
        (&Value::from(1), &Value::from(1), &Value::from(1), &Value::from(0))
    );

    // The probes do not follow the breakers.
    for (path, word) in [("/health/live", "alive"), ("/health/ready", "ready")] {
        let (status, body) = json(admin.get(path).await).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], word);
    }
}

#[tokio::test]
async fn an_open_breaker_makes_health_503() {
    let admin = admin(AdminAuth::bearer(TOKEN)).await;
    let config = Config::builder().failure_threshold(1).build().unwrap();
    let b = admin.registry.get_or_insert("payments", || config);
    let _ = b.call(async { Err::<(), _>("down") }).await;
    assert_eq!(b.state(), State::Open);
    let (status, body) = json(admin.get("/health").await).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["summary"]["open"], 1);
    assert_eq!(body["circuit_breakers"]["payments"], "unhealthy");
}

#[tokio::test]
async fn a_half_open_breaker_is_degraded_but_healthy_overall() {
    let admin = admin(AdminAuth::bearer(TOKEN)).await;
    let clock = cb_runtime::clock::ManualClock::new();
    let config = Config::builder().clock(clock.clock()).build().unwrap();
    let b = admin.registry.get_or_insert("search", || config);
    b.open_for(std::time::Duration::from_secs(1));
    clock.advance(std::time::Duration::from_secs(2));
    let (status, body) = json(admin.get("/health").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["circuit_breakers"]["search"], "degraded");
    assert_eq!(body["summary"]["half_open"], 1);
    assert_eq!(body["summary"]["degraded"], 1);
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let admin = admin(AdminAuth::disabled()).await;
    let _ = admin.breaker("postgres").call(async { Ok::<_, ()>(1) }).await;
    let response = admin.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    assert!(text.contains("# TYPE circuit_breaker_state gauge"), "{text}");
    assert!(
        text.contains(r#"circuit_breaker_state{name="openai"} 0"#),
        "{text}"
    );
    assert!(
        text.contains(r#"circuit_breaker_calls_total{name="postgres",outcome="success"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn head_works_on_reads() {
    let admin = admin(AdminAuth::disabled()).await;
    let response = admin.send(Method::HEAD, "/health/live", None).await;
    assert_eq!(response.status(), StatusCode::OK);
}

/// A durable transition log that answers from memory, or fails.
struct FakeLog(Option<Vec<cb_runtime::history::StoredTransition>>);

impl cb_runtime::history::TransitionSource for FakeLog {
    fn source(&self) -> &'static str {
        "fake"
    }

    fn transitions<'a>(&'a self, name: &'a str, limit: usize) -> cb_runtime::history::TransitionsFuture<'a> {
        let answer = match &self.0 {
            Some(list) => Ok(list
                .iter()
                .filter(|t| t.name == name)
                .take(limit)
                .cloned()
                .collect()),
            None => Err("connection refused".to_owned()),
        };
        Box::pin(async move { answer })
    }
}

#[tokio::test]
async fn transitions_come_from_the_attached_log() {
    let admin = admin(AdminAuth::disabled()).await;
    error(
        admin.get("/circuit-breakers/openai/transitions").await,
        404,
        "no_transition_log",
    )
    .await;
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
    let t = |to, reason: &str| {
        cb_runtime::history::StoredTransition::new("openai", None, State::Closed, to, reason, "r1", at)
    };
    admin.registry.set_transition_source(Arc::new(FakeLog(Some(vec![
        t(State::Open, "consecutive failures"),
        t(State::ForcedOpen, "forced open"),
    ]))));
    let (status, body) = json(admin.get("/circuit-breakers/openai/transitions?limit=1").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["name"], "openai");
    assert_eq!(body["source"], "fake");
    let list = body["transitions"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["from"], "closed");
    assert_eq!(list[0]["to"], "open");
    assert_eq!(list[0]["reason"], "consecutive failures");
    assert_eq!(list[0]["replica_id"], "r1");
    assert_eq!(list[0]["key"], Value::Null);
    assert_eq!(list[0]["occurred_at_ms"], 1_700_000_000_123u64);
    // A name this process never created may still have a history.
    let (status, body) = json(admin.get("/circuit-breakers/elsewhere/transitions").await).await;
    assert_eq!(
        (status, body["transitions"].as_array().unwrap().len()),
        (StatusCode::OK, 0)
    );
    error(
        admin.get("/circuit-breakers/openai/transitions?limit=0").await,
        400,
        "bad_limit",
    )
    .await;
    error(
        admin.get("/circuit-breakers/openai/transitions?limit=x").await,
        400,
        "bad_limit",
    )
    .await;
    let r = admin
        .send(Method::POST, "/circuit-breakers/openai/transitions", bearer())
        .await;
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    error(r, 405, "method_not_allowed").await;
    admin.registry.set_transition_source(Arc::new(FakeLog(None)));
    error(
        admin.get("/circuit-breakers/openai/transitions").await,
        503,
        "transition_log_unavailable",
    )
    .await;
}
