//! An [axum] router to watch and steer the breakers of a registry (feature
//! `admin`): status, health for Kubernetes probes, Prometheus metrics, and
//! reset / force-open / disable behind a bearer token.
//!
//! | method and path | answer |
//! |---|---|
//! | `GET /circuit-breakers` | 200, every breaker's state, counts and configuration |
//! | `GET /circuit-breakers/{name}` | 200, one breaker; 404 if there is none by that name |
//! | `GET /circuit-breakers/{name}/transitions?limit=N` | 200 `{"name", "source", "transitions": [...]}`, newest first (N ≤ 1000, default 100), from the durable log attached with [`Registry::set_transition_source`] (a cb-postgres store); 404 `no_transition_log` without one, 503 while it cannot be read |
//! | `POST /circuit-breakers/{name}/reset` | 200, closes it ([`CircuitBreaker::reset`]) |
//! | `POST /circuit-breakers/{name}/force-open` | 200, refuses every call until reset ([`CircuitBreaker::force_open`]) |
//! | `POST /circuit-breakers/{name}/disable` | 200, lets every call through until reset ([`CircuitBreaker::disable`]) |
//! | `GET /health` | 200 `healthy`, or 503 `degraded` while a breaker is open or forced open for an outage (a throttled one is not unhealthy), with counts |
//! | `GET /health/live` | 200 while the process serves HTTP (liveness probe) |
//! | `GET /health/ready` | 200 while the process serves HTTP (readiness probe; see below) |
//! | `GET /health/startup` | 200 once the configuration has loaded and validated, else 503 with the [`ConfigError`](crate::ConfigError) (startup probe; see below) |
//! | `GET /metrics` | 200, Prometheus text format ([`crate::metrics`]) |
//! | `GET /` | the status page: every breaker, refreshed every 2 s, with the three actions |
//! | `GET /families`, `/families/{name}`, `/families/{name}/keys/{key}` | 200, families of keyed breakers and their keys ([`families`]) |
//! | `POST /families/{name}/{action}`, `/families/{name}/keys/{key}/{action}` | 200, `reset`, `force-open` or `disable` a whole family or one key |
//!
//! **The status page** (`GET /`, with `GET /ui/status.js` and `GET
//! /ui/status.css`) shows each breaker's state as a word and a colour, its
//! failure and slow-call rates, its totals, the time it stays open, and the
//! fleet's connection when a fleet joined the registry. It reads `GET
//! /circuit-breakers` every two seconds. Its reset, force-open and disable
//! buttons ask for the bearer token and keep it in the page's memory only
//! (never in a URL, a cookie or browser storage), and show a 401 or 403 as
//! such. It loads nothing from elsewhere, so it works offline, and is sent
//! with a Content-Security-Policy that allows only this origin's script,
//! style and API. It uses relative URLs: serve the router at the root of its
//! own port.
//!
//! **Authentication.** The three `POST` routes need `Authorization: Bearer
//! <token>`, compared with the configured token in constant time. A missing,
//! malformed or wrong token is a 401 (with `WWW-Authenticate: Bearer`). With
//! no token configured ([`AdminAuth::disabled`], or an empty token) the
//! mutations are off: every `POST` is a 403, never open to anyone. The `GET`
//! routes need no token, so probes and Prometheus can reach them; serve the
//! router on an internal port.
//!
//! **Errors** are JSON, `{"error": {"status": 404, "code": "not_found",
//! "message": "..."}}`: 400 for a malformed breaker name (bad
//! percent-encoding, or a name no breaker can have: empty or only white
//! space, over 256 bytes, or with control characters), 401,
//! 403, 404 for an unknown breaker or route, 405 for a known route with the
//! wrong method (with an `Allow` header). The authentication check comes before
//! the name is looked at, so an unauthenticated caller learns nothing about
//! which breakers exist.
//!
//! **Startup** (`GET /health/startup`) is 200 `{"status": "started"}` once
//! [`Registry::check_startup`] passes: the `CB_CONFIG` file, if any, has
//! loaded into the registry (the probe reads it if no breaker has yet), and
//! the environment and that file validate now. Before that it is 503
//! `{"status": "starting", "error": {"field", "value", "expected",
//! "message"}}` with the first [`ConfigError`](crate::ConfigError).
//!
//! **Readiness** does not follow the breakers: an open breaker is the
//! breaker doing its job (failing fast, serving a fallback), and taking every
//! replica out of the load balancer because a shared dependency is down would
//! turn a degraded service into a full outage. `/health` reports degradation.
//!
//! ```
//! use cb_runtime::admin::{router, AdminAuth};
//!
//! let admin = router(cb_runtime::registry(), AdminAuth::bearer("s3cret"));
//! // axum::serve(tokio::net::TcpListener::bind("127.0.0.1:9000").await?, admin).await?;
//! # let _ = admin;
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State as AxumState};
use axum::http::header::{ALLOW, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use prometheus::core::Collector;
use serde::Serialize;
use subtle::ConstantTimeEq;

use crate::breaker::CircuitBreaker;
use crate::config::Config;
use crate::metrics::{encode, BreakerCollector};
use crate::registry::{FleetStatus, Registry};
use crate::state::State;
use crate::stats::Stats;

pub mod families;
mod history;
mod page;

pub use history::{TransitionView, TransitionsView};

/// The longest breaker name, in bytes: the API accepts every name a
/// breaker can have (see [`CircuitBreaker::new`]).
pub const MAX_NAME_LEN: usize = cb_syntax::MAX_NAME_LEN;

/// Who may use the mutating routes (`reset`, `force-open`, `disable`).
#[derive(Clone)]
pub struct AdminAuth {
    token: Option<Arc<[u8]>>,
}

impl AdminAuth {
    /// Mutations need `Authorization: Bearer <token>`.
    ///
    /// The token is trimmed first (a secret mounted from a file often ends in
    /// a newline). An empty token turns mutations off, as
    /// [`disabled`](Self::disabled) does. A token no client could send (see
    /// [`try_bearer`](Self::try_bearer)) also turns them off, failing closed,
    /// and is logged at ERROR; call `try_bearer` to refuse to start instead.
    pub fn bearer(token: impl Into<String>) -> Self {
        AdminAuth::try_bearer(token).unwrap_or_else(|error| {
            tracing::error!(target: "cb_runtime", %error, "admin mutations are disabled: {error}");
            AdminAuth::disabled()
        })
    }

    /// Like [`bearer`](Self::bearer), refusing a token that no HTTP client
    /// could present: after trimming, every character must be visible ASCII
    /// (`!` to `~`) or a space, as an `Authorization` header carries it. An empty token
    /// is accepted and turns mutations off.
    ///
    /// ```
    /// use cb_runtime::admin::AdminAuth;
    ///
    /// assert!(AdminAuth::try_bearer("s3cret\n")?.mutations_enabled());
    /// let refused = AdminAuth::try_bearer("pässword").unwrap_err();
    /// assert!(refused.to_string().contains("visible ASCII"));
    /// # Ok::<(), cb_runtime::admin::AdminAuthError>(())
    /// ```
    pub fn try_bearer(token: impl Into<String>) -> Result<Self, AdminAuthError> {
        let token = token.into();
        let token = token.trim();
        if let Some((at, c)) = token
            .char_indices()
            .find(|&(_, c)| !(c.is_ascii_graphic() || c == ' '))
        {
            return Err(AdminAuthError {
                reason: format!(
                    "the admin token has {c:?} at byte {at}; expected visible ASCII (`!` to `~`) and spaces \
                     only, which is all an `Authorization: Bearer` header can carry"
                ),
            });
        }
        Ok(AdminAuth {
            token: (!token.is_empty()).then(|| Arc::from(token.as_bytes())),
        })
    }

    /// Mutations are off: every `POST` answers 403. The read-only routes work.
    pub fn disabled() -> Self {
        AdminAuth { token: None }
    }

    /// The token from environment variable `var`, as [`bearer`](Self::bearer)
    /// takes it; mutations are off when it is unset, empty, not UTF-8 or
    /// unusable (logged at ERROR).
    pub fn from_env(var: &str) -> Self {
        std::env::var(var).map_or_else(|_| AdminAuth::disabled(), AdminAuth::bearer)
    }

    /// `true` when a token is configured, so mutations can be authorised.
    pub fn mutations_enabled(&self) -> bool {
        self.token.is_some()
    }

    /// Checks an `Authorization` header value against the token.
    fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(expected) = &self.token else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "mutations are disabled: no admin token is configured",
            ));
        };
        // The scheme is case-insensitive (RFC 7235, section 2.1).
        let given = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim_start().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        match given {
            Some(given) if token_matches(expected, given.as_bytes()) => Ok(()),
            Some(_) => Err(ApiError::unauthorized("the bearer token is not valid")),
            None => Err(ApiError::unauthorized(
                "this route needs an `Authorization: Bearer <token>` header",
            )),
        }
    }
}

/// An admin token that no client could present; see [`AdminAuth::try_bearer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminAuthError {
    reason: String,
}

impl fmt::Display for AdminAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for AdminAuthError {}

impl fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the token.
        f.debug_struct("AdminAuth")
            .field("mutations_enabled", &self.mutations_enabled())
            .finish()
    }
}

/// Compares in time that depends only on the expected token's length: every
/// byte of it is compared, whatever the given token holds.
fn token_matches(expected: &[u8], given: &[u8]) -> bool {
    let mut same = (expected.len() as u64).ct_eq(&(given.len() as u64));
    for (i, e) in expected.iter().enumerate() {
        same &= e.ct_eq(given.get(i).unwrap_or(&0));
    }
    same.into()
}

/// The admin router for `registry` (usually [`registry()`](crate::registry())):
/// see the [module documentation](self) for its routes.
///
/// The registry is `'static` because [`/metrics`](crate::metrics) reads it
/// when Prometheus scrapes; a private registry can be leaked with
/// `Box::leak(Box::new(Registry::new()))`.
pub fn router(registry: &'static Registry, auth: AdminAuth) -> Router {
    let state = Admin { registry, auth };
    families::routes(Router::new())
        .route("/circuit-breakers", get(list))
        .route("/circuit-breakers/{name}", get(one))
        .route("/circuit-breakers/{name}/transitions", get(history::transitions))
        .route(
            "/circuit-breakers/{name}/reset",
            mutation("reset", CircuitBreaker::reset),
        )
        .route(
            "/circuit-breakers/{name}/force-open",
            mutation("force-open", CircuitBreaker::force_open),
        )
        .route(
            "/circuit-breakers/{name}/disable",
            mutation("disable", CircuitBreaker::disable),
        )
        .route("/health", get(health))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/health/startup", get(startup))
        .route("/", get(page::page))
        .route("/ui/status.js", get(page::script))
        .route("/ui/status.css", get(page::style))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

#[derive(Clone)]
struct Admin {
    registry: &'static Registry,
    auth: AdminAuth,
}

// ---- JSON shapes ------------------------------------------------------------

/// One breaker, as `GET /circuit-breakers/{name}` returns it.
#[derive(Clone, Debug, Serialize)]
pub struct BreakerView {
    /// The breaker's name (a keyed breaker's is its family's).
    pub name: String,
    /// A keyed breaker's key; absent for an unkeyed breaker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `closed`, `open`, `half_open`, `forced_open` or `disabled`.
    pub state: &'static str,
    /// Counts since the breaker was created, and of its sliding window.
    pub stats: StatsView,
    /// Its configuration.
    pub config: ConfigView,
    /// How long it stays open before probes, in milliseconds: a number while
    /// `open` ([`CircuitBreaker::open_remaining`]), `null` otherwise.
    pub open_remaining_ms: Option<u64>,
    /// `true` while open, or half-open, after a rate limit
    /// ([`CircuitBreaker::throttling`]): the dependency asked callers to
    /// wait; it is not down.
    pub throttled: bool,
    /// Why it is not closed ([`CircuitBreaker::open_reason`]): `"throttled"`,
    /// `"consecutive failures"`, `"forced open"`, ...; `null` while closed or
    /// disabled.
    pub open_reason: Option<&'static str>,
    /// `"enforce"` or `"shadow"`: a shadow breaker refuses nothing, and
    /// `stats.shadow_rejected` counts the calls it would have refused.
    pub mode: &'static str,
    /// `"threshold"` or `"adaptive"`: an adaptive breaker never opens, and
    /// `stats.refusal_share` is the share of calls it refuses now.
    pub trip: &'static str,
    /// The last health check ([`CircuitBreaker::last_health_check`]):
    /// `{"at_ms": <Unix time in ms>, "passed": bool}`; `null` before the
    /// first, or without a check.
    pub last_health_check: Option<HealthCheckView>,
    /// While ramping up after a close: the share of calls admitted (0.1 to
    /// 1); `null` otherwise.
    pub ramp_share: Option<f64>,
}

/// How a health check ended, as JSON.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct HealthCheckView {
    /// When it ended: milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// `true` when it passed.
    pub passed: bool,
}

impl From<crate::HealthCheckResult> for HealthCheckView {
    fn from(r: crate::HealthCheckResult) -> Self {
        let at_ms =
            r.at.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        HealthCheckView {
            at_ms,
            passed: r.passed,
        }
    }
}

impl BreakerView {
    /// The view of `breaker` now.
    pub fn of(breaker: &CircuitBreaker) -> Self {
        let stats = breaker.stats();
        let config = breaker.config();
        BreakerView {
            name: breaker.name().to_owned(),
            key: breaker.key().map(str::to_owned),
            state: stats.state.as_str(),
            stats: StatsView::from(&stats),
            config: ConfigView::from(&config),
            open_remaining_ms: breaker
                .open_remaining()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            throttled: breaker.throttling(),
            open_reason: breaker.open_reason().map(|r| r.as_str()),
            mode: config.mode().as_str(),
            trip: config.trip().as_str(),
            last_health_check: breaker.last_health_check().map(HealthCheckView::from),
            ramp_share: stats.ramp_share(),
        }
    }
}

/// A breaker's [`Stats`], as JSON.
#[derive(Clone, Debug, Serialize)]
pub struct StatsView {
    /// Every call counted (the sum of the seven totals below and `saturated`).
    pub calls: u64,
    /// Calls that succeeded.
    pub successes: u64,
    /// Calls that failed (timeouts are in `timeouts`, and are failures in the window).
    pub failures: u64,
    /// Calls abandoned at `call_timeout`.
    pub timeouts: u64,
    /// Calls refused without being attempted.
    pub rejected: u64,
    /// Calls whose outcome the classifier ignored.
    pub ignored: u64,
    /// Calls dropped before they finished.
    pub cancelled: u64,
    /// Calls the dependency throttled (a 429, a quota error); not failures.
    pub throttled: u64,
    /// Calls slower than `slow_call_duration`.
    pub slow_calls: u64,
    /// Failures since the last success, while closed.
    pub consecutive_failures: u64,
    /// Calls in the sliding window.
    pub calls_in_window: u64,
    /// Failures and timeouts in the sliding window.
    pub failures_in_window: u64,
    /// The window's failure rate, once it holds `minimum_calls` calls.
    pub failure_rate: Option<f64>,
    /// The window's slow-call rate, once it holds `minimum_calls` calls.
    pub slow_call_rate: Option<f64>,
    /// Probes in flight (half-open only).
    pub half_open_in_flight: u64,
    /// Fallbacks that ran, by reason: `{"refusal": n, "timeout": n, "failure": n,
    /// "throttled": n, "error": n}`.
    pub fallbacks: std::collections::BTreeMap<&'static str, u64>,
    /// Calls the bulkhead refused (`max_concurrent_calls` in flight); in `calls`.
    pub saturated: u64,
    /// Shadow mode: calls the breaker would have refused, and let through.
    pub shadow_rejected: u64,
    /// Adaptive throttling: the probability of refusing the next call; `null`
    /// for a threshold breaker.
    pub refusal_share: Option<f64>,
    /// Calls in flight holding a bulkhead slot.
    pub concurrent_calls: u64,
    /// Health checks that passed while open (not calls).
    pub health_checks_passed: u64,
    /// Health checks that failed or were abandoned (not calls).
    pub health_checks_failed: u64,
}

impl From<&Stats> for StatsView {
    fn from(s: &Stats) -> Self {
        StatsView {
            calls: s.calls(),
            successes: s.successes,
            failures: s.failures,
            timeouts: s.timeouts,
            rejected: s.rejected,
            ignored: s.ignored,
            cancelled: s.cancelled,
            throttled: s.throttled,
            slow_calls: s.slow_calls,
            consecutive_failures: s.consecutive_failures,
            calls_in_window: s.calls_in_window,
            failures_in_window: s.failures_in_window,
            failure_rate: s.failure_rate,
            slow_call_rate: s.slow_call_rate,
            half_open_in_flight: s.half_open_in_flight,
            fallbacks: crate::FallbackReason::ALL
                .iter()
                .map(|r| (r.as_str(), s.fallbacks_on(*r)))
                .collect(),
            saturated: s.saturated,
            shadow_rejected: s.shadow_rejected,
            refusal_share: s.refusal_share,
            concurrent_calls: s.concurrent_calls,
            health_checks_passed: s.health_checks_passed,
            health_checks_failed: s.health_checks_failed,
        }
    }
}

/// A breaker's [`Config`], as a JSON object with one member per field of the
/// field table ([`cb_syntax::FIELDS`]), in its order, so that every field the
/// attribute, the config file and the environment take is reported here too.
///
/// Counts and rates are numbers; a duration is `<field>_ms`, in whole
/// milliseconds (`null` when off); `sliding_window` is `{"calls": n}` or
/// `{"ms": n}`; `open_backoff` is `{"multiplier", "max_ms", "jitter"}` or
/// `null`; `preset` is the name of the preset the configuration started from,
/// or `null`.
///
/// ```
/// use cb_runtime::{admin::ConfigView, Preset};
///
/// let view = ConfigView::from(&Preset::Llm.config());
/// assert_eq!(view.get("preset"), Some(&serde_json::json!("llm")));
/// assert_eq!(view.get("open_duration_ms"), Some(&serde_json::json!(120_000)));
/// assert_eq!(view.get("sliding_window"), Some(&serde_json::json!({"calls": 200})));
/// assert_eq!(view.get("open_backoff"), Some(&serde_json::Value::Null));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigView {
    /// `(key, value)` in the table's order.
    members: Vec<(String, serde_json::Value)>,
}

impl ConfigView {
    /// The member `key` (a field's name, or `<field>_ms` for a duration).
    pub fn get(&self, key: &str) -> Option<&serde_json::Value> {
        self.members.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The JSON key of `field`: its name, with `_ms` for a duration.
    pub fn key(field: &cb_syntax::Field) -> String {
        match field.kind {
            cb_syntax::Kind::Duration
            | cb_syntax::Kind::OptionalDuration
            | cb_syntax::Kind::DurationUpTo { .. } => format!("{}_ms", field.name),
            _ => field.name.to_owned(),
        }
    }
}

impl Serialize for ConfigView {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.members.iter().map(|(k, v)| (k, v)))
    }
}

/// Whole milliseconds of `nanos`.
fn millis(nanos: u64) -> u64 {
    nanos / 1_000_000
}

fn field_json(value: Option<cb_syntax::Value>) -> serde_json::Value {
    use cb_syntax::Value as V;
    use serde_json::json;
    match value {
        None | Some(V::Off) => serde_json::Value::Null,
        Some(V::Preset(name)) => json!(name),
        Some(V::Count(n)) => json!(n),
        Some(V::Rate(r)) => json!(r),
        Some(V::Duration(nanos)) => json!(millis(nanos)),
        Some(V::WindowCalls(n)) => json!({ "calls": n }),
        Some(V::WindowTime(nanos)) => json!({ "ms": millis(nanos) }),
        Some(V::Backoff(b)) => json!({
            "multiplier": b.multiplier,
            "max_ms": millis(b.cap_nanos),
            "jitter": b.jitter,
        }),
        Some(V::Word(word)) => json!(word),
        Some(V::Multiplier(k)) => json!(k),
    }
}

impl From<&Config> for ConfigView {
    fn from(c: &Config) -> Self {
        let members = cb_syntax::FIELDS
            .iter()
            .map(|field| (ConfigView::key(field), field_json(c.value(field))))
            .collect();
        ConfigView { members }
    }
}

/// `GET /circuit-breakers`.
#[derive(Clone, Debug, Serialize)]
pub struct BreakerList {
    /// How many breakers the registry holds.
    pub total: usize,
    /// Every breaker, sorted by name.
    pub circuit_breakers: Vec<BreakerView>,
    /// Every family of keyed breakers, sorted by name, with its keys.
    pub families: Vec<families::FamilyView>,
    /// The fleet's link, when a fleet joined the registry
    /// ([`Registry::set_fleet_status`]); the key is absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetView>,
}

/// The fleet's link, in [`BreakerList`].
#[derive(Clone, Debug, Serialize)]
pub struct FleetView {
    /// The fleet's namespace.
    pub namespace: String,
    /// `true` while the replica is connected to the fleet's server.
    pub connected: bool,
}

impl From<FleetStatus> for FleetView {
    fn from(s: FleetStatus) -> Self {
        FleetView {
            namespace: s.namespace,
            connected: s.connected,
        }
    }
}

/// The answer to a mutation.
#[derive(Clone, Debug, Serialize)]
pub struct ActionResult {
    /// The breaker's name.
    pub name: String,
    /// `reset`, `force-open` or `disable`.
    pub action: &'static str,
    /// The state before.
    pub previous_state: &'static str,
    /// The state after.
    pub state: &'static str,
}

/// `GET /health`: the registry's health in the shape of the Rust Incident
/// Manager's circuit-breaker health JSON.
#[derive(Clone, Debug, Serialize)]
pub struct HealthView {
    /// `"healthy"` (HTTP 200) or `"degraded"` (HTTP 503).
    pub status: &'static str,
    /// `false` while some breaker is open or forced open.
    pub healthy: bool,
    /// Each breaker's health: `healthy` (closed or disabled), `throttled`
    /// (open or half-open after a rate limit: the dependency asked callers
    /// to wait, it is not down), `degraded` (half-open: probing) or
    /// `unhealthy` (open or forced open). A keyed breaker is listed as
    /// `<family>/<key>`, with `%` and `/` in either part written `%25` and
    /// `%2F`, so that a key holding `/` is not read as another breaker's.
    pub circuit_breakers: BTreeMap<String, &'static str>,
    /// The counts.
    pub summary: HealthSummary,
}

/// The counts of [`HealthView`].
#[derive(Clone, Debug, Default, Serialize)]
pub struct HealthSummary {
    /// Breakers in the registry.
    pub total: usize,
    /// Closed or disabled breakers.
    pub healthy: usize,
    /// Half-open breakers.
    pub degraded: usize,
    /// Open or forced-open breakers (not throttled ones).
    pub unhealthy: usize,
    /// Breakers open or half-open after a rate limit: not unhealthy.
    pub throttled: usize,
    /// Closed breakers.
    pub closed: usize,
    /// Open breakers.
    pub open: usize,
    /// Half-open breakers.
    pub half_open: usize,
    /// Forced-open breakers.
    pub forced_open: usize,
    /// Disabled breakers.
    pub disabled: usize,
}

impl HealthView {
    /// The health of `registry` now, from one read of each breaker's state.
    pub fn of(registry: &Registry) -> Self {
        let mut summary = HealthSummary::default();
        let mut circuit_breakers = BTreeMap::new();
        for breaker in registry.all_breakers() {
            let state = breaker.state();
            summary.total += 1;
            let throttled = matches!(state, State::Open | State::HalfOpen) && breaker.throttling();
            let (by_state, health) = match state {
                State::Closed => (&mut summary.closed, "healthy"),
                State::Disabled => (&mut summary.disabled, "healthy"),
                State::HalfOpen if throttled => (&mut summary.half_open, "throttled"),
                State::HalfOpen => (&mut summary.half_open, "degraded"),
                State::Open if throttled => (&mut summary.open, "throttled"),
                State::Open => (&mut summary.open, "unhealthy"),
                State::ForcedOpen => (&mut summary.forced_open, "unhealthy"),
            };
            *by_state += 1;
            match health {
                "healthy" => summary.healthy += 1,
                "degraded" => summary.degraded += 1,
                "throttled" => summary.throttled += 1,
                _ => summary.unhealthy += 1,
            }
            // A keyed breaker as `<family>/<key>`, each part escaped.
            let name = match breaker.key() {
                None => health_part(breaker.name()),
                Some(key) => format!("{}/{}", health_part(breaker.name()), health_part(key)),
            };
            circuit_breakers.insert(name, health);
        }
        let healthy = summary.unhealthy == 0;
        HealthView {
            status: if healthy { "healthy" } else { "degraded" },
            healthy,
            circuit_breakers,
            summary,
        }
    }
}

/// One part of a name in [`HealthView::circuit_breakers`]: `%` and `/`
/// escaped, so that `/` only ever separates a family from its key.
fn health_part(part: &str) -> String {
    if !part.contains(['%', '/']) {
        return part.to_owned();
    }
    part.replace('%', "%25").replace('/', "%2F")
}

// ---- errors -----------------------------------------------------------------

/// An error answer: `{"error": {"status", "code", "message"}}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    allow: Option<&'static str>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    status: u16,
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            allow: None,
        }
    }

    fn unauthorized(message: &str) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    fn bad_name(why: &str) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_name",
            format!("malformed circuit breaker name: {why}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                status: self.status.as_u16(),
                code: self.code,
                message: &self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"cb-admin\""),
            );
        }
        if let Some(allow) = self.allow {
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
        }
        response
    }
}

/// The name in the path, checked.
fn breaker_name(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(name) = path.map_err(|_| ApiError::bad_name("it is not valid percent-encoded UTF-8"))?;
    // The same rule as where names enter, so every breaker is addressable.
    cb_syntax::check_name(&name).map_err(|e| ApiError::bad_name(&e.to_string()))?;
    Ok(name)
}

fn lookup(admin: &Admin, name: &str) -> Result<Arc<CircuitBreaker>, ApiError> {
    admin.registry.get(name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no circuit breaker is named `{name}`"),
        )
    })
}

// ---- handlers ---------------------------------------------------------------

async fn list(AxumState(admin): AxumState<Admin>) -> Json<BreakerList> {
    let circuit_breakers: Vec<BreakerView> = admin
        .registry
        .breakers()
        .iter()
        .map(|b| BreakerView::of(b))
        .collect();
    Json(BreakerList {
        total: circuit_breakers.len(),
        circuit_breakers,
        families: families::views(&admin),
        fleet: admin.registry.fleet_status().map(FleetView::from),
    })
}

async fn one(
    AxumState(admin): AxumState<Admin>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<BreakerView>, ApiError> {
    let name = breaker_name(path)?;
    let breaker = lookup(&admin, &name)?;
    Ok(Json(BreakerView::of(&breaker)))
}

/// Runs a mutation: authentication first, then the name, then the breaker.
fn mutate(
    admin: &Admin,
    headers: &HeaderMap,
    path: Result<Path<String>, PathRejection>,
    action: &'static str,
    apply: fn(&CircuitBreaker),
) -> Result<Json<ActionResult>, ApiError> {
    admin.auth.check(headers)?;
    let name = breaker_name(path)?;
    let breaker = lookup(admin, &name)?;
    let previous_state = breaker.state().as_str();
    apply(&breaker);
    tracing::info!(target: "cb_runtime", breaker = %name, action, "admin API: {action} circuit breaker `{name}`");
    Ok(Json(ActionResult {
        name,
        action,
        previous_state,
        state: breaker.state().as_str(),
    }))
}

/// The `POST` route of one mutation.
fn mutation(action: &'static str, apply: fn(&CircuitBreaker)) -> MethodRouter<Admin> {
    post(
        move |AxumState(admin): AxumState<Admin>,
              headers: HeaderMap,
              path: Result<Path<String>, PathRejection>| async move {
            mutate(&admin, &headers, path, action, apply)
        },
    )
}

async fn health(AxumState(admin): AxumState<Admin>) -> (StatusCode, Json<HealthView>) {
    let view = HealthView::of(admin.registry);
    let status = if view.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(view))
}

#[derive(Serialize)]
struct Probe {
    status: &'static str,
}

async fn live() -> Json<Probe> {
    Json(Probe { status: "alive" })
}

async fn ready() -> Json<Probe> {
    Json(Probe { status: "ready" })
}

/// `GET /health/startup`.
#[derive(Serialize)]
struct Startup {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<StartupError>,
}

#[derive(Serialize)]
struct StartupError {
    field: String,
    value: String,
    expected: String,
    message: String,
}

async fn startup(AxumState(admin): AxumState<Admin>) -> (StatusCode, Json<Startup>) {
    // It reads the config file: off the async workers.
    let registry = admin.registry;
    let checked = tokio::task::spawn_blocking(move || registry.check_startup())
        .await
        .unwrap_or_else(|_| {
            Err(crate::ConfigError::new(
                "file",
                "a check that panicked",
                "a configuration check that completes",
            ))
        });
    match checked {
        Ok(()) => (
            StatusCode::OK,
            Json(Startup {
                status: "started",
                error: None,
            }),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Startup {
                status: "starting",
                error: Some(StartupError {
                    field: e.field().to_owned(),
                    value: e.value().to_owned(),
                    expected: e.expected().to_owned(),
                    message: e.to_string(),
                }),
            }),
        ),
    }
}

async fn metrics(AxumState(admin): AxumState<Admin>) -> Response {
    let text = encode(&BreakerCollector::new(admin.registry).collect());
    (
        [(CONTENT_TYPE, HeaderValue::from_static(prometheus::TEXT_FORMAT))],
        text,
    )
        .into_response()
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for `{}`", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    let path = uri.path();
    // Only the mutations are POST: `/circuit-breakers/{name}/{action}` (not
    // `/transitions`), `/families/{name}/{action}` and
    // `/families/{name}/keys/{key}/{action}`.
    let segments = path.trim_matches('/').split('/').count();
    let action = (path.starts_with("/circuit-breakers/")
        && segments == 3
        && !path.trim_end_matches('/').ends_with("/transitions"))
        || (path.starts_with("/families/") && (segments == 3 || segments == 5));
    let allow = if action { "POST" } else { "GET, HEAD" };
    ApiError {
        allow: Some(allow),
        ..ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("`{path}` does not accept {method}; use {allow}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::token_matches;

    #[test]
    fn tokens_compare_whole() {
        assert!(token_matches(b"s3cret", b"s3cret"));
        assert!(!token_matches(b"s3cret", b"s3cre"));
        assert!(!token_matches(b"s3cret", b"s3cret!"));
        assert!(!token_matches(b"s3cret", b"S3cret"));
        assert!(!token_matches(b"s3cret", b""));
    }
}
