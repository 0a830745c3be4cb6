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
use databot_sdk::provider::{
    ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, EmbedUsage, Provider, Stream,
};

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

impl Provider for OpenAi {
    fn models() -> Result<Vec<String>, PluginError> {
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
        Ok(value["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["id"].as_str().map(str::to_owned))
            .collect())
    }

    fn chat(request: ChatRequest<'static>) -> Result<ChatResponse, PluginError> {
        let settings = settings()?;
        let body = wire::request_body(&request, &settings.model, false);
        let response = post(&settings, "/chat/completions", &body)?;
        let text = response.text(MAX_RESPONSE_BYTES)?;
        wire::parse_completion(&text)
    }

    fn chat_stream(
        request: ChatRequest<'static>,
        stream: &Stream,
    ) -> Result<ChatResponse, PluginError> {
        let settings = settings()?;
        let body = wire::request_body(&request, &settings.model, true);
        let mut response = post(&settings, "/chat/completions", &body)?;
        let mut state = wire::StreamState::default();
        while let Some(line) = response.next_line()? {
            if state.feed(&line, |text| stream.delta(text)) {
                break;
            }
        }
        state.finish()
    }

    fn embed(request: EmbedRequest<'static>) -> Result<EmbedResponse, PluginError> {
        let settings = settings()?;
        let model = request.model.as_deref().unwrap_or("text-embedding-3-small");
        let body = json!({ "model": model, "input": request.input });
        let text = post(&settings, "/embeddings", &body)?.text(MAX_RESPONSE_BYTES)?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| PluginError::Failed(format!("embeddings: {e}")))?;
        let embeddings = value["data"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| serde_json::from_value(d["embedding"].clone()))
            .collect::<Result<Vec<Vec<f32>>, _>>()
            .map_err(|e| {
                PluginError::Failed(format!("embeddings: a vector is not numbers: {e}"))
            })?;
        Ok(EmbedResponse {
            model: value["model"].as_str().map(str::to_owned),
            embeddings,
            usage: value["usage"].is_object().then(|| EmbedUsage {
                prompt_tokens: value["usage"]["prompt_tokens"].as_u64(),
            }),
        })
    }

    fn check_health() -> Health {
        databot_sdk::http::health_from(Self::models(), "models endpoint answered")
    }
}

databot_sdk::provider!(OpenAi);
