//! The `memory` tool: the agent's persistent memory (remember, recall, forget), kept in the
//! session store and shown in every system prompt.

use serde::Deserialize;

use super::chat::ToolDefinition;
use super::sessions::SessionStore;

pub const NAME: &str = "memory";

#[derive(Deserialize)]
#[serde(tag = "action", rename_all = "lowercase", deny_unknown_fields)]
enum Action {
    Remember { key: String, value: String },
    Recall,
    Forget { key: String },
}

pub fn definition() -> ToolDefinition {
    ToolDefinition {
        name: NAME.to_owned(),
        description: "Persistent memory across conversations: `remember` a fact under a key, \
                      `recall` everything remembered, `forget` a key."
            .to_owned(),
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

pub async fn run(sessions: &SessionStore, arguments: &serde_json::Value) -> Result<String, String> {
    let action: Action = serde_json::from_value(arguments.clone())
        .map_err(|e| format!("invalid_input: memory arguments: {e}"))?;
    let failed = |e: anyhow::Error| format!("unavailable: memory store: {e:#}");
    match action {
        Action::Remember { key, value } => {
            sessions.remember(&key, &value).await.map_err(failed)?;
            Ok(serde_json::json!({ "remembered": key }).to_string())
        }
        Action::Recall => {
            let memories = sessions.memories(1000).await.map_err(failed)?;
            let map: serde_json::Map<String, serde_json::Value> = memories
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect();
            Ok(serde_json::Value::Object(map).to_string())
        }
        Action::Forget { key } => {
            let existed = sessions.forget(&key).await.map_err(failed)?;
            Ok(serde_json::json!({ "forgotten": key, "existed": existed }).to_string())
        }
    }
}
