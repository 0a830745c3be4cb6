//! Clients for the HTTP services a plugin's operator names as endpoints
//! (`plugins.NAME.endpoints.KEY.url`): base URL, JSON requests with retries that honour
//! `Retry-After`, percent-encoded path segments and pagination helpers.
//!
//! Credentials are not here on purpose: the host adds them to every request to the endpoint,
//! so the plugin never holds a password or token.

use std::time::Duration;

use serde_json::Value;

use crate::PluginError;
use crate::http::{self, Request, RetryPolicy};

/// Most bytes of one response body an API client reads.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;

/// One configured HTTP service.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The key in `plugins.NAME.endpoints`.
    pub name: String,
    /// Base URL without a trailing slash.
    pub base_url: String,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub max_response_bytes: u64,
    /// Headers sent with every request (not credentials: those are the host's).
    pub headers: Vec<(String, String)>,
}

/// A decoded response: status and body (JSON when the service said so, else text).
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: u16,
    pub body: Value,
    /// Value of the `Link` header, for RFC 8288 pagination.
    pub link: Option<String>,
}

impl Endpoint {
    /// The endpoint `name` the operator configured, with `timeout_ms` and `max_retries` from the
    /// plugin config when set. A missing endpoint is `NotFound` naming the config line to add.
    pub fn from_config(name: &str) -> Result<Self, PluginError> {
        let url = endpoint_url(name)?.ok_or_else(|| {
            PluginError::NotFound(format!(
                "no endpoint `{name}` is configured; the operator adds it as `plugins.<this plugin>.endpoints.{name}.url`"
            ))
        })?;
        Self::new(name, &url)?.with_config_overrides()
    }

    /// An endpoint at `base_url` (for tests and for URLs a service hands back).
    pub fn new(name: &str, base_url: &str) -> Result<Self, PluginError> {
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(PluginError::InvalidInput(format!(
                "endpoint `{name}`: `{base_url}` is not an http(s) URL"
            )));
        }
        Ok(Self {
            name: name.to_owned(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            headers: Vec::new(),
        })
    }

    fn with_config_overrides(mut self) -> Result<Self, PluginError> {
        if let Some(ms) = crate::config_value::<u64>("timeout_ms")? {
            self.timeout = Duration::from_millis(ms.max(1));
        }
        if let Some(retries) = crate::config_value::<u32>("max_retries")? {
            self.retry.retries = retries;
        }
        Ok(self)
    }

    /// Add a header to every request.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The full URL of `path` (which starts with `/`) with an encoded query string.
    pub fn url(&self, path: &str, query: &[(&str, String)]) -> String {
        let mut url = format!("{}{}", self.base_url, path);
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query_string(query));
        }
        url
    }

    /// `GET path?query`, expecting success; the decoded body.
    pub fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, PluginError> {
        Ok(self.call("GET", path, query, None)?.body)
    }

    /// `POST path` with a JSON body, expecting success.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, PluginError> {
        Ok(self.call("POST", path, &[], Some(body))?.body)
    }

    /// Any method; an error status becomes the matching `PluginError` with the service's message.
    pub fn call(
        &self,
        method: &'static str,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<ApiResponse, PluginError> {
        let response = self.send(method, path, query, body, "application/json")?;
        if !(200..300).contains(&response.status) {
            return Err(api_error(&self.name, method, path, &response));
        }
        Ok(response)
    }

    /// Send and decode without judging the status (for APIs where 404 means "absent").
    pub fn send(
        &self,
        method: &'static str,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        accept: &str,
    ) -> Result<ApiResponse, PluginError> {
        let mut request = Request {
            method,
            url: self.url(path, query),
            headers: vec![("accept".to_owned(), accept.to_owned())],
            body: None,
            timeout: self.timeout,
        };
        request.headers.extend(self.headers.iter().cloned());
        if let Some(body) = body {
            request
                .headers
                .push(("content-type".to_owned(), "application/json".to_owned()));
            request.body = Some(body.to_string().into_bytes());
        }
        let response = http::send_with_retries(&request, self.retry)?;
        let status = response.status;
        let link = response.header("link");
        let is_json = response
            .header("content-type")
            .is_some_and(|t| t.contains("json"));
        let text = response.text(self.max_response_bytes)?;
        let body = if is_json || text.trim_start().starts_with(['{', '[']) {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        } else {
            Value::String(text)
        };
        Ok(ApiResponse { status, body, link })
    }

    /// Collect items from an offset/limit paginated list: `items_key` names the array in each
    /// page (`""` when the page is the array). Stops at a short page or at `max_items`.
    pub fn paginate_offset(
        &self,
        path: &str,
        query: &[(&str, String)],
        paging: OffsetPaging<'_>,
        max_items: usize,
    ) -> Result<Vec<Value>, PluginError> {
        let mut items = Vec::new();
        let mut offset = paging.start;
        loop {
            let page_size = paging.page_size.min(max_items.saturating_sub(items.len()));
            if page_size == 0 {
                return Ok(items);
            }
            let mut page_query = query.to_vec();
            page_query.push((paging.offset_param, offset.to_string()));
            page_query.push((paging.limit_param, page_size.to_string()));
            let page = self.get(path, &page_query)?;
            let page_items = items_at(&page, paging.items_key)?;
            let count = page_items.len();
            items.extend(page_items);
            offset += count;
            if count < page_size {
                return Ok(items);
            }
        }
    }

    /// Collect items from a token-paginated list: each page's `next_token_field` (a JSON
    /// pointer such as `/next-page-token`) is sent back as `token_param` until it is absent.
    pub fn paginate_token(
        &self,
        path: &str,
        query: &[(&str, String)],
        paging: TokenPaging<'_>,
        max_items: usize,
    ) -> Result<Vec<Value>, PluginError> {
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..paging.max_pages {
            let mut page_query = query.to_vec();
            if let Some(token) = &token {
                page_query.push((paging.token_param, token.clone()));
            }
            let page = self.get(path, &page_query)?;
            items.extend(items_at(&page, paging.items_key)?);
            if items.len() >= max_items {
                items.truncate(max_items);
                return Ok(items);
            }
            token = page
                .pointer(paging.next_token_field)
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(str::to_owned);
            if token.is_none() {
                return Ok(items);
            }
        }
        Ok(items)
    }
}

/// How an offset-paginated list is asked for.
#[derive(Debug, Clone, Copy)]
pub struct OffsetPaging<'a> {
    pub items_key: &'a str,
    pub offset_param: &'a str,
    pub limit_param: &'a str,
    pub page_size: usize,
    pub start: usize,
}

impl Default for OffsetPaging<'_> {
    fn default() -> Self {
        Self {
            items_key: "items",
            offset_param: "offset",
            limit_param: "limit",
            page_size: 100,
            start: 0,
        }
    }
}

/// How a token-paginated list is asked for.
#[derive(Debug, Clone, Copy)]
pub struct TokenPaging<'a> {
    pub items_key: &'a str,
    /// Query parameter that carries the token, e.g. `pageToken`.
    pub token_param: &'a str,
    /// JSON pointer to the next token in a page, e.g. `/next-page-token`.
    pub next_token_field: &'a str,
    /// Safety stop against a service that never ends.
    pub max_pages: usize,
}

/// The URL of an endpoint from `config.endpoints` (set by the host from
/// `plugins.NAME.endpoints`), or `None` when it is not configured.
pub fn endpoint_url(name: &str) -> Result<Option<String>, PluginError> {
    let endpoints: Option<serde_json::Map<String, Value>> = crate::config_value("endpoints")?;
    Ok(endpoints
        .and_then(|e| e.get(name).cloned())
        .and_then(|v| v.as_str().map(str::to_owned)))
}

/// Percent-encode one path segment (`/`, `?`, `#`, spaces and non-ASCII included), so a
/// user-supplied name can never change the path.
pub fn segment(text: &str) -> String {
    // `.` and `..` are path operators even when encoded nowhere else: encode their dots.
    if text == "." || text == ".." {
        return text.replace('.', "%2E");
    }
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// An encoded `k=v&...` query string.
pub fn query_string(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", segment(k), segment(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The `rel="next"` URL of an RFC 8288 `Link` header.
pub fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"" || p.trim() == "rel=next");
        is_next.then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned()
        })
    })
}

fn items_at(page: &Value, key: &str) -> Result<Vec<Value>, PluginError> {
    let list = if key.is_empty() {
        Some(page)
    } else {
        page.get(key)
    };
    match list {
        Some(Value::Array(items)) => Ok(items.clone()),
        Some(Value::Null) | None => Ok(Vec::new()),
        Some(other) => Err(PluginError::Failed(format!(
            "expected a list under `{key}` in the page, got {}",
            kind_of(other)
        ))),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// An error status as the matching error kind, with the service's own message where its body
/// carries one (`message`, `error.message`, `detail`, `title`, or the text).
pub fn api_error(endpoint: &str, method: &str, path: &str, response: &ApiResponse) -> PluginError {
    let body = &response.body;
    let detail = [
        "/error/message",
        "/message",
        "/detail",
        "/title",
        "/error_description",
        "/error",
        "/msg",
    ]
    .iter()
    .find_map(|p| body.pointer(p).and_then(Value::as_str).map(str::to_owned))
    .unwrap_or_else(|| match body {
        Value::String(text) => text.chars().take(500).collect(),
        other => other.to_string().chars().take(500).collect(),
    });
    let status = response.status;
    let message = format!("{endpoint}: {method} {path} answered {status}: {detail}");
    match status {
        400 | 405 | 409 | 422 => PluginError::InvalidInput(message),
        401 | 403 => PluginError::Denied(format!(
            "{message} (check the credentials under `endpoints.{endpoint}.auth` in the plugin's config)"
        )),
        404 => PluginError::NotFound(message),
        408 | 504 => PluginError::Timeout(message),
        429 | 500..=599 => PluginError::Unavailable(message),
        _ => PluginError::Failed(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_cannot_change_the_path() {
        assert_eq!(segment("a/../b?c#d e"), "a%2F..%2Fb%3Fc%23d%20e");
        assert_eq!(segment("plain_name-1.2~"), "plain_name-1.2~");
        assert_eq!(segment("ü"), "%C3%BC");
        assert_eq!(segment(".."), "%2E%2E");
        assert_eq!(segment("."), "%2E");
    }

    #[test]
    fn next_links_are_found() {
        let link = r#"<https://x/api?page=1>; rel="prev", <https://x/api?page=3>; rel="next""#;
        assert_eq!(next_link(link).as_deref(), Some("https://x/api?page=3"));
        assert_eq!(next_link(r#"<https://x/a>; rel="last""#), None);
    }

    #[test]
    fn error_statuses_keep_the_service_message() {
        let response = ApiResponse {
            status: 404,
            body: serde_json::json!({"title": "DAG not found", "status": 404}),
            link: None,
        };
        match api_error("api", "GET", "/dags/x", &response) {
            PluginError::NotFound(message) => assert!(message.contains("DAG not found")),
            other => panic!("unexpected {other:?}"),
        }
    }
}
