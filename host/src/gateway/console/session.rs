//! Console sign-in sessions: an API key exchanged for a signed, expiring cookie.
//!
//! The cookie names the key's principal (never the key) and when it was issued, and is signed
//! with HMAC-SHA256 under a secret derived from every configured key, so every replica with
//! the same keys accepts it without shared state, and removing or changing a key ends the
//! sessions it opened (the principal must still be configured, with the same operator flag).
//! Signing out ends, on this replica, every session of that principal issued until then: a
//! bound of one entry per key, which no number of sign-ins can push out.

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

pub struct ConsoleSessions {
    key: hmac::Key,
    /// Per principal: sessions issued at or before this time (ms) are signed out.
    signed_out: Mutex<HashMap<String, u64>>,
}

/// A session the cookie proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    pub principal: Principal,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

/// Whether a request carries the console's header (`X-Databot-Console: 1`).
pub fn carries_console_header(headers: &http::HeaderMap) -> bool {
    headers
        .get(CSRF_HEADER)
        .is_some_and(|value| value.as_bytes() == b"1")
}

impl ConsoleSessions {
    /// Sessions signed under a secret derived from `keys` (a gateway without keys has no
    /// sign-in: its console is open to loopback like its API).
    pub fn new(keys: &ApiKeys) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &keys.session_secret()),
            signed_out: Mutex::default(),
        }
    }

    /// A new session of `principal`: the cookie value.
    pub fn issue(&self, principal: &Principal) -> Result<String, getrandom::Error> {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce)?;
        // Later than the principal's last sign-out here, even within the same millisecond.
        let signed_out = self.signed_out.lock().get(principal.as_str()).copied();
        let issued = now_ms().max(signed_out.map_or(0, |at| at + 1));
        let unsigned = format!(
            "v1.{}.{}.{issued}.{}",
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
        let (Some("v1"), Some(name), Some(role), Some(issued), Some(_nonce), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let issued: u64 = issued.parse().ok()?;
        let lifetime = u64::try_from(LIFETIME.as_millis()).unwrap_or(u64::MAX);
        if issued.saturating_add(lifetime) <= now_ms()
            || self
                .signed_out
                .lock()
                .get(name)
                .is_some_and(|at| issued <= *at)
        {
            return None;
        }
        let principal = keys.principal_named(name)?;
        (principal.is_admin() == (role == "a")).then_some(ConsoleSession { principal })
    }

    /// Sign out, on this replica, every session of `session`'s principal issued until now.
    pub fn sign_out(&self, session: &ConsoleSession) {
        self.signed_out
            .lock()
            .insert(session.principal.as_str().to_owned(), now_ms());
    }
}

/// The value of cookie `name` in a request's `Cookie` headers; none when it is sent more
/// than once (a page on another port of the same host may plant a second one with a
/// narrower path: neither is believed).
pub fn cookie<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h str> {
    let mut found = cookie_values(headers, name);
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

/// Whether cookie `name` is sent at all (once or more).
pub fn sends_cookie(headers: &http::HeaderMap, name: &str) -> bool {
    cookie_values(headers, name).next().is_some()
}

fn cookie_values<'h>(headers: &'h http::HeaderMap, name: &str) -> impl Iterator<Item = &'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(move |pair| {
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
        let issued = now_ms() - u64::try_from(LIFETIME.as_millis()).unwrap() - 1;
        let unsigned = format!("v1.{}.u.{issued}.{}", user.as_str(), "ab".repeat(16));
        let tag = hmac::sign(&sessions.key, unsigned.as_bytes());
        let expired = format!("{unsigned}.{}", hex::encode(tag.as_ref()));
        assert!(sessions.verify(&expired, &keys).is_none());
        // Signed out: every earlier session of the key here, not a later one, not another key.
        let admin = keys.identify(ADMIN).unwrap();
        let admin_token = sessions.issue(&admin).unwrap();
        let session = sessions.verify(&token, &keys).unwrap();
        sessions.sign_out(&session);
        assert!(sessions.verify(&token, &keys).is_none());
        let again = sessions.issue(&user).unwrap();
        assert!(
            sessions.verify(&again, &keys).is_some(),
            "signed in again at once"
        );
        assert!(sessions.verify(&admin_token, &keys).is_some());
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
        // A second session cookie (planted with a narrower path) makes neither count.
        headers.append(
            http::header::COOKIE,
            "databot_session=planted".parse().unwrap(),
        );
        assert_eq!(cookie(&headers, COOKIE), None);
        assert!(sends_cookie(&headers, COOKIE) && !sends_cookie(&headers, "c"));
        let mut marked = http::HeaderMap::new();
        assert!(!carries_console_header(&marked));
        marked.insert(CSRF_HEADER, "1".parse().unwrap());
        assert!(carries_console_header(&marked));
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
