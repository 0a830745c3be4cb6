//! `GET /api/v1/knowledge` and `GET /api/v1/knowledge/search?query=`: what the knowledge base
//! holds (chunks by kind, sources) and the matches the agent would get for a message, so an
//! operator can see why an answer did or did not use a document.
//!
//! Operators only. Remembered conversations are never listed as sources, and a search shows
//! them only when `rag.share_conversations` lets every conversation see them anyway.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, GatewayState, Principal};

/// Sources listed at most.
const MAX_SOURCES: usize = 500;
/// Longest search text.
const MAX_QUERY: usize = 2000;

pub async fn overview(
    State(state): State<Arc<GatewayState>>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, ApiError> {
    operator(&principal)?;
    let Some(rag) = state.knowledge.get() else {
        return Ok(Json(json!({ "enabled": false })).into_response());
    };
    let mut stats = rag.stats().await.map_err(unavailable)?;
    stats.store.location = crate::agent::sessions::redact_url(&stats.store.location);
    let sources = rag.sources(MAX_SOURCES).await.map_err(unavailable)?;
    let settings = rag.settings();
    Ok(Json(json!({
        "enabled": true,
        "stats": stats,
        "sources": sources
            .into_iter()
            .map(|(source, chunks)| json!({ "source": source, "chunks": chunks }))
            .collect::<Vec<_>>(),
        "top_k": settings.top_k,
        "min_score": settings.min_score,
        "share_conversations": settings.share_conversations,
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    query: String,
}

pub async fn search(
    State(state): State<Arc<GatewayState>>,
    Extension(principal): Extension<Principal>,
    query: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    operator(&principal)?;
    let Query(SearchQuery { query }) =
        query.map_err(|rejection| ApiError::invalid_request(rejection.body_text()))?;
    let Some(rag) = state.knowledge.get() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "knowledge_disabled",
            "this host has no knowledge base (rag.enabled is false)",
        ));
    };
    if query.trim().is_empty() || query.chars().count() > MAX_QUERY {
        return Err(ApiError::invalid_request(format!(
            "`query` is 1 to {MAX_QUERY} characters"
        )));
    }
    let matches = rag.matches_for(None, &query).await.map_err(unavailable)?;
    Ok(Json(json!({ "query": query, "matches": matches })).into_response())
}

/// The knowledge base is the operator's: its sources name files and services, and with
/// `rag.share_conversations` its matches hold every principal's remembered turns.
fn operator(principal: &Principal) -> Result<(), ApiError> {
    ApiError::unless_operator(principal, "the knowledge base is for operators")
}

fn unavailable(error: crate::rag::RagError) -> ApiError {
    tracing::warn!("the knowledge base did not answer: {error}");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "knowledge_unavailable",
        format!("the knowledge base did not answer: {error}"),
    )
}
