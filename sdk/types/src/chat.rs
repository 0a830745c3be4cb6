//! The provider contract's data: what the agent asks a provider plugin (`chat`, `chat-stream`,
//! `embed`) and what it answers. Providers translate these to and from their vendor's wire
//! format; the host never sees a vendor format.
//!
//! Requests borrow on the host side (`Cow::Borrowed`, no copies of the conversation to send it)
//! and own on the guest side (deserialised as `Cow::Owned`).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

/// A tool call the model asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The call's arguments as the model wrote them (an object, when the model behaves).
    #[serde(default)]
    pub arguments: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For `tool` messages: the call this answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// For `tool` messages: the tool's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ChatMessage {
    pub fn text(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: Some(content.into()),
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
        }
    }

    /// The message that answers `call` with its result.
    pub fn tool_result(call: &ToolCall, content: String) -> Self {
        Self {
            role: Role::Tool,
            content: Some(content),
            tool_calls: Vec::new(),
            tool_call_id: Some(call.id.clone()),
            name: Some(call.name.clone()),
        }
    }

    /// The text, or "" when there is none.
    pub fn content_text(&self) -> &str {
        self.content.as_deref().unwrap_or("")
    }

    /// Rough token estimate (4 bytes a token), for trimming history to a budget.
    pub fn estimated_tokens(&self) -> usize {
        let calls: usize = self
            .tool_calls
            .iter()
            .map(|c| c.name.len() + c.arguments.to_string().len())
            .sum();
        (self.content.as_deref().map_or(0, str::len) + calls) / 4 + 4
    }
}

/// A tool the model may call: its name, description and the JSON Schema of its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDefinition {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub input_schema: serde_json::Value,
}

/// One chat completion request (`chat` and `chat-stream`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest<'a> {
    /// The model the operator configured; `None` means the provider's own default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<Cow<'a, str>>,
    pub messages: Cow<'a, [ChatMessage]>,
    #[serde(default)]
    pub tools: Cow<'a, [ToolDefinition]>,
}

impl ChatRequest<'_> {
    /// The model to ask for: the request's, else `default`.
    pub fn model_or<'m>(&'m self, default: &'m str) -> &'m str {
        self.model.as_deref().unwrap_or(default)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
}

impl Usage {
    /// Usage from the two counts, with their sum as the total.
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Self) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.total_tokens += other.total_tokens;
    }
}

/// One chat completion: the text, the tool calls the model asked for, or both.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub tool_calls: Vec<ToolCall>,
    #[serde(default)]
    pub usage: Usage,
    /// The model that answered, as the vendor names it.
    #[serde(default)]
    pub model: Option<String>,
    /// Why the model stopped (`stop`, `tool_calls`, `length`, ... as the vendor says); a
    /// value that is not a string is read as none.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "string_or_none"
    )]
    pub finish_reason: Option<String>,
}

fn string_or_none<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::String(text) => Some(text),
        _ => None,
    })
}

/// Embeddings for a list of texts (`embed`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedRequest<'a> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<Cow<'a, str>>,
    pub input: Cow<'a, [String]>,
}

/// One vector per input text, in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmbedResponse {
    #[serde(default)]
    pub model: Option<String>,
    pub embeddings: Vec<Vec<f32>>,
    /// Token usage, when the vendor reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<EmbedUsage>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbedUsage {
    #[serde(default)]
    pub prompt_tokens: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_borrowed_request_reads_back_owned() {
        let messages = [
            ChatMessage::text(Role::System, "be brief"),
            ChatMessage::text(Role::User, "hi"),
        ];
        let tools = [ToolDefinition {
            name: "echo".into(),
            description: "Echo.".into(),
            input_schema: serde_json::json!({"type": "object"}),
        }];
        let request = ChatRequest {
            model: None,
            messages: Cow::Borrowed(&messages),
            tools: Cow::Borrowed(&tools),
        };
        let json = serde_json::to_string(&request).unwrap();
        assert!(!json.contains("model"), "{json}");
        let back: ChatRequest<'static> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, request);
        assert_eq!(back.model_or("m"), "m");
    }

    #[test]
    fn responses_accept_missing_fields() {
        let response: ChatResponse = serde_json::from_str(r#"{"content":"x"}"#).unwrap();
        assert_eq!(response.content.as_deref(), Some("x"));
        assert_eq!(response.usage, Usage::default());
        let odd: ChatResponse =
            serde_json::from_str(r#"{"content":"x","finish_reason":{"kind":1}}"#).unwrap();
        assert_eq!(odd.finish_reason, None);
        let embed: EmbedResponse = serde_json::from_str(r#"{"embeddings":[[1,2]]}"#).unwrap();
        assert_eq!(embed.embeddings, vec![vec![1.0, 2.0]]);
        assert!(serde_json::from_str::<EmbedResponse>(r#"{"data":[]}"#).is_err());
    }
}
