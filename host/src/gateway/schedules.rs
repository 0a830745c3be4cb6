//! The scheduled-job endpoints, behind the API keys: list, create, show, remove, pause,
//! resume, trigger and history (`/api/v1/schedules…`). A job created here is owned by the
//! key's principal. An operator's key (`gateway.admin_keys`, or any client of a keyless
//! loopback gateway) manages every job; another key sees and manages only the jobs it made and
//! those the agent made in its conversations, and any other job is "not found" for it.
//! Webhook URLs are shown by their origin only (their paths may hold tokens).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, GatewayState, Principal};
use crate::config::JobSpec;
use crate::schedules::store::{Only, now_ms};
use crate::schedules::{JobOrigin, JobRecord, Schedules, StoreError};

fn schedules(state: &GatewayState) -> Result<&Schedules, ApiError> {
    state.schedules.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "scheduled jobs are not available on this gateway",
        )
    })
}

/// Jobs one key that is not an operator's may have made over HTTP.
const MAX_JOBS_PER_KEY: usize = 100;

/// Does `job` belong to `principal`: one it made over HTTP, or one the agent made in its API
/// conversations? Operators' keys hold every job.
fn belongs(job: &JobRecord, principal: &Principal) -> bool {
    principal.is_admin()
        || match job.origin {
            JobOrigin::Operator => job.owner == principal.as_str(),
            JobOrigin::Agent => job
                .context
                .as_ref()
                .is_some_and(|c| c.channel == super::CHANNEL && c.user == principal.as_str()),
            JobOrigin::Config => false,
        }
}

/// The job `name`, if `principal` may see it (otherwise it is not found).
async fn visible_job(
    schedules: &Schedules,
    principal: &Principal,
    name: &str,
) -> Result<JobRecord, ApiError> {
    let job = schedules.store.get(name).await.map_err(store_error)?;
    if belongs(&job, principal) {
        Ok(job)
    } else {
        Err(store_error(StoreError::NoSuchJob(name.to_owned())))
    }
}

fn store_error(error: StoreError) -> ApiError {
    match error {
        StoreError::NoSuchJob(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", error.to_string())
        }
        StoreError::Exists(_) | StoreError::Limit(_) => {
            ApiError::new(StatusCode::CONFLICT, "conflict", error.to_string())
        }
        StoreError::Invalid(message) => ApiError::invalid_request(message),
        StoreError::Database(error) => {
            tracing::error!("schedule store: {error:#}");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the schedule store is unavailable; retry later",
            )
        }
    }
}

pub async fn list(
    State(state): State<Arc<GatewayState>>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, ApiError> {
    let jobs = schedules(&state)?.store.list().await.map_err(store_error)?;
    let jobs: Vec<_> = jobs
        .iter()
        .filter(|job| belongs(job, &principal))
        .map(JobRecord::view)
        .collect();
    Ok(Json(json!({ "jobs": jobs })).into_response())
}

pub async fn create(
    State(state): State<Arc<GatewayState>>,
    Extension(principal): Extension<Principal>,
    body: Result<Json<JobSpec>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(spec) = body.map_err(|rejection| ApiError::invalid_request(rejection.body_text()))?;
    let schedules = schedules(&state)?;
    if !principal.is_admin() {
        let jobs = schedules.store.list().await.map_err(store_error)?;
        let own = jobs
            .iter()
            .filter(|job| job.origin == JobOrigin::Operator && job.owner == principal.as_str())
            .count();
        if own >= MAX_JOBS_PER_KEY {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("this key has made {own} jobs, the most allowed; remove one first"),
            ));
        }
    }
    let job = schedules
        .store
        .add(
            spec,
            JobOrigin::Operator,
            principal.as_str(),
            None,
            now_ms(),
        )
        .await
        .map_err(store_error)?;
    Ok((StatusCode::CREATED, Json(json!({ "job": job.view() }))).into_response())
}

pub async fn show(
    State(state): State<Arc<GatewayState>>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let schedules = schedules(&state)?;
    let job = visible_job(schedules, &principal, &name).await?;
    let runs = schedules
        .store
        .history(&name, 20)
        .await
        .map_err(store_error)?;
    Ok(Json(json!({ "job": job.view(), "runs": runs })).into_response())
}

pub async fn remove(
    State(state): State<Arc<GatewayState>>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let schedules = schedules(&state)?;
    let job = visible_job(schedules, &principal, &name).await?;
    schedules
        .store
        .remove(&name, Only::Generation(job.created_at))
        .await
        .map_err(store_error)?;
    Ok(Json(json!({ "removed": name })).into_response())
}

pub async fn pause(
    State(state): State<Arc<GatewayState>>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    set_paused(&state, &principal, &name, true).await
}

pub async fn resume(
    State(state): State<Arc<GatewayState>>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    set_paused(&state, &principal, &name, false).await
}

async fn set_paused(
    state: &GatewayState,
    principal: &Principal,
    name: &str,
    paused: bool,
) -> Result<Response, ApiError> {
    let schedules = schedules(state)?;
    let job = visible_job(schedules, principal, name).await?;
    let job = schedules
        .store
        .set_paused(name, paused, now_ms(), Only::Generation(job.created_at))
        .await
        .map_err(store_error)?;
    Ok(Json(json!({ "job": job.view() })).into_response())
}

pub async fn trigger(
    State(state): State<Arc<GatewayState>>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let schedules = schedules(&state)?;
    visible_job(schedules, &principal, &name).await?;
    let slot = schedules
        .store
        .trigger(&name, now_ms())
        .await
        .map_err(store_error)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "job": name,
            "slot": slot,
            "slot_time": crate::schedules::deliver::rfc3339(slot)
        })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    #[serde(default = "default_limit")]
    limit: u32,
}

fn default_limit() -> u32 {
    50
}

pub async fn history(
    State(state): State<Arc<GatewayState>>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) =
        query.map_err(|rejection| ApiError::invalid_request(rejection.body_text()))?;
    let schedules = schedules(&state)?;
    visible_job(schedules, &principal, &name).await?;
    let runs = schedules
        .store
        .history(&name, query.limit.clamp(1, 1000))
        .await
        .map_err(store_error)?;
    Ok(Json(json!({ "job": name, "runs": runs })).into_response())
}
