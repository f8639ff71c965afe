//! The admin API over real TCP for families of keyed breakers: listing,
//! one family, one key, and reset / force-open / disable of one key or a
//! whole family, with the API's 400/401/403/404 answers.

use std::net::SocketAddr;

use cb_runtime::admin::{router, AdminAuth};
use cb_runtime::{Config, Registry, State};
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;

const TOKEN: &str = "Bearer s3cret";

struct Admin {
    base: String,
    http: Client,
    registry: &'static Registry,
}

async fn admin(auth: AdminAuth) -> Admin {
    let registry: &'static Registry = Box::leak(Box::new(Registry::with_env(Vec::new)));
    let llm = registry.family_or_insert("openai", || {
        Config::builder()
            .failure_threshold(1)
            .max_keys(10)
            .family_open_keys(3)
            .build()
            .unwrap()
    });
    let _ = llm
        .get_or_insert("gpt-4o")
        .call(async { Err::<(), _>("outage") })
        .await;
    let _ = llm
        .get_or_insert("gpt-4o-mini")
        .call(async { Ok::<_, ()>(()) })
        .await;
    registry.get_or_insert("postgres", Config::default);
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
    async fn send(&self, method: Method, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("authorization", token);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::GET, path, None).await
    }

    async fn post(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::POST, path, Some(TOKEN)).await
    }

    fn state(&self, key: &str) -> State {
        self.registry.family("openai").unwrap().get(key).unwrap().state()
    }
}

#[tokio::test]
async fn families_and_their_keys_are_listed() {
    let admin = admin(AdminAuth::bearer("s3cret")).await;
    let (status, list) = admin.get("/families").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["total"], 1);
    let family = &list["families"][0];
    assert_eq!(family["name"], "openai");
    assert_eq!(family["state"], "closed");
    assert_eq!(family["len"], 2);
    assert_eq!(family["open_keys"], 1);
    assert_eq!(family["config"]["max_keys"], 10);
    assert_eq!(family["config"]["family_open_keys"], 3);
    let keys: Vec<(&str, &str)> = family["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["key"].as_str().unwrap(), k["state"].as_str().unwrap()))
        .collect();
    assert_eq!(keys, [("gpt-4o", "open"), ("gpt-4o-mini", "closed")]);
    assert_eq!(family["keys"][0]["name"], "openai");

    // The breaker list carries the families too (the status page reads it),
    // and unkeyed breakers have no `key`.
    let (_, all) = admin.get("/circuit-breakers").await;
    assert_eq!(all["total"], 1);
    assert!(all["circuit_breakers"][0].get("key").is_none());
    assert_eq!(all["families"][0]["name"], "openai");

    let (status, one) = admin.get("/families/openai").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["keys"].as_array().unwrap().len(), 2);
    let (status, key) = admin.get("/families/openai/keys/gpt-4o").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (key["name"].as_str(), key["key"].as_str()),
        (Some("openai"), Some("gpt-4o"))
    );
    assert_eq!(key["stats"]["failures"], 1);

    // /health counts keys one by one.
    let (status, health) = admin.get("/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(health["circuit_breakers"]["openai/gpt-4o"], "unhealthy");
    assert_eq!(health["summary"]["total"], 3);
}

#[tokio::test]
async fn one_key_is_reset_forced_open_and_disabled() {
    let admin = admin(AdminAuth::bearer("s3cret")).await;
    let (status, body) = admin.post("/families/openai/keys/gpt-4o/reset").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (
            body["key"].as_str(),
            body["previous_state"].as_str(),
            body["state"].as_str()
        ),
        (Some("gpt-4o"), Some("open"), Some("closed"))
    );
    assert_eq!(admin.state("gpt-4o"), State::Closed);
    let (status, _) = admin.post("/families/openai/keys/gpt-4o-mini/force-open").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(admin.state("gpt-4o-mini"), State::ForcedOpen);
    assert_eq!(admin.state("gpt-4o"), State::Closed, "the other key is untouched");
    let (status, _) = admin.post("/families/openai/keys/gpt-4o/disable").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(admin.state("gpt-4o"), State::Disabled);
}

#[tokio::test]
async fn a_whole_family_is_reset_forced_open_and_disabled() {
    let admin = admin(AdminAuth::bearer("s3cret")).await;
    let (status, body) = admin.post("/families/openai/force-open").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["state"].as_str(), body["keys"].as_u64()),
        (Some("forced_open"), Some(2))
    );
    assert_eq!(
        (admin.state("gpt-4o"), admin.state("gpt-4o-mini")),
        (State::ForcedOpen, State::ForcedOpen)
    );
    let (status, body) = admin.post("/families/openai/disable").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["previous_state"], "forced_open");
    assert_eq!(admin.state("gpt-4o"), State::Disabled);
    let (status, body) = admin.post("/families/openai/reset").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["state"], "closed");
    assert_eq!(
        (admin.state("gpt-4o"), admin.state("gpt-4o-mini")),
        (State::Closed, State::Closed)
    );
}

#[tokio::test]
async fn bad_requests_get_json_reasons() {
    let admin = admin(AdminAuth::bearer("s3cret")).await;
    // Unauthenticated: 401 before anything is looked up, even for unknown names.
    for path in ["/families/openai/reset", "/families/nope/keys/x/force-open"] {
        let (status, body) = admin.send(Method::POST, path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(body["error"]["code"], "unauthorized");
        let (status, _) = admin.send(Method::POST, path, Some("Bearer wrong")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    assert_eq!(admin.state("gpt-4o"), State::Open);
    // Unknown family or key: 404, naming it.
    let (status, body) = admin.get("/families/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("nope"),
        "{body}"
    );
    let (status, body) = admin.get("/families/openai/keys/claude").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("claude"),
        "{body}"
    );
    let (status, _) = admin.post("/families/openai/keys/claude/reset").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        admin.registry.family("openai").unwrap().get("claude").is_none(),
        "a 404 creates no key"
    );
    let (status, _) = admin.post("/families/nope/reset").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A name or key no breaker can have: 400.
    for path in [
        "/families/openai/keys/a%0Ab",
        "/families/%20/keys/x",
        "/families/a%0Ab",
    ] {
        let (status, body) = admin.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["error"]["code"], "bad_name");
    }
    let (status, body) = admin.post("/families/openai/keys/a%0Ab/reset").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // The wrong method: 405 with Allow.
    let response = admin
        .http
        .get(format!("{}/families/openai/keys/gpt-4o/reset", admin.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "POST");
    let response = admin
        .http
        .post(format!("{}/families/openai/keys/gpt-4o", admin.base))
        .header("authorization", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "GET, HEAD");
}

#[tokio::test]
async fn without_a_token_family_mutations_are_forbidden() {
    let admin = admin(AdminAuth::disabled()).await;
    let (status, body) = admin.post("/families/openai/force-open").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "forbidden");
    assert_eq!(admin.state("gpt-4o-mini"), State::Closed);
}

#[tokio::test]
async fn metrics_of_the_admin_router_carry_keys() {
    let admin = admin(AdminAuth::disabled()).await;
    let text = admin
        .http
        .get(format!("{}/metrics", admin.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(r#"circuit_breaker_state{key="gpt-4o",name="openai"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"circuit_breaker_state{name="postgres"} 0"#),
        "{text}"
    );
}

/// A key `..` as a path segment resolves to the whole family's action (a URL
/// parser treats `%2e%2e` the same); the query form addresses it alone.
#[tokio::test]
async fn a_key_spelled_dot_dot_is_acted_on_alone_through_the_query_form() {
    let admin = admin(AdminAuth::bearer("s3cret")).await;
    let family = admin.registry.family("openai").unwrap();
    family.get_or_insert("..");
    let (status, body) = admin.post("/families/openai/key/force-open?key=..").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["key"], "..");
    assert_eq!(family.get("..").unwrap().state(), State::ForcedOpen);
    assert_eq!(admin.state("gpt-4o-mini"), State::Closed, "no other key moved");
    assert_eq!(family.state(), State::Closed, "the family itself did not move");
    let (status, one) = admin.get("/families/openai/key?key=..").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["state"], "forced_open");
    // A missing key, an unknown one, and no token.
    let (status, body) = admin.post("/families/openai/key/reset").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("?key="),
        "{body}"
    );
    let (status, _) = admin.post("/families/openai/key/reset?key=nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = admin
        .send(Method::POST, "/families/openai/key/reset?key=..", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The status page addresses keys through the query.
    let script = admin
        .http
        .get(format!("{}/ui/status.js", admin.base))
        .send()
        .await
        .unwrap();
    let script = script.text().await.unwrap();
    assert!(
        script.contains("\"/key\", query: \"?key=\""),
        "the page's key actions use the query form"
    );
}

/// A family closed as a whole with open and throttled keys reads as
/// degraded, and names those keys.
#[tokio::test]
async fn a_family_with_open_keys_reads_as_degraded_and_names_them() {
    let admin = admin(AdminAuth::bearer("s3cret")).await;
    let family = admin.registry.family("openai").unwrap();
    family
        .get_or_insert("o3")
        .try_acquire()
        .unwrap()
        .record_outcome(cb_runtime::Outcome::Throttled);
    let (_, view) = admin.get("/families/openai").await;
    assert_eq!(view["state"], "closed");
    assert_eq!(view["status"], "degraded", "{view}");
    assert_eq!(view["open"], serde_json::json!(["gpt-4o"]));
    assert_eq!(view["throttled"], serde_json::json!(["o3"]));
    assert_eq!(view["evictions"], 0);
    assert_eq!(view["unguarded_calls"]["full"], 0);
    family.reset();
    let (_, view) = admin.get("/families/openai").await;
    assert_eq!(view["status"], "ok", "{view}");
}

/// A key open only for a rate limit is not an outage: `/health` stays 200,
/// and names it `throttled`. A key holding `/` is escaped in the map.
#[tokio::test]
async fn health_calls_a_throttled_key_throttled_and_escapes_slashes() {
    let admin = admin(AdminAuth::bearer("s3cret")).await;
    let family = admin.registry.family("openai").unwrap();
    family.get("gpt-4o").unwrap().reset();
    let slashed = family.get_or_insert("org/a/b");
    slashed
        .try_acquire()
        .unwrap()
        .record_outcome(cb_runtime::Outcome::Throttled);
    let (status, health) = admin.get("/health").await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!(health["status"], "healthy");
    assert_eq!(
        health["circuit_breakers"]["openai/org%2Fa%2Fb"], "throttled",
        "{health}"
    );
    assert_eq!(health["summary"]["throttled"], 1);
    assert_eq!(health["summary"]["unhealthy"], 0);
    let h = admin.registry.health();
    assert!(h.healthy && h.throttled == 1 && h.open == 1, "{h:?}");
    // An outage is still unhealthy.
    let _ = family
        .get_or_insert("gpt-4o")
        .call(async { Err::<(), _>("down") })
        .await;
    let (status, health) = admin.get("/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(health["circuit_breakers"]["openai/gpt-4o"], "unhealthy");
}
