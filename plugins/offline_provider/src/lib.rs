//! `offline`: the provider that works with no key and no network.
//!
//! It is not a language model and says so. It understands one thing: a message of the form
//! `/TOOL {json arguments}` becomes a call of that tool, and tool results are reported back.
//! That is enough to run databot end to end on a fresh machine and to test the agent loop
//! deterministically.

mod embedding;

use databot_sdk::prelude::*;
use databot_sdk::provider::{
    ChatMessage, ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, Provider, Role, Stream,
    ToolCall, ToolDefinition, Usage,
};
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

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

fn answer(request: &ChatRequest) -> ChatResponse {
    let prompt_tokens: u64 = request
        .messages
        .iter()
        .filter_map(|m| m.content.as_deref())
        .map(words)
        .sum();
    let (content, tool_calls) = decide(request);
    let completion_tokens = words(&content);
    let finish_reason = if tool_calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    ChatResponse {
        model: Some(MODEL.to_owned()),
        content: Some(content),
        tool_calls,
        finish_reason: Some(finish_reason.to_owned()),
        usage: Usage::new(prompt_tokens, completion_tokens),
    }
}

fn decide(request: &ChatRequest) -> (String, Vec<ToolCall>) {
    // After tool results: report them.
    let trailing_results: Vec<&ChatMessage> = request
        .messages
        .iter()
        .rev()
        .take_while(|m| m.role == Role::Tool)
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
        .find(|m| m.role == Role::User)
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
                vec![ToolCall {
                    id: "call_1".to_owned(),
                    name: name.to_owned(),
                    arguments,
                }],
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

fn tool_list(tools: &[ToolDefinition]) -> String {
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

struct Offline;

impl Provider for Offline {
    fn models() -> Result<Vec<String>, PluginError> {
        Ok(vec![MODEL.to_owned()])
    }

    fn chat(request: ChatRequest<'static>) -> Result<ChatResponse, PluginError> {
        Ok(answer(&request))
    }

    fn chat_stream(
        request: ChatRequest<'static>,
        stream: &Stream,
    ) -> Result<ChatResponse, PluginError> {
        let response = answer(&request);
        for piece in response
            .content
            .as_deref()
            .unwrap_or("")
            .split_inclusive(' ')
        {
            stream.delta(piece);
        }
        Ok(response)
    }

    fn embed(request: EmbedRequest<'static>) -> Result<EmbedResponse, PluginError> {
        // Hashed features: deterministic, offline, good enough for keyword-like retrieval.
        let embeddings: Vec<Vec<f32>> = request
            .input
            .iter()
            .map(|t| embedding::embed(t, embedding::DIMENSIONS))
            .collect();
        Ok(EmbedResponse {
            model: Some(embedding::MODEL.to_owned()),
            embeddings,
            usage: None,
        })
    }

    fn check_health() -> Health {
        Health {
            status: HealthStatus::Healthy,
            message: "offline provider: no model, always available".into(),
        }
    }
}

databot_sdk::provider!(Offline);
