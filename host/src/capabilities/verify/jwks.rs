//! JSON Web Key Sets fetched by the host and cached per URL. Guarantees:
//! - a set is refreshed after the key's `refresh_seconds`, and at most once a minute early
//!   when a token names a key id the cached set lacks (the publisher rotated its keys);
//! - one fetch per URL at a time: concurrent requests that miss wait for it (single flight);
//! - after a failed fetch the URL is not asked again until a backoff (5 s doubling to 5 min)
//!   has passed, and meanwhile the last good set is used for up to six hours (about how long
//!   publishers such as Google let clients cache theirs), so an outage of the
//!   publisher neither floods it nor locks out senders whose keys are known.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use parking_lot::Mutex;
use serde::Deserialize;

use crate::capabilities::host_http::{self, HostRequest};
use crate::config::JwksKey;

/// Least time between two fetches of one URL, whatever tokens ask for.
const MIN_REFETCH: Duration = Duration::from_secs(60);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_SET_BYTES: usize = 512 * 1024;
/// How long the last good set stands in while its URL cannot be fetched.
const MAX_STALE: Duration = Duration::from_secs(6 * 60 * 60);
const FIRST_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(5 * 60);

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

type Keys = Arc<Vec<RsaKey>>;

#[derive(Default)]
struct Entry {
    /// The last set fetched successfully, and when.
    good: Option<(Keys, Instant)>,
    failure: Option<Failure>,
}

struct Failure {
    at: Instant,
    consecutive: u32,
    message: String,
}

impl Failure {
    fn backoff(&self) -> Duration {
        let doublings = self.consecutive.saturating_sub(1).min(16);
        FIRST_BACKOFF
            .saturating_mul(1 << doublings)
            .min(MAX_BACKOFF)
    }
}

/// What to do for one request for keys.
#[derive(Debug)]
enum Decision {
    Use(Keys),
    Fetch,
    Fail(String),
}

impl Entry {
    /// The last good set while it may still stand in for a fresh one.
    fn usable_stale(&self, now: Instant) -> Option<Keys> {
        let (keys, fetched) = self.good.as_ref()?;
        (now.saturating_duration_since(*fetched) < MAX_STALE).then(|| keys.clone())
    }

    fn decide(&self, now: Instant, refresh: Duration, kid: Option<&str>) -> Decision {
        if let Some(failure) = &self.failure
            && now.saturating_duration_since(failure.at) < failure.backoff()
        {
            return match self.usable_stale(now) {
                Some(keys) => Decision::Use(keys),
                None => Decision::Fail(failure.message.clone()),
            };
        }
        let Some((keys, fetched)) = &self.good else {
            return Decision::Fetch;
        };
        let age = now.saturating_duration_since(*fetched);
        if age >= refresh {
            return Decision::Fetch;
        }
        let knows_kid =
            kid.is_none_or(|kid| keys.iter().any(|key| key.kid.as_deref() == Some(kid)));
        if !knows_kid && age >= MIN_REFETCH {
            return Decision::Fetch;
        }
        Decision::Use(keys.clone())
    }
}

/// The key sets of every plugin, shared by all calls.
#[derive(Default)]
pub struct JwksCache {
    entries: Mutex<HashMap<String, Entry>>,
    /// One lock per URL, held while that URL is fetched.
    fetching: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl JwksCache {
    /// The keys of `settings.url`, fetched when missing or stale; `refetch_for_kid` asks for a
    /// fresh set when the cached one has no key of that id (rate-limited).
    pub async fn keys(
        &self,
        settings: &JwksKey,
        refetch_for_kid: Option<&str>,
    ) -> anyhow::Result<Keys> {
        let url = settings.url.as_str();
        let refresh = Duration::from_secs(settings.refresh_seconds);
        match self.decide(url, refresh, refetch_for_kid) {
            Decision::Use(keys) => return Ok(keys),
            Decision::Fail(message) => return Err(anyhow!(message)),
            Decision::Fetch => {}
        }
        let lock = self
            .fetching
            .lock()
            .entry(url.to_owned())
            .or_default()
            .clone();
        let _fetching = lock.lock().await;
        // Another request may have fetched (or failed) while this one waited.
        match self.decide(url, refresh, refetch_for_kid) {
            Decision::Use(keys) => return Ok(keys),
            Decision::Fail(message) => return Err(anyhow!(message)),
            Decision::Fetch => {}
        }
        let fetched = fetch(settings).await;
        let mut entries = self.entries.lock();
        let entry = entries.entry(url.to_owned()).or_default();
        let now = Instant::now();
        match fetched {
            Ok(keys) => {
                let keys = Arc::new(keys);
                entry.good = Some((keys.clone(), now));
                entry.failure = None;
                Ok(keys)
            }
            Err(error) => {
                let consecutive = entry.failure.as_ref().map_or(0, |f| f.consecutive) + 1;
                let message = format!("{error:#}");
                entry.failure = Some(Failure {
                    at: now,
                    consecutive,
                    message: message.clone(),
                });
                match entry.usable_stale(now) {
                    Some(keys) => {
                        tracing::warn!(url, error = %message, "the key set could not be refreshed; using the last one fetched");
                        Ok(keys)
                    }
                    None => Err(error),
                }
            }
        }
    }

    fn decide(&self, url: &str, refresh: Duration, kid: Option<&str>) -> Decision {
        let entries = self.entries.lock();
        match entries.get(url) {
            Some(entry) => entry.decide(Instant::now(), refresh, kid),
            None => Decision::Fetch,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kid: &str) -> RsaKey {
        RsaKey {
            kid: Some(kid.to_owned()),
            modulus: vec![1],
            exponent: vec![1],
        }
    }

    fn fetched(kid: &str, at: Instant) -> Entry {
        Entry {
            good: Some((Arc::new(vec![key(kid)]), at)),
            failure: None,
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn fresh_sets_are_used_and_old_or_rotated_ones_refetched() {
        let start = Instant::now();
        let entry = fetched("a", start);
        assert!(matches!(
            entry.decide(start, HOUR, Some("a")),
            Decision::Use(_)
        ));
        assert!(matches!(
            entry.decide(start + HOUR, HOUR, None),
            Decision::Fetch
        ));
        // An unknown key id refetches, but not more than once a minute.
        let soon = start + Duration::from_secs(10);
        assert!(matches!(
            entry.decide(soon, HOUR, Some("b")),
            Decision::Use(_)
        ));
        let later = start + MIN_REFETCH;
        assert!(matches!(
            entry.decide(later, HOUR, Some("b")),
            Decision::Fetch
        ));
        assert!(matches!(
            Entry::default().decide(start, HOUR, None),
            Decision::Fetch
        ));
    }

    #[test]
    fn after_a_failure_the_last_good_set_stands_in_until_the_backoff_ends() {
        let start = Instant::now();
        let mut entry = fetched("a", start);
        let failed_at = start + 2 * HOUR;
        entry.failure = Some(Failure {
            at: failed_at,
            consecutive: 3,
            message: "down".into(),
        });
        // Backoff after three failures: 20 s.
        let during = failed_at + Duration::from_secs(19);
        assert!(matches!(entry.decide(during, HOUR, None), Decision::Use(_)));
        let after = failed_at + Duration::from_secs(20);
        assert!(matches!(entry.decide(after, HOUR, None), Decision::Fetch));
        // A set older than `MAX_STALE` no longer stands in.
        entry.failure.as_mut().unwrap().at = start + MAX_STALE;
        let too_old = start + MAX_STALE + Duration::from_secs(1);
        assert!(matches!(entry.decide(too_old, HOUR, None), Decision::Fail(m) if m == "down"));
        // Nothing fetched yet: the failure is the answer during the backoff.
        let never = Entry {
            good: None,
            failure: Some(Failure {
                at: start,
                consecutive: 1,
                message: "down".into(),
            }),
        };
        assert!(matches!(never.decide(start, HOUR, None), Decision::Fail(_)));
        assert!(matches!(
            never.decide(start + FIRST_BACKOFF, HOUR, None),
            Decision::Fetch
        ));
    }

    #[test]
    fn backoff_doubles_to_a_cap() {
        let failure = |consecutive| Failure {
            at: Instant::now(),
            consecutive,
            message: String::new(),
        };
        assert_eq!(failure(1).backoff(), FIRST_BACKOFF);
        assert_eq!(failure(2).backoff(), FIRST_BACKOFF * 2);
        assert_eq!(failure(40).backoff(), MAX_BACKOFF);
    }
}
