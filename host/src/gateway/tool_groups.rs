//! The tool-group endpoints: every key lists them (`GET /api/v1/tool-groups`); only an
//! operator's key (`gateway.admin_keys`, or any client of a keyless loopback gateway) turns
//! one on or off, since the switch holds for every channel and client.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{ApiError, GatewayState, Principal};
use crate::runtime::tool_groups::ToolGroupError;

pub async fn list(State(state): State<Arc<GatewayState>>) -> Response {
    Json(json!({ "groups": state.runtime.tool_groups().list() })).into_response()
}

pub async fn enable(
    State(state): State<Arc<GatewayState>>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    switch(&state, &principal, name, true).await
}

pub async fn disable(
    State(state): State<Arc<GatewayState>>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    switch(&state, &principal, name, false).await
}

/// Turn a tool group on or off for every process on this data dir.
async fn switch(
    state: &GatewayState,
    principal: &Principal,
    name: String,
    enabled: bool,
) -> Result<Response, ApiError> {
    ApiError::unless_operator(
        principal,
        "only an operator's key turns tool groups on and off",
    )?;
    let not_saved = || {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the tool groups could not be saved",
        )
    };
    // The change waits on a lock file another process may hold: off the async workers.
    let runtime = state.runtime.clone();
    let group = name.clone();
    tokio::task::spawn_blocking(move || runtime.tool_groups().set_enabled(&group, enabled))
        .await
        .map_err(|_| not_saved())?
        .map_err(|error| match error {
            ToolGroupError::Unknown(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", error.to_string())
            }
            ToolGroupError::Save { .. } => {
                tracing::error!("{error}");
                not_saved()
            }
        })?;
    let group = state
        .runtime
        .tool_groups()
        .list()
        .into_iter()
        .find(|g| g.name == name);
    Ok(Json(json!({ "group": group })).into_response())
}
