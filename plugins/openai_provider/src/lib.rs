//! `openai`: chat completions against any OpenAI-compatible API (OpenAI, LiteLLM proxy, vLLM,
//! Ollama) chosen by `base_url`, with tool calls, SSE streaming and usage.
//!
//! The API key never enters this plugin: the operator grants the base URL's host and a secret
//! header (`authorization: Bearer ${OPENAI_API_KEY}`) that the host adds to each request.
//! Rate limits and server errors are retried with exponential backoff honouring `Retry-After`.

mod wire;

use std::time::Duration;

use databot_sdk::Health;
use databot_sdk::http::{Request, RetryPolicy, send_with_retries};
use databot_sdk::prelude::*;
use databot_sdk::worlds::provider::exports::databot::plugin::provider_handler::Guest;

databot_sdk::manifest! {
    name: "openai",
    kind: "provider",
    description: "OpenAI-compatible chat completions with tools and streaming (OpenAI, LiteLLM, vLLM, Ollama).",
    capabilities: ["http", "config", "stream-sink", "logging"],
}

/// Largest non-streamed response body read.
const MAX_RESPONSE_BYTES: u64 = 8 * 1024 * 1024;

struct Settings {
    base_url: String,
    model: String,
    retry: RetryPolicy,
    timeout: Duration,
}

fn settings() -> Result<Settings, PluginError> {
    let base_url = databot_sdk::config_value::<String>("base_url")?
        .unwrap_or_else(|| "https://api.openai.com/v1".to_owned());
    let model =
        databot_sdk::config_value::<String>("model")?.unwrap_or_else(|| "gpt-4o-mini".to_owned());
    let retries = databot_sdk::config_value::<u32>("max_retries")?.unwrap_or(3);
    let base_ms = databot_sdk::config_value::<u64>("retry_base_ms")?.unwrap_or(500);
    let timeout_ms = databot_sdk::config_value::<u64>("timeout_ms")?.unwrap_or(60_000);
    Ok(Settings {
        base_url: base_url.trim_end_matches('/').to_owned(),
        model,
        retry: RetryPolicy {
            retries,
            base: Duration::from_millis(base_ms),
            // A completion changes nothing on the server: safe to send again.
            retry_posts: true,
            ..RetryPolicy::default()
        },
        timeout: Duration::from_millis(timeout_ms),
    })
}

fn post(
    settings: &Settings,
    path: &str,
    body: &Value,
) -> Result<databot_sdk::http::Response, PluginError> {
    let request =
        Request::post_json(format!("{}{path}", settings.base_url), body).timeout(settings.timeout);
    let response = send_with_retries(&request, settings.retry)?;
    if response.status >= 400 {
        let status = response.status;
        let text = response.text(64 * 1024).unwrap_or_default();
        return Err(databot_sdk::http::status_error(status, &text));
    }
    Ok(response)
}

struct OpenAi;

impl Guest for OpenAi {
    fn models() -> Result<String, PluginError> {
        let settings = settings()?;
        let request =
            Request::get(format!("{}/models", settings.base_url)).timeout(settings.timeout);
        let response = send_with_retries(&request, settings.retry)?;
        let status = response.status;
        let text = response.text(MAX_RESPONSE_BYTES)?;
        if status >= 400 {
            return Err(databot_sdk::http::status_error(status, &text));
        }
        let value: Value =
            serde_json::from_str(&text).map_err(|e| PluginError::Failed(format!("models: {e}")))?;
        let names: Vec<Value> = value["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["id"].as_str().map(|id| json!(id)))
            .collect();
        Ok(Value::Array(names).to_string())
    }

    fn chat(request: String) -> Result<String, PluginError> {
        let settings = settings()?;
        let body = wire::request_body(&request, &settings.model, false)?;
        let response = post(&settings, "/chat/completions", &body)?;
        let text = response.text(MAX_RESPONSE_BYTES)?;
        Ok(wire::parse_completion(&text)?.to_string())
    }

    fn chat_stream(request: String) -> Result<String, PluginError> {
        let settings = settings()?;
        let body = wire::request_body(&request, &settings.model, true)?;
        let mut response = post(&settings, "/chat/completions", &body)?;
        let mut stream = wire::StreamState::default();
        while let Some(line) = response.next_line()? {
            if stream.feed(&line, |event| {
                databot_sdk::stream_sink::emit(&event.to_string())
            }) {
                break;
            }
        }
        Ok(stream.finish()?.to_string())
    }

    fn embed(request: String) -> Result<String, PluginError> {
        let settings = settings()?;
        let request: Value = serde_json::from_str(&request)
            .map_err(|e| PluginError::InvalidInput(format!("embed request: {e}")))?;
        let model = request["model"]
            .as_str()
            .unwrap_or("text-embedding-3-small");
        let body = json!({ "model": model, "input": request["input"] });
        let text = post(&settings, "/embeddings", &body)?.text(MAX_RESPONSE_BYTES)?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| PluginError::Failed(format!("embeddings: {e}")))?;
        let embeddings: Vec<Value> = value["data"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| d["embedding"].clone())
            .collect();
        Ok(
            json!({ "model": value["model"], "embeddings": embeddings, "usage": value["usage"] })
                .to_string(),
        )
    }

    fn check_health() -> Health {
        databot_sdk::http::health_from(Self::models(), "models endpoint answered")
    }
}

databot_sdk::worlds::provider::export_provider_world!(OpenAi);
