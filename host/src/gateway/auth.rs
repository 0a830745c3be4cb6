//! API keys (`Authorization: Bearer KEY` or `X-API-Key: KEY`), compared in constant time: both
//! sides are hashed to a fixed length first, so neither content nor length leaks through timing.
//!
//! A request that passes is made by a `Principal`: the key that matched (named by a one-way
//! label, never the key), or the one local principal of a gateway without keys. Conversations
//! and memories are bound to it, and rate limits count per principal. Keys listed in
//! `gateway.admin_keys` (and the local principal) are operators: they manage every scheduled
//! job and turn tool groups on and off; other keys manage only their own jobs.

use sha2::{Digest, Sha256};

/// Who made a request. Stable across restarts as long as the key is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    name: String,
    /// An operator's key (`gateway.admin_keys`) or the local principal.
    admin: bool,
}

impl Principal {
    /// Every client of a gateway without keys (which only binds loopback): an operator.
    pub fn local() -> Self {
        Self {
            name: "local".to_owned(),
            admin: true,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// May it manage what belongs to every principal (all scheduled jobs, tool groups)?
    pub fn is_admin(&self) -> bool {
        self.admin
    }
}

struct Key {
    digest: [u8; 32],
    principal: Principal,
}

pub struct ApiKeys {
    keys: Vec<Key>,
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// `key:` and 128 bits of a domain-separated SHA-256 of the key: names the key in the session
/// store and in rate-limit buckets without being usable as the key.
fn principal_of(key: &str, admin: bool) -> Principal {
    let mut hasher = Sha256::new();
    hasher.update(b"databot gateway principal\0");
    hasher.update(key.as_bytes());
    let label = hasher.finalize();
    Principal {
        name: format!("key:{}", hex::encode(&label[..16])),
        admin,
    }
}

/// Equality whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

impl ApiKeys {
    #[cfg(test)]
    pub fn new<'a>(keys: impl IntoIterator<Item = &'a str>) -> Self {
        Self::with_admins(keys, [])
    }

    /// `keys` and the operators' `admin_keys`, each accepted.
    pub fn with_admins<'a>(
        keys: impl IntoIterator<Item = &'a str>,
        admin_keys: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let key = |key: &str, admin: bool| Key {
            digest: digest(key),
            principal: principal_of(key, admin),
        };
        Self {
            keys: keys
                .into_iter()
                .map(|k| key(k, false))
                .chain(admin_keys.into_iter().map(|k| key(k, true)))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The presented key, from either header.
    pub fn presented(headers: &http::HeaderMap) -> Option<String> {
        if let Some(value) = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            && let Some(token) = value.strip_prefix("Bearer ")
        {
            return Some(token.trim().to_owned());
        }
        headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_owned())
    }

    /// The configured principal called `name` (a console session names its principal).
    pub fn principal_named(&self, name: &str) -> Option<Principal> {
        self.keys
            .iter()
            .find(|key| key.principal.name == name)
            .map(|key| key.principal.clone())
    }

    /// The secret console sessions are signed under: derived from every key and its role,
    /// so it is unknown without all of them and changes whenever one does.
    pub fn session_secret(&self) -> [u8; 32] {
        let mut keys: Vec<([u8; 32], bool)> = self
            .keys
            .iter()
            .map(|key| (key.digest, key.principal.admin))
            .collect();
        keys.sort_unstable();
        let mut hasher = Sha256::new();
        hasher.update(b"databot console session secret\0");
        for (digest, admin) in keys {
            hasher.update(digest);
            hasher.update([u8::from(admin)]);
        }
        hasher.finalize().into()
    }

    /// The principal of the key `presented` matches. Every key is compared, whichever matches.
    pub fn identify(&self, presented: &str) -> Option<Principal> {
        let presented = digest(presented);
        let mut found = None;
        for key in &self.keys {
            if constant_time_eq(&key.digest, &presented) {
                found = Some(&key.principal);
            }
        }
        found.cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifies_only_configured_keys() {
        let keys = ApiKeys::new(["alpha-key-0123456789", "beta-key-0123456789"]);
        let alpha = keys.identify("alpha-key-0123456789").unwrap();
        let beta = keys.identify("beta-key-0123456789").unwrap();
        assert_ne!(alpha, beta);
        assert!(alpha.as_str().starts_with("key:") && alpha.as_str().len() == 36);
        assert!(!alpha.as_str().contains("alpha"));
        // The same key is the same principal in another process (labels are not random).
        assert_eq!(
            ApiKeys::new(["alpha-key-0123456789"]).identify("alpha-key-0123456789"),
            Some(alpha)
        );
        for wrong in [
            "alpha-key-012345678",
            "alpha-key-01234567890",
            "",
            "ALPHA-KEY-0123456789",
        ] {
            assert!(keys.identify(wrong).is_none(), "{wrong}");
        }
        assert_ne!(Principal::local(), beta);
        assert!(Principal::local().is_admin() && !beta.is_admin());
        let with_admin = ApiKeys::with_admins(["alpha-key-0123456789"], ["admin-key-0123456789"]);
        assert!(
            with_admin
                .identify("admin-key-0123456789")
                .unwrap()
                .is_admin()
        );
        assert!(
            !with_admin
                .identify("alpha-key-0123456789")
                .unwrap()
                .is_admin()
        );
    }

    #[test]
    fn reads_both_headers() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-api-key", "k1".parse().unwrap());
        assert_eq!(ApiKeys::presented(&headers).as_deref(), Some("k1"));
        headers.insert(http::header::AUTHORIZATION, "Bearer k2".parse().unwrap());
        assert_eq!(ApiKeys::presented(&headers).as_deref(), Some("k2"));
    }
}
