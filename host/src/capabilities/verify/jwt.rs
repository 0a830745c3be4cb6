//! RS256 JSON Web Tokens checked against a cached key set: the signature, then the issuer,
//! the audience and the validity window. Only RS256 is accepted (never `none`, never an HMAC
//! algorithm a public key could be mistaken for).

use anyhow::Context;
use base64::Engine as _;
use serde_json::Value;

use super::jwks::{JwksCache, RsaKey};
use crate::config::JwksKey;

/// Clock difference tolerated on `exp`, `nbf` and `iat`.
const SKEW_SECONDS: i64 = 60;

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn decode(part: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()
}

/// The token's claims as JSON text when it is valid for `settings` at `now`; `None` when it
/// is not; an error only when the key set cannot be had.
pub async fn verify(
    token: &str,
    settings: &JwksKey,
    cache: &JwksCache,
    now: i64,
) -> anyhow::Result<Option<String>> {
    let Some(parsed) = Parsed::new(token) else {
        return Ok(None);
    };
    let keys = cache
        .keys(settings, parsed.kid.as_deref())
        .await
        .context("fetching the key set")?;
    if !parsed.signed_by_any(&keys) {
        return Ok(None);
    }
    Ok(claims_hold(&parsed.claims, settings, now).then(|| parsed.claims.to_string()))
}

struct Parsed<'a> {
    signing_input: &'a str,
    signature: Vec<u8>,
    kid: Option<String>,
    claims: Value,
}

impl<'a> Parsed<'a> {
    fn new(token: &'a str) -> Option<Self> {
        let (signing_input, signature) = token.rsplit_once('.')?;
        let (header, payload) = signing_input.split_once('.')?;
        let header: Value = serde_json::from_slice(&decode(header)?).ok()?;
        if header.get("alg")?.as_str()? != "RS256" {
            return None;
        }
        let claims: Value = serde_json::from_slice(&decode(payload)?).ok()?;
        if !claims.is_object() {
            return None;
        }
        Some(Self {
            signing_input,
            signature: decode(signature)?,
            kid: header.get("kid").and_then(Value::as_str).map(str::to_owned),
            claims,
        })
    }

    fn signed_by_any(&self, keys: &[RsaKey]) -> bool {
        keys.iter()
            .filter(|key| match (&self.kid, &key.kid) {
                (Some(wanted), Some(kid)) => wanted == kid,
                _ => true,
            })
            .any(|key| {
                ring::signature::RsaPublicKeyComponents {
                    n: &key.modulus,
                    e: &key.exponent,
                }
                .verify(
                    &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                    self.signing_input.as_bytes(),
                    &self.signature,
                )
                .is_ok()
            })
    }
}

fn claims_hold(claims: &Value, settings: &JwksKey, now: i64) -> bool {
    let issuer_ok = claims
        .get("iss")
        .and_then(Value::as_str)
        .is_some_and(|iss| settings.issuers.iter().any(|i| i == iss));
    let audience_ok = match claims.get("aud") {
        Some(Value::String(aud)) => settings.audiences.iter().any(|a| a == aud),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .any(|aud| settings.audiences.iter().any(|a| a == aud)),
        _ => false,
    };
    let number = |name: &str| claims.get(name).and_then(Value::as_i64);
    let unexpired = number("exp").is_some_and(|exp| now < exp.saturating_add(SKEW_SECONDS));
    let started = number("nbf").is_none_or(|nbf| now.saturating_add(SKEW_SECONDS) >= nbf);
    let issued = number("iat").is_none_or(|iat| now.saturating_add(SKEW_SECONDS) >= iat);
    issuer_ok && audience_ok && unexpired && started && issued
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> JwksKey {
        JwksKey {
            url: "http://127.0.0.1:1/keys".into(),
            issuers: vec!["chat@system.gserviceaccount.com".into()],
            audiences: vec!["1234567890".into()],
            refresh_seconds: 3600,
            allow_private: true,
        }
    }

    #[test]
    fn claims_need_issuer_audience_and_a_live_window() {
        let now = 1_700_000_000;
        let good = serde_json::json!({"iss": "chat@system.gserviceaccount.com", "aud": "1234567890", "exp": now + 300, "iat": now});
        assert!(claims_hold(&good, &settings(), now));
        let mut listed = good.clone();
        listed["aud"] = serde_json::json!(["x", "1234567890"]);
        assert!(claims_hold(&listed, &settings(), now));
        for (field, value) in [
            ("iss", serde_json::json!("someone@else")),
            ("aud", serde_json::json!("other")),
            ("exp", serde_json::json!(now - 61)),
            ("iat", serde_json::json!(now + 600)),
            ("nbf", serde_json::json!(now + 600)),
        ] {
            let mut bad = good.clone();
            bad[field] = value;
            assert!(!claims_hold(&bad, &settings(), now), "{field}");
        }
        let mut no_exp = good.clone();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert!(!claims_hold(&no_exp, &settings(), now));
    }

    #[test]
    fn only_rs256_tokens_parse() {
        let part =
            |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let claims = part(serde_json::json!({"iss": "a"}));
        for alg in ["none", "HS256", "ES256"] {
            let token = format!("{}.{claims}.", part(serde_json::json!({"alg": alg})));
            assert!(Parsed::new(&token).is_none(), "{alg}");
        }
        let token = format!(
            "{}.{claims}.AAAA",
            part(serde_json::json!({"alg": "RS256", "kid": "k1"}))
        );
        let parsed = Parsed::new(&token).unwrap();
        assert_eq!(parsed.kid.as_deref(), Some("k1"));
        assert!(!parsed.signed_by_any(&[]));
    }
}
