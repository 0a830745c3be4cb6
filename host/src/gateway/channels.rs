//! The channel routes: `/channels/NAME[/...]` (any method) takes a platform's webhook outside
//! the API-key check (platforms cannot send keys; the channel verifies each request, see
//! `channels`), with the channel's own body cap and a deadline to read it. A client address
//! whose requests to a channel keep failing verification is refused with 429 before its body
//! is read, unless it also delivered a verified request lately (see `auth_failures`). Behind the keys:
//! `GET /api/v1/channels` (status) and `POST /api/v1/channels/NAME/send` (proactive messages).

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, GatewayState};
use crate::channels::{SendError, WebhookRequest};

/// Longest accepted header list of a webhook, in bytes (names and values).
const MAX_HEADER_BYTES: usize = 32 * 1024;

pub async fn webhook_root(
    State(state): State<Arc<GatewayState>>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    webhook(state, name, String::from("/"), request).await
}

pub async fn webhook_path(
    State(state): State<Arc<GatewayState>>,
    Path((name, rest)): Path<(String, String)>,
    request: Request,
) -> Response {
    webhook(state, name, format!("/{rest}"), request).await
}

async fn webhook(
    state: Arc<GatewayState>,
    name: String,
    path: String,
    request: Request,
) -> Response {
    // Nothing of a request to a channel that is not there is read.
    if let Err(answer) = state.channels.servable(&name) {
        let mut response = Response::new(Body::from(answer.body));
        *response.status_mut() =
            StatusCode::from_u16(answer.status).unwrap_or(StatusCode::NOT_FOUND);
        return response;
    }
    let address = state.client_address(&request);
    let failures = state.channel_failures(&name);
    if let Some(retry_after) = failures.locked_out(address) {
        return super::guard::too_many(
            "too_many_unverified",
            "too many requests from this address failed verification; retry later".to_owned(),
            retry_after,
        );
    }
    let limit = state.channels.max_body_bytes(&name);
    let (parts, body) = request.into_parts();
    let mut header_bytes = 0;
    let mut headers = Vec::with_capacity(parts.headers.len());
    for (header, value) in &parts.headers {
        // The browser's cookies for this host (the console's session among them) are never
        // the platform's: a channel plugin does not get them.
        if header == http::header::COOKIE {
            continue;
        }
        let Ok(value) = value.to_str() else {
            continue;
        };
        header_bytes += header.as_str().len() + value.len();
        headers.push((header.as_str().to_owned(), value.to_owned()));
    }
    if header_bytes > MAX_HEADER_BYTES {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            "the request's headers are too large",
        )
        .into_response();
    }
    let body = match axum::body::to_bytes(Body::new(body), limit).await {
        Ok(body) => body,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body is over this channel's {limit} bytes (plugins.NAME.channel.max_body_bytes)"),
            )
            .into_response();
        }
    };
    let answer = state
        .channels
        .receive_webhook(
            &name,
            WebhookRequest {
                method: parts.method.as_str().to_owned(),
                path,
                query: parts.uri.query().unwrap_or_default().to_owned(),
                headers,
                body,
            },
        )
        .await;
    match answer.verified {
        Some(true) => failures.passed(address),
        Some(false) => failures.failed(address),
        None => {}
    }
    let mut response = Response::new(Body::from(answer.body));
    *response.status_mut() =
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (header, value) in answer.headers {
        if let (Ok(header), Ok(value)) = (
            http::HeaderName::from_bytes(header.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            response.headers_mut().append(header, value);
        }
    }
    response
}

pub async fn list(State(state): State<Arc<GatewayState>>) -> Response {
    Json(json!({ "channels": state.channels.status() })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    chat: String,
    #[serde(default)]
    thread: Option<String>,
    text: String,
}

pub async fn send(
    State(state): State<Arc<GatewayState>>,
    Path(name): Path<String>,
    body: Result<Json<SendRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(rejection) => {
            return ApiError::invalid_request(rejection.body_text()).into_response();
        }
    };
    if request.chat.is_empty() || request.text.trim().is_empty() {
        return ApiError::invalid_request("`chat` and `text` must not be empty").into_response();
    }
    match state
        .channels
        .send(
            &name,
            &request.chat,
            request.thread.as_deref(),
            &request.text,
        )
        .await
    {
        Ok(handles) => Json(json!({ "sent": handles.len(), "messages": handles })).into_response(),
        Err(error @ SendError::NoSuchChannel(_)) => {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", error.to_string()).into_response()
        }
        Err(error) => {
            ApiError::new(StatusCode::BAD_GATEWAY, "send_failed", error.to_string()).into_response()
        }
    }
}
