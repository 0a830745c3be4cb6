//! `GET /api/v1/conversations` and `GET /api/v1/conversations/{key}`: browse and search saved
//! conversations, each turn with its messages, tool calls, tokens, latency and trace id.
//!
//! A principal sees the conversations bound to it; an operator (`gateway.admin_keys`, or the
//! local principal of a gateway without keys) sees every conversation, channels' included. A
//! conversation the caller may not see answers 404, exactly as one that does not exist.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, GatewayState, Principal};
use crate::agent::sessions::{ConversationFilter, StoredTurn};
use crate::contract::chat::ChatMessage;

/// Conversations one page lists at most.
const MAX_PAGE: usize = 200;
/// Longest search text.
const MAX_SEARCH: usize = 200;
/// Turns of one conversation shown at most (the newest).
const MAX_TURNS: usize = 50;
/// Characters of one message's text (or a tool call's arguments) shown at most.
const MAX_SHOWN_CHARS: usize = 8 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Text the conversation's key or one of its messages contains (any case).
    #[serde(default)]
    search: Option<String>,
    /// The previous page's `next`: the list goes on after it.
    #[serde(default)]
    after: Option<String>,
    #[serde(default = "default_page")]
    limit: usize,
}

fn default_page() -> usize {
    50
}

pub async fn list(
    State(state): State<Arc<GatewayState>>,
    Extension(principal): Extension<Principal>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) =
        query.map_err(|rejection| ApiError::invalid_request(rejection.body_text()))?;
    let search = query
        .search
        .as_deref()
        .map(str::trim)
        .filter(|text| !text.is_empty());
    if search.is_some_and(|text| text.chars().count() > MAX_SEARCH) {
        return Err(ApiError::invalid_request(format!(
            "`search` is at most {MAX_SEARCH} characters"
        )));
    }
    let limit = query.limit.clamp(1, MAX_PAGE);
    let after = match query.after.as_deref() {
        None => None,
        Some(cursor) => Some(parse_cursor(cursor).ok_or_else(|| {
            ApiError::invalid_request("`after` is the `next` of a previous page")
        })?),
    };
    let filter = ConversationFilter {
        owner: (!principal.is_admin()).then_some(principal.as_str()),
        search,
        after,
        limit,
    };
    let conversations = state
        .sessions
        .conversations(&filter)
        .await
        .map_err(store_error)?;
    let next = (conversations.len() == limit)
        .then(|| {
            conversations
                .last()
                .map(|c| format!("{}:{}", c.last_active_ms, c.session_key))
        })
        .flatten();
    Ok(Json(json!({ "conversations": conversations, "next": next })).into_response())
}

/// A page cursor, `MS:KEY` (the key may hold `:` itself).
fn parse_cursor(cursor: &str) -> Option<(i64, &str)> {
    let (at, key) = cursor.split_once(':')?;
    Some((at.parse().ok()?, key))
}

pub async fn show(
    State(state): State<Arc<GatewayState>>,
    Extension(principal): Extension<Principal>,
    Path(session_key): Path<String>,
) -> Result<Response, ApiError> {
    let owner = state
        .sessions
        .conversation_owner(&session_key)
        .await
        .map_err(store_error)?;
    if !principal.is_admin() && owner.as_deref() != Some(principal.as_str()) {
        return Err(not_found());
    }
    let (turns, messages) = state
        .sessions
        .conversation_turns(&session_key, MAX_TURNS)
        .await
        .map_err(store_error)?;
    if turns.is_empty() {
        return Err(not_found());
    }
    let turns: Vec<_> = grouped(turns, messages)
        .into_iter()
        .map(|(turn, messages)| {
            let messages: Vec<_> = messages.into_iter().map(shortened).collect();
            json!({ "turn": turn, "messages": messages })
        })
        .collect();
    Ok(Json(json!({ "session_key": session_key, "owner": owner, "turns": turns })).into_response())
}

/// `message` with its text and its tool calls' arguments cut to `MAX_SHOWN_CHARS`, so one
/// answer stays small whatever the conversation holds.
fn shortened(mut message: ChatMessage) -> ChatMessage {
    if let Some(content) = &mut message.content {
        cut(content);
    }
    for call in &mut message.tool_calls {
        let mut arguments = call.arguments.to_string();
        if arguments.len() > MAX_SHOWN_CHARS {
            cut(&mut arguments);
            call.arguments = serde_json::Value::String(arguments);
        }
    }
    message
}

fn cut(text: &mut String) {
    if let Some((index, _)) = text.char_indices().nth(MAX_SHOWN_CHARS) {
        let total = text.chars().count();
        text.truncate(index);
        text.push_str(&format!("… [{} more characters]", total - MAX_SHOWN_CHARS));
    }
}

/// Each turn with its messages (those numbered from its first for its count), in order.
fn grouped(
    turns: Vec<StoredTurn>,
    messages: Vec<(i64, ChatMessage)>,
) -> Vec<(StoredTurn, Vec<ChatMessage>)> {
    let mut messages = messages.into_iter().peekable();
    turns
        .into_iter()
        .map(|turn| {
            let end = turn.first_seq.saturating_add(turn.messages);
            // Messages before this turn's first belong to no listed turn.
            while messages.next_if(|(seq, _)| *seq < turn.first_seq).is_some() {}
            let mut own = Vec::new();
            while let Some((_, message)) = messages.next_if(|(seq, _)| *seq < end) {
                own.push(message);
            }
            (turn, own)
        })
        .collect()
}

fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "conversation_not_found",
        "no such conversation (or it belongs to another key)",
    )
}

fn store_error(error: anyhow::Error) -> ApiError {
    tracing::error!("the session store failed to list conversations: {error:#}");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "sessions_unavailable",
        "the session store is not answering; retry later",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::sessions::TurnRecord;
    use crate::contract::chat::Role;

    fn turn(first_seq: i64, messages: i64) -> StoredTurn {
        StoredTurn {
            first_seq,
            messages,
            prompt_tokens: 0,
            completion_tokens: 0,
            record: TurnRecord::default(),
        }
    }

    #[test]
    fn messages_go_to_their_turn() {
        let message = |text: &str| ChatMessage::text(Role::User, text);
        let messages = (1..=7)
            .map(|seq| (seq, message(&seq.to_string())))
            .collect();
        // Seq 1-2 belong to no listed turn; 3-4 the first; 5 none; 6-7 the second.
        let grouped = grouped(vec![turn(3, 2), turn(6, 2)], messages);
        let texts: Vec<Vec<String>> = grouped
            .iter()
            .map(|(_, messages)| {
                messages
                    .iter()
                    .map(|m| m.content.clone().unwrap_or_default())
                    .collect()
            })
            .collect();
        assert_eq!(texts, vec![vec!["3", "4"], vec!["6", "7"]]);
    }

    #[test]
    fn long_texts_are_shown_cut() {
        let long = ChatMessage::text(Role::Tool, "é".repeat(MAX_SHOWN_CHARS + 10));
        let shown = shortened(long).content.unwrap();
        assert!(shown.starts_with(&"é".repeat(MAX_SHOWN_CHARS)));
        assert!(shown.ends_with("… [10 more characters]"), "{shown}");
        let short = shortened(ChatMessage::text(Role::User, "hi"))
            .content
            .unwrap();
        assert_eq!(short, "hi");
    }
}
