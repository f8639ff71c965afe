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
//!
//! The mutations need the bearer token as the other mutations do (401, or
//! 403 with none configured), checked before the name and the key; a
//! malformed name or key is a 400, an unknown one a 404, in the API's JSON
//! error shape. `GET /circuit-breakers` lists the families too, for the
//! status page.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State as AxumState};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use serde::Serialize;

use super::{Admin, ApiError, BreakerView, ConfigView};
use crate::breaker::CircuitBreaker;
use crate::family::{Family, OVERFLOW_KEY};

/// The family routes, added to the admin router.
pub(super) fn routes(router: Router<Admin>) -> Router<Admin> {
    router
        .route("/families", get(list))
        .route("/families/{name}", get(one))
        .route("/families/{name}/keys/{key}", get(one_key))
        .route("/families/{name}/reset", family_mutation("reset", Family::reset))
        .route(
            "/families/{name}/force-open",
            family_mutation("force-open", Family::force_open),
        )
        .route(
            "/families/{name}/disable",
            family_mutation("disable", Family::disable),
        )
        .route(
            "/families/{name}/keys/{key}/reset",
            key_mutation("reset", CircuitBreaker::reset),
        )
        .route(
            "/families/{name}/keys/{key}/force-open",
            key_mutation("force-open", CircuitBreaker::force_open),
        )
        .route(
            "/families/{name}/keys/{key}/disable",
            key_mutation("disable", CircuitBreaker::disable),
        )
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
    /// Keys the family holds (the overflow breaker not counted).
    pub len: usize,
    /// Keys (the overflow breaker included) open or forced open now.
    pub open_keys: usize,
    /// The family's configuration, `max_keys` and `family_open_keys` included.
    pub config: ConfigView,
    /// Every key's breaker, sorted by key, the overflow breaker (`"_overflow"`) last.
    pub keys: Vec<BreakerView>,
}

impl FamilyView {
    /// The view of `family` now.
    pub fn of(family: &Family) -> Self {
        let keys: Vec<BreakerView> = family.breakers().iter().map(|b| BreakerView::of(b)).collect();
        FamilyView {
            name: family.name().to_owned(),
            state: family.state().as_str(),
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
    /// How many breakers (keys and the overflow breaker) it applied to.
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
        let what = if key == OVERFLOW_KEY {
            "has no overflow breaker yet".to_owned()
        } else {
            format!("has no key `{key}`")
        };
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("circuit breaker family `{}` {what}", family.name()),
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
            let parts = checked(path)?;
            let family = family(&admin, &parts[0])?;
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
            Ok::<_, ApiError>(Json(KeyActionResult {
                name,
                key,
                action,
                previous_state,
                state: breaker.state().as_str(),
            }))
        },
    )
}
