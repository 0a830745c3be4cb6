//! JSON Web Key Sets fetched by the host and cached per URL: refreshed after the key's
//! `refresh_seconds`, and at most once a minute early when a token names a key id the cached
//! set lacks (the publisher rotated its keys).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use parking_lot::Mutex;
use serde::Deserialize;

use crate::capabilities::host_http::{self, HostRequest};
use crate::config::JwksKey;

/// Least time between two fetches of one URL, whatever tokens ask for.
const MIN_REFETCH: Duration = Duration::from_secs(60);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_SET_BYTES: usize = 512 * 1024;

/// One RSA key of a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsaKey {
    pub kid: Option<String>,
    pub modulus: Vec<u8>,
    pub exponent: Vec<u8>,
}

#[derive(Deserialize)]
struct KeySet {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    usage: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
}

struct Entry {
    keys: Arc<Vec<RsaKey>>,
    fetched: Instant,
}

/// The key sets of every plugin, shared by all calls.
#[derive(Default)]
pub struct JwksCache {
    entries: Mutex<HashMap<String, Entry>>,
}

impl JwksCache {
    /// The keys of `settings.url`, fetched when missing or stale; `refetch_for_kid` asks for a
    /// fresh set when the cached one has no key of that id (rate-limited).
    pub async fn keys(
        &self,
        settings: &JwksKey,
        refetch_for_kid: Option<&str>,
    ) -> anyhow::Result<Arc<Vec<RsaKey>>> {
        let refresh = Duration::from_secs(settings.refresh_seconds);
        if let Some(keys) = self.cached(&settings.url, refresh, refetch_for_kid) {
            return Ok(keys);
        }
        let keys = Arc::new(fetch(settings).await?);
        self.entries.lock().insert(
            settings.url.clone(),
            Entry {
                keys: keys.clone(),
                fetched: Instant::now(),
            },
        );
        Ok(keys)
    }

    fn cached(&self, url: &str, refresh: Duration, kid: Option<&str>) -> Option<Arc<Vec<RsaKey>>> {
        let entries = self.entries.lock();
        let entry = entries.get(url)?;
        let age = entry.fetched.elapsed();
        if age >= refresh {
            return None;
        }
        let knows_kid =
            kid.is_none_or(|kid| entry.keys.iter().any(|key| key.kid.as_deref() == Some(kid)));
        if !knows_kid && age >= MIN_REFETCH {
            return None;
        }
        Some(entry.keys.clone())
    }
}

async fn fetch(settings: &JwksKey) -> anyhow::Result<Vec<RsaKey>> {
    let response = host_http::send(HostRequest {
        method: http::Method::GET,
        url: &settings.url,
        headers: vec![(
            http::header::ACCEPT,
            http::HeaderValue::from_static("application/json"),
        )],
        body: bytes::Bytes::new(),
        allow_private: settings.allow_private,
        timeout: FETCH_TIMEOUT,
        max_body_bytes: MAX_SET_BYTES,
    })
    .await?;
    if !response.status.is_success() {
        bail!("{} answered HTTP {}", settings.url, response.status);
    }
    parse_key_set(&response.body).with_context(|| format!("the key set at {}", settings.url))
}

/// The RSA signing keys of a JWKS document.
pub fn parse_key_set(body: &[u8]) -> anyhow::Result<Vec<RsaKey>> {
    use base64::Engine as _;
    let decode = |text: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim_end_matches('='))
    };
    let set: KeySet = serde_json::from_slice(body).context("not a JWKS document")?;
    let mut keys = Vec::new();
    for jwk in set.keys {
        let signing = jwk.usage.as_deref().is_none_or(|u| u == "sig");
        let rs256 = jwk.alg.as_deref().is_none_or(|a| a == "RS256");
        if jwk.kty != "RSA" || !signing || !rs256 {
            continue;
        }
        let (Some(n), Some(e)) = (jwk.n.as_deref(), jwk.e.as_deref()) else {
            continue;
        };
        let (Ok(modulus), Ok(exponent)) = (decode(n), decode(e)) else {
            continue;
        };
        keys.push(RsaKey {
            kid: jwk.kid,
            modulus,
            exponent,
        });
    }
    if keys.is_empty() {
        bail!("it holds no RSA signing key");
    }
    Ok(keys)
}
