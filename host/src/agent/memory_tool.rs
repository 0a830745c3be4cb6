//! The `memory` tool: the agent's persistent memory (remember, recall, forget), kept in the
//! session store and shown in every system prompt.
//!
//! Memories live in a scope chosen by the operator (`agent.memory_scope`), never by the model or
//! the message: the conversation, the conversation's user (default), or everyone. A turn reads
//! and writes only its own scope, so one user's chats never see another's memories unless
//! `global` is configured.

use serde::Deserialize;

use super::Conversation;
use super::sessions::SessionStore;
use crate::config::MemoryScope;
use crate::contract::chat::ToolDefinition;

pub const NAME: &str = crate::config::HOST_MEMORY_TOOL;

#[derive(Deserialize)]
#[serde(tag = "action", rename_all = "lowercase", deny_unknown_fields)]
enum Action {
    Remember { key: String, value: String },
    Recall,
    Forget { key: String },
}

/// The store's name for the memories a turn of `conversation` sees under `scope`.
pub fn scope_key(scope: MemoryScope, conversation: &Conversation) -> String {
    match scope {
        MemoryScope::Conversation => format!("conversation:{}", conversation.session_key),
        MemoryScope::User => format!("user:{}", conversation.user),
        MemoryScope::Global => "global".to_owned(),
    }
}

pub fn definition(scope: MemoryScope) -> ToolDefinition {
    let whose = match scope {
        MemoryScope::Conversation => "Memory of this conversation only",
        MemoryScope::User => "Persistent memory of this user, across their conversations",
        MemoryScope::Global => "Persistent memory shared by every conversation of every user",
    };
    ToolDefinition {
        name: NAME.to_owned(),
        description: format!(
            "{whose}: `remember` a fact under a key, `recall` everything remembered, `forget` a key."
        ),
        input_schema: serde_json::json!({
            "type": "object",
            "properties": {
                "action": { "type": "string", "enum": ["remember", "recall", "forget"] },
                "key": { "type": "string", "description": "Short name of the fact." },
                "value": { "type": "string", "description": "The fact (for remember)." }
            },
            "required": ["action"],
            "additionalProperties": false
        }),
    }
}

/// Run one call in the memory scope `scope` (from `scope_key`).
pub async fn run(
    sessions: &SessionStore,
    scope: &str,
    arguments: &serde_json::Value,
) -> Result<String, String> {
    let action: Action = serde_json::from_value(arguments.clone())
        .map_err(|e| format!("invalid_input: memory arguments: {e}"))?;
    let failed = |e: anyhow::Error| format!("unavailable: memory store: {e:#}");
    match action {
        Action::Remember { key, value } => {
            sessions
                .remember(scope, &key, &value)
                .await
                .map_err(failed)?;
            Ok(serde_json::json!({ "remembered": key }).to_string())
        }
        Action::Recall => {
            let memories = sessions.memories(scope, 1000).await.map_err(failed)?;
            let map: serde_json::Map<String, serde_json::Value> = memories
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect();
            Ok(serde_json::Value::Object(map).to_string())
        }
        Action::Forget { key } => {
            let existed = sessions.forget(scope, &key).await.map_err(failed)?;
            Ok(serde_json::json!({ "forgotten": key, "existed": existed }).to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_separate_conversations_users_and_nothing() {
        let chat = |session: &str, user: &str| Conversation {
            session_key: session.into(),
            user: user.into(),
            ..Conversation::default()
        };
        let (a1, a2, b1) = (
            chat("api:one", "api:key:aaaa"),
            chat("api:two", "api:key:aaaa"),
            chat("api:three", "api:key:bbbb"),
        );
        let conversation = |c: &Conversation| scope_key(MemoryScope::Conversation, c);
        let user = |c: &Conversation| scope_key(MemoryScope::User, c);
        let global = |c: &Conversation| scope_key(MemoryScope::Global, c);
        assert_ne!(conversation(&a1), conversation(&a2));
        assert_eq!(user(&a1), user(&a2));
        assert_ne!(user(&a1), user(&b1));
        assert_eq!(global(&a1), global(&b1));
        // A session key and a user name never name the same scope.
        let odd = chat("x", "x");
        assert_ne!(conversation(&odd), user(&odd));
    }
}
