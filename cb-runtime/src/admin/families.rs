//! The admin API's routes for families of keyed breakers (see
//! [`Family`]):
//!
//! | method and path | answer |
//! |---|---|
//! | `GET /families` | 200, every family with its keys |
//! | `GET /families/{name}` | 200, one family; 404 if there is none by that name |
//! | `GET /families/{name}/keys/{key}` | 200, one key's breaker; 404 if the family or the key is unknown |
//! | `POST /families/{name}/reset` (`force-open`, `disable`) | 200, the whole family ([`Family::reset`](crate::Family::reset), ...) |
//! | `POST /families/{name}/keys/{key}/reset` (`force-open`, `disable`) | 200, one key |
//! | `GET /families/{name}/key?key={key}` | 200, one key's breaker, the key in the query |
//! | `POST /families/{name}/key/reset?key={key}` (`force-open`, `disable`) | 200, one key, the key in the query |
//!
//! A key may be any text the name rule allows, `..` and `.` included, and a
//! URL parser resolves those as path segments (`%2e%2e` too): the path
//! `/families/openai/keys/../force-open` *is* `/families/openai/force-open`,
//! the whole family's action. The query forms address every key, and the
//! status page uses them.
//!
//! The mutations need the bearer token as the other mutations do (401, or
//! 403 with none configured), checked before the name and the key; a
//! malformed name or key is a 400, an unknown one a 404, in the API's JSON
//! error shape. `GET /circuit-breakers` lists the families too, for the
//! status page.

use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use serde::Serialize;

use super::{Admin, ApiError, BreakerView, ConfigView};
use crate::breaker::CircuitBreaker;
use crate::family::Family;

/// The family routes, added to the admin router.
/// One action: its word, and what it does to a family and to one key.
type Action = (&'static str, fn(&Family), fn(&CircuitBreaker));

pub(super) fn routes(router: Router<Admin>) -> Router<Admin> {
    let mut router = router
        .route("/families", get(list))
        .route("/families/{name}", get(one))
        .route("/families/{name}/keys/{key}", get(one_key))
        .route("/families/{name}/key", get(one_key_in_query));
    let actions: [Action; 3] = [
        ("reset", Family::reset, CircuitBreaker::reset),
        ("force-open", Family::force_open, CircuitBreaker::force_open),
        ("disable", Family::disable, CircuitBreaker::disable),
    ];
    for (action, family, key) in actions {
        router = router
            .route(
                &format!("/families/{{name}}/{action}"),
                family_mutation(action, family),
            )
            .route(
                &format!("/families/{{name}}/keys/{{key}}/{action}"),
                key_mutation(action, key),
            )
            .route(
                &format!("/families/{{name}}/key/{action}"),
                key_mutation_in_query(action, key),
            );
    }
    router
}

/// The query of the routes that take the key there: `?key=<key>`.
#[derive(Debug, serde::Deserialize)]
struct KeyQuery {
    key: String,
}

/// The family's name in the path and the key in the query, checked.
fn checked_in_query(
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<KeyQuery>, QueryRejection>,
) -> Result<Vec<String>, ApiError> {
    let name = super::breaker_name(path)?;
    let Query(KeyQuery { key }) = query.map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            "the key goes in the query, percent-encoded: `?key=<key>`".to_owned(),
        )
    })?;
    cb_syntax::check_name(&key).map_err(|e| ApiError::bad_name(&e.to_string()))?;
    Ok(vec![name, key])
}

/// One family, as `GET /families/{name}` returns it.
#[derive(Clone, Debug, Serialize)]
pub struct FamilyView {
    /// The family's name (every key's breaker has it as its name).
    pub name: String,
    /// The family as a whole ([`Family::state`](crate::Family::state)):
    /// `open` while `family_open_keys` keys opened it, `forced_open` or
    /// `disabled` after a family-wide action, `closed` otherwise.
    pub state: &'static str,
    /// While the family is open: how long it stays so, in milliseconds.
    pub open_remaining_ms: Option<u64>,
    /// Keys the family holds.
    pub len: usize,
    /// Keys open or forced open now.
    pub open_keys: usize,
    /// The family's configuration, `max_keys` and `family_open_keys` included.
    pub config: ConfigView,
    /// Every key's breaker, sorted by key.
    pub keys: Vec<BreakerView>,
    /// At a glance: `"ok"` when every key is closed (or disabled), `"degraded"`
    /// when some keys are open, half-open or forced open, and the family's
    /// own state otherwise (`"open"`, `"forced_open"`, `"disabled"`).
    pub status: &'static str,
    /// The keys open or forced open now for an outage (not throttled), sorted.
    pub open: Vec<String>,
    /// The keys open, or half-open, after a rate limit (a 429): throttled, not down.
    pub throttled: Vec<String>,
    /// The keys half-open now (probing), sorted.
    pub half_open: Vec<String>,
    /// Keys evicted to make room for new ones, in all.
    pub evictions: u64,
    /// Calls served by a breaker made for that call alone (see
    /// [`Family::unguarded_calls`](crate::Family::unguarded_calls)).
    pub unguarded_calls: UnguardedView,
}

/// A family's unguarded calls, by why.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct UnguardedView {
    /// The family held `max_keys` keys, none of which could be evicted.
    pub full: u64,
    /// The key broke the name rule.
    pub bad_key: u64,
}

impl FamilyView {
    /// The view of `family` now.
    pub fn of(family: &Family) -> Self {
        let breakers = family.breakers();
        let keys: Vec<BreakerView> = breakers.iter().map(|b| BreakerView::of(b)).collect();
        let mut open = Vec::new();
        let mut throttled = Vec::new();
        let mut half_open = Vec::new();
        for (breaker, view) in breakers.iter().zip(&keys) {
            let key = breaker.key().unwrap_or_default().to_owned();
            if breaker.throttling() {
                throttled.push(key);
            } else if view.state == "open" || view.state == "forced_open" {
                open.push(key);
            } else if view.state == "half_open" {
                half_open.push(key);
            }
        }
        let state = family.state().as_str();
        let status = match state {
            "closed" if open.is_empty() && throttled.is_empty() && half_open.is_empty() => "ok",
            "closed" => "degraded",
            other => other,
        };
        let unguarded = family.unguarded_calls();
        FamilyView {
            name: family.name().to_owned(),
            state,
            open_remaining_ms: family
                .open_remaining()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            len: family.len(),
            open_keys: keys
                .iter()
                .filter(|k| k.state == "open" || k.state == "forced_open")
                .count(),
            config: ConfigView::from(&family.config()),
            keys,
            status,
            open,
            throttled,
            half_open,
            evictions: family.evictions(),
            unguarded_calls: UnguardedView {
                full: unguarded.full,
                bad_key: unguarded.bad_key,
            },
        }
    }
}

/// `GET /families`.
#[derive(Clone, Debug, Serialize)]
pub struct FamilyList {
    /// How many families the registry holds.
    pub total: usize,
    /// Every family, sorted by name.
    pub families: Vec<FamilyView>,
}

/// The answer to a mutation of a whole family.
#[derive(Clone, Debug, Serialize)]
pub struct FamilyActionResult {
    /// The family's name.
    pub name: String,
    /// `reset`, `force-open` or `disable`.
    pub action: &'static str,
    /// The family's state before.
    pub previous_state: &'static str,
    /// The family's state after.
    pub state: &'static str,
    /// How many keys it applied to.
    pub keys: usize,
}

/// The answer to a mutation of one key.
#[derive(Clone, Debug, Serialize)]
pub struct KeyActionResult {
    /// The family's name.
    pub name: String,
    /// The key.
    pub key: String,
    /// `reset`, `force-open` or `disable`.
    pub action: &'static str,
    /// The key's state before.
    pub previous_state: &'static str,
    /// The key's state after.
    pub state: &'static str,
}

/// Every family's view, for `GET /circuit-breakers` too.
pub(super) fn views(admin: &Admin) -> Vec<FamilyView> {
    admin
        .registry
        .family_list()
        .iter()
        .map(|f| FamilyView::of(f))
        .collect()
}

/// The family's name in the path, checked.
fn checked_name(path: Result<Path<String>, PathRejection>) -> Result<Vec<String>, ApiError> {
    Ok(vec![super::breaker_name(path)?])
}

/// The family's name and the key in the path, checked.
fn checked(path: Result<Path<(String, String)>, PathRejection>) -> Result<Vec<String>, ApiError> {
    let Path((name, key)) = path.map_err(|_| ApiError::bad_name("it is not valid percent-encoded UTF-8"))?;
    for part in [&name, &key] {
        cb_syntax::check_name(part).map_err(|e| ApiError::bad_name(&e.to_string()))?;
    }
    Ok(vec![name, key])
}

fn family(admin: &Admin, name: &str) -> Result<Arc<Family>, ApiError> {
    admin.registry.family(name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no circuit breaker family is named `{name}`"),
        )
    })
}

/// The breaker of `key` in `family`, without creating it.
fn key(family: &Family, key: &str) -> Result<Arc<CircuitBreaker>, ApiError> {
    family.get(key).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("circuit breaker family `{}` has no key `{key}`", family.name()),
        )
    })
}

async fn list(AxumState(admin): AxumState<Admin>) -> Json<FamilyList> {
    let families = views(&admin);
    Json(FamilyList {
        total: families.len(),
        families,
    })
}

async fn one(
    AxumState(admin): AxumState<Admin>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<FamilyView>, ApiError> {
    let parts = checked_name(path)?;
    let family = family(&admin, &parts[0])?;
    Ok(Json(FamilyView::of(&family)))
}

async fn one_key(
    AxumState(admin): AxumState<Admin>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<BreakerView>, ApiError> {
    let parts = checked(path)?;
    let family = family(&admin, &parts[0])?;
    let breaker = key(&family, &parts[1])?;
    Ok(Json(BreakerView::of(&breaker)))
}

/// The `POST` route of one mutation of a whole family.
fn family_mutation(action: &'static str, apply: fn(&Family)) -> MethodRouter<Admin> {
    post(
        move |AxumState(admin): AxumState<Admin>,
              headers: HeaderMap,
              path: Result<Path<String>, PathRejection>| async move {
            admin.auth.check(&headers)?;
            let parts = checked_name(path)?;
            let family = family(&admin, &parts[0])?;
            let previous_state = family.state().as_str();
            apply(&family);
            let name = family.name().to_owned();
            tracing::info!(target: "cb_runtime", breaker = %name, action, "admin API: {action} circuit breaker family `{name}`");
            Ok::<_, ApiError>(Json(FamilyActionResult {
                name,
                action,
                previous_state,
                state: family.state().as_str(),
                keys: family.breakers().len(),
            }))
        },
    )
}

/// The `POST` route of one mutation of one key.
fn key_mutation(action: &'static str, apply: fn(&CircuitBreaker)) -> MethodRouter<Admin> {
    post(
        move |AxumState(admin): AxumState<Admin>,
              headers: HeaderMap,
              path: Result<Path<(String, String)>, PathRejection>| async move {
            admin.auth.check(&headers)?;
            mutate_key(&admin, checked(path)?, action, apply)
        },
    )
}

/// [`key_mutation`] with the key in the query.
fn key_mutation_in_query(action: &'static str, apply: fn(&CircuitBreaker)) -> MethodRouter<Admin> {
    post(
        move |AxumState(admin): AxumState<Admin>,
              headers: HeaderMap,
              path: Result<Path<String>, PathRejection>,
              query: Result<Query<KeyQuery>, QueryRejection>| async move {
            admin.auth.check(&headers)?;
            mutate_key(&admin, checked_in_query(path, query)?, action, apply)
        },
    )
}

async fn one_key_in_query(
    AxumState(admin): AxumState<Admin>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<KeyQuery>, QueryRejection>,
) -> Result<Json<BreakerView>, ApiError> {
    let parts = checked_in_query(path, query)?;
    let family = family(&admin, &parts[0])?;
    let breaker = key(&family, &parts[1])?;
    Ok(Json(BreakerView::of(&breaker)))
}

/// Applies one mutation to the key `parts[1]` of the family `parts[0]`.
fn mutate_key(
    admin: &Admin,
    parts: Vec<String>,
    action: &'static str,
    apply: fn(&CircuitBreaker),
) -> Result<Json<KeyActionResult>, ApiError> {
    let family = family(admin, &parts[0])?;
    let breaker = key(&family, &parts[1])?;
    let previous_state = breaker.state().as_str();
    apply(&breaker);
    let (name, key) = (family.name().to_owned(), parts[1].clone());
    tracing::info!(
        target: "cb_runtime",
        breaker = %name,
        key = %key,
        action,
        "admin API: {action} key `{key}` of circuit breaker family `{name}`"
    );
    Ok(Json(KeyActionResult {
        name,
        key,
        action,
        previous_state,
        state: breaker.state().as_str(),
    }))
}
