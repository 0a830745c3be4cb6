//! `POST /api/v1/message` and `POST /api/v1/stream`: a client's message into the bus, the reply
//! (or its stream events) back.
//!
//! The server decides where a message goes: the channel is always `api`, the sender is the
//! request's principal, and the conversation is one the principal owns. Without `chat_id` a new
//! conversation starts under a random id (128 bits from the operating system's CSPRNG); a
//! `chat_id` the client names is claimed for it on first use, and a conversation owned by
//! another principal answers 404 (its history is never read or written).

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::auth::Principal;
use super::{ApiError, GatewayState};
use crate::bus::{BusError, InboundMessage};
use crate::events::TurnEvent;

/// The channel of every message that comes through the gateway.
pub const CHANNEL: &str = "api";
/// Longest `chat_id` a client may name.
const MAX_CHAT_ID: usize = 128;
/// Longest `Idempotency-Key` header.
const MAX_IDEMPOTENCY_KEY: usize = 255;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageRequest {
    content: String,
    /// The conversation; a new one is started when absent (and returned).
    chat_id: Option<String>,
}

type BodyResult = Result<Bytes, axum::extract::rejection::BytesRejection>;

pub async fn message(
    State(state): State<Arc<GatewayState>>,
    Extension(principal): Extension<Principal>,
    headers: http::HeaderMap,
    body: BodyResult,
) -> Result<Response, ApiError> {
    let inbound = inbound(&state, &principal, &headers, body, false).await?;
    let chat_id = inbound.chat_id.clone();
    let delivery = state.bus.submit(inbound).await.map_err(bus_error)?;
    let reply = tokio::time::timeout(state.reply_timeout, delivery.reply)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                "no reply in time; the turn goes on and is saved",
            )
        })?
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the turn ended without a reply",
            )
        })?;
    state.metrics.turn(reply.failed);
    let status = if reply.failed {
        StatusCode::BAD_GATEWAY
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({ "chat_id": chat_id, "content": reply.content, "failed": reply.failed })),
    )
        .into_response())
}

pub async fn stream(
    State(state): State<Arc<GatewayState>>,
    Extension(principal): Extension<Principal>,
    headers: http::HeaderMap,
    body: BodyResult,
) -> Result<Response, ApiError> {
    let inbound = inbound(&state, &principal, &headers, body, true).await?;
    let chat_id = inbound.chat_id.clone();
    let delivery = state.bus.submit(inbound).await.map_err(bus_error)?;
    let metrics_state = state.clone();
    let events = futures::stream::unfold(
        (delivery.events, false, metrics_state),
        |(mut events, finished, state)| async move {
            if finished {
                return None;
            }
            let event = events.recv().await?;
            let last = event.is_last();
            if last {
                state.metrics.turn(matches!(event, TurnEvent::Error { .. }));
            }
            let sse = sse_event(event);
            Some((Ok::<_, Infallible>(sse), (events, last, state)))
        },
    );
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&chat_id) {
        response.headers_mut().insert("x-chat-id", value);
    }
    Ok(response)
}

/// A turn event as an SSE event: `event:` is its name, `data:` is `{"data", "tool_name"}`.
fn sse_event(event: TurnEvent) -> Event {
    let name = event.name();
    let (data, tool_name) = match event {
        TurnEvent::Delta { text } => (text, None),
        TurnEvent::ToolStart { name, arguments } => (arguments.to_string(), Some(name)),
        TurnEvent::ToolResult { name, output, .. } => (output, Some(name)),
        TurnEvent::Done {
            content,
            summary: Some(summary),
        } => {
            let data = json!({ "data": content, "tool_name": null, "summary": summary });
            return Event::default().event(name).data(data.to_string());
        }
        TurnEvent::Done { content, .. } => (content, None),
        TurnEvent::Error { message } => (message, None),
    };
    let data = json!({ "data": data, "tool_name": tool_name });
    Event::default().event(name).data(data.to_string())
}

/// The bus message for a request: parsed, in a conversation `principal` owns, channel `api`,
/// sent by `principal`, with the caller's trace context.
async fn inbound(
    state: &GatewayState,
    principal: &Principal,
    headers: &http::HeaderMap,
    body: BodyResult,
    stream: bool,
) -> Result<InboundMessage, ApiError> {
    let request = parse(body)?;
    let key = idempotency_key(headers)?;
    let chat_id = match (request.chat_id, key) {
        (Some(chat_id), _) => {
            check_chat_id(&chat_id)?;
            let owner = claim(state, &chat_id, principal).await?;
            if owner != principal.as_str() {
                return Err(not_found());
            }
            chat_id
        }
        // A request sent again with the same key must land in the same new conversation.
        (None, Some(key)) => {
            let chat_id = keyed_chat_id(principal, key);
            if claim(state, &chat_id, principal).await? != principal.as_str() {
                return Err(not_found());
            }
            chat_id
        }
        (None, None) => loop {
            let chat_id = new_chat_id()?;
            // 128 random bits do not collide; a claimed id would only mean drawing again.
            if claim(state, &chat_id, principal).await? == principal.as_str() {
                break chat_id;
            }
        },
    };
    let id = key.map_or_else(String::new, |key| idempotency_id(principal, &chat_id, key));
    Ok(InboundMessage {
        id,
        channel: CHANNEL.to_owned(),
        chat_id,
        sender_id: principal.as_str().to_owned(),
        content: request.content,
        stream,
        thread_id: None,
        trace_context: trace_context(headers),
        ..Default::default()
    })
}

/// The request's `Idempotency-Key`, if it has a valid one.
fn idempotency_key(headers: &http::HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(key) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    key.to_str()
        .ok()
        .filter(|key| {
            (1..=MAX_IDEMPOTENCY_KEY).contains(&key.len())
                && key.bytes().all(|b| b.is_ascii_graphic())
        })
        .map(Some)
        .ok_or_else(|| {
            ApiError::invalid_request(format!(
                "`Idempotency-Key` must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
            ))
        })
}

/// The message id of a request with an `Idempotency-Key`. It is bound to the caller and the
/// conversation, so a key never reaches another principal's message; a request sent again
/// with the same key is answered once (by the Kafka bus, whose processed records the replicas
/// share).
fn idempotency_id(principal: &Principal, chat_id: &str, key: &str) -> String {
    let digest =
        crate::digest::sha256_hex(format!("{}\n{chat_id}\n{key}", principal.as_str()).as_bytes());
    format!("{CHANNEL}:{}", &digest[..32])
}

/// The new conversation of a request with an `Idempotency-Key` and no `chat_id`: the same
/// for the same caller and key.
fn keyed_chat_id(principal: &Principal, key: &str) -> String {
    let digest =
        crate::digest::sha256_hex(format!("new\n{}\n{key}", principal.as_str()).as_bytes());
    digest[..32].to_owned()
}

fn parse(body: BodyResult) -> Result<MessageRequest, ApiError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is over gateway.max_body_bytes",
            )
        } else if let Some(timeout) = find_source::<super::server::BodyTimeout>(&rejection) {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                timeout.to_string(),
            )
        } else {
            ApiError::new(rejection.status(), "invalid_request", rejection.body_text())
        }
    })?;
    let request: MessageRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid_request(format!(
            "the body must be JSON like {{\"content\": \"...\", \"chat_id\": \"...\"}} \
                 (the channel and sender are set by the server): {e}"
        ))
    })?;
    if request.content.trim().is_empty() {
        return Err(ApiError::invalid_request("`content` is empty"));
    }
    Ok(request)
}

/// A `chat_id` a client may name: 1 to 128 of `A-Z a-z 0-9 . _ -`.
fn check_chat_id(chat_id: &str) -> Result<(), ApiError> {
    let valid = !chat_id.is_empty()
        && chat_id.len() <= MAX_CHAT_ID
        && chat_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid_request(format!(
            "`chat_id` must be 1 to {MAX_CHAT_ID} of the characters A-Z a-z 0-9 . _ -"
        )))
    }
}

/// The owner of conversation `chat_id`, which becomes `principal` if it had none.
async fn claim(
    state: &GatewayState,
    chat_id: &str,
    principal: &Principal,
) -> Result<String, ApiError> {
    state
        .sessions
        .claim_conversation(&format!("{CHANNEL}:{chat_id}"), principal.as_str())
        .await
        .map_err(|error| {
            tracing::error!("the session store failed to bind a conversation: {error:#}");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "sessions_unavailable",
                "the session store is not answering; retry later",
            )
        })
}

fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "conversation_not_found",
        "no such conversation for this API key; omit `chat_id` to start one",
    )
}

/// 128 bits from the operating system's CSPRNG, as 32 lower-case hex digits.
pub fn new_chat_id() -> Result<String, ApiError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|error| {
        tracing::error!("no randomness for a chat id: {error}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "could not draw a conversation id",
        )
    })?;
    Ok(hex::encode(bytes))
}

/// The first error of type `T` in `error`'s chain of sources.
fn find_source<'a, T: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(found) = error.downcast_ref::<T>() {
            return Some(found);
        }
        current = error.source();
    }
    None
}

fn bus_error(error: BusError) -> ApiError {
    match error {
        BusError::Busy { .. } | BusError::ConversationBusy { .. } => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", error.to_string())
        }
        BusError::Closed => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            error.to_string(),
        ),
        BusError::TooLarge { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            error.to_string(),
        ),
        BusError::Unavailable(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            error.to_string(),
        ),
    }
}

/// The caller's W3C trace context (`traceparent`, `tracestate` headers), for the turn's span.
fn trace_context(headers: &http::HeaderMap) -> Vec<(String, String)> {
    crate::telemetry::propagation::carrier(|key| {
        headers
            .get(key)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_ids_are_128_random_bits() {
        let ids: std::collections::HashSet<String> =
            (0..10_000).map(|_| new_chat_id().unwrap()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(100) {
            assert_eq!(id.len(), 32);
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
            assert!(check_chat_id(id).is_ok());
        }
        // Every bit varies: over many ids, each hex position takes many values.
        for position in 0..32 {
            let seen: std::collections::HashSet<u8> =
                ids.iter().map(|id| id.as_bytes()[position]).collect();
            assert_eq!(seen.len(), 16, "position {position}");
        }
    }

    #[test]
    fn client_chat_ids_cannot_leave_the_api_channel() {
        for bad in [
            "",
            "a:b",
            "cli:default",
            "../x",
            "a b",
            "a/b",
            "é",
            &"x".repeat(129),
        ] {
            assert!(check_chat_id(bad).is_err(), "{bad:?}");
        }
        for ok in ["demo", "A.b_c-1", &"x".repeat(128)] {
            assert!(check_chat_id(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn the_body_cannot_choose_the_channel_or_the_sender() {
        for body in [
            r#"{"content": "hi", "channel": "cli"}"#,
            r#"{"content": "hi", "sender_id": "someone"}"#,
        ] {
            let error = parse(Ok(Bytes::from(body))).err().unwrap();
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{body}");
            assert!(error.message.contains("unknown field"), "{}", error.message);
        }
    }
}
