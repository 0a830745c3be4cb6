//! `offline`: the provider that works with no key and no network.
//!
//! It is not a language model and says so. It understands one thing: a message of the form
//! `/TOOL {json arguments}` becomes a call of that tool, and tool results are reported back.
//! That is enough to run databot end to end on a fresh machine and to test the agent loop
//! deterministically.

mod embedding;

use databot_sdk::prelude::*;
use databot_sdk::worlds::provider::exports::databot::plugin::provider_handler::Guest;
use databot_sdk::{Health, HealthStatus};

databot_sdk::manifest! {
    name: "offline",
    kind: "provider",
    description: "Offline provider: no model, no key, no network; runs `/tool {args}` commands.",
    capabilities: ["stream-sink"],
}

const MODEL: &str = "offline-1";
/// Longest tool result quoted back.
const QUOTE_LIMIT: usize = 2000;

#[derive(Deserialize)]
struct ChatRequest {
    #[serde(default)]
    messages: Vec<Message>,
    #[serde(default)]
    tools: Vec<ToolSpec>,
}

#[derive(Deserialize)]
struct Message {
    role: String,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct ToolSpec {
    name: String,
    #[serde(default)]
    description: String,
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

fn answer(request: &ChatRequest) -> Value {
    let prompt_tokens: u64 = request
        .messages
        .iter()
        .filter_map(|m| m.content.as_deref())
        .map(words)
        .sum();
    let (content, tool_calls) = decide(request);
    let completion_tokens = words(&content);
    json!({
        "model": MODEL,
        "content": content,
        "tool_calls": tool_calls,
        "finish_reason": if tool_calls.is_empty() { "stop" } else { "tool_calls" },
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    })
}

fn decide(request: &ChatRequest) -> (String, Vec<Value>) {
    // After tool results: report them.
    let trailing_results: Vec<&Message> = request
        .messages
        .iter()
        .rev()
        .take_while(|m| m.role == "tool")
        .collect();
    if !trailing_results.is_empty() {
        let report = trailing_results
            .iter()
            .rev()
            .map(|m| {
                let text = m.content.as_deref().unwrap_or("");
                let cut = text
                    .char_indices()
                    .nth(QUOTE_LIMIT)
                    .map_or(text.len(), |(i, _)| i);
                let ellipsis = if cut < text.len() { " …" } else { "" };
                format!(
                    "`{}` returned:\n{}{ellipsis}",
                    m.name.as_deref().unwrap_or("tool"),
                    &text[..cut]
                )
            })
            .collect::<Vec<_>>()
            .join("\n\n");
        return (report, Vec::new());
    }
    let last_user = request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .and_then(|m| m.content.as_deref())
        .unwrap_or("")
        .trim();
    if let Some(command) = last_user.strip_prefix('/') {
        let (name, arguments) = command
            .split_once(char::is_whitespace)
            .unwrap_or((command, "{}"));
        if name == "tools" {
            return (tool_list(&request.tools), Vec::new());
        }
        if !request.tools.iter().any(|t| t.name == name) {
            return (
                format!(
                    "There is no tool named `{name}` here.\n\n{}",
                    tool_list(&request.tools)
                ),
                Vec::new(),
            );
        }
        return match serde_json::from_str::<Value>(arguments.trim()) {
            Ok(arguments) if arguments.is_object() => (
                String::new(),
                vec![json!({ "id": "call_1", "name": name, "arguments": arguments })],
            ),
            _ => (
                format!(
                    "The arguments after `/{name}` must be a JSON object, e.g. `/{name} {{\"key\": \"value\"}}`."
                ),
                Vec::new(),
            ),
        };
    }
    (
        format!(
            "This is databot's offline provider: no language model is configured, so free text \
             is not understood. Configure an OpenAI-compatible or Anthropic provider to chat. \
             Meanwhile, call a tool directly with `/TOOL {{json arguments}}`.\n\n{}",
            tool_list(&request.tools)
        ),
        Vec::new(),
    )
}

fn tool_list(tools: &[ToolSpec]) -> String {
    if tools.is_empty() {
        return "No tools are available.".to_owned();
    }
    let lines: Vec<String> = tools
        .iter()
        .map(|t| {
            format!(
                "- `{}`: {}",
                t.name,
                t.description.lines().next().unwrap_or("")
            )
        })
        .collect();
    format!("Available tools:\n{}", lines.join("\n"))
}

fn parse(request: &str) -> Result<ChatRequest, PluginError> {
    serde_json::from_str(request)
        .map_err(|e| PluginError::InvalidInput(format!("chat request: {e}")))
}

struct Offline;

impl Guest for Offline {
    fn models() -> Result<String, PluginError> {
        Ok(json!([MODEL]).to_string())
    }

    fn chat(request: String) -> Result<String, PluginError> {
        Ok(answer(&parse(&request)?).to_string())
    }

    fn chat_stream(request: String) -> Result<String, PluginError> {
        let response = answer(&parse(&request)?);
        let content = response["content"].as_str().unwrap_or("");
        for piece in content.split_inclusive(' ') {
            databot_sdk::stream_sink::emit(&json!({ "type": "delta", "text": piece }).to_string());
        }
        for call in response["tool_calls"].as_array().into_iter().flatten() {
            databot_sdk::stream_sink::emit(
                &json!({ "type": "tool_call", "call": call }).to_string(),
            );
        }
        Ok(response.to_string())
    }

    fn embed(request: String) -> Result<String, PluginError> {
        let texts: Vec<String> = serde_json::from_str::<Value>(&request)
            .ok()
            .and_then(|v| serde_json::from_value(v["input"].clone()).ok())
            .ok_or_else(|| {
                PluginError::InvalidInput("embed request needs `input`: [texts]".into())
            })?;
        // Hashed features: deterministic, offline, good enough for keyword-like retrieval.
        let vectors: Vec<Vec<f32>> = texts
            .iter()
            .map(|t| embedding::embed(t, embedding::DIMENSIONS))
            .collect();
        Ok(json!({ "model": embedding::MODEL, "embeddings": vectors }).to_string())
    }

    fn check_health() -> Health {
        Health {
            status: HealthStatus::Healthy,
            message: "offline provider: no model, always available".into(),
        }
    }
}

databot_sdk::worlds::provider::export_provider_world!(Offline);
