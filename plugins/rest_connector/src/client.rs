//! Requests against the configured `api` endpoint: method, path and header checks, query
//! encoding, and the answer as `{status, body}`.

use std::collections::BTreeMap;

use databot_sdk::PluginError;
use databot_sdk::api::{ApiResponse, Endpoint, api_error};
use serde_json::Value;

/// Headers a caller may not set: credentials are the host's to add, and framing headers are
/// the HTTP client's.
const FORBIDDEN_HEADERS: [&str; 13] = [
    "authorization",
    "content-type",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
];

/// Parts of a header name that mark it as carrying a credential.
const CREDENTIAL_MARKERS: [&str; 6] = ["auth", "token", "secret", "password", "api-key", "apikey"];

/// Check a caller's path: relative to the endpoint's base URL, starting with `/`, without a
/// query (that goes in `query`), a fragment, `..` segments or characters that would change
/// the request line.
pub fn check_path(path: &str) -> Result<(), PluginError> {
    let bad = |why: &str| {
        PluginError::InvalidInput(format!(
            "path `{path}` {why}; give a path under the endpoint's base URL such as `/v1/items`"
        ))
    };
    if !path.starts_with('/') {
        return Err(bad("must start with `/`"));
    }
    if path.starts_with("//") {
        return Err(bad("must not start with `//`"));
    }
    if path.contains('?') {
        return Err(bad(
            "contains `?`: pass query parameters in `query` instead",
        ));
    }
    if path.contains('#') {
        return Err(bad("contains a fragment (`#`)"));
    }
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad(
            "contains spaces or control characters (percent-encode them)",
        ));
    }
    if path
        .split('/')
        .any(|segment| segment == ".." || segment == "." || segment.eq_ignore_ascii_case("%2e%2e"))
    {
        return Err(bad("contains `.` or `..` segments"));
    }
    Ok(())
}

/// Check one extra header: a valid name, not a credential, not a framing header.
pub fn check_header(name: &str, value: &str) -> Result<(), PluginError> {
    let lower = name.to_ascii_lowercase();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b))
    {
        return Err(PluginError::InvalidInput(format!(
            "`{name}` is not a valid header name"
        )));
    }
    if FORBIDDEN_HEADERS.contains(&lower.as_str())
        || CREDENTIAL_MARKERS
            .iter()
            .any(|marker| lower.contains(marker))
    {
        return Err(PluginError::InvalidInput(format!(
            "header `{name}` cannot be set by a caller: credentials are added by the host from `endpoints.api.auth` in the plugin's config, framing headers by the HTTP client, and bodies are always sent as application/json"
        )));
    }
    if value.chars().any(|c| c == '\r' || c == '\n' || c == '\0') {
        return Err(PluginError::InvalidInput(format!(
            "the value of header `{name}` contains a line break"
        )));
    }
    Ok(())
}

/// Query parameters as ordered pairs: scalars as text, lists as repeated keys, nulls left out.
pub fn query_pairs(query: &BTreeMap<String, Value>) -> Result<Vec<(String, String)>, PluginError> {
    let mut pairs = Vec::new();
    for (key, value) in query {
        match value {
            Value::Null => {}
            Value::Array(items) => {
                for item in items {
                    pairs.push((key.clone(), scalar(key, item)?));
                }
            }
            other => pairs.push((key.clone(), scalar(key, other)?)),
        }
    }
    Ok(pairs)
}

fn scalar(key: &str, value: &Value) -> Result<String, PluginError> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Number(number) => Ok(number.to_string()),
        Value::Bool(flag) => Ok(flag.to_string()),
        _ => Err(PluginError::InvalidInput(format!(
            "query parameter `{key}` must be a string, number, boolean or a list of those"
        ))),
    }
}

/// The `api` endpoint with the operator's default headers (`config.headers`).
pub fn endpoint() -> Result<Endpoint, PluginError> {
    let mut endpoint = Endpoint::from_config("api")?;
    let defaults: BTreeMap<String, String> =
        databot_sdk::config_value("headers")?.unwrap_or_default();
    for (name, value) in &defaults {
        check_header(name, value).map_err(|e| match e {
            PluginError::InvalidInput(message) => {
                PluginError::InvalidInput(format!("config `headers`: {message}"))
            }
            other => other,
        })?;
        endpoint = endpoint.header(name, value);
    }
    Ok(endpoint)
}

/// One request as the caller describes it.
#[derive(Debug, Clone, Default)]
pub struct Call<'a> {
    pub method: &'static str,
    pub path: &'a str,
    pub query: Vec<(String, String)>,
    pub body: Option<&'a Value>,
    pub headers: BTreeMap<String, String>,
}

/// What an operation returns: the status and the decoded body.
#[derive(Debug, serde::Serialize)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

/// Send `call` to `endpoint`; a non-2xx status is the matching error with the service's message.
pub fn send(endpoint: &Endpoint, call: &Call<'_>) -> Result<ApiResponse, PluginError> {
    let mut endpoint = endpoint.clone();
    let mut accept = "application/json".to_owned();
    for (name, value) in &call.headers {
        check_header(name, value)?;
        if name.eq_ignore_ascii_case("accept") {
            accept = value.clone();
        } else {
            endpoint = endpoint.header(name, value);
        }
    }
    let query: Vec<(&str, String)> = call
        .query
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let response = endpoint.send(call.method, call.path, &query, call.body, &accept)?;
    if !(200..300).contains(&response.status) {
        return Err(api_error(&endpoint.name, call.method, call.path, &response));
    }
    Ok(response)
}

/// Run one request end to end.
pub fn run(
    method: &'static str,
    path: &str,
    query: &BTreeMap<String, Value>,
    body: Option<&Value>,
    headers: BTreeMap<String, String>,
) -> Result<Answer, PluginError> {
    check_path(path)?;
    let endpoint = endpoint()?;
    let call = Call {
        method,
        path,
        query: query_pairs(query)?,
        body,
        headers,
    };
    let response = send(&endpoint, &call)?;
    Ok(Answer {
        status: response.status,
        body: response.body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_under_the_base_url() {
        assert!(check_path("/v1/items").is_ok());
        assert!(check_path("/v1/a%2Fb").is_ok());
        for bad in [
            "v1",
            "//evil.com/x",
            "/a/../b",
            "/a?b=1",
            "/a#f",
            "/a b",
            "/a/%2e%2e/b",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credential_headers_are_refused() {
        assert!(check_header("X-Request-Id", "1").is_ok());
        assert!(check_header("Accept", "text/plain").is_ok());
        for name in [
            "Authorization",
            "x-api-key",
            "X-Auth-Token",
            "Cookie",
            "Host",
            "bad name",
        ] {
            assert!(check_header(name, "v").is_err(), "{name}");
        }
        assert!(check_header("X-Id", "a\r\nb").is_err());
    }

    #[test]
    fn query_values_become_pairs() {
        let query: BTreeMap<String, Value> = serde_json::from_value(serde_json::json!({
            "a": 1, "b": true, "c": ["x", "y"], "d": null, "e": "t"
        }))
        .unwrap_or_default();
        let pairs = query_pairs(&query).unwrap_or_default();
        assert_eq!(
            pairs,
            vec![
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), "true".to_owned()),
                ("c".to_owned(), "x".to_owned()),
                ("c".to_owned(), "y".to_owned()),
                ("e".to_owned(), "t".to_owned()),
            ]
        );
        let nested: BTreeMap<String, Value> =
            serde_json::from_value(serde_json::json!({"a": {"b": 1}})).unwrap_or_default();
        assert!(query_pairs(&nested).is_err());
    }
}
