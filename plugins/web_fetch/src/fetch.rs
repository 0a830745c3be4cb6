//! One HTTP GET with a byte cap and a timeout, through the SDK's wasi:http client.

use std::time::Duration;

use databot_sdk::PluginError;
use databot_sdk::http::{Request, send};

pub struct Response {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    pub truncated: bool,
}

pub fn get(url: &str, max_bytes: u64, timeout_ms: u64) -> Result<Response, PluginError> {
    let parsed = url::Url::parse(url)
        .map_err(|e| PluginError::InvalidInput(format!("`{url}` is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(PluginError::InvalidInput(format!(
            "only http and https URLs can be fetched, not `{}`",
            parsed.scheme()
        )));
    }
    let request = Request::get(parsed.as_str())
        .header("user-agent", "databot-web-fetch/0.1")
        .header("accept", "text/html, text/plain;q=0.9, */*;q=0.5")
        .timeout(Duration::from_millis(timeout_ms));
    let response = send(&request)?;
    let status = response.status;
    let content_type = response.header("content-type");
    let (body, truncated) = response.read_capped(max_bytes)?;
    Ok(Response {
        status,
        content_type,
        body,
        truncated,
    })
}
