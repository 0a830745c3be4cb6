//! `verify` capability: a channel plugin checks an inbound request's signature or token
//! against a key the operator named in `plugins.NAME.permissions.verify`, without ever
//! holding the key. Owns what counts as a verified request: during a `receive` call
//! (`InboundCheck`), a check that returned true, where a signature's message ends with the
//! request's raw body.

mod jwks;
mod jwt;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use subtle::ConstantTimeEq;

pub use jwks::JwksCache;

use super::StoreState;
use crate::config::{JwksKey, VerifyKey, VerifyKeyConfig};
use crate::contract::GuestError;
use crate::contract::databot::plugin::verify::Host;

/// A plugin's verification keys, decoded once per load.
#[derive(Clone, Default)]
pub struct VerifyKeys {
    keys: BTreeMap<String, ResolvedKey>,
}

#[derive(Clone)]
enum ResolvedKey {
    Secret(Arc<[u8]>),
    Ed25519([u8; 32]),
    Jwks(Arc<JwksKey>),
}

impl VerifyKeys {
    pub fn from_config(keys: &BTreeMap<String, VerifyKeyConfig>) -> Result<Self, String> {
        let mut resolved = BTreeMap::new();
        for (name, key) in keys {
            let key = key.key().map_err(|e| format!("{name}: {e}"))?;
            key.validate().map_err(|e| format!("{name}: {e}"))?;
            let key = match &key {
                VerifyKey::Secret(secret) => {
                    ResolvedKey::Secret(Arc::from(secret.expose().as_bytes()))
                }
                VerifyKey::Ed25519PublicKey(text) => {
                    let bytes = hex::decode(text.trim()).map_err(|e| e.to_string())?;
                    let bytes: [u8; 32] = bytes
                        .try_into()
                        .map_err(|_| "an Ed25519 public key is 32 bytes".to_owned())?;
                    ResolvedKey::Ed25519(bytes)
                }
                VerifyKey::Jwks(jwks) => ResolvedKey::Jwks(Arc::new(jwks.clone())),
            };
            resolved.insert(name.clone(), key);
        }
        Ok(Self { keys: resolved })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The request a `receive` call is verifying, and whether a check has passed for it.
#[derive(Debug, Clone, Default)]
pub struct InboundCheck {
    body: Bytes,
    /// The key of the first check that passed.
    verified_by: Option<String>,
}

impl InboundCheck {
    pub fn new(body: Bytes) -> Self {
        Self {
            body,
            verified_by: None,
        }
    }

    /// The key that verified the request, if one did.
    pub fn verified_by(&self) -> Option<&str> {
        self.verified_by.as_deref()
    }
}

/// Most bytes a signed message may have (the request bodies a channel accepts are smaller).
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024 + 1024;

impl StoreState {
    fn verify_key(&self, name: &str) -> Result<&ResolvedKey, GuestError> {
        self.grants.verify.keys.get(name).ok_or_else(|| {
            let plugin = &self.grants.plugin;
            super::denied(
                plugin,
                &format!("verify with key `{name}`"),
                &format!("plugins.{plugin}.permissions.verify.{name}"),
            )
        })
    }

    /// Record a passed check: it counts for the request when `signed` (the message of a
    /// signature) is `None` (a token or a JWT) or ends with the request's body.
    fn passed(&mut self, key: &str, signed: Option<&[u8]>) {
        let Some(check) = &mut self.inbound else {
            return;
        };
        // A signature counts only for a request with a body it covers: over an empty body it
        // would vouch for nothing the request carries.
        let covers_body =
            signed.is_none_or(|message| !check.body.is_empty() && message.ends_with(&check.body));
        if covers_body {
            check.verified_by.get_or_insert_with(|| key.to_owned());
        } else {
            tracing::warn!(
                plugin = %self.grants.plugin,
                key,
                "a signature was valid but does not cover the request's body; the request stays unverified"
            );
        }
    }

    /// The request being received, if this call is a `receive`.
    pub fn set_inbound(&mut self, body: Bytes) {
        self.inbound = Some(InboundCheck::new(body));
    }

    pub fn inbound(&self) -> Option<&InboundCheck> {
        self.inbound.as_ref()
    }
}

fn wrong_kind(name: &str, wanted: &str) -> GuestError {
    GuestError::InvalidInput(format!(
        "key `{name}` is not {wanted}; check plugins.NAME.permissions.verify.{name}"
    ))
}

fn too_long(length: usize) -> Option<GuestError> {
    (length > MAX_MESSAGE_BYTES).then(|| {
        GuestError::InvalidInput(format!(
            "the message is {length} bytes; at most {MAX_MESSAGE_BYTES} can be verified"
        ))
    })
}

impl StoreState {
    /// Check a signature over `message` with the named key: `check` gets the resolved key
    /// and answers whether the signature is valid (or that the key is of the wrong kind).
    /// A valid signature is recorded for the request being received.
    fn check_signature(
        &mut self,
        key: &str,
        message: &[u8],
        check: impl FnOnce(&ResolvedKey) -> Result<bool, GuestError>,
    ) -> Result<bool, GuestError> {
        if let Some(error) = too_long(message.len()) {
            return Err(error);
        }
        let valid = check(self.verify_key(key)?)?;
        if valid {
            self.passed(key, Some(message));
        }
        Ok(valid)
    }
}

impl Host for StoreState {
    async fn hmac_sha256(
        &mut self,
        key: String,
        message: Vec<u8>,
        signature: Vec<u8>,
    ) -> wasmtime::Result<Result<bool, GuestError>> {
        Ok(
            self.check_signature(&key, &message, |resolved| match resolved {
                ResolvedKey::Secret(secret) => {
                    let mac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
                    Ok(ring::hmac::verify(&mac, &message, &signature).is_ok())
                }
                _ => Err(wrong_kind(&key, "a secret")),
            }),
        )
    }

    async fn ed25519(
        &mut self,
        key: String,
        message: Vec<u8>,
        signature: Vec<u8>,
    ) -> wasmtime::Result<Result<bool, GuestError>> {
        Ok(
            self.check_signature(&key, &message, |resolved| match resolved {
                ResolvedKey::Ed25519(public) => Ok(ring::signature::UnparsedPublicKey::new(
                    &ring::signature::ED25519,
                    public,
                )
                .verify(&message, &signature)
                .is_ok()),
                _ => Err(wrong_kind(&key, "an Ed25519 public key")),
            }),
        )
    }

    async fn secret_equals(
        &mut self,
        key: String,
        presented: Vec<u8>,
    ) -> wasmtime::Result<Result<bool, GuestError>> {
        let secret = match self.verify_key(&key) {
            Ok(ResolvedKey::Secret(secret)) => secret,
            Ok(_) => return Ok(Err(wrong_kind(&key, "a secret"))),
            Err(error) => return Ok(Err(error)),
        };
        // Digests of equal length, compared in constant time: neither the content nor the
        // length of the secret shows in the timing.
        let expected = ring::digest::digest(&ring::digest::SHA256, secret);
        let given = ring::digest::digest(&ring::digest::SHA256, &presented);
        let valid = bool::from(expected.as_ref().ct_eq(given.as_ref()));
        if valid {
            self.passed(&key, None);
        }
        Ok(Ok(valid))
    }

    async fn jwt(
        &mut self,
        key: String,
        token: String,
    ) -> wasmtime::Result<Result<Option<String>, GuestError>> {
        let settings = match self.verify_key(&key) {
            Ok(ResolvedKey::Jwks(settings)) => settings.clone(),
            Ok(_) => return Ok(Err(wrong_kind(&key, "a JWKS key set"))),
            Err(error) => return Ok(Err(error)),
        };
        if token.len() > 16 * 1024 {
            return Ok(Ok(None));
        }
        let cache = self.services.jwks.clone();
        let now = jwt::unix_now();
        match jwt::verify(&token, &settings, &cache, now).await {
            Ok(Some(claims)) => {
                self.passed(&key, None);
                Ok(Ok(Some(claims)))
            }
            Ok(None) => Ok(Ok(None)),
            Err(error) => Ok(Err(GuestError::Unavailable(format!(
                "the key set of `{key}` could not be fetched: {error:#}"
            )))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_decode_and_a_bad_public_key_is_refused() {
        let keys: BTreeMap<String, VerifyKeyConfig> = serde_yaml::from_str(
            "s: {secret: abc}\np: {ed25519_public_key: \"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a\"}\n",
        )
        .unwrap();
        let resolved = VerifyKeys::from_config(&keys).unwrap();
        assert!(matches!(resolved.keys["p"], ResolvedKey::Ed25519(_)));
        let bad: BTreeMap<String, VerifyKeyConfig> =
            serde_yaml::from_str("p: {ed25519_public_key: \"00\"}\n").unwrap();
        assert!(VerifyKeys::from_config(&bad).is_err());
    }
}
