//! `anthropic`: the Anthropic messages API with tool use and streaming.
//!
//! The API key never enters this plugin: the operator grants the API host and a secret header
//! (`x-api-key: ${ANTHROPIC_API_KEY}`) that the host adds to each request. Rate limits (429)
//! and overload (529) are retried with exponential backoff honouring `Retry-After`.

mod wire;

use std::time::Duration;

use databot_sdk::Health;
use databot_sdk::http::{Request, RetryPolicy, send_with_retries, status_error};
use databot_sdk::prelude::*;
use databot_sdk::provider::{
    ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, Provider, Stream,
};

databot_sdk::manifest! {
    name: "anthropic",
    kind: "provider",
    description: "Anthropic messages API with tool use and streaming.",
    capabilities: ["http", "config", "stream-sink", "logging"],
}

const API_VERSION: &str = "2023-06-01";
const MAX_RESPONSE_BYTES: u64 = 8 * 1024 * 1024;

struct Settings {
    base_url: String,
    model: String,
    max_tokens: u64,
    retry: RetryPolicy,
    timeout: Duration,
}

fn settings() -> Result<Settings, PluginError> {
    let base_url = databot_sdk::config_value::<String>("base_url")?
        .unwrap_or_else(|| "https://api.anthropic.com".to_owned());
    Ok(Settings {
        base_url: base_url.trim_end_matches('/').to_owned(),
        model: databot_sdk::config_value::<String>("model")?
            .unwrap_or_else(|| "claude-sonnet-4-5".to_owned()),
        max_tokens: databot_sdk::config_value::<u64>("max_tokens")?.unwrap_or(4096),
        retry: RetryPolicy {
            retries: databot_sdk::config_value::<u32>("max_retries")?.unwrap_or(3),
            base: Duration::from_millis(
                databot_sdk::config_value::<u64>("retry_base_ms")?.unwrap_or(500),
            ),
            // A completion changes nothing on the server: safe to send again.
            retry_posts: true,
            ..RetryPolicy::default()
        },
        timeout: Duration::from_millis(
            databot_sdk::config_value::<u64>("timeout_ms")?.unwrap_or(120_000),
        ),
    })
}

fn messages_call(
    settings: &Settings,
    body: &Value,
) -> Result<databot_sdk::http::Response, PluginError> {
    let request = Request::post_json(format!("{}/v1/messages", settings.base_url), body)
        .header("anthropic-version", API_VERSION)
        .timeout(settings.timeout);
    let response = send_with_retries(&request, settings.retry)?;
    if response.status >= 400 {
        let status = response.status;
        let text = response.text(64 * 1024).unwrap_or_default();
        return Err(status_error(status, &text));
    }
    Ok(response)
}

struct Anthropic;

impl Provider for Anthropic {
    fn models() -> Result<Vec<String>, PluginError> {
        let settings = settings()?;
        let request = Request::get(format!("{}/v1/models", settings.base_url))
            .header("anthropic-version", API_VERSION)
            .timeout(settings.timeout);
        let response = send_with_retries(&request, settings.retry)?;
        let status = response.status;
        let text = response.text(MAX_RESPONSE_BYTES)?;
        if status >= 400 {
            return Err(status_error(status, &text));
        }
        let value: Value =
            serde_json::from_str(&text).map_err(|e| PluginError::Failed(format!("models: {e}")))?;
        Ok(value["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["id"].as_str().map(str::to_owned))
            .collect())
    }

    fn chat(request: ChatRequest<'static>) -> Result<ChatResponse, PluginError> {
        let settings = settings()?;
        let body = wire::request_body(&request, &settings.model, settings.max_tokens, false);
        let text = messages_call(&settings, &body)?.text(MAX_RESPONSE_BYTES)?;
        wire::parse_message(&text)
    }

    fn chat_stream(
        request: ChatRequest<'static>,
        stream: &Stream,
    ) -> Result<ChatResponse, PluginError> {
        let settings = settings()?;
        let body = wire::request_body(&request, &settings.model, settings.max_tokens, true);
        let mut response = messages_call(&settings, &body)?;
        let mut state = wire::StreamState::default();
        while let Some(line) = response.next_line()? {
            if state.feed(&line, |text| stream.delta(text))? {
                break;
            }
        }
        state.finish()
    }

    fn embed(_request: EmbedRequest<'static>) -> Result<EmbedResponse, PluginError> {
        Err(PluginError::InvalidInput(
            "Anthropic has no embeddings API; configure an OpenAI-compatible provider for embeddings".into(),
        ))
    }

    fn check_health() -> Health {
        databot_sdk::http::health_from(Self::models(), "models endpoint answered")
    }
}

databot_sdk::provider!(Anthropic);
