//! API keys (`Authorization: Bearer KEY` or `X-API-Key: KEY`), compared in constant time: both
//! sides are hashed to a fixed length first, so neither content nor length leaks through timing.

use sha2::{Digest, Sha256};

pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Equality whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

impl ApiKeys {
    pub fn new<'a>(keys: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            digests: keys.into_iter().map(digest).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
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

    /// Does `presented` match a key? Every key is compared, whichever matches.
    pub fn accepts(&self, presented: &str) -> bool {
        let presented = digest(presented);
        self.digests.iter().fold(false, |found, key| {
            found | constant_time_eq(key, &presented)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_configured_keys() {
        let keys = ApiKeys::new(["alpha", "beta"]);
        assert!(keys.accepts("alpha") && keys.accepts("beta"));
        assert!(!keys.accepts("alph") && !keys.accepts("alphaa") && !keys.accepts(""));
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
