//! Console sign-in sessions: an API key exchanged for a signed, expiring cookie.
//!
//! The cookie names the key's principal (never the key) and is signed with HMAC-SHA256 under
//! a secret derived from every configured key, so every replica with the same keys accepts
//! it without shared state, and removing or changing a key ends the sessions it opened (the
//! principal must still be configured, with the same operator flag). Signing out forgets the
//! session on this replica until it would have expired.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use ring::hmac;

use super::super::auth::{ApiKeys, Principal};

/// The cookie's name.
pub const COOKIE: &str = "databot_session";
/// How long a sign-in lasts.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// The header a cookie-authenticated request that changes anything must carry. A cross-site
/// page cannot set it without a CORS preflight, which the gateway never grants for it.
pub const CSRF_HEADER: &str = "x-databot-console";
/// Longest cookie value read.
const MAX_TOKEN: usize = 256;
/// Signed-out sessions remembered at most (the oldest expiry is dropped first beyond it).
const MAX_REVOKED: usize = 10_000;

pub struct ConsoleSessions {
    key: hmac::Key,
    /// Signed-out session nonces and when they would expire (seconds since the epoch).
    revoked: Mutex<HashMap<String, u64>>,
}

/// A session the cookie proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    pub principal: Principal,
    nonce: String,
    expires: u64,
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

impl ConsoleSessions {
    /// Sessions signed under a secret derived from `keys` (a gateway without keys has no
    /// sign-in: its console is open to loopback like its API).
    pub fn new(keys: &ApiKeys) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &keys.session_secret()),
            revoked: Mutex::default(),
        }
    }

    /// A new session of `principal`: the cookie value.
    pub fn issue(&self, principal: &Principal) -> Result<String, getrandom::Error> {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce)?;
        let expires = now_seconds() + LIFETIME.as_secs();
        let unsigned = format!(
            "v1.{}.{}.{expires}.{}",
            principal.as_str(),
            if principal.is_admin() { "a" } else { "u" },
            hex::encode(nonce)
        );
        let tag = hmac::sign(&self.key, unsigned.as_bytes());
        Ok(format!("{unsigned}.{}", hex::encode(tag.as_ref())))
    }

    /// The session `token` proves, if it is intact, unexpired, not signed out, and its
    /// principal is still one of `keys`.
    pub fn verify(&self, token: &str, keys: &ApiKeys) -> Option<ConsoleSession> {
        if token.len() > MAX_TOKEN {
            return None;
        }
        let (unsigned, tag) = token.rsplit_once('.')?;
        let tag = hex::decode(tag).ok()?;
        hmac::verify(&self.key, unsigned.as_bytes(), &tag).ok()?;
        let mut parts = unsigned.split('.');
        let (Some("v1"), Some(name), Some(role), Some(expires), Some(nonce), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let expires: u64 = expires.parse().ok()?;
        if expires <= now_seconds() || self.revoked.lock().contains_key(nonce) {
            return None;
        }
        let principal = keys.principal_named(name)?;
        (principal.is_admin() == (role == "a")).then(|| ConsoleSession {
            principal,
            nonce: nonce.to_owned(),
            expires,
        })
    }

    /// Sign `session` out on this replica.
    pub fn revoke(&self, session: &ConsoleSession) {
        let now = now_seconds();
        let mut revoked = self.revoked.lock();
        revoked.retain(|_, expires| *expires > now);
        if revoked.len() >= MAX_REVOKED
            && let Some(oldest) = revoked
                .iter()
                .min_by_key(|(_, expires)| **expires)
                .map(|(nonce, _)| nonce.clone())
        {
            revoked.remove(&oldest);
        }
        revoked.insert(session.nonce.clone(), session.expires);
    }
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then_some(value)
        })
}

/// `Set-Cookie` for a session (`value`), or, with `None`, the one that deletes it. `secure`
/// adds `Secure` (a gateway reached over TLS).
pub fn set_cookie(value: Option<&str>, secure: bool) -> String {
    let (value, max_age) = match value {
        Some(value) => (value, LIFETIME.as_secs()),
        None => ("", 0),
    };
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: &str = "user-key-0123456789";
    const ADMIN: &str = "admin-key-0123456789";

    fn keys() -> ApiKeys {
        ApiKeys::with_admins([USER], [ADMIN])
    }

    #[test]
    fn a_session_names_its_principal_and_nothing_else_passes() {
        let keys = keys();
        let sessions = ConsoleSessions::new(&keys);
        let user = keys.identify(USER).unwrap();
        let token = sessions.issue(&user).unwrap();
        assert!(!token.contains(USER), "{token}");
        let session = sessions.verify(&token, &keys).unwrap();
        assert_eq!(session.principal, user);
        let admin = keys.identify(ADMIN).unwrap();
        assert!(
            sessions
                .verify(&sessions.issue(&admin).unwrap(), &keys)
                .unwrap()
                .principal
                .is_admin()
        );
        // Any change to the signed part or the tag, or a made-up token, is refused.
        let (unsigned, tag) = token.rsplit_once('.').unwrap();
        let promoted = unsigned.replace(".u.", ".a.");
        for forged in [
            format!("{promoted}.{tag}"),
            format!("{unsigned}.{}", "0".repeat(64)),
            format!("{unsigned}x.{tag}"),
            String::new(),
            "v1.local.a.99999999999.00.00".to_owned(),
            "x".repeat(300),
        ] {
            assert!(sessions.verify(&forged, &keys).is_none(), "{forged}");
        }
    }

    #[test]
    fn other_keys_expiry_and_sign_out_end_a_session() {
        let keys = keys();
        let sessions = ConsoleSessions::new(&keys);
        let user = keys.identify(USER).unwrap();
        let token = sessions.issue(&user).unwrap();
        // Another replica with the same keys accepts it; a gateway whose keys changed does not.
        assert!(ConsoleSessions::new(&keys).verify(&token, &keys).is_some());
        let rotated = ApiKeys::with_admins(["other-key-0123456789"], [ADMIN]);
        assert!(
            ConsoleSessions::new(&rotated)
                .verify(&token, &rotated)
                .is_none()
        );
        // Removing the key ends its sessions even under the old secret.
        assert!(sessions.verify(&token, &rotated).is_none());
        // Expired.
        let unsigned = format!(
            "v1.{}.u.{}.{}",
            user.as_str(),
            now_seconds() - 1,
            "ab".repeat(16)
        );
        let tag = hmac::sign(&sessions.key, unsigned.as_bytes());
        let expired = format!("{unsigned}.{}", hex::encode(tag.as_ref()));
        assert!(sessions.verify(&expired, &keys).is_none());
        // Signed out.
        let session = sessions.verify(&token, &keys).unwrap();
        sessions.revoke(&session);
        assert!(sessions.verify(&token, &keys).is_none());
    }

    #[test]
    fn reads_and_writes_cookies() {
        let mut headers = http::HeaderMap::new();
        headers.append(
            http::header::COOKIE,
            "a=1; databot_session=tok".parse().unwrap(),
        );
        headers.append(http::header::COOKIE, "b=2".parse().unwrap());
        assert_eq!(cookie(&headers, COOKIE), Some("tok"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "c"), None);
        let set = set_cookie(Some("tok"), true);
        for flag in [
            "HttpOnly",
            "SameSite=Strict",
            "Path=/",
            "Secure",
            "Max-Age=43200",
        ] {
            assert!(set.contains(flag), "{set}");
        }
        assert!(set_cookie(None, false).contains("Max-Age=0"));
        assert!(!set_cookie(None, false).contains("Secure"));
    }
}
