//! The admin router with fleet scope (feature `admin`): cb's own admin API
//! ([`cb_runtime::admin::router`]) plus
//!
//! | method and path | answer |
//! |---|---|
//! | `POST /circuit-breakers/{name}/reset?scope=fleet` | 200, the breaker reset here (if it exists here) and on every replica |
//! | `POST /circuit-breakers/{name}/force-open?scope=fleet` | 200, forced open everywhere, replicas joining later too |
//! | `POST /circuit-breakers/{name}/disable?scope=fleet` | 200, disabled everywhere |
//! | `GET /circuit-breakers/{name}/transitions?limit=N` | 200 `{"name", "transitions": [...]}`, newest first (N ≤ 1000, default 100), from the fleet's Redis stream; when a durable log (a cb-postgres store) is attached to the registry, cb's router answers from that instead |
//! | `GET /metrics` | cb's metrics and the fleet's (`circuit_breaker_fleet_connected`) |
//! | `GET /circuit-breakers`, `GET /circuit-breakers/{name}` | cb's answer; a breaker whose open stays on this replica, below the fleet's open quorum, gains `"fleet": {"open": "local", "opens": k, "quorum": n, "note": "local open, awaiting quorum k/n"}` |
//!
//! cb-runtime knows nothing of fleets: this router answers the fleet routes
//! itself and hands everything else to cb's router. A scoped mutation goes
//! through cb's router first (so its authentication, 400 and 405 rules apply
//! unchanged), then to the fleet; its answer gains `"scope": "fleet"`. A
//! breaker this replica has not created is still controlled fleet-wide if
//! some replica of the namespace has created it (every replica records its
//! breakers' names in Redis): the answer is 200 with `"previous_state": null`
//! (nothing changed here; a breaker of that name created here later adopts
//! the fleet's state). A name no replica has created is a 404 `not_found`. Without `scope` (or with
//! `scope=local`) a mutation is local, as in cb's router. Another scope is a
//! 400 `bad_scope`; a fleet that is not connected is a 503 `fleet_unavailable`
//! (the local change stays made).
//!
//! ```no_run
//! # async fn demo(fleet: cb_fleet::Fleet) {
//! use std::sync::Arc;
//! use cb_runtime::admin::AdminAuth;
//!
//! let admin = cb_fleet::admin::router(Arc::new(fleet), cb_runtime::registry(), AdminAuth::from_env("ADMIN_TOKEN"));
//! # let _ = admin;
//! # }
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::header::{ALLOW, CONTENT_TYPE};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use cb_runtime::admin::AdminAuth;
use cb_runtime::Registry;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::{Fleet, FleetError};

#[derive(Clone)]
struct Admin {
    fleet: Arc<Fleet>,
    registry: &'static Registry,
    inner: Router,
}

/// The admin router: cb's routes with `registry` and `auth`, plus the fleet's.
pub fn router(fleet: Arc<Fleet>, registry: &'static Registry, auth: AdminAuth) -> Router {
    let inner = cb_runtime::admin::router(registry, auth);
    let state = Admin {
        fleet,
        registry,
        inner: inner.clone(),
    };
    Router::new()
        .route("/circuit-breakers/{name}/transitions", any(transitions))
        .route("/circuit-breakers/{name}/reset", any(scoped))
        .route("/circuit-breakers/{name}/force-open", any(scoped))
        .route("/circuit-breakers/{name}/disable", any(scoped))
        .route("/metrics", any(metrics))
        .route("/circuit-breakers", any(marked))
        .route("/circuit-breakers/{name}", any(marked))
        .with_state(state)
        .fallback_service(inner)
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = json!({"error": {"status": status.as_u16(), "code": code, "message": message.into()}});
    (status, Json(body)).into_response()
}

fn fleet_error(e: FleetError) -> Response {
    match e {
        FleetError::Invalid { .. } => error(StatusCode::BAD_REQUEST, "bad_name", e.to_string()),
        _ => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "fleet_unavailable",
            e.to_string(),
        ),
    }
}

/// Hands `req` to cb's router, without this router's extensions (its matched
/// path parameters would confuse cb's).
async fn forward(inner: Router, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let mut fresh = Request::new(body);
    *fresh.method_mut() = parts.method;
    *fresh.uri_mut() = parts.uri;
    *fresh.version_mut() = parts.version;
    *fresh.headers_mut() = parts.headers;
    match inner.oneshot(fresh).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

async fn scoped(
    State(admin): State<Admin>,
    Query(q): Query<HashMap<String, String>>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    req: Request,
) -> Response {
    let scope = q.get("scope").map(String::as_str).unwrap_or("local");
    if scope != "local" && scope != "fleet" {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_scope",
            format!(
                "unknown scope `{}`: expected `local` or `fleet`",
                scope.chars().take(40).collect::<String>()
            ),
        );
    }
    let action = req.uri().path().rsplit('/').next().unwrap_or_default().to_owned();
    let to = match action.as_str() {
        "reset" => cb_runtime::State::Closed,
        "force-open" => cb_runtime::State::ForcedOpen,
        _ => cb_runtime::State::Disabled,
    };
    let post = req.method() == Method::POST;
    let local = forward(admin.inner.clone(), req).await;
    if scope == "local" {
        return local;
    }
    // cb's router checks the token, then the name, then looks the breaker
    // up: a 404 to a POST means an authorised request for a valid name that
    // this replica has not created. The fleet may know it.
    if local.status() == StatusCode::NOT_FOUND && post {
        let Ok(Path(name)) = path else {
            return local;
        };
        return match admin.fleet.manual_if(&name, to, true).await {
            Ok(true) => Json(json!({
                "name": name,
                "action": action,
                "previous_state": Value::Null,
                "state": to.as_str(),
                "scope": "fleet",
            }))
            .into_response(),
            Ok(false) => error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!(
                    "no circuit breaker is named `{name}` on this replica or any replica of fleet namespace `{}`",
                    admin.fleet.namespace()
                ),
            ),
            Err(e) => fleet_error(e),
        };
    }
    if local.status() != StatusCode::OK {
        return local;
    }
    let bytes = match axum::body::to_bytes(local.into_body(), 1 << 20).await {
        Ok(b) => b,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    };
    let mut body: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| json!({}));
    let Some(name) = body.get("name").and_then(Value::as_str).map(str::to_owned) else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "no name in the local answer",
        );
    };
    let result = match action.as_str() {
        "reset" => admin.fleet.reset(&name).await,
        "force-open" => admin.fleet.force_open(&name).await,
        _ => admin.fleet.disable(&name).await,
    };
    match result {
        Ok(()) => {
            body["scope"] = json!("fleet");
            (StatusCode::OK, Json(body)).into_response()
        }
        Err(e) => fleet_error(e),
    }
}

async fn transitions(
    State(admin): State<Admin>,
    method: Method,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Response {
    // A durable log (a cb-postgres store) attached to the registry is the
    // history's source of truth: cb's router answers from it.
    if admin.registry.transition_source().is_some() {
        return forward(admin.inner.clone(), req).await;
    }
    if method != Method::GET && method != Method::HEAD {
        let mut r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not allowed here"),
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let Ok(Path(name)) = path else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_name",
            "the breaker name is not valid percent-encoded UTF-8",
        );
    };
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 100,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_limit",
                "`limit` must be a whole number in 1..=1000",
            )
        }
    };
    match admin.fleet.transitions(&name, limit).await {
        Ok(list) => Json(json!({"name": name, "transitions": list})).into_response(),
        Err(e) => fleet_error(e),
    }
}

/// cb's view of one breaker or of all, with each open that stays local
/// (below the fleet's open quorum) marked as such.
async fn marked(State(admin): State<Admin>, req: Request) -> Response {
    let local = forward(admin.inner.clone(), req).await;
    if local.status() != StatusCode::OK || admin.fleet.open_quorum() <= 1 {
        return local;
    }
    let (mut parts, body) = local.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 << 20).await else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "breaker view body");
    };
    let Ok(mut view) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let mark = |b: &mut Value| {
        let Some(name) = b.get("name").and_then(Value::as_str) else {
            return;
        };
        if let Some(open) = admin.fleet.local_open(name) {
            b["fleet"] = json!({
                "open": "local",
                "opens": open.opens,
                "quorum": open.quorum,
                "note": open.to_string(),
            });
        }
    };
    match view.get_mut("circuit_breakers").and_then(Value::as_array_mut) {
        Some(list) => list.iter_mut().for_each(mark),
        None => mark(&mut view),
    }
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(view.to_string()))
}

async fn metrics(State(admin): State<Admin>, req: Request) -> Response {
    let local = forward(admin.inner.clone(), req).await;
    if local.status() != StatusCode::OK {
        return local;
    }
    let (parts, body) = local.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 << 20).await else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "metrics body");
    };
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    text.push_str(&admin.fleet.metrics_text());
    let mut r = Response::from_parts(parts, Body::from(text));
    r.headers_mut().remove(axum::http::header::CONTENT_LENGTH);
    if !r.headers().contains_key(CONTENT_TYPE) {
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        );
    }
    r
}
