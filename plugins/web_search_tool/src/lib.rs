//! `web_search`: search the web through the Brave Search API (`backend: brave`, the default)
//! or a SearXNG instance (`backend: searxng`) on endpoint `api`. The Brave key is the
//! endpoint's `api_key` auth (header `X-Subscription-Token`), added by the host, never seen
//! here. Results are `{title, url, snippet}` with snippets as plain text.

mod text;

use databot_sdk::api::Endpoint;
use databot_sdk::prelude::*;

databot_sdk::manifest! {
    name: "web_search",
    kind: "tool",
    description: "Search the web (Brave Search API or SearXNG) and return titles, URLs and snippets.",
    capabilities: ["http", "config", "logging"],
}

const DEFAULT_COUNT: u32 = 5;
/// Brave returns at most 20 web results per request.
const MAX_COUNT: u32 = 20;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SearchArgs {
    /// What to search for.
    query: String,
    /// How many results (default 5, at most 20).
    #[serde(default)]
    #[schemars(range(min = 1, max = 20))]
    count: Option<u32>,
}

#[derive(Serialize)]
struct Hit {
    title: String,
    url: String,
    snippet: String,
}

#[derive(Serialize)]
struct SearchOutput {
    backend: &'static str,
    query: String,
    count: usize,
    results: Vec<Hit>,
}

fn endpoint() -> Result<Endpoint, PluginError> {
    Endpoint::from_config("api").map_err(|error| match error {
        PluginError::NotFound(_) => PluginError::NotFound(
            "web_search has no search service: the operator sets `plugins.web_search.endpoints.api` (Brave: url https://api.search.brave.com with auth {type: api_key, header: X-Subscription-Token, key: ...}; SearXNG: its url and `config.backend: searxng`)".into(),
        ),
        other => other,
    })
}

fn text_of(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .map(text::plain)
        .unwrap_or_default()
}

fn brave(query: &str, count: u32) -> Result<Vec<Hit>, PluginError> {
    let api = endpoint()?;
    let response = api.send(
        "GET",
        "/res/v1/web/search",
        &[("q", query.to_owned()), ("count", count.to_string())],
        None,
        "application/json",
    )?;
    if !(200..300).contains(&response.status) {
        let code = response
            .body
            .pointer("/error/code")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let detail = response
            .body
            .pointer("/error/detail")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if code.starts_with("SUBSCRIPTION_TOKEN") || matches!(response.status, 401 | 403) {
            return Err(PluginError::Denied(format!(
                "Brave Search refused the key ({code}: {detail}); check `endpoints.api.auth` (api_key, header X-Subscription-Token) of web_search"
            )));
        }
        if !detail.is_empty() {
            let message = format!("Brave Search answered {} {code}: {detail}", response.status);
            return Err(match response.status {
                429 | 500..=599 => PluginError::Unavailable(message),
                _ => PluginError::InvalidInput(message),
            });
        }
        return Err(databot_sdk::api::api_error(
            &api.name,
            "GET",
            "/res/v1/web/search",
            &response,
        ));
    }
    let results = response
        .body
        .pointer("/web/results")
        .and_then(Value::as_array);
    Ok(results
        .map(|list| {
            list.iter()
                .map(|r| Hit {
                    title: text_of(r, "title"),
                    url: r
                        .get("url")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    snippet: text_of(r, "description"),
                })
                .take(count as usize)
                .collect()
        })
        .unwrap_or_default())
}

fn searxng(query: &str, count: u32) -> Result<Vec<Hit>, PluginError> {
    let api = endpoint()?;
    let found = api
        .get("/search", &[("q", query.to_owned()), ("format", "json".to_owned())])
        .map_err(|error| match error {
            PluginError::Denied(message) => PluginError::Denied(format!(
                "{message}; SearXNG answers 403 when the JSON format is off: add `json` to `search.formats` in its settings.yml"
            )),
            other => other,
        })?;
    let results = found.get("results").and_then(Value::as_array);
    Ok(results
        .map(|list| {
            list.iter()
                .map(|r| Hit {
                    title: text_of(r, "title"),
                    url: r
                        .get("url")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    snippet: text_of(r, "content"),
                })
                .take(count as usize)
                .collect()
        })
        .unwrap_or_default())
}

databot_sdk::tools! {
    /// Search the web and return the top results as title, URL and a plain-text snippet.
    /// Use web_fetch to read a result page.
    fn web_search(args: SearchArgs) -> Result<SearchOutput, PluginError> {
        let query = args.query.trim().to_owned();
        if query.is_empty() {
            return Err(PluginError::InvalidInput("`query` is empty".into()));
        }
        let default = databot_sdk::config_value::<u32>("default_count")?.unwrap_or(DEFAULT_COUNT);
        let count = args.count.unwrap_or(default).clamp(1, MAX_COUNT);
        let backend = databot_sdk::config_value::<String>("backend")?;
        let (name, results) = match backend.as_deref().unwrap_or("brave") {
            "brave" => ("brave", brave(&query, count)?),
            "searxng" => ("searxng", searxng(&query, count)?),
            other => {
                return Err(PluginError::InvalidInput(format!(
                    "config `backend: {other}` is not a search backend; use `brave` (default) or `searxng`"
                )));
            }
        };
        Ok(SearchOutput { backend: name, query, count: results.len(), results })
    }
}
