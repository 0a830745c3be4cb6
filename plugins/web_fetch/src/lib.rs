//! `web_fetch`: fetch a URL over `wasi:http` and return its readable text.
//!
//! The host decides where this plugin may connect (egress allowlist, private networks blocked)
//! and stops it at its deadline; this plugin adds a byte cap, per-request timeouts and HTML to
//! text extraction.

mod extract;
mod fetch;

use databot_sdk::prelude::*;

databot_sdk::manifest! {
    name: "web_fetch",
    kind: "tool",
    description: "Fetch web pages over HTTP(S) and return their readable text.",
    capabilities: ["http", "config", "logging"],
}

/// Default cap on the bytes read from a response body.
const DEFAULT_MAX_BYTES: u64 = 512 * 1024;
/// The operator's ceiling for `max_bytes` unless `config.max_bytes_limit` says otherwise.
const DEFAULT_MAX_BYTES_LIMIT: u64 = 4 * 1024 * 1024;
const DEFAULT_TIMEOUT_MS: u64 = 10_000;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct FetchArgs {
    /// The http:// or https:// URL to fetch.
    url: String,
    /// Stop reading the body after this many bytes (default 524288).
    #[serde(default)]
    #[schemars(range(min = 1))]
    max_bytes: Option<u64>,
    /// Give up after this many milliseconds without a response (default 10000).
    #[serde(default)]
    #[schemars(range(min = 1, max = 120000))]
    timeout_ms: Option<u64>,
    /// Return the body as received instead of extracting text from HTML.
    #[serde(default)]
    raw: bool,
}

#[derive(Serialize)]
struct FetchOutput {
    url: String,
    status: u16,
    content_type: Option<String>,
    title: Option<String>,
    text: String,
    bytes_read: u64,
    truncated: bool,
}

databot_sdk::tools! {
    /// Fetch a web page over HTTP(S) and return its readable text (HTML is reduced to text;
    /// other text types are returned as they are). Only hosts the operator allowed are reachable.
    fn web_fetch(args: FetchArgs) -> Result<FetchOutput, PluginError> {
        let limit = databot_sdk::config_value::<u64>("max_bytes_limit")?.unwrap_or(DEFAULT_MAX_BYTES_LIMIT);
        let max_bytes = args.max_bytes.unwrap_or(DEFAULT_MAX_BYTES).min(limit);
        let timeout_ms = args.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        let response = fetch::get(&args.url, max_bytes, timeout_ms)?;
        let body = String::from_utf8_lossy(&response.body).into_owned();
        let is_html = response
            .content_type
            .as_deref()
            .is_some_and(|t| t.contains("html"))
            || (response.content_type.is_none() && body.trim_start().starts_with('<'));
        let (title, text) = if is_html && !args.raw {
            let page = extract::html_to_text(&body);
            (page.title, page.text)
        } else {
            (None, body)
        };
        Ok(FetchOutput {
            url: args.url,
            status: response.status,
            content_type: response.content_type,
            title,
            text,
            bytes_read: response.body.len() as u64,
            truncated: response.truncated,
        })
    }
}
