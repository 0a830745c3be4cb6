//! Translation between the host's chat format and the OpenAI chat-completions wire format,
//! including the server-sent-events stream with tool calls split across chunks.

use std::collections::BTreeMap;

use databot_sdk::PluginError;
use databot_sdk::provider::{ChatMessage, ChatRequest, ChatResponse, Role, ToolCall, Usage};
use serde_json::{Value, json};

/// The chat-completions request body for a host chat request.
pub fn request_body(request: &ChatRequest, default_model: &str, stream: bool) -> Value {
    let messages: Vec<Value> = request.messages.iter().map(message).collect();
    let tools: Vec<Value> = request
        .tools
        .iter()
        .map(|tool| {
            json!({
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": tool.input_schema,
                }
            })
        })
        .collect();
    let mut body = json!({
        "model": request.model_or(default_model),
        "messages": messages,
    });
    if !tools.is_empty() {
        body["tools"] = Value::Array(tools);
        body["tool_choice"] = json!("auto");
    }
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({ "include_usage": true });
    }
    body
}

fn message(message: &ChatMessage) -> Value {
    match message.role {
        Role::Tool => json!({
            "role": "tool",
            "tool_call_id": message.tool_call_id,
            "content": message.content_text(),
        }),
        Role::Assistant => {
            let mut out = json!({ "role": "assistant", "content": message.content });
            let calls: Vec<Value> = message
                .tool_calls
                .iter()
                .map(|call| {
                    json!({
                        "id": call.id,
                        "type": "function",
                        "function": { "name": call.name, "arguments": call.arguments.to_string() },
                    })
                })
                .collect();
            if !calls.is_empty() {
                out["tool_calls"] = Value::Array(calls);
            }
            out
        }
        Role::System => json!({ "role": "system", "content": message.content_text() }),
        Role::User => json!({ "role": "user", "content": message.content_text() }),
    }
}

/// Tool-call arguments arrive as a JSON string; a model may produce invalid JSON.
fn arguments(text: &str) -> Value {
    if text.trim().is_empty() {
        return json!({});
    }
    serde_json::from_str(text).unwrap_or_else(|_| json!({ "raw": text }))
}

fn usage(value: &Value) -> Usage {
    Usage {
        prompt_tokens: value["prompt_tokens"].as_u64().unwrap_or(0),
        completion_tokens: value["completion_tokens"].as_u64().unwrap_or(0),
        total_tokens: value["total_tokens"].as_u64().unwrap_or(0),
    }
}

/// A string field of the vendor's JSON, if it is one.
fn string_field(value: &Value) -> Option<String> {
    value.as_str().map(str::to_owned)
}

/// A non-streamed completion in the host's format.
pub fn parse_completion(text: &str) -> Result<ChatResponse, PluginError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| PluginError::Failed(format!("the completion is not JSON: {e}")))?;
    let message = &value["choices"][0]["message"];
    if message.is_null() {
        return Err(PluginError::Failed(format!(
            "the completion has no choices: {text}"
        )));
    }
    // As in a stream: calls without a name are dropped, a missing id is made up.
    let tool_calls: Vec<ToolCall> = message["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(index, call)| {
            let name = string_field(&call["function"]["name"]).filter(|n| !n.is_empty())?;
            Some(ToolCall {
                id: string_field(&call["id"])
                    .filter(|id| !id.is_empty())
                    .unwrap_or_else(|| format!("call_{index}")),
                name,
                arguments: arguments(call["function"]["arguments"].as_str().unwrap_or("")),
            })
        })
        .collect();
    Ok(ChatResponse {
        content: string_field(&message["content"]),
        tool_calls,
        usage: usage(&value["usage"]),
        model: string_field(&value["model"]),
        finish_reason: string_field(&value["choices"][0]["finish_reason"]),
    })
}

#[derive(Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// Accumulates an SSE stream of chat-completion chunks.
#[derive(Default)]
pub struct StreamState {
    content: String,
    calls: BTreeMap<u64, PartialCall>,
    usage: Option<Usage>,
    model: Option<String>,
    finish_reason: Option<String>,
    malformed: u32,
    chunks: u32,
    done: bool,
}

impl StreamState {
    /// Feed one SSE line; `delta` receives the answer's text as it arrives. True when the
    /// stream is done.
    pub fn feed(&mut self, line: &str, mut delta: impl FnMut(&str)) -> bool {
        let Some(data) = line.strip_prefix("data:") else {
            return false; // comments, `event:` lines, blank separators
        };
        let data = data.trim();
        if data == "[DONE]" {
            self.done = true;
            return true;
        }
        let chunk: Value = match serde_json::from_str(data) {
            Ok(chunk) => chunk,
            Err(_) => {
                self.malformed += 1;
                databot_sdk::log::warn(&format!("skipping a malformed stream chunk: {data:.200}"));
                return false;
            }
        };
        self.chunks += 1;
        if self.model.is_none() {
            self.model = string_field(&chunk["model"]);
        }
        if chunk["usage"].is_object() {
            self.usage = Some(usage(&chunk["usage"]));
        }
        let choice = &chunk["choices"][0];
        if let Some(text) = choice["delta"]["content"].as_str()
            && !text.is_empty()
        {
            self.content.push_str(text);
            delta(text);
        }
        for call in choice["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let index = call["index"].as_u64().unwrap_or(0);
            let partial = self.calls.entry(index).or_default();
            if let Some(id) = call["id"].as_str() {
                partial.id = id.to_owned();
            }
            if let Some(name) = call["function"]["name"].as_str() {
                partial.name.push_str(name);
            }
            if let Some(fragment) = call["function"]["arguments"].as_str() {
                partial.arguments.push_str(fragment);
            }
        }
        if let Some(reason) = string_field(&choice["finish_reason"]) {
            self.finish_reason = Some(reason);
        }
        false
    }

    /// The complete response. Tool calls are kept whatever the finish reason says.
    pub fn finish(self) -> Result<ChatResponse, PluginError> {
        if self.chunks == 0 {
            return Err(PluginError::Failed(format!(
                "the stream ended without a valid chunk ({} malformed)",
                self.malformed
            )));
        }
        if !self.done && self.finish_reason.is_none() {
            return Err(PluginError::Unavailable(
                "the stream ended before the model finished (no finish_reason, no [DONE])".into(),
            ));
        }
        let tool_calls: Vec<ToolCall> = self
            .calls
            .into_iter()
            .filter(|(_, call)| !call.name.is_empty())
            .map(|(index, call)| ToolCall {
                id: if call.id.is_empty() {
                    format!("call_{index}")
                } else {
                    call.id
                },
                arguments: arguments(&call.arguments),
                name: call.name,
            })
            .collect();
        Ok(ChatResponse {
            content: (!self.content.is_empty()).then_some(self.content),
            tool_calls,
            usage: self.usage.unwrap_or_default(),
            model: self.model,
            finish_reason: self.finish_reason,
        })
    }
}
