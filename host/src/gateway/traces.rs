//! `GET /api/v1/traces` and `GET /api/v1/traces/{id}`: the host's recent traces, kept in
//! memory (`telemetry.recent_traces`), for the console's waterfall. Operators only: spans
//! carry statements, conversation keys and error texts of every principal.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, Principal};
use crate::telemetry::RecentTraces;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default = "default_limit")]
    limit: usize,
    /// Only turns' traces (`agent.turn` roots).
    #[serde(default)]
    turns: bool,
}

fn default_limit() -> usize {
    50
}

pub async fn list(
    Extension(principal): Extension<Principal>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) =
        query.map_err(|rejection| ApiError::invalid_request(rejection.body_text()))?;
    let recent = recording(&principal)?;
    let Some(recent) = recent else {
        return Ok(Json(json!({ "recording": false, "traces": [] })).into_response());
    };
    let traces = recent.list(query.limit.clamp(1, 1000), query.turns);
    Ok(
        Json(json!({ "recording": true, "keep": recent.capacity(), "traces": traces }))
            .into_response(),
    )
}

pub async fn show(
    Extension(principal): Extension<Principal>,
    Path(trace_id): Path<String>,
) -> Result<Response, ApiError> {
    let trace = recording(&principal)?.and_then(|recent| recent.trace(&trace_id));
    match trace {
        Some(trace) => Ok(Json(trace).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "trace_not_found",
            "no such trace among the recent ones (it may have been pushed out; see telemetry.recent_traces)",
        )),
    }
}

/// The recent traces, for an operator; `None` when they are not kept.
fn recording(principal: &Principal) -> Result<Option<Arc<RecentTraces>>, ApiError> {
    ApiError::unless_operator(principal, "traces are for operators")?;
    Ok(RecentTraces::current())
}
