//! `GET /circuit-breakers/{name}/transitions`: the breaker's history, from the
//! durable transition log attached to the registry
//! ([`Registry::set_transition_source`](crate::Registry::set_transition_source)).

use std::collections::HashMap;
use std::time::UNIX_EPOCH;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;

use super::{breaker_name, Admin, ApiError};
use crate::history::StoredTransition;

/// The answer of `GET /circuit-breakers/{name}/transitions`.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct TransitionsView {
    /// The breaker's name.
    pub name: String,
    /// Where the history comes from ([`TransitionSource::source`](crate::history::TransitionSource::source)).
    pub source: &'static str,
    /// Newest first.
    pub transitions: Vec<TransitionView>,
}

/// One stored transition, as JSON.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct TransitionView {
    /// The breaker's name.
    pub name: String,
    /// Its key in its family, or `null`.
    pub key: Option<String>,
    /// The state it left.
    pub from: &'static str,
    /// The state it entered.
    pub to: &'static str,
    /// Why.
    pub reason: String,
    /// The replica that made it.
    pub replica_id: String,
    /// When, in milliseconds since the Unix epoch, on the log's clock.
    pub occurred_at_ms: u64,
}

impl From<StoredTransition> for TransitionView {
    fn from(t: StoredTransition) -> Self {
        TransitionView {
            occurred_at_ms: t
                .occurred_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            name: t.name,
            key: t.key,
            from: t.from.as_str(),
            to: t.to.as_str(),
            reason: t.reason,
            replica_id: t.replica_id,
        }
    }
}

/// The most transitions one request may ask for.
const MAX_LIMIT: usize = 1000;

pub(super) async fn transitions(
    AxumState(admin): AxumState<Admin>,
    path: Result<Path<String>, PathRejection>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<TransitionsView>, ApiError> {
    let name = breaker_name(path)?;
    let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
        None => 100,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_limit",
                format!("`limit` must be a whole number in 1..={MAX_LIMIT}"),
            ))
        }
    };
    let Some(source) = admin.registry.transition_source() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_transition_log",
            "no durable transition log is attached to this registry (attach a cb-postgres store)",
        ));
    };
    let list = source.transitions(&name, limit).await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "transition_log_unavailable",
            format!("the {} transition log cannot be read now: {e}", source.source()),
        )
    })?;
    Ok(Json(TransitionsView {
        name,
        source: source.source(),
        transitions: list.into_iter().map(TransitionView::from).collect(),
    }))
}
