//! OAuth2 client credentials for the Iceberg REST catalog (`POST /v1/oauth/tokens`).
//!
//! The host injects only static headers, so this flow's client id and secret come from the
//! plugin config (`oauth_client_id`, `oauth_client_secret`). The token is cached in the
//! plugin's `state` when the operator granted it (`permissions.state: true`), else fetched
//! once per call.

use std::time::{SystemTime, UNIX_EPOCH};

use databot_sdk::PluginError;
use databot_sdk::api::{ApiResponse, Endpoint, api_error, query_string};
use databot_sdk::http::{Request, send_with_retries};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::sigv4::sha256_hex;

/// Refresh a cached token this many seconds before it expires.
const EXPIRY_MARGIN_S: u64 = 60;

/// A bearer token and whether it came from the cache (a refused cached token is refetched).
pub struct Token {
    pub value: String,
    pub from_cache: bool,
}

#[derive(Serialize, Deserialize)]
struct Cached {
    access_token: String,
    expires_at: u64,
}

struct Client {
    url: String,
    id: String,
    secret: String,
    scope: String,
}

fn client(api: &Endpoint) -> Result<Option<Client>, PluginError> {
    let Some(id) = databot_sdk::config_value::<String>("oauth_client_id")? else {
        return Ok(None);
    };
    let secret = databot_sdk::config_value::<String>("oauth_client_secret")?.ok_or_else(|| {
        PluginError::InvalidInput(
            "`oauth_client_id` is set but `oauth_client_secret` is not; set both in the plugin's config (or neither, to use the endpoint's own auth)".into(),
        )
    })?;
    let url = match databot_sdk::config_value::<String>("oauth_server_uri")? {
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => url,
        Some(path) => api.url(&format!("/{}", path.trim_start_matches('/')), &[]),
        None => api.url("/v1/oauth/tokens", &[]),
    };
    let scope =
        databot_sdk::config_value::<String>("oauth_scope")?.unwrap_or_else(|| "catalog".into());
    Ok(Some(Client {
        url,
        id,
        secret,
        scope,
    }))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn cache_key(client: &Client) -> String {
    let digest = sha256_hex(format!("{}\n{}\n{}", client.url, client.id, client.scope).as_bytes());
    format!("iceberg_oauth:{}", &digest[..16])
}

/// The bearer token to send, or `None` when no OAuth2 client is configured.
pub fn bearer(api: &Endpoint) -> Result<Option<Token>, PluginError> {
    let Some(client) = client(api)? else {
        return Ok(None);
    };
    let key = cache_key(&client);
    if let Ok(Some(bytes)) = databot_sdk::state::get(&key)
        && let Ok(cached) = serde_json::from_slice::<Cached>(&bytes)
        && cached.expires_at > now() + EXPIRY_MARGIN_S
    {
        return Ok(Some(Token {
            value: cached.access_token,
            from_cache: true,
        }));
    }
    let (token, expires_in) = fetch(api, &client)?;
    let cached = Cached {
        access_token: token.clone(),
        expires_at: now() + expires_in,
    };
    if let Ok(bytes) = serde_json::to_vec(&cached)
        && let Err(error) = databot_sdk::state::set(&key, &bytes)
    {
        databot_sdk::log::debug(&format!(
            "not caching the OAuth2 token (state not granted?): {error:?}"
        ));
    }
    Ok(Some(Token {
        value: token,
        from_cache: false,
    }))
}

/// Drop a cached token the catalog refused.
pub fn forget(api: &Endpoint) {
    if let Ok(Some(client)) = client(api) {
        let _ = databot_sdk::state::delete(&cache_key(&client));
    }
}

fn fetch(api: &Endpoint, client: &Client) -> Result<(String, u64), PluginError> {
    let form = query_string(&[
        ("grant_type", "client_credentials".to_owned()),
        ("client_id", client.id.clone()),
        ("client_secret", client.secret.clone()),
        ("scope", client.scope.clone()),
    ]);
    let request = Request {
        method: "POST",
        url: client.url.clone(),
        headers: vec![
            (
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            ),
            ("accept".into(), "application/json".into()),
        ],
        body: Some(form.into_bytes()),
        timeout: api.timeout,
    };
    // A token request changes nothing on the server: safe to send again.
    let response = send_with_retries(&request, api.retry.for_side_effect_free_posts())?;
    let status = response.status;
    let text = response.text(1024 * 1024)?;
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if !(200..300).contains(&status) {
        let error = api_error(
            &api.name,
            "POST",
            "/v1/oauth/tokens",
            &ApiResponse {
                status,
                body,
                link: None,
            },
        );
        return Err(match error {
            PluginError::InvalidInput(message) | PluginError::Denied(message) => {
                PluginError::Denied(format!(
                    "{message} (check `oauth_client_id` / `oauth_client_secret` / `oauth_scope` in the plugin's config)"
                ))
            }
            other => other,
        });
    }
    let token = body
        .get("access_token")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            PluginError::Failed(format!(
                "the token endpoint `{}` answered without an `access_token`",
                client.url
            ))
        })?;
    let expires_in = body
        .get("expires_in")
        .and_then(Value::as_u64)
        .unwrap_or(3600);
    Ok((token.to_owned(), expires_in))
}
