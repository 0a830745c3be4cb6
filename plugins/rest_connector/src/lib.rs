//! `rest`: a generic connector for one operator-configured REST API (`endpoints.api`).
//!
//! Requests go to paths under the endpoint's base URL only; the host adds the credentials
//! (`endpoints.api.auth`), so callers can neither see nor set them. Answers are
//! `{status, body}`; an error status is an error of the matching kind with the service's message.

mod client;
mod paginate;

use std::collections::BTreeMap;

use databot_sdk::prelude::*;
use databot_sdk::{Health, HealthStatus};

use client::{Answer, Call};
use paginate::{Collected, Limits, Style};

databot_sdk::manifest! {
    name: "rest",
    kind: "connector",
    description: "Generic REST connector: GET/POST/PUT/PATCH/DELETE and pagination against one configured HTTP API.",
    capabilities: ["http", "config", "logging"],
}

/// An HTTP method.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RequestArgs {
    /// HTTP method (default GET).
    #[serde(default)]
    method: Option<Method>,
    /// Path under the endpoint's base URL, starting with `/` (no query string: use `query`).
    path: String,
    /// Query parameters; a list value repeats the key.
    #[serde(default)]
    query: BTreeMap<String, Value>,
    /// JSON request body (sent as application/json).
    #[serde(default)]
    json: Option<Value>,
    /// Extra request headers. Credential headers (Authorization, API keys, cookies) are refused:
    /// the host adds the configured credentials itself.
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ReadArgs {
    /// Path under the endpoint's base URL, starting with `/` (no query string: use `query`).
    path: String,
    /// Query parameters; a list value repeats the key.
    #[serde(default)]
    query: BTreeMap<String, Value>,
    /// Extra request headers (no credentials: the host adds those).
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct WriteArgs {
    /// Path under the endpoint's base URL, starting with `/` (no query string: use `query`).
    path: String,
    /// Query parameters; a list value repeats the key.
    #[serde(default)]
    query: BTreeMap<String, Value>,
    /// JSON request body (sent as application/json).
    #[serde(default)]
    json: Option<Value>,
    /// Extra request headers (no credentials: the host adds those).
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// How the API pages its lists.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum PagingStyle {
    /// `offset_key`/`limit_key` query parameters; the list ends at a short page.
    #[default]
    Offset,
    /// Each page names the next page's token (`next_token_field`), sent back as `token_param`.
    Token,
    /// RFC 8288 `Link: <...>; rel="next"` response headers.
    Link,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PaginateArgs {
    /// Path of the list under the endpoint's base URL, starting with `/`.
    path: String,
    /// Query parameters sent with every page.
    #[serde(default)]
    query: BTreeMap<String, Value>,
    /// Extra request headers (no credentials: the host adds those).
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Pagination style: `offset` (default), `token` or `link`.
    #[serde(default)]
    style: PagingStyle,
    /// Where the items are in each page: a field name, a JSON pointer such as `/data/items`,
    /// or `""` when the page itself is the list (default `items`).
    #[serde(default)]
    items_key: Option<String>,
    /// Offset style: name of the offset query parameter (default `offset`).
    #[serde(default)]
    offset_key: Option<String>,
    /// Offset style: name of the page-size query parameter (default `limit`).
    #[serde(default)]
    limit_key: Option<String>,
    /// Offset style: the first offset (default 0); pass a previous result's `next` to go on.
    #[serde(default)]
    start: Option<u64>,
    /// Offset style: items asked for per page (default 25).
    #[serde(default)]
    #[schemars(range(min = 1, max = 1000))]
    page_size: Option<u64>,
    /// Token style: query parameter that carries the token (default `page_token`).
    #[serde(default)]
    token_param: Option<String>,
    /// Token style: field of a page holding the next token, a name or JSON pointer (default
    /// `next_page_token`).
    #[serde(default)]
    next_token_field: Option<String>,
    /// Token style: start from this token (a previous result's `next`).
    #[serde(default)]
    token: Option<String>,
    /// Stop after this many items (default 100, at most 10000).
    #[serde(default)]
    #[schemars(range(min = 1, max = 10000))]
    max_items: Option<usize>,
    /// Stop after this many pages (default 20, at most 200).
    #[serde(default)]
    #[schemars(range(min = 1, max = 200))]
    max_pages: Option<usize>,
}

databot_sdk::connector! {
    health: check_health,

    /// Send one HTTP request to the configured API and return `{status, body}`. The body is
    /// JSON when the service answers JSON, else text. Error statuses are errors (404 is
    /// not-found, 401/403 denied, 429/5xx unavailable after retries honouring Retry-After).
    fn request(args: RequestArgs) -> Result<Answer, PluginError> {
        let method = args.method.unwrap_or(Method::Get).as_str();
        client::run(method, &args.path, &args.query, args.json.as_ref(), args.headers)
    }

    /// GET a path of the configured API; returns `{status, body}`.
    fn get(args: ReadArgs) -> Result<Answer, PluginError> {
        client::run("GET", &args.path, &args.query, None, args.headers)
    }

    /// POST a JSON body to a path of the configured API; returns `{status, body}`.
    fn post(args: WriteArgs) -> Result<Answer, PluginError> {
        client::run("POST", &args.path, &args.query, args.json.as_ref(), args.headers)
    }

    /// PUT a JSON body to a path of the configured API; returns `{status, body}`.
    fn put(args: WriteArgs) -> Result<Answer, PluginError> {
        client::run("PUT", &args.path, &args.query, args.json.as_ref(), args.headers)
    }

    /// DELETE a path of the configured API; returns `{status, body}`.
    fn delete(args: ReadArgs) -> Result<Answer, PluginError> {
        client::run("DELETE", &args.path, &args.query, None, args.headers)
    }

    /// Collect the items of a paginated GET list: offset/limit, next-page token or RFC 8288
    /// Link header style. Returns `{items, count, pages, truncated, next}`; `next` (an offset,
    /// token or URL) says where a further call can go on when the limits stopped it.
    fn paginate(args: PaginateArgs) -> Result<Collected, PluginError> {
        paginate_list(args)
    }
}

fn paginate_list(args: PaginateArgs) -> Result<Collected, PluginError> {
    client::check_path(&args.path)?;
    let endpoint = client::endpoint()?;
    let mut query = client::query_pairs(&args.query)?;
    let style = match args.style {
        PagingStyle::Offset => Style::Offset {
            offset_key: args.offset_key.unwrap_or_else(|| "offset".into()),
            limit_key: args.limit_key.unwrap_or_else(|| "limit".into()),
            start: args.start.unwrap_or(0),
        },
        PagingStyle::Token => {
            let token_param = args.token_param.unwrap_or_else(|| "page_token".into());
            if let Some(token) = args.token {
                query.push((token_param.clone(), token));
            }
            Style::Token {
                token_param,
                next_token_field: args
                    .next_token_field
                    .unwrap_or_else(|| "next_page_token".into()),
            }
        }
        PagingStyle::Link => Style::Link,
    };
    let limits = Limits {
        page_size: args.page_size.unwrap_or(25).clamp(1, 1000),
        max_items: args.max_items.unwrap_or(100).clamp(1, 10_000),
        max_pages: args.max_pages.unwrap_or(20).clamp(1, 200),
    };
    let call = Call {
        method: "GET",
        path: &args.path,
        query,
        body: None,
        headers: args.headers,
    };
    let items_key = args.items_key.unwrap_or_else(|| "items".into());
    paginate::collect(&endpoint, &call, &items_key, &style, limits)
}

/// GET `config.health_path` (default `/`): 2xx healthy, another status degraded, no answer
/// unreachable, no endpoint (or egress refused) not configured.
fn check_health() -> Health {
    let health = |status, message: String| Health { status, message };
    let endpoint = match client::endpoint() {
        Ok(endpoint) => endpoint,
        Err(error) => return health(HealthStatus::NotConfigured, describe(&error)),
    };
    let path = match databot_sdk::config_value::<String>("health_path") {
        Ok(path) => path.filter(|p| !p.is_empty()).unwrap_or_else(|| "/".into()),
        Err(error) => return health(HealthStatus::NotConfigured, describe(&error)),
    };
    if let Err(error) = client::check_path(&path) {
        return health(
            HealthStatus::NotConfigured,
            format!("config `health_path`: {}", describe(&error)),
        );
    }
    let mut endpoint = endpoint;
    endpoint.retry.retries = 0;
    match endpoint.send("GET", &path, &[], None, "application/json, */*") {
        Ok(response) if (200..300).contains(&response.status) => health(
            HealthStatus::Healthy,
            format!("GET {path} answered {}", response.status),
        ),
        Ok(response) => health(
            HealthStatus::Degraded,
            format!("GET {path} answered {}", response.status),
        ),
        Err(PluginError::Denied(message)) => health(HealthStatus::NotConfigured, message),
        Err(error) => health(HealthStatus::Unreachable, describe(&error)),
    }
}

fn describe(error: &PluginError) -> String {
    match error {
        PluginError::InvalidInput(m)
        | PluginError::Denied(m)
        | PluginError::NotFound(m)
        | PluginError::Unavailable(m)
        | PluginError::Timeout(m)
        | PluginError::Failed(m) => m.clone(),
    }
}
