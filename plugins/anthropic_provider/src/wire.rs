//! Translation between the host's chat format and the Anthropic messages API, including its
//! event stream (content blocks, text and tool-input deltas, usage in start and delta events).

use std::collections::BTreeMap;

use databot_sdk::PluginError;
use databot_sdk::provider::{ChatRequest, ChatResponse, Role, ToolCall, Usage};
use serde_json::{Value, json};

/// The messages-API body for a host chat request. System messages become `system`; tool
/// results become `tool_result` blocks of a user turn; consecutive turns of one role merge,
/// because the API requires user and assistant to alternate.
pub fn request_body(
    request: &ChatRequest,
    default_model: &str,
    max_tokens: u64,
    stream: bool,
) -> Value {
    let mut system = Vec::new();
    let mut messages: Vec<(&str, Vec<Value>)> = Vec::new();
    for message in request.messages.iter() {
        let content = message.content_text();
        let (role, blocks) = match message.role {
            Role::System => {
                system.push(content.to_owned());
                continue;
            }
            Role::Tool => (
                "user",
                vec![
                    json!({ "type": "tool_result", "tool_use_id": message.tool_call_id, "content": content }),
                ],
            ),
            Role::Assistant => {
                let mut blocks = Vec::new();
                if !content.is_empty() {
                    blocks.push(json!({ "type": "text", "text": content }));
                }
                for call in &message.tool_calls {
                    blocks.push(json!({ "type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments }));
                }
                ("assistant", blocks)
            }
            Role::User => ("user", vec![json!({ "type": "text", "text": content })]),
        };
        if blocks.is_empty() {
            continue;
        }
        match messages.last_mut() {
            Some((last_role, last_blocks)) if *last_role == role => last_blocks.extend(blocks),
            _ => messages.push((role, blocks)),
        }
    }
    let mut body = json!({
        "model": request.model_or(default_model),
        "max_tokens": max_tokens,
        "messages": messages.into_iter().map(|(role, content)| json!({ "role": role, "content": content })).collect::<Vec<_>>(),
    });
    if !system.is_empty() {
        body["system"] = json!(system.join("\n\n"));
    }
    let tools: Vec<Value> = request
        .tools
        .iter()
        .map(|tool| json!({ "name": tool.name, "description": tool.description, "input_schema": tool.input_schema }))
        .collect();
    if !tools.is_empty() {
        body["tools"] = Value::Array(tools);
    }
    if stream {
        body["stream"] = json!(true);
    }
    body
}

/// A string field of the vendor's JSON, if it is one.
fn string_field(value: &Value) -> Option<String> {
    value.as_str().map(str::to_owned)
}

/// A complete (non-streamed) message in the host's format.
pub fn parse_message(body: &str) -> Result<ChatResponse, PluginError> {
    let value: Value = serde_json::from_str(body)
        .map_err(|e| PluginError::Failed(format!("the message is not JSON: {e}")))?;
    let blocks = value["content"]
        .as_array()
        .ok_or_else(|| PluginError::Failed(format!("the message has no content: {body:.300}")))?;
    let content: String = blocks
        .iter()
        .filter(|b| b["type"] == "text")
        .filter_map(|b| b["text"].as_str())
        .collect();
    let tool_calls: Vec<ToolCall> = blocks
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .map(|b| ToolCall {
            id: string_field(&b["id"]).unwrap_or_default(),
            name: string_field(&b["name"]).unwrap_or_default(),
            arguments: b["input"].clone(),
        })
        .collect();
    Ok(ChatResponse {
        content: (!content.is_empty()).then_some(content),
        tool_calls,
        usage: Usage::new(
            value["usage"]["input_tokens"].as_u64().unwrap_or(0),
            value["usage"]["output_tokens"].as_u64().unwrap_or(0),
        ),
        model: string_field(&value["model"]),
        finish_reason: string_field(&value["stop_reason"]),
    })
}

#[derive(Default)]
struct ToolBlock {
    id: String,
    name: String,
    input_json: String,
}

/// Accumulates the messages event stream.
#[derive(Default)]
pub struct StreamState {
    content: String,
    tools: BTreeMap<u64, ToolBlock>,
    input_tokens: u64,
    output_tokens: u64,
    model: Option<String>,
    stop_reason: Option<String>,
    events: u32,
    stopped: bool,
}

impl StreamState {
    /// Feed one SSE line; `delta` receives the answer's text as it arrives. `Ok(true)` when the
    /// message ended.
    pub fn feed(&mut self, line: &str, mut delta: impl FnMut(&str)) -> Result<bool, PluginError> {
        let Some(data) = line.strip_prefix("data:") else {
            return Ok(false); // `event:` lines and blank separators; the data carries its type
        };
        let Ok(event) = serde_json::from_str::<Value>(data.trim()) else {
            databot_sdk::log::warn(&format!(
                "skipping a malformed stream event: {:.200}",
                data.trim()
            ));
            return Ok(false);
        };
        self.events += 1;
        match event["type"].as_str().unwrap_or("") {
            "message_start" => {
                self.model = string_field(&event["message"]["model"]);
                self.input_tokens = event["message"]["usage"]["input_tokens"]
                    .as_u64()
                    .unwrap_or(0);
            }
            "content_block_start" => {
                let block = &event["content_block"];
                if block["type"] == "tool_use" {
                    self.tools.insert(
                        event["index"].as_u64().unwrap_or(0),
                        ToolBlock {
                            id: block["id"].as_str().unwrap_or("").to_owned(),
                            name: block["name"].as_str().unwrap_or("").to_owned(),
                            input_json: String::new(),
                        },
                    );
                }
            }
            "content_block_delta" => {
                let change = &event["delta"];
                match change["type"].as_str().unwrap_or("") {
                    "text_delta" => {
                        if let Some(text) = change["text"].as_str() {
                            self.content.push_str(text);
                            delta(text);
                        }
                    }
                    "input_json_delta" => {
                        if let Some(tool) =
                            self.tools.get_mut(&event["index"].as_u64().unwrap_or(0))
                        {
                            tool.input_json
                                .push_str(change["partial_json"].as_str().unwrap_or(""));
                        }
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                self.stop_reason = string_field(&event["delta"]["stop_reason"]);
                if let Some(output) = event["usage"]["output_tokens"].as_u64() {
                    self.output_tokens = output;
                }
            }
            "message_stop" => {
                self.stopped = true;
                return Ok(true);
            }
            "error" => {
                let kind = event["error"]["type"].as_str().unwrap_or("error");
                let message = event["error"]["message"].as_str().unwrap_or("");
                let text = format!("the stream failed: {kind}: {message}");
                return Err(match kind {
                    "overloaded_error" | "rate_limit_error" | "api_error" => {
                        PluginError::Unavailable(text)
                    }
                    "authentication_error" | "permission_error" => PluginError::Denied(text),
                    "invalid_request_error" => PluginError::InvalidInput(text),
                    _ => PluginError::Failed(text),
                });
            }
            _ => {} // ping, content_block_stop
        }
        Ok(false)
    }

    pub fn finish(self) -> Result<ChatResponse, PluginError> {
        if !self.stopped {
            return Err(PluginError::Unavailable(format!(
                "the stream ended before message_stop ({} events)",
                self.events
            )));
        }
        let mut tool_calls = Vec::new();
        for tool in self.tools.into_values() {
            let arguments = if tool.input_json.trim().is_empty() {
                json!({})
            } else {
                serde_json::from_str(&tool.input_json)
                    .unwrap_or_else(|_| json!({ "raw": tool.input_json }))
            };
            tool_calls.push(ToolCall {
                id: tool.id,
                name: tool.name,
                arguments,
            });
        }
        Ok(ChatResponse {
            content: (!self.content.is_empty()).then_some(self.content),
            tool_calls,
            usage: Usage::new(self.input_tokens, self.output_tokens),
            model: self.model,
            finish_reason: self.stop_reason,
        })
    }
}
